"""DF-CNN training epoch time over an HPS epoch on the same network and data.

The DF-CNN regenerates every conv layer's filters from its knowledge base at each step
(deconvolution + tensor contraction); this checks that generation does not dominate. HPS
and DF-CNN epochs are timed alternately in one process, on the same mini-batches, and the
ratio of median epoch times is printed (target: at most 1.3).

    python benchmarks/dfcnn_epoch_time.py [--net cifar] [--epochs 7] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lifelong._allocator import keep_freed_memory
from lifelong.experiment import make_experiment
from lifelong.runner import batches
from lifelong.tasks import Batch

SHAPES = {"cifar": (3, 32, 32), "mnist": (1, 28, 28), "stl10": (3, 96, 96)}


def main() -> None:
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--net", default="cifar", choices=sorted(SHAPES))
    p.add_argument("--epochs", type=int, default=7, help="timed epochs per learner")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--train", type=int, default=170, help="training images (CIFAR-100: 170)")
    args = p.parse_args()
    keep_freed_memory()  # as the command line does
    torch.set_num_threads(args.threads)
    c, h, _ = SHAPES[args.net]
    # A CIFAR-shaped synthetic task: the timing does not depend on what the pixels show.
    per_class = max(10, args.train * 10 // 6 // 10)  # synthetic keeps 60% of it for training
    raw = {"benchmark": {"image_size": h, "channels": c, "classes_per_task": 10,
                         "images_per_class": per_class, "num_tasks": 1},
           "run": {"benchmark": "synthetic", "net": args.net, "batch_size": 10}}
    learners = {}
    for name in ("hps", "dfcnn"):
        exp = make_experiment({**raw, "run": {**raw["run"], "learner": name}})
        stream = exp.build_stream()
        learner = exp.build_learner(stream, torch.device("cpu"))
        learner.begin_task(stream[0])
        learners[name] = (learner, stream[0])
    task = learners["hps"][1]
    task.train.cache()
    data = list(batches(task.train, 10, torch.Generator().manual_seed(0), drop_last=True))

    def epoch(name: str) -> float:
        learner, _ = learners[name]
        start = time.perf_counter()
        for x, y in data:
            learner.observe(Batch(x, y, 0))
        return time.perf_counter() - start

    times: dict[str, list[float]] = {"hps": [], "dfcnn": []}
    for name in times:  # warm-up
        epoch(name)
    for _ in range(args.epochs):
        for name in times:  # alternate, so both see the same machine load
            times[name].append(epoch(name))
    med = {n: statistics.median(t) for n, t in times.items()}
    print(f"net {args.net}, {len(data)} mini-batches of 10, {args.threads} threads, "
          f"{args.epochs} epochs each (median)")
    for n, t in med.items():
        count = learners[n][0].parameter_count()
        print(f"  {n:6s} {t * 1000:8.1f} ms/epoch   parameters {count:,}")
    print(f"dfcnn / hps epoch time: {med['dfcnn'] / med['hps']:.2f} (target <= 1.3)")


if __name__ == "__main__":
    main()
