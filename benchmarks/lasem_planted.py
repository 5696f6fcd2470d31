"""Does LASEM find the configurations brute force finds? The ``planted`` protocol (tasks on
the same digit images whose best transfer configuration is planted: label-side changes
should transfer every layer, input-side changes should make the low layers task-specific),
brute-force search and LASEM on each base learner, one after another in this process.

For every task after the base task (whose shared parameters are still untrained, so its
choice means nothing), it compares the chosen configurations layer by layer: LASEM against
brute force (a random choice agrees 50%) and brute force against the planted bits.

Brute force is only a reference where its choice is clear: at a (task, layer) pair its
*margin* is the best validation accuracy of the configurations with the chosen bit there
minus the best of those with the other bit. Pairs with a margin of at least ``--margin``
(default 0.02, 4 of the 200 validation images) are *decisive*; on the others the two bits
are a tie within noise and the pick is the first of equals. The agreement on decisive pairs
is the measure of whether LASEM finds what brute force finds.

Prints the chosen configurations, brute force's margins and, one per line, ``name = value``
for every base and prior: ``agreement_lasem_bruteforce_BASE_PRIOR``,
``agreement_lasem_bruteforce_decisive_BASE_PRIOR``, ``agreement_lasem_planted_BASE_PRIOR``,
``decisive_pairs_BASE``, ``agreement_bruteforce_planted_BASE``, and the mean final test
accuracy of each learner (``accuracy_LEARNER``).

    python benchmarks/lasem_planted.py [--bases hps,tf,dfcnn] [--priors count,average]
        [--seed 0] [--epochs 30] [--margin 0.02] [--threads 1] [SECTION.KEY=VALUE ...]

Overrides as in ``lifelong run``; ``benchmark.*`` and ``learner.*`` apply to both learners,
``lasem.*`` to LASEM only (e.g. ``lasem.reset_prior=true``). The learners train with the
benchmark's optimizer, Adam at 3e-4 (with the LASEM code's TF RMSProp at 1e-3 a 50-image
task learns nothing in 30 epochs: every configuration near chance, docs/protocols.md).
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
from lifelong.protocols.planted import agreement, decisive_pairs, layer_margins
from lifelong.runner import batches
from lifelong.tasks import Batch


def run(name: str, args: argparse.Namespace, overrides: dict[str, Any]
        ) -> tuple[dict[str, str], list[float], list[str], float, dict[str, dict[str, float]]]:
    """Train ``name`` on planted; its configurations, final test accuracies, the planted
    bits per task, the seconds it trained and, for brute force, each task's best
    validation accuracy per configuration (task -> configuration -> accuracy)."""
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
    scores = model.report().get("search_scores", {})  # brute force's, per task
    return configs, accs, planted, seconds, {t: s for t, s in scores.items() if t != "0"}


def main() -> None:
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--bases", default="hps,tf,dfcnn")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--priors", default="count,average", help="LASEM priors to run")
    p.add_argument("--epochs", type=int, default=30, help="epochs per task")
    p.add_argument("--margin", type=float, default=0.02,
                   help="brute-force margin that makes a (task, layer) pair decisive")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("overrides", nargs="*", help="SECTION.KEY=VALUE")
    args = p.parse_args()
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    both = parse_overrides(args.overrides)
    lasem_only = both.pop("lasem", {})
    if "prior" in lasem_only:
        p.error("set LASEM's prior with --priors, not lasem.prior")
    for base in args.bases.split(","):
        bf, bf_acc, planted, bf_s, scores = run(f"bruteforce-{base}", args, both)
        later = [str(t) for t in range(1, len(planted))]
        every = [(t, layer) for t in later for layer in range(len(bf[t]))]
        planted_by = {str(t): c for t, c in enumerate(planted)}
        decisive = decisive_pairs(scores, bf, args.margin)
        margin = [[round(m, 3) for m in layer_margins(scores[t], bf[t])] for t in later]
        print(f"# {base}: planted {planted[1:]}  bruteforce {[bf[t] for t in later]} "
              f"({bf_s:.0f} s), margins {margin}", flush=True)
        print(f"decisive_pairs_{base} = {len(decisive)}")
        print(f"agreement_bruteforce_planted_{base} = {agreement(bf, planted_by, every):.2f}")
        print(f"accuracy_bruteforce-{base} = {np.mean(bf_acc):.3f}", flush=True)
        for prior in args.priors.split(","):
            lasem = merge(both, {"learner": {**lasem_only, "prior": prior}})
            la, la_acc, _, la_s, _ = run(f"lasem-{base}", args, lasem)
            print(f"# {base}, {prior} prior: lasem {[la[t] for t in later]} ({la_s:.0f} s)")
            print(f"agreement_lasem_bruteforce_{base}_{prior} = {agreement(la, bf, every):.2f}")
            print(f"agreement_lasem_bruteforce_decisive_{base}_{prior} = "
                  f"{agreement(la, bf, decisive):.2f}")
            print(f"agreement_lasem_planted_{base}_{prior} = "
                  f"{agreement(la, planted_by, every):.2f}")
            print(f"accuracy_lasem-{base}_{prior} = {np.mean(la_acc):.3f}", flush=True)


if __name__ == "__main__":
    main()
