"""The LASEM paper's lifelong STL-10 (appendix A), built as the authors' code builds it:
20 tasks of 3 classes, each with its own Gaussian noise and channel order.

Source: Lifelong-ML/LASEM at c4ec052, ``classification/gen_data.py`` (``experiment_designer``,
``data_handler_for_experiment``, ``read_raw_stl10``) and ``main.py`` (``stl10_20t``). The code
draws one *task design* (each task's classes, noise and channel order) and reuses it for
every run; only the train/validation rows and the noise values differ between runs. Here
the design comes from ``data_seed`` (fixed by default) and the rows and noise from the
run's seed.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lifelong.config import Config, check
from lifelong.data.images import Compose, GaussianNoise, PermuteChannels, Shift, Transform
from lifelong.data.stl10 import read_stl10
from lifelong.protocols.base import (
    BENCHMARKS,
    Benchmark,
    TaskOrder,
    TrainingDefaults,
    check_task_order,
    class_split_tasks,
    require,
    stream,
    with_task_order,
)
from lifelong.tasks import TaskStream

__all__ = ["STL10Lifelong", "STL10LifelongConfig", "Clip", "TaskDesign", "design_tasks"]

_SPLITS = ("train", "val", "test")


@dataclass
class STL10LifelongConfig(Config):
    root: str | None = None  # directory holding stl10_binary/
    num_tasks: int = 20  # main.py, stl10_20t
    classes_per_task: int = 3  # main.py, stl10_20t
    data_fraction: float = 0.25  # 25% of each class's training images ... (main.py)
    # ... of which 15% validation (main.py validation_data_ratio = 15): 125 images give 19
    # validation and 106 training images per class (gen_data.py: index < 0.15 * 125), which
    # weights 5.7:1 reproduce: 318 + 57 per task
    train_val: tuple[float, ...] = (5.7, 1.0)
    # Noise mean and std of a task, each drawn uniformly from these (gen_data.py line 1137:
    # 0.025 * randint(-2, 2) and 0.025 * randint(0, 2); numpy's upper bound is exclusive).
    # A std of 0 with a non-zero mean shifts every pixel by the mean.
    noise_means: tuple[float, ...] = (-0.05, -0.025, 0.0, 0.025)
    noise_stds: tuple[float, ...] = (0.0, 0.025)
    # Clip noisy pixels to [-0.5, 0.5], the range of the shifted images (gen_data.py 1285-1287)
    clip: bool = True
    # The task design (classes, noise, channel order) is drawn from this seed, the same for
    # every run as in the code; another value draws another design. The run's seed draws the
    # train/validation rows and the noise values.
    data_seed: int = 0
    task_order: TaskOrder = "once"  # revisits (protocols.base.TASK_ORDERS)

    def validate(self) -> None:
        check(self.root is not None, "stl10-lifelong needs the data directory: --root DIR")
        check(self.num_tasks >= 1 and self.classes_per_task >= 2,
              "num_tasks must be >= 1 and classes_per_task >= 2")
        check(0 < self.data_fraction <= 1, "data_fraction must be in (0, 1]")
        check(len(self.train_val) == 2 and min(self.train_val) > 0,
              "train_val needs two positive weights")
        check(len(self.noise_means) >= 1 and len(self.noise_stds) >= 1,
              "noise_means and noise_stds must not be empty")
        check(min(self.noise_stds) >= 0, "noise_stds must be >= 0")
        check_task_order(self.task_order)


class Clip(Transform):
    """Clamp pixels to ``[low, high]``."""

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = float(low), float(high)

    def __call__(self, x: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        return x.clamp(self.low, self.high)

    def describe(self) -> str:
        return f"clip({self.low},{self.high})"


@dataclass(frozen=True)
class TaskDesign:
    """One task of the design: its classes in label order, its noise and channel order."""

    classes: tuple[int, ...]  # label k is class classes[k]
    noise_mean: float
    noise_std: float
    channels: tuple[int, ...]  # output channel i is input channel channels[i]


def _draw_classes(rng: np.random.Generator, num_classes: int, k: int,
                  seen: set[tuple[int, ...]]) -> tuple[int, ...]:
    """A list of ``k`` classes whose set is not in ``seen`` (the code's task id is the sorted
    class set; a repeated set is redrawn), in its random draw order; adds the set to ``seen``."""
    total = math.comb(num_classes, k)
    while True:
        if 2 * len(seen) >= total:  # dense: draw among the unused sets (a redraw loop could spin)
            unused = [c for c in itertools.combinations(range(num_classes), k) if c not in seen]
            drawn = [int(c) for c in rng.permutation(unused[int(rng.integers(len(unused)))])]
        else:
            drawn = [int(c) for c in rng.choice(num_classes, k, replace=False)]
        key = tuple(sorted(drawn))
        if key not in seen:
            seen.add(key)
            return tuple(drawn)


def design_tasks(cfg: STL10LifelongConfig, num_classes: int) -> list[TaskDesign]:
    """The task design drawn from ``cfg.data_seed``, task by task as ``experiment_designer``
    draws it: the classes, then the noise mean and std (independently), then a channel order.
    The first n tasks of a longer design are the design of n tasks."""
    k = cfg.classes_per_task
    total = math.comb(num_classes, k)
    require(cfg.num_tasks <= total,
            f"stl10-lifelong: {cfg.num_tasks} tasks need as many distinct sets of {k} classes; "
            f"{num_classes} classes give {total}")
    rng = np.random.default_rng(cfg.data_seed)
    seen: set[tuple[int, ...]] = set()
    designs = []
    for _ in range(cfg.num_tasks):
        classes = _draw_classes(rng, num_classes, k, seen)
        mean = float(cfg.noise_means[int(rng.integers(len(cfg.noise_means)))])
        std = float(cfg.noise_stds[int(rng.integers(len(cfg.noise_stds)))])
        channels = tuple(int(c) for c in rng.permutation(3))
        designs.append(TaskDesign(classes, mean, std, channels))
    return designs


def task_transform(design: TaskDesign, noise_seed: int, clip: bool) -> Transform:
    """Pixels in [0, 1] to the task's input: shift to [-0.5, 0.5], add the noise and clip
    (only when the task has noise, as the code), then reorder the channels."""
    steps: list[Transform] = [Shift(-0.5)]
    if design.noise_std > 0:
        steps.append(GaussianNoise(design.noise_mean, design.noise_std, noise_seed))
    elif design.noise_mean != 0:
        steps.append(Shift(design.noise_mean))  # N(mean, 0): every pixel moves by the mean
    if clip and len(steps) > 1:
        steps.append(Clip(-0.5, 0.5))
    if design.channels != (0, 1, 2):
        steps.append(PermuteChannels(design.channels))
    return Compose(steps)


@BENCHMARKS.register("stl10-lifelong")
class STL10Lifelong(Benchmark[STL10LifelongConfig]):
    """20 tasks of 3 random STL-10 classes, each with its own Gaussian noise and channel order."""

    Config = STL10LifelongConfig
    needs_root = True
    # LASEM code: main.py (lr 1e-4, no decay, patience 500 epochs per task) and
    # utils/utils_env_cl.py line 347 (batch 10); LASEM paper Table 2.
    defaults = TrainingDefaults(lr=1e-4, lr_decay=0.0, batch_size=10, epochs=500, net="stl10",
                                source="LASEM code (main.py, utils_env_cl.py) and paper "
                                       "Table 2 (STL-10)")

    def build(self, seed: int) -> TaskStream:
        cfg = self.cfg
        assert cfg.root is not None  # validate()
        data = read_stl10(cfg.root)
        num_classes = len(data.class_names)
        require(num_classes >= cfg.classes_per_task,
                f"stl10-lifelong: tasks of {cfg.classes_per_task} classes need at least that many "
                f"classes, the data has {num_classes}")
        designs = design_tasks(cfg, num_classes)
        rng = np.random.default_rng(seed)  # this run's rows and noise
        noise_seeds = [int(s) for s in rng.integers(2**31 - 1, size=len(designs))]
        infos: list[dict[str, Any]] = [
            {"noise_mean": d.noise_mean, "noise_std": d.noise_std, "channels": list(d.channels)}
            for d in designs]

        def transform(task: int, split: str, source, rows):
            # Each split has its own noise seed: row k of the train and of the test file
            # are different images and must not share a noise pattern.
            split_seed = (noise_seeds[task] + 7919 * _SPLITS.index(split)) % (2**31 - 1)
            return task_transform(designs[task], split_seed, cfg.clip)

        tasks = class_split_tasks(what="stl10-lifelong", groups=[list(d.classes) for d in designs],
                                  class_names=data.class_names,
                                  pool=(data.train, data.train_labels),
                                  test=(data.test, data.test_labels), fraction=cfg.data_fraction,
                                  parts=cfg.train_val, rng=rng, transform=transform, infos=infos)
        return with_task_order(stream("stl10-lifelong", tasks, num_classes), cfg.task_order)
