"""Does LASEM find the configurations brute force finds? The ``planted`` protocol (tasks on
the same digit images whose best transfer configuration is planted: label-side changes
should transfer every layer, input-side changes should make the low layers task-specific),
brute-force search and LASEM on each base learner, one after another in this process.

For every task after the base task (whose shared parameters are still untrained, so its
choice means nothing), it compares the chosen configurations layer by layer: LASEM against
brute force (a random choice agrees 50%) and brute force against the planted bits. Prints
the chosen configurations and, one per line, ``name = value``:
``agreement_lasem_bruteforce_BASE``, ``agreement_bruteforce_planted_BASE``, and the mean
final test accuracy of each learner (``accuracy_LEARNER``).

    python benchmarks/lasem_planted.py [--bases hps,tf,dfcnn] [--seed 0] [--epochs 10]
        [--threads 1] [SECTION.KEY=VALUE ...]

Overrides as in ``lifelong run``; ``benchmark.*`` and ``learner.*`` apply to both learners,
``lasem.*`` to LASEM only (e.g. ``lasem.prior=average``).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch

from lifelong._allocator import keep_freed_memory
from lifelong.config import merge, parse_overrides
from lifelong.experiment import make_experiment
from lifelong.runner import batches
from lifelong.tasks import Batch


def run(name: str, args: argparse.Namespace, overrides: dict[str, Any]
        ) -> tuple[dict[str, str], list[float], list[str], float]:
    """Train ``name`` on planted; its configurations, final test accuracies, the planted
    bits per task and the seconds it trained."""
    raw = {"run": {"benchmark": "planted", "learner": name, "seed": args.seed,
                   "epochs": args.epochs}}
    exp = make_experiment(merge(raw, overrides))
    stream = exp.build_stream()
    torch.manual_seed(args.seed)  # as `lifelong run` seeds (api.py), before initialisation
    model = exp.build_learner(stream, torch.device("cpu"))
    batch_size = exp.run.batch_size
    for task in stream:
        task.train.cache()
        task.val.cache()
        task.test.cache()
    epoch, start = 0, time.perf_counter()
    for task in stream:
        model.begin_task(task)
        for _ in range(exp.run.epochs):
            model.begin_epoch(epoch)
            gen = torch.Generator().manual_seed(1000 * args.seed + epoch)
            for x, y in batches(task.train, batch_size, gen, drop_last=True):
                model.observe(Batch(x, y, task.id))
            epoch += 1
        model.end_task(task)
    seconds = time.perf_counter() - start
    accs = []
    for task in stream:
        x, y = task.test.images(np.arange(len(task.test))), task.test.labels
        accs.append(float((model.predict(x, task.id).argmax(1) == y).float().mean()))
    planted = [t.info["planted"] for t in stream]
    configs = {str(t): c for t, c in (model.chosen_configurations() or {}).items()}
    return configs, accs, planted, seconds


def agreement(a: dict[str, str], b: dict[str, str] | list[str], tasks: list[int]) -> float:
    """Share of (task, layer) pairs on which two sets of configurations agree."""
    pairs = [(x, y) for t in tasks for x, y in zip(a[str(t)], b[t] if isinstance(b, list)
                                                    else b[str(t)], strict=True)]
    return sum(x == y for x, y in pairs) / max(len(pairs), 1)


def main() -> None:
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--bases", default="hps,tf,dfcnn")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=10, help="epochs per task")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("overrides", nargs="*", help="SECTION.KEY=VALUE")
    args = p.parse_args()
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    both = parse_overrides(args.overrides)
    lasem_only = both.pop("lasem", {})
    lasem = merge(both, {"learner": lasem_only})
    for base in args.bases.split(","):
        bf, bf_acc, planted, bf_s = run(f"bruteforce-{base}", args, both)
        la, la_acc, _, la_s = run(f"lasem-{base}", args, lasem)
        later = list(range(1, len(planted)))
        print(f"# {base}: planted {planted[1:]}  bruteforce {[bf[str(t)] for t in later]} "
              f"({bf_s:.0f} s)  lasem {[la[str(t)] for t in later]} ({la_s:.0f} s)", flush=True)
        print(f"agreement_lasem_bruteforce_{base} = {agreement(la, bf, later):.2f}")
        print(f"agreement_bruteforce_planted_{base} = {agreement(bf, planted, later):.2f}")
        print(f"agreement_lasem_planted_{base} = {agreement(la, planted, later):.2f}")
        print(f"accuracy_bruteforce-{base} = {np.mean(bf_acc):.3f}")
        print(f"accuracy_lasem-{base} = {np.mean(la_acc):.3f}", flush=True)


if __name__ == "__main__":
    main()
