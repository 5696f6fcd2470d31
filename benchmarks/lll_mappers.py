"""SKILL Figures 6 and 8 from finished class-il runs of the ``lll`` learner: task-mapper
accuracy, and end-to-end accuracy, averaged over the tasks learned so far, after every task,
one curve per run (e.g. the GMMC and the Mahalanobis mapper); plus a Markdown table.

    python benchmarks/lll_mappers.py GMMC=runs/mix-gmmc Mahalanobis=runs/mix-maha \\
        --out docs/figures/lll-mappers

writes ``<out>-fig6-mapper.png`` and ``<out>-fig8-end-to-end.png`` (the second also shows
each run's oracle curve: the heads given the true task) and prints each run's mapper
settings and the table.

Runs that differ only in the Mahalanobis covariance's shrinkage (``learner.maha_shrinkage``:
0, the paper's empirical covariance; a number in (0, 1]; or ``ledoit-wolf``) compare the
same way, e.g.

    lifelong run --benchmark shipped-mix --learner lll --threads 1 --quiet \\
        --out runs/mix-maha-lw setting=class-il learner.mapper=maha \\
        learner.maha_shrinkage=ledoit-wolf
    python benchmarks/lll_mappers.py Maha=runs/mix-maha "Maha LW"=runs/mix-maha-lw \\
        --out docs/figures/lll-maha-shrinkage
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from lifelong.learners.lll.anchors import GMMCAnchor, GMMCMapper, MahaMapper, fit_maha
from lifelong.learners.lll.lda import LDAMapper, fit_lda
from lifelong.plots import plot_average_accuracy


def load(run_dir: Path) -> dict:
    """results.json of a finished run; it must have the mapper and oracle views."""
    res = json.loads((run_dir / "results.json").read_text())
    views = res.get("views", {})
    if "mapper" not in views or "oracle" not in views:
        raise SystemExit(f"{run_dir}: no mapper/oracle views (a class-il lll run is needed)")
    return res


def settings(res: dict) -> str:
    """A run's task-mapper settings, from its config (and, for the Mahalanobis mapper, the
    shrinkage it used over all tasks, from the learner's report)."""
    cfg = res.get("config", {}).get("learner", {})
    mapper = cfg.get("mapper", "?")
    if mapper == "gmmc":
        return f"gmmc, k = {cfg.get('gmm_components')}, reg_covar = {cfg.get('gmm_reg_covar')}"
    text = f"{mapper}, m = {cfg.get('maha_samples')}"
    if mapper == "maha":
        text += f", maha_shrinkage = {cfg.get('maha_shrinkage', 0.0)}"
        used = res.get("learner_report", {}).get("maha_shrinkage")
        if used is not None:
            text += f" (s used after the last task: {used:.4f})"
    return text


def _tensor_bytes(mapper: object) -> int:
    """Bytes of the tensors a mapper holds (its bank)."""
    return sum(v.numel() * v.element_size() for v in vars(mapper).values()
               if isinstance(v, torch.Tensor))


def timing(tasks: list[int], dim: int = 1280, classes: int = 49, k: int = 25,
           repeat: int = 3) -> None:
    """Mapping time of 256 inputs (median of ``repeat``) and bank memory of each mapper with
    ``tasks`` synthetic tasks (random anchors: ``dim`` features, ``classes`` per task, GMMC
    k, Mahalanobis m = 5, LDA r = 4 C), printed as ``name = value`` lines."""
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.random((256, dim)))
    for T in tasks:
        feats = [(rng.random((classes * 8, dim)).astype(np.float32),
                  np.repeat(np.arange(classes), 8)) for _ in range(T)]
        mappers = {
            "gmmc": GMMCMapper({t: GMMCAnchor(f[:k], np.full((k, dim), 0.1, np.float32),
                                              np.full(k, 1 / k, np.float32), len(f))
                                for t, (f, _) in enumerate(feats)}),
            "maha": MahaMapper({t: fit_maha(f, y, classes, 5, t)
                                for t, (f, y) in enumerate(feats)}),
            "maha_lw": MahaMapper({t: fit_maha(f, y, classes, 5, t)
                                   for t, (f, y) in enumerate(feats)}, "ledoit-wolf"),
            "lda": LDAMapper({t: fit_lda(f, y, classes, 4) for t, (f, y) in enumerate(feats)}),
        }
        for name, m in mappers.items():
            times = []
            for _ in range(repeat):
                start = time.perf_counter()
                m.map(x)
                times.append(time.perf_counter() - start)
            print(f"{name}_map256_ms_{T} = {1000 * float(np.median(times)):.1f}")
            print(f"{name}_bank_mb_{T} = {_tensor_bytes(m) / 2**20:.1f}")


def main() -> None:
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("runs", nargs="*", help="LABEL=RUN_DIR")
    p.add_argument("--out", help="path prefix of the two PNG files")
    p.add_argument("--timing", type=int, nargs="+", metavar="TASKS",
                   help="instead: mapping time and bank memory at these task counts")
    args = p.parse_args()
    if args.timing:
        torch.set_num_threads(1)
        timing(args.timing)
        return
    if not args.runs or not args.out:
        p.error("LABEL=RUN_DIR ... and --out are needed (or --timing)")
    runs = {}
    for item in args.runs:
        label, _, path = item.partition("=")
        runs[label] = load(Path(path))
    mapper = {k: np.array(r["views"]["mapper"]["average_accuracy_after_task"], dtype=float)
              for k, r in runs.items()}
    end = {f"{k} end to end": np.array(r["average_accuracy_after_task"], dtype=float)
           for k, r in runs.items()}
    oracle = {f"{k} oracle": np.array(r["views"]["oracle"]["average_accuracy_after_task"],
                                      dtype=float) for k, r in runs.items()}
    curves = dict(end)
    if all(np.array_equal(v, next(iter(oracle.values()))) for v in oracle.values()):
        # the mapper does not touch the heads: runs that differ only in it share one curve
        curves["oracle (all runs)"] = next(iter(oracle.values()))
    else:
        curves.update(oracle)
    bench = next(iter(runs.values()))["benchmark"]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    a = plot_average_accuracy(mapper, f"{args.out}-fig6-mapper.png",
                              title=f"{bench}: task-mapper accuracy (SKILL Fig. 6)")
    b = plot_average_accuracy(curves, f"{args.out}-fig8-end-to-end.png",
                              title=f"{bench}: accuracy over tasks so far (SKILL Fig. 8)")
    print(f"wrote {a} and {b}\n")
    for label, res in runs.items():
        print(f"{label}: {settings(res)}")
    print()
    T = max(len(v) for v in mapper.values())
    cols = [f"{k} mapper" for k in runs] + [f"{k} end to end" for k in runs] + \
        [f"{k} oracle" for k in runs]
    print("| tasks learned | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    series = [*mapper.values(), *end.values(), *oracle.values()]
    for t in range(T):
        cells = [f"{s[t]:.3f}" if t < len(s) else "" for s in series]
        print(f"| {t + 1} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
