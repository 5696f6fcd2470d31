"""Which tasks of ``shipped-mix`` are furthest from the backbone's pretraining domain
(ImageNet), measured on the data, and do beneficial biases (BB) help there?

Domain gap of a task: every BatchNorm layer of the frozen backbone stores ImageNet's
per-channel activation mean and variance (its running statistics). On ImageNet-like
inputs the activations entering a BN layer have about those statistics; on a distant domain
they do not. For the task's training images we compute, per BN layer and channel, the
KL divergence KL(N(m, v) || N(m_run, v_run)) between the task's activation statistics and
the stored ones, and average it over channels and layers (one number per task; larger =
further from ImageNet). This is exactly the kind of shift a per-channel bias can undo
(Eqs. 1-2 add a bias where BN subtracts a mean).

With ``--bb``, the tasks with the largest gap (``--top``) and, for contrast, those with the
smallest are then learned with no BB and with BB (each task's head alone: oracle accuracy
does not depend on other tasks' heads), as the learner's real schedule (Adam 1e-3, early
stopping with patience 10, at most ``--max-epochs``), and their oracle test accuracy,
epochs and training MACs are printed.

    python benchmarks/lll_domain_gap.py [--images 200] [--bb full] [--top 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from lifelong._allocator import keep_freed_memory
from lifelong.experiment import make_experiment
from lifelong.learners.lll.learner import LLL
from lifelong.runner import batches, evaluate
from lifelong.tasks import Batch, Task


def bn_gap(learner: LLL, x: torch.Tensor) -> float:
    """Mean over BN layers and channels of KL(task stats || stored ImageNet stats) of the
    activations entering each BatchNorm of the frozen backbone; x: (N, 3, H, W)."""
    kls: list[float] = []

    def hook(bn: nn.BatchNorm2d, inputs: tuple[torch.Tensor, ...]) -> None:
        a = inputs[0].double()  # (N, C, H, W)
        m = a.mean((0, 2, 3))
        v = a.var((0, 2, 3), unbiased=False) + bn.eps
        m0, v0 = bn.running_mean.double(), bn.running_var.double() + bn.eps
        # KL(N(m, v) || N(m0, v0)) per channel, (C,)
        kl = 0.5 * (torch.log(v0 / v) + (v + (m - m0) ** 2) / v0 - 1)
        kls.append(float(kl.mean()))

    bns = [mod for mod in learner.backbone.modules() if isinstance(mod, nn.BatchNorm2d)]
    handles = [bn.register_forward_pre_hook(hook) for bn in bns]
    try:
        with torch.no_grad():
            learner.backbone.use_bb(None)
            learner.backbone(x)
    finally:
        for h in handles:
            h.remove()
    return float(np.mean(kls))


def learn(learner: LLL, task: Task, max_epochs: int, seed: int) -> None:
    """The runner's schedule for one task: epochs of observe until early stopping."""
    learner.begin_task(task)
    for epoch in range(1, max_epochs + 1):
        learner.begin_epoch(epoch)
        if learner.task_done():
            break
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        for x, y in batches(task.train, 32, gen, drop_last=True):
            learner.observe(Batch(x, y, task.id))
    learner.end_task(task)


def main() -> None:
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--num-tasks", type=int, default=12)
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--images", type=int, default=200, help="training images per task for "
                                                           "the gap statistics")
    p.add_argument("--bb", choices=("full", "partial"), help="also learn the extreme tasks "
                                                              "with and without BB")
    p.add_argument("--bb-stages", type=int, default=3)
    p.add_argument("--top", type=int, default=3, help="tasks with the largest gap to learn")
    p.add_argument("--bottom", type=int, default=0, help="and with the smallest gap")
    p.add_argument("--tasks", help="comma-separated task ids to learn instead of top/bottom")
    p.add_argument("--max-epochs", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the measurements to this file")
    args = p.parse_args()
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(args.threads)

    def exp(**learner: Any):
        return make_experiment({
            "run": {"benchmark": "shipped-mix", "learner": "lll", "setting": "class-il",
                    "seed": args.seed, "batch_size": 32},
            "benchmark": {"num_tasks": args.num_tasks},
            "learner": {"image_size": args.image_size, "bb_stages": args.bb_stages,
                        **learner}})

    stream = exp().build_stream()
    probe = exp().build_learner(stream, torch.device("cpu"))
    gaps: dict[int, float] = {}
    for task in stream:
        n = min(args.images, len(task.train))
        gaps[task.id] = bn_gap(probe, task.train.images(np.arange(n)))
    order = sorted(gaps, key=gaps.get, reverse=True)
    print(f"BatchNorm-statistics gap to ImageNet (mean KL per channel, {args.images} train "
          f"images per task, image size {args.image_size}), largest first:")
    print("| rank | task | domain | transform | BN gap |")
    print("|---|---|---|---|---|")
    for r, t in enumerate(order, 1):
        info = stream[t].info
        print(f"| {r} | {t} {stream[t].name} | {info.get('domain')} | "
              f"{info.get('transform')} | {gaps[t]:.3f} |")
    out: dict[str, Any] = {"gaps": {stream[t].name: gaps[t] for t in order}}

    if args.bb:
        chosen = ([int(t) for t in args.tasks.split(",")] if args.tasks else
                  order[:args.top] + (order[-args.bottom:] if args.bottom else []))
        print(f"\noracle test accuracy, no BB vs {args.bb} BB (each task's own head; Adam 1e-3,"
              f" patience 10, <= {args.max_epochs} epochs; {args.threads} thread(s)):")
        print("| task | BN gap | no-BB acc | no-BB epochs (best) | BB acc | BB epochs (best) | "
              "no-BB MACs | BB MACs | BB CPU s |")
        print("|---|---|---|---|---|---|---|---|---|")
        rows = {}
        for t in chosen:
            task = stream[t]
            for split in (task.train, task.val, task.test):
                split.cache()
            res = {}
            for variant, over in (("none", {}), (args.bb, {"bb": args.bb})):
                learner = exp(**over).build_learner(stream, torch.device("cpu"))
                start = time.process_time()
                learn(learner, task, args.max_epochs, args.seed)
                cpu = time.process_time() - start
                acc = evaluate(learner, task, task.test, torch.device("cpu"), "task-il")["acc"]
                info = learner.learning[t]
                res[variant] = {"acc": acc, "epochs": info["epochs"],
                                "best_epoch": info["best_epoch"],
                                "macs": learner.train_macs[t], "cpu_s": cpu}
            a, b = res["none"], res[args.bb]
            print(f"| {t} {task.name} | {gaps[t]:.3f} | {a['acc']:.3f} | {a['epochs']} "
                  f"({a['best_epoch']}) | {b['acc']:.3f} | {b['epochs']} ({b['best_epoch']}) | "
                  f"{a['macs']:.2e} | {b['macs']:.2e} | {b['cpu_s']:.0f} |", flush=True)
            rows[task.name] = res
        top = [stream[t].name for t in chosen if t in order[:args.top]]
        if top:
            mean = {v: float(np.mean([rows[n][v]["acc"] for n in top]))
                    for v in ("none", args.bb)}
            print(f"mean oracle accuracy over the {len(top)} largest-gap tasks: no BB "
                  f"{mean['none']:.3f}, {args.bb} BB {mean[args.bb]:.3f}")
            out["mean_top"] = mean
        out["learned"] = rows
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
