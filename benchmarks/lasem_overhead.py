"""LASEM's training time against its base learner with a static configuration, exact against
epsilon-truncated LASEM, exact LASEM against the FLOPs of its prefix tree, and brute-force
configuration search against LASEM, on the 4-layer CIFAR network (16 configurations).

All learners train on the same CIFAR-shaped stream (synthetic class templates with noise),
one after another in this process; everything a learner does during training is timed
(brute force's per-epoch validation scoring included), the runner's evaluation of all tasks
is not. The FLOP ratio is measured with ``lifelong.macs`` on one training step of each
(after the first step of a task), so ``exact_over_flop_bound`` is the exact learner's time
over the time the static learner would take for that many FLOPs. Prints, one per line,
``name = value``: exact_over_static, truncated_over_static, flop_ratio,
exact_over_flop_bound, bruteforce_over_exact, truncated_same_configs (the share of tasks
where truncated and exact LASEM choose the same configuration); targets (issue 12):
exact_over_flop_bound <= 1.3, truncated_over_static <= 2.0, truncated_same_configs = 1.0.

    python benchmarks/lasem_overhead.py [--base dfcnn] [--tasks 3] [--epochs 30]
        [--epsilon 1e-3] [--prior average] [--threads 1] [--no-bruteforce]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

from lifelong._allocator import keep_freed_memory
from lifelong.experiment import make_experiment
from lifelong.macs import count_macs
from lifelong.runner import batches
from lifelong.tasks import Batch


def _experiment(learner_name: str, args: argparse.Namespace, **learner: Any):
    raw = {"run": {"benchmark": "synthetic", "learner": learner_name, "net": "cifar",
                   "batch_size": 10, "epochs": args.epochs},
           "benchmark": {"image_size": 32, "channels": 3, "classes_per_task": 10,
                         "images_per_class": 28, "num_tasks": args.tasks},
           "learner": learner}
    exp = make_experiment(raw)
    stream = exp.build_stream()
    # Seeded as `lifelong run` seeds (api.py): the same initialisation and dropout masks for
    # every learner, so that exact and truncated LASEM differ only where truncation drops
    # a configuration (unseeded, two exact runs in this process choose differently).
    torch.manual_seed(0)
    return exp, stream, exp.build_learner(stream, torch.device("cpu"))


def train_seconds(learner_name: str, args: argparse.Namespace, **learner: Any
                  ) -> tuple[float, Any]:
    """Seconds the learner spends training the whole stream, and the learner."""
    _, stream, model = _experiment(learner_name, args, **learner)
    for task in stream:
        task.train.cache()
        task.val.cache()
    epoch, total = 0, 0.0
    for task in stream:
        start = time.perf_counter()
        model.begin_task(task)
        for _ in range(args.epochs):
            model.begin_epoch(epoch)
            gen = torch.Generator().manual_seed(epoch)
            for x, y in batches(task.train, 10, gen, drop_last=True):
                model.observe(Batch(x, y, task.id))
            epoch += 1
        model.end_task(task)
        total += time.perf_counter() - start
    return total, model


def step_macs(learner_name: str, args: argparse.Namespace, **learner: Any) -> int:
    """MACs of one training step (the second of the first task)."""
    _, stream, model = _experiment(learner_name, args, **learner)
    task = stream[0]
    model.begin_task(task)
    model.begin_epoch(0)
    steps = iter(batches(task.train, 10, torch.Generator().manual_seed(0), drop_last=True))
    x, y = next(steps)
    model.observe(Batch(x, y, task.id))
    x, y = next(steps)
    _, macs = count_macs(lambda: model.observe(Batch(x, y, task.id)))
    return macs


def main() -> None:
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--base", default="dfcnn", choices=("hps", "tf", "dfcnn"))
    p.add_argument("--tasks", type=int, default=3)
    p.add_argument("--epochs", type=int, default=30, help="epochs per task")
    p.add_argument("--epsilon", type=float, default=1e-3, help="truncated LASEM's epsilon")
    p.add_argument("--prior", default="average", choices=("count", "average"),
                   help="LASEM's prior (default: the learner's default)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-bruteforce", action="store_true", help="skip brute force (16x)")
    args = p.parse_args()
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    lasem = f"lasem-{args.base}"
    runs = {"static": (f"{args.base}@all", {}),
            "exact": (lasem, {"prior": args.prior}),
            "truncated": (lasem, {"prior": args.prior, "epsilon": args.epsilon})}
    if not args.no_bruteforce:
        runs["bruteforce"] = (f"bruteforce-{args.base}", {})
    times, chosen = {}, {}
    for key, (name, cfg) in runs.items():
        seconds, learner = train_seconds(name, args, **cfg)
        times[key] = seconds
        report = learner.report()
        chosen[key] = {str(t): c for t, c in (learner.chosen_configurations() or {}).items()}
        extra = f"  configs/batch {report['configs_per_batch']}" \
            if "configs_per_batch" in report else ""
        print(f"# {key:10s} {name} {cfg}: {seconds:.1f} s  configurations {chosen[key]}{extra}",
              flush=True)
    flop_ratio = step_macs(lasem, args, prior=args.prior) / step_macs(f"{args.base}@all", args)
    per_epoch = len(_experiment(f"{args.base}@all", args)[1][0].train) // 10
    print(f"# {args.tasks} tasks x {args.epochs} epochs x {per_epoch} mini-batches of 10, 32x32x3, "
          f"{args.threads} thread(s), prior {args.prior}")
    print(f"exact_over_static = {times['exact'] / times['static']:.2f}")
    print(f"truncated_over_static = {times['truncated'] / times['static']:.2f}")
    print(f"flop_ratio = {flop_ratio:.2f}")
    print(f"exact_over_flop_bound = {times['exact'] / (times['static'] * flop_ratio):.2f}")
    if "bruteforce" in times:
        print(f"bruteforce_over_exact = {times['bruteforce'] / times['exact']:.2f}")
    same = [chosen["exact"][t] == chosen["truncated"].get(t) for t in chosen["exact"]]
    print(f"truncated_same_configs = {sum(same) / max(len(same), 1):.2f}")


if __name__ == "__main__":
    main()
