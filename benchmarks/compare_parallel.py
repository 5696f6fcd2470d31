"""Wall time of a ``lifelong compare`` grid run one after another (``--backend local``) and
as Ray tasks on 2 workers (``--backend ray``), measured side by side in one process, and
whether both give identical accuracy matrices.

The grid: 4 short runs (2 learners x 2 seeds) on the shipped Split-MNIST, one torch thread
per run in both backends, so the results must be identical and the Ray grid can use one
core per run. The Ray time includes starting the local cluster (127.0.0.1) and its workers.

Prints, each on its own line:

    local_seconds = ...
    ray_seconds = ...
    ray_speedup = ...      (target >= 1.7 on 2 free cores)
    same_results = true|false

    python benchmarks/compare_parallel.py [--epochs 6] [--learners hps,ewc] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from lifelong import plots
from lifelong.compare import GridBackend, compare


def _no_plots() -> None:
    """The comparison's figures are drawn in the driver after the grid in both backends;
    leaving them out keeps the measurement on the runs."""
    for name in ("plot_accuracy_over_time", "plot_forgetting_ratio", "plot_accuracy_panels",
                 "plot_bars_with_ci", "plot_grouped_bars", "plot_average_accuracy",
                 "plot_curves_over_tasks", "plot_curve_panels", "plot_configurations"):
        setattr(plots, name, lambda *args, **kwargs: None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=6, help="epochs per task (default 6)")
    ap.add_argument("--learners", default="hps,ewc")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--out", help="keep the grids here (default: a temporary directory)")
    args = ap.parse_args()
    _no_plots()
    learners = args.learners.split(",")
    seeds = list(range(args.seeds))
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="compare-parallel-"))
    raw = {"run": {"benchmark": "split-mnist", "epochs": args.epochs, "threads": 1},
           "benchmark": {}, "learner": {}}
    try:
        start = time.perf_counter()
        compare(raw, learners, seeds, root / "local", progress=False, echo=print)
        local = time.perf_counter() - start
        start = time.perf_counter()
        compare(raw, learners, seeds, root / "ray", progress=False, echo=print,
                backend=GridBackend("ray", workers=2, cpus_per_run=1))
        remote = time.perf_counter() - start
        same = all(
            json.loads((root / "local" / n / f"seed{s}" / "results.json").read_text())
            ["accuracy_matrix"] ==
            json.loads((root / "ray" / n / f"seed{s}" / "results.json").read_text())
            ["accuracy_matrix"] for n in learners for s in seeds)
    finally:
        if not args.out:
            shutil.rmtree(root, ignore_errors=True)
    print(f"local_seconds = {local:.1f}")
    print(f"ray_seconds = {remote:.1f}")
    print(f"ray_speedup = {local / remote:.2f}")
    print(f"same_results = {'true' if same else 'false'}")


if __name__ == "__main__":
    main()
