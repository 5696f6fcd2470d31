"""LASEM's training time against its base learner with a static configuration, and
brute-force configuration search against LASEM, on the 4-layer CIFAR network (16
configurations).

All three train on the same CIFAR-shaped stream (synthetic pixels: the time does not depend
on what they show), one after another in this process; everything a learner does during
training is timed (brute force's per-epoch validation scoring included), the runner's
evaluation of all tasks is not. Prints the two ratios; targets: LASEM / static <= 1.5,
brute force / LASEM >= 8 (the paper: 1.3-1.5 and 4-9.5).

    python benchmarks/lasem_overhead.py [--base dfcnn] [--tasks 3] [--epochs 30]
"""

from __future__ import annotations

import argparse
import time

import torch

from lifelong._allocator import keep_freed_memory
from lifelong.experiment import make_experiment
from lifelong.runner import batches
from lifelong.tasks import Batch


def train_seconds(learner_name: str, args: argparse.Namespace) -> tuple[float, object]:
    raw = {"run": {"benchmark": "synthetic", "learner": learner_name, "net": "cifar",
                   "batch_size": 10, "epochs": args.epochs},
           "benchmark": {"image_size": 32, "channels": 3, "classes_per_task": 10,
                         "images_per_class": 28, "num_tasks": args.tasks}}
    exp = make_experiment(raw)
    stream = exp.build_stream()
    learner = exp.build_learner(stream, torch.device("cpu"))
    for task in stream:
        task.train.cache()
        task.val.cache()
    epoch, total = 0, 0.0
    for task in stream:
        start = time.perf_counter()
        learner.begin_task(task)
        for _ in range(args.epochs):
            learner.begin_epoch(epoch)
            gen = torch.Generator().manual_seed(epoch)
            for x, y in batches(task.train, 10, gen, drop_last=True):
                learner.observe(Batch(x, y, task.id))
            epoch += 1
        learner.end_task(task)
        total += time.perf_counter() - start
    return total, learner


def main() -> None:
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--base", default="dfcnn", choices=("hps", "tf", "dfcnn"))
    p.add_argument("--tasks", type=int, default=3)
    p.add_argument("--epochs", type=int, default=30, help="epochs per task")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    times = {}
    for name in (f"{args.base}@all", f"lasem-{args.base}", f"bruteforce-{args.base}"):
        seconds, learner = train_seconds(name, args)
        times[name] = seconds
        chosen = learner.report().get("configurations", {})
        print(f"{name:18s} {seconds:8.1f} s   configurations {chosen}", flush=True)
    static, lasem, brute = times.values()
    print(f"{args.tasks} tasks x {args.epochs} epochs x 16 mini-batches of 10, 32x32x3, "
          f"{args.threads} threads")
    print(f"LASEM / static ({args.base}@all): {lasem / static:.2f} (target <= 1.5)")
    print(f"brute force / LASEM: {brute / lasem:.2f} (target >= 8)")


if __name__ == "__main__":
    main()
