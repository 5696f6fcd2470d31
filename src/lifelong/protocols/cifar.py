"""Split CIFAR-100 (DF-CNN section 4.2) and Split CIFAR-10 from the official pickle files."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from lifelong.config import Config, check
from lifelong.data.cifar import CifarData, read_cifar10, read_cifar100
from lifelong.data.images import Normalize
from lifelong.errors import ConfigError
from lifelong.protocols.base import (
    BENCHMARKS,
    Benchmark,
    TaskOrder,
    TrainingDefaults,
    TransformFactory,
    check_task_order,
    class_split_tasks,
    partition_classes,
    stream,
    with_task_order,
)
from lifelong.tasks import TaskStream

__all__ = ["SplitCIFAR100", "SplitCIFAR10", "PAPER_CIFAR100_TASKS"]

#: The original code's CIFAR-100 tasks (``gen_data.py``, ``_cifar100_task_labels_10``):
#: fine-label ids; each task holds one class of each of 10 superclasses (tasks 1-5 and 6-10
#: draw on two disjoint sets of 10 superclasses).
PAPER_CIFAR100_TASKS = (
    (4, 1, 54, 9, 0, 5, 6, 3, 12, 8),
    (30, 32, 62, 10, 51, 20, 7, 42, 17, 13),
    (55, 67, 70, 16, 53, 25, 14, 43, 37, 48),
    (72, 73, 82, 28, 57, 84, 18, 88, 68, 58),
    (95, 91, 92, 61, 83, 94, 24, 97, 76, 90),
    (22, 23, 15, 34, 26, 2, 27, 36, 47, 41),
    (39, 33, 19, 63, 45, 11, 29, 50, 52, 69),
    (40, 49, 21, 64, 77, 35, 44, 65, 56, 81),
    (86, 60, 31, 66, 79, 46, 78, 74, 59, 85),
    (87, 71, 38, 75, 99, 98, 93, 80, 96, 89),
)

# Per-channel statistics of the CIFAR training sets, for normalize=dataset.
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


@dataclass
class SplitCIFARConfig(Config):
    root: str | None = None  # directory holding cifar-100-python/ (or cifar-10-batches-py/)
    num_tasks: int = 10
    classes_per_task: int = 10
    # paper: the original code's fixed tasks; random: a seeded shuffle; sequential: 0-9, ...
    class_order: Literal["paper", "random", "sequential"] = "paper"
    data_fraction: float = 0.04  # 4% of each class's training images ...
    train_val: tuple[float, ...] = (5.6, 1.0)  # ... split 5.6:1, i.e. 17 + 3 per class
    # split: each split standardised per channel with its own statistics, as the original
    # code does; dataset: with the training set's statistics; none: pixels in [0, 1].
    normalize: Literal["split", "dataset", "none"] = "split"
    data_seed: int | None = None  # None: the run's seed
    # Training order with revisits (protocols.base.TASK_ORDERS): the LASEM code's CIFAR-100
    # task_order_type 1 is revisit-half, 2 is revisit-all (main.py).
    task_order: TaskOrder = "once"

    def validate(self) -> None:
        check(self.root is not None, "split-CIFAR needs the data directory: --root DIR")
        check(self.num_tasks >= 1 and self.classes_per_task >= 2,
              "num_tasks must be >= 1 and classes_per_task >= 2")
        check(0 < self.data_fraction <= 1, "data_fraction must be in (0, 1]")
        check(len(self.train_val) == 2 and min(self.train_val) > 0,
              "train_val needs two positive weights")
        check_task_order(self.task_order)


@dataclass
class SplitCIFAR10Config(SplitCIFARConfig):
    num_tasks: int = 5
    classes_per_task: int = 2
    class_order: Literal["paper", "random", "sequential"] = "sequential"


def _groups(name: str, cfg: SplitCIFARConfig, rng: np.random.Generator,
            num_classes: int) -> list[list[int]]:
    if cfg.class_order == "paper":
        if name != "split-cifar100" or (cfg.num_tasks, cfg.classes_per_task) != (10, 10):
            raise ConfigError(f"{name}: class_order=paper is the original code's 10 x 10 "
                              "CIFAR-100 tasks; use class_order=random or sequential")
        return [list(t) for t in PAPER_CIFAR100_TASKS]
    return partition_classes(rng, list(range(num_classes)), cfg.num_tasks,
                             cfg.classes_per_task, shuffle=cfg.class_order == "random",
                             what=name)


def _normalizer(cfg: SplitCIFARConfig, mean: tuple[float, ...],
                std: tuple[float, ...]) -> TransformFactory | None:
    if cfg.normalize == "none":
        return None
    if cfg.normalize == "dataset":
        fixed = Normalize(mean, std)
        return lambda task, split, source, rows: fixed
    return lambda task, split, source, rows: Normalize.from_pixels(source.read(rows))


def _build(name: str, cfg: SplitCIFARConfig, seed: int, data: CifarData,
           mean: tuple[float, ...], std: tuple[float, ...]) -> TaskStream:
    rng = np.random.default_rng(seed if cfg.data_seed is None else cfg.data_seed)
    groups = _groups(name, cfg, rng, len(data.class_names))
    tasks = class_split_tasks(what=name, groups=groups, class_names=data.class_names,
                              pool=(data.train, data.train_labels),
                              test=(data.test, data.test_labels), fraction=cfg.data_fraction,
                              parts=cfg.train_val, rng=rng,
                              transform=_normalizer(cfg, mean, std))
    return with_task_order(stream(name, tasks, len(data.class_names)), cfg.task_order)


@BENCHMARKS.register("split-cifar100")
class SplitCIFAR100(Benchmark[SplitCIFARConfig]):
    """10 tasks x 10 CIFAR-100 classes, 4% of the training data (170 train / 30 val), 1,000 test."""

    Config = SplitCIFARConfig
    needs_root = True
    defaults = TrainingDefaults(lr=1e-4, lr_decay=1 / 4000, batch_size=10, epochs=2000,
                                net="cifar", source="DF-CNN paper 4.2 and code (CIFAR-100)")

    def build(self, seed: int) -> TaskStream:
        assert self.cfg.root is not None  # validate()
        data = read_cifar100(self.cfg.root)
        return _build("split-cifar100", self.cfg, seed, data, CIFAR100_MEAN, CIFAR100_STD)


@BENCHMARKS.register("split-cifar10")
class SplitCIFAR10(Benchmark[SplitCIFAR10Config]):
    """5 tasks x 2 CIFAR-10 classes (the DF-CNN code's CIFAR10_5), 4% of the training data."""

    Config = SplitCIFAR10Config
    needs_root = True
    defaults = TrainingDefaults(lr=2.5e-4, lr_decay=1 / 1000, batch_size=20, epochs=400,
                                net="cifar",
                                source="DF-CNN code (CIFAR10_5: 2000 epochs over 5 tasks)")

    def build(self, seed: int) -> TaskStream:
        assert self.cfg.root is not None  # validate()
        data = read_cifar10(self.cfg.root)
        return _build("split-cifar10", self.cfg, seed, data, CIFAR10_MEAN, CIFAR10_STD)
