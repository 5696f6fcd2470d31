"""Peak memory of a SKILL agent learning one large task, over the agent's idle memory.

    python benchmarks/skill_memory.py [--images 20000] [--size 96] [--epochs 3]

One task of ``--images`` synthetic training images (``--size`` px, 3 channels, 10 classes;
plus 10% as many validation and test images) is learned without beneficial biases by one
in-process :class:`lifelong.skill.agent.Agent` on EfficientNet-Lite0. The images are made on
demand by a pixel source (a class template plus noise seeded by the row, like a file read
from disk), so the data set itself takes no memory; what is measured is what learning
holds: the agent reads and featurises the images a chunk at a time and keeps the features
(N, D), never the pixels (20,000 x 3 x 96 x 96 float32 = 2,109 MiB).

Measured: the resident set after the agent has started (``idle``: backbone, engine, imports),
then the kernel's peak-RSS counter is reset (``/proc/self/clear_refs``) and the agent learns
the task; ``peak_rss_over_idle_mb`` is the peak during learning minus idle, in MiB. Target:
<= 1000.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one agent's share of the machine

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from lifelong.data.images import ImageSet, PixelSource  # noqa: E402
from lifelong.tasks import Task, TaskStream  # noqa: E402

CLASSES = 10


class SyntheticSource(PixelSource):
    """``n`` images (3, size, size) in [0, 1], made on read: the template of the row's class
    (8 x 8 random colours, upsampled) plus Gaussian noise seeded by the row."""

    def __init__(self, n: int, size: int, labels: np.ndarray, seed: int = 0) -> None:
        self.n, self.size, self.labels, self.seed = n, size, labels, seed
        self.shape = (3, size, size)
        rng = np.random.default_rng(seed)
        coarse = torch.from_numpy(rng.uniform(0.2, 0.8, (CLASSES, 3, 8, 8)).astype(np.float32))
        self.templates = torch.nn.functional.interpolate(coarse, size=(size, size),
                                                         mode="nearest")  # (K, 3, S, S)

    def __len__(self) -> int:
        return self.n

    def read(self, rows: np.ndarray) -> torch.Tensor:
        rows = np.asarray(rows, dtype=np.int64)
        out = self.templates[torch.from_numpy(self.labels[rows])].clone()  # (B, 3, S, S)
        for i, row in enumerate(rows.tolist()):
            g = np.random.default_rng(self.seed * 1_000_003 + row)
            out[i] += torch.from_numpy(g.normal(0, 0.1, self.shape).astype(np.float32))
        return out.clamp_(0, 1)

    def describe(self) -> str:
        return f"synthetic-memory:{self.n}:{self.size}:{self.seed}"


def one_task(images: int, size: int) -> TaskStream:
    """A stream of one task: ``images`` training, ``images // 10`` validation and test."""
    extra = max(images // 10, CLASSES)
    n = images + 2 * extra
    labels = np.arange(n) % CLASSES
    src = SyntheticSource(n, size, labels)
    rows = np.arange(n)
    part = [rows[:images], rows[images:images + extra], rows[images + extra:]]
    train, val, test = (ImageSet(src, r, labels[r]) for r in part)
    task = Task(id=0, name="synthetic-memory", classes=[f"c{k}" for k in range(CLASSES)],
                class_ids=list(range(CLASSES)), train=train, val=val, test=test)
    return TaskStream("synthetic-memory", [task], CLASSES)


def _status(field: str) -> int:
    """A memory field of /proc/self/status, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def main() -> int:
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--images", type=int, default=20_000)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--epochs", type=int, default=3, help="most epochs (no BB: each is cheap)")
    p.add_argument("--backbone", default="efficientnet-lite0")
    args = p.parse_args()

    from lifelong.skill.agent import Agent

    torch.set_num_threads(1)
    raw = {"run": {"benchmark": "synthetic", "learner": "lll", "setting": "class-il",
                   "epochs": args.epochs, "seed": 0, "device": "cpu"},
           "learner": {"backbone": args.backbone, "image_size": args.size, "bb": "none"}}
    stream = one_task(args.images, args.size)
    task = stream[0]
    pixels = len(task.train) * 4 * int(np.prod(task.train.shape))
    t0 = time.perf_counter()
    agent = Agent(raw, 0, [0], stream=stream)
    idle = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from now
    t1 = time.perf_counter()
    out = agent.learn(0)
    t2 = time.perf_counter()
    peak = _status("VmHWM")
    best = agent.learner.learning[0].get("best_val", float("nan"))
    mib = 1 << 20
    print(f"one task: {len(task.train):,} training + {len(task.val):,} validation images, "
          f"{args.size} px, {args.backbone}, no BB, <= {args.epochs} epochs; "
          f"pixels of the training set as float32: {pixels / mib:,.0f} MiB")
    print(f"agent start-up {t1 - t0:.1f} s, learning {t2 - t1:.1f} s ({out['epochs']} epochs, "
          f"best validation accuracy {best:.3f}, bundle {out['bytes']:,} bytes)")
    print(f"idle_rss_mb = {idle / mib:.0f}")
    print(f"peak_rss_mb = {peak / mib:.0f}")
    print(f"peak_rss_over_idle_mb = {(peak - idle) / mib:.0f}")
    return 0 if (peak - idle) / mib <= 1000 else 1


if __name__ == "__main__":
    sys.exit(main())
