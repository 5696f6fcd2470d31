"""Examples per second of each continual-learning baseline's training step against a bare
PyTorch loop on the same network, optimizer and data, measured side by side in one process.

The bare loop is what a user would write for plain training: features -> the task's head ->
cross-entropy -> backward -> step. Each method first learns task 0 of split-mnist (so its
importances, memory or old model exist), then its steps on task 1 are timed. Rounds
interleave the methods (bare loop included in every round) so that machine load hits them
alike; the median round is reported. Batches carry their rows in task 1's training set
(``Batch.index``, as the runner's do), so LwF looks up the old-model outputs it recorded in
``begin_task``; the row ``lwf (on the fly)`` strips the index to time the fallback that runs
the old model at every step.

Two ratios to the bare loop are printed:

* ``current``: current-task examples per second. A replay method's extra forward/backward
  work shows up as a lower ratio.
* ``processed``: examples the trained network actually forwards per second, current ones
  plus replayed ones (ER's replay batch, A-GEM's reference batch, DER's / DER++'s buffer
  draws, iCaRL's exemplars). Counted, not assumed: a forward pre-hook on the network's
  trunk tallies the rows of every forward pass during untimed steps. Frozen old-model passes
  (LwF's fallback, iCaRL's targets) are not counted. For methods that replay nothing both
  ratios are equal.

``begin_task (s)`` is the untimed time of ``begin_task`` on task 1 (LwF: the frozen copy and
the recording of the old model's outputs on every training image of the task), a once-per-
task cost to set against an epoch's steps.

Targets (issue 6): ratio >= 0.8 for the regularization methods and ER; ER's step time must
not grow with its buffer (reservoir 200 vs 5000 rows).

    python benchmarks/cl_overhead.py [--net mnist] [--steps 100] [--rounds 5] [--threads 1]
        [--methods finetune,lwf,er]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.experiment import make_experiment
from lifelong.learners.cl.base import CLLearner
from lifelong.tasks import Batch

BATCH = 10

# (label, learner, learner config, batches carry Batch.index)
METHODS: list[tuple[str, str, dict, bool]] = [
    ("finetune", "finetune", {}, True),
    ("ewc", "ewc", {}, True),
    ("online-ewc", "online-ewc", {}, True),
    ("si", "si", {}, True),
    ("mas", "mas", {}, True),
    ("lwf", "lwf", {}, True),
    ("lwf (on the fly)", "lwf", {}, False),
    ("er (10/class)", "er", {}, True),
    ("er reservoir 200", "er", {"buffer": "reservoir", "buffer_size": 200}, True),
    ("er reservoir 5000", "er", {"buffer": "reservoir", "buffer_size": 5000}, True),
    ("agem", "agem", {}, True),
    ("der", "der", {}, True),
    ("derpp", "derpp", {}, True),
    ("icarl", "icarl", {}, True),
]


def build(name: str, learner_cfg: dict, net: str) -> tuple[CLLearner, list]:
    exp = make_experiment({"run": {"benchmark": "split-mnist", "learner": name, "net": net,
                                   "batch_size": BATCH}, "learner": learner_cfg})
    stream = exp.build_stream()
    learner = exp.build_learner(stream, torch.device("cpu"))
    assert isinstance(learner, CLLearner)
    return learner, list(stream)


def fill_reservoir(learner: CLLearner, task) -> None:
    """Offer the reservoir as many rows as it holds (real images, repeated), so a 5000-row
    buffer is full when timed."""
    mem = getattr(learner, "memory", None)
    if mem is None or not hasattr(mem, "capacity"):
        return
    n = len(task.train)
    x, y = task.train.images(), task.train.labels
    while mem.seen < mem.capacity:
        mem.add(learner.gen, x=x, y=y, task=torch.full_like(y, task.id))
    assert len(mem) == mem.capacity, (len(mem), n)


def batches_of(task, steps: int, seed: int) -> list[Batch]:
    """``steps`` batches of BATCH rows of ``task.train`` drawn with replacement, each with
    its rows as ``index`` (B,) like the runner's."""
    gen = torch.Generator().manual_seed(seed)
    x_all, y_all = task.train.images(), task.train.labels
    out = []
    for _ in range(steps):
        idx = torch.randint(len(y_all), (BATCH,), generator=gen)
        out.append(Batch(x_all[idx], y_all[idx], task.id, index=idx))
    return out


def without_index(data: list[Batch]) -> list[Batch]:
    return [Batch(b.x, b.y, b.task_id) for b in data]


def bare_loop_seconds(learner: CLLearner, data: list[Batch]) -> float:
    """Plain training of the same network with the same optimizer class and settings."""
    net, opt = learner.net, learner._make_optimizer()
    net.train()
    start = time.perf_counter()
    for b in data:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net.head(net.features(b.x), b.task_id), b.y).backward()
        opt.step()
    return time.perf_counter() - start


def method_seconds(learner: CLLearner, data: list[Batch]) -> float:
    start = time.perf_counter()
    for b in data:
        learner.observe(b)
    return time.perf_counter() - start


def forwarded_per_step(learner: CLLearner, data: list[Batch]) -> float:
    """Mean rows the learner's own network forwards per ``observe`` over ``data`` (current
    + replayed), tallied by a forward pre-hook on its trunk (removed afterwards)."""
    rows = 0

    def tally(_module: nn.Module, args: tuple) -> None:
        nonlocal rows
        rows += int(args[0].shape[0])  # x (B, C, H, W)

    handle = learner.net.trunk.register_forward_pre_hook(tally)
    try:
        for b in data:
            learner.observe(b)
    finally:
        handle.remove()
    return rows / len(data)


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Training-step examples/s of the continual-learning baselines against "
                    "a bare PyTorch loop (issue 6's per-iteration overhead).")
    parser.add_argument("--net", default="mnist", help="network preset (mnist CNN or mlp)")
    parser.add_argument("--steps", type=int, default=100, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--methods", default=None,
                        help="comma-separated labels or learner names to time (default: "
                             "all); finetune always runs (the bare loop's network)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    wanted = None if args.methods is None else {m.strip() for m in args.methods.split(",")}
    methods = [m for m in METHODS if wanted is None or m[0] == "finetune"
               or m[0] in wanted or m[1] in wanted]

    learners: dict[str, CLLearner] = {}
    uses_index: dict[str, bool] = {}
    setup_seconds: dict[str, float] = {}
    for label, name, cfg, indexed in methods:
        learner, stream = build(name, cfg, args.net)
        learner.begin_task(stream[0])
        for b in batches_of(stream[0], 70, seed=0):  # about one epoch of task 0
            learner.observe(b)
        learner.end_task(stream[0])
        start = time.perf_counter()
        learner.begin_task(stream[1])
        setup_seconds[label] = time.perf_counter() - start
        fill_reservoir(learner, stream[0])
        learners[label] = learner
        uses_index[label] = indexed
    task1 = stream[1]
    data = batches_of(task1, args.steps, seed=1)
    plain = without_index(data)
    counted = batches_of(task1, 10, seed=2)  # untimed steps whose forwarded rows are tallied
    per_step: dict[str, float] = {}
    for label, learner in learners.items():  # warm-up (allocator, first-call costs)
        method_seconds(learner, (data if uses_index[label] else plain)[:10])
        per_step[label] = forwarded_per_step(
            learner, counted if uses_index[label] else without_index(counted))
    bare_ref = learners["finetune"]

    times: dict[str, list[float]] = {label: [] for label in learners}
    bare: list[float] = []
    for _ in range(args.rounds):
        bare.append(bare_loop_seconds(bare_ref, data))
        for label, learner in learners.items():
            times[label].append(method_seconds(learner, data if uses_index[label] else plain))
    n = args.steps * BATCH
    bare_rate = n / statistics.median(bare)
    print(f"net {args.net}, batch {BATCH}, {args.steps} steps x {args.rounds} rounds, "
          f"{torch.get_num_threads()} thread(s); task 1 has {len(task1.train)} training images")
    print(f"{'':<20} {'current':>8} {'ratio':>7} {'forwarded':>10} {'processed':>10} "
          f"{'ratio':>7} {'begin_task':>11}")
    print(f"{'method':<20} {'ex/s':>8} {'current':>7} {'per step':>10} {'ex/s':>10} "
          f"{'processed':>7} {'(s)':>11}")
    print(f"{'bare PyTorch loop':<20} {bare_rate:>8.0f} {1.0:>7.2f} {BATCH:>10.1f} "
          f"{bare_rate:>10.0f} {1.0:>7.2f} {'':>11}")
    for label, ts in times.items():
        rate = n / statistics.median(ts)
        proc = rate * per_step[label] / BATCH
        print(f"{label:<20} {rate:>8.0f} {rate / bare_rate:>7.2f} {per_step[label]:>10.1f} "
              f"{proc:>10.0f} {proc / bare_rate:>7.2f} {setup_seconds[label]:>11.3f}")
    if "er reservoir 200" in times and "er reservoir 5000" in times:
        r200 = statistics.median(times["er reservoir 200"])
        r5000 = statistics.median(times["er reservoir 5000"])
        print(f"ER step time, buffer 5000 / buffer 200: {r5000 / r200:.2f}")
    if "lwf" in times:
        step = statistics.median(times["lwf"]) / args.steps
        print(f"LwF begin_task on task 1 = {setup_seconds['lwf'] / step:.1f} of its timed "
              f"steps (an epoch of task 1 is {len(task1.train) // BATCH} steps)")


if __name__ == "__main__":
    main()
