"""A tiny synthetic stream for tests and smoke runs: learnable in a few epochs, no files."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lifelong.config import Config, check
from lifelong.data.images import ArraySource
from lifelong.protocols.base import (
    BENCHMARKS,
    Benchmark,
    TrainingDefaults,
    class_split_tasks,
    stream,
)
from lifelong.tasks import TaskStream

__all__ = ["Synthetic"]


@dataclass
class SyntheticConfig(Config):
    num_tasks: int = 3
    classes_per_task: int = 2
    images_per_class: int = 200
    image_size: int = 8
    channels: int = 1
    noise: float = 0.15  # std of per-pixel noise around each class's template
    data_seed: int | None = None

    def validate(self) -> None:
        check(self.num_tasks >= 1 and self.classes_per_task >= 2,
              "num_tasks must be >= 1 and classes_per_task >= 2")
        check(self.images_per_class >= 10, "images_per_class must be >= 10")
        check(self.image_size >= 4 and self.channels >= 1, "image_size >= 4, channels >= 1")


@BENCHMARKS.register("synthetic")
class Synthetic(Benchmark[SyntheticConfig]):
    """Tiny stream of noisy class templates (tests and smoke runs; no data needed)."""

    Config = SyntheticConfig
    defaults = TrainingDefaults(lr=1e-2, lr_decay=0.0, batch_size=10, epochs=3, net="tiny",
                                source="test settings, not from a paper")

    def build(self, seed: int) -> TaskStream:
        cfg = self.cfg
        rng = np.random.default_rng(seed if cfg.data_seed is None else cfg.data_seed)
        num_classes = cfg.num_tasks * cfg.classes_per_task
        shape = (cfg.channels, cfg.image_size, cfg.image_size)
        templates = rng.uniform(0.1, 0.9, size=(num_classes, *shape))
        labels = np.repeat(np.arange(num_classes), cfg.images_per_class)
        pixels = templates[labels] + rng.normal(0, cfg.noise, size=(len(labels), *shape))
        array = np.clip(pixels, 0, 1).astype(np.float32)  # (N, C, H, W) in [0, 1]
        source = ArraySource(array, scale=1.0, name=f"synthetic{seed}")
        groups = [list(range(t * cfg.classes_per_task, (t + 1) * cfg.classes_per_task))
                  for t in range(cfg.num_tasks)]
        names = [f"c{c}" for c in range(num_classes)]
        tasks = class_split_tasks(what="synthetic", groups=groups, class_names=names,
                                  pool=(source, labels), test=None, fraction=1.0,
                                  parts=(0.6, 0.2, 0.2), rng=rng)
        return stream("synthetic", tasks, num_classes)
