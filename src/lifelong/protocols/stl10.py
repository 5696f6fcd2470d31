"""The LASEM paper's lifelong STL-10 (appendix A): 20 noisy, channel-permuted 3-way tasks."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from lifelong.config import Config, check
from lifelong.data.images import Compose, GaussianNoise, PermuteChannels, Shift
from lifelong.data.stl10 import read_stl10
from lifelong.protocols.base import (
    BENCHMARKS,
    Benchmark,
    TrainingDefaults,
    class_split_tasks,
    require,
    stream,
)
from lifelong.tasks import TaskStream

__all__ = ["STL10Lifelong"]


@dataclass
class STL10LifelongConfig(Config):
    root: str | None = None  # directory holding stl10_binary/
    num_tasks: int = 20
    classes_per_task: int = 3
    data_fraction: float = 0.25  # 25% of each class's training images ...
    # ... split 5.7:1: 106 + 19 images per class, 318 + 57 per task
    train_val: tuple[float, ...] = (5.7, 1.0)
    # Noise mean and std are drawn from these fractions of the pixel range (1.0 in [-0.5, 0.5]);
    # a negative std draw is used as its absolute value (the sign of N(0,1) noise is immaterial).
    noise_levels: tuple[float, ...] = (-0.10, -0.05, 0.0, 0.05, 0.10)
    data_seed: int | None = None  # None: the run's seed

    def validate(self) -> None:
        check(self.root is not None, "stl10-lifelong needs the data directory: --root DIR")
        check(self.num_tasks >= 1 and self.classes_per_task >= 2,
              "num_tasks must be >= 1 and classes_per_task >= 2")
        check(0 < self.data_fraction <= 1, "data_fraction must be in (0, 1]")
        check(len(self.train_val) == 2 and min(self.train_val) > 0,
              "train_val needs two positive weights")
        check(len(self.noise_levels) >= 1, "noise_levels must not be empty")


@BENCHMARKS.register("stl10-lifelong")
class STL10Lifelong(Benchmark[STL10LifelongConfig]):
    """20 tasks of 3 random STL-10 classes, each with its own Gaussian noise and channel order."""

    Config = STL10LifelongConfig
    needs_root = True
    defaults = TrainingDefaults(lr=1e-4, lr_decay=0.0, batch_size=16, epochs=500, net="stl10",
                                source="LASEM paper appendix A, Table 2, and code (STL-10)")

    @staticmethod
    def _unused(rng: np.random.Generator, seen: set[tuple], num_classes: int,
                levels: list[float], stds: list[float], perms: list[tuple[int, ...]]
                ) -> tuple[list[int], float, float, list[int]]:
        """A uniformly drawn task setting not in ``seen`` (enumerates them all)."""
        k = len(next(iter(seen))[0])
        unused = [(list(c), m, s, list(p)) for c in itertools.combinations(range(num_classes), k)
                  for m in levels for s in stds for p in perms
                  if (c, m, s, p) not in seen]
        return unused[int(rng.integers(len(unused)))]

    def build(self, seed: int) -> TaskStream:
        cfg = self.cfg
        assert cfg.root is not None  # validate()
        data = read_stl10(cfg.root)
        num_classes = len(data.class_names)
        require(num_classes >= cfg.classes_per_task,
                f"stl10-lifelong: tasks of {cfg.classes_per_task} classes need at least that many "
                f"classes, the data has {num_classes}")
        rng = np.random.default_rng(seed if cfg.data_seed is None else cfg.data_seed)
        levels = sorted(set(cfg.noise_levels))
        stds = sorted({abs(v) for v in levels})
        perms = list(itertools.permutations(range(3)))
        # "Any pair of tasks differs by at least one image class, the mean and variance of the
        # noise, or the order of channels": draw from the distinct combinations without
        # replacement (a redraw loop could spin forever when few combinations exist).
        num_sets = math.comb(num_classes, cfg.classes_per_task)
        variety = num_sets * len(levels) * len(stds) * len(perms)
        require(cfg.num_tasks <= variety,
                f"stl10-lifelong: only {variety} distinct tasks exist for these settings")
        seen: set[tuple] = set()
        groups: list[list[int]] = []
        settings: list[tuple[float, float, list[int], int]] = []
        infos: list[dict[str, Any]] = []
        while len(groups) < cfg.num_tasks:
            classes = sorted(int(c) for c in rng.choice(num_classes, cfg.classes_per_task,
                                                        replace=False))
            mean, std = float(rng.choice(levels)), abs(float(rng.choice(cfg.noise_levels)))
            perm = [int(p) for p in perms[int(rng.integers(len(perms)))]]
            key = (tuple(classes), mean, std, tuple(perm))
            if key in seen:
                if len(seen) * 2 > variety:  # dense: pick uniformly among the unused ones
                    classes, mean, std, perm = self._unused(rng, seen, num_classes, levels,
                                                            stds, perms)
                    key = (tuple(classes), mean, std, tuple(perm))
                else:
                    continue
            seen.add(key)
            groups.append(classes)
            settings.append((mean, std, perm, int(rng.integers(2**31 - 1))))
            infos.append({"noise_mean": mean, "noise_std": std, "channels": list(perm)})

        def transform(task: int, split: str, source, rows):
            mean, std, perm, seed_ = settings[task]
            # Each split has its own noise seed: row k of the train and of the test file
            # are different images and must not share a noise pattern.
            split_seed = (seed_ + 7919 * ("train", "val", "test").index(split)) % (2**31 - 1)
            return Compose([Shift(-0.5), GaussianNoise(mean, std, split_seed),
                            PermuteChannels(perm)])

        tasks = class_split_tasks(what="stl10-lifelong", groups=groups,
                                  class_names=data.class_names,
                                  pool=(data.train, data.train_labels),
                                  test=(data.test, data.test_labels), fraction=cfg.data_fraction,
                                  parts=cfg.train_val, rng=rng, transform=transform, infos=infos)
        return stream("stl10-lifelong", tasks, num_classes)
