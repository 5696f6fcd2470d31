"""Mapper, end-to-end and oracle curves of several finished ``lifelong run`` directories of
the LLL learner (the SKILL paper's Figures 6 and 8: average accuracy over the tasks learned
so far, after every task), as a markdown table at chosen task counts and one plot.

    python benchmarks/lll_curves.py GMMC=runs/g Mahalanobis=runs/m LDA=runs/l \\
        [--at 12 25 50 75 102] [--plot curves.png]

Each ``LABEL=DIR`` names a run directory written with ``setting=class-il`` (its
``results.json`` holds the ``mapper`` and ``oracle`` views). Prints the table, then per run
``<label>_final_mapper = value``, ``<label>_final_end_to_end = value`` and
``<label>_bundle_bytes_per_task = value`` (mean over tasks, from the learner's report).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from lifelong import plots


def _curves(results: dict[str, Any]) -> dict[str, np.ndarray]:
    def arr(values: list[float | None]) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in values], dtype=float)

    views = results.get("views") or {}
    if "mapper" not in views:
        raise SystemExit("error: a run without a task mapper view (run with setting=class-il)")
    return {"mapper": arr(views["mapper"]["average_accuracy_after_task"]),
            "end to end": arr(results["average_accuracy_after_task"]),
            "oracle": arr(views["oracle"]["average_accuracy_after_task"])}


def main() -> int:
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("runs", nargs="+", metavar="LABEL=DIR")
    p.add_argument("--at", type=int, nargs="+", default=[12, 25, 50, 75, 102])
    p.add_argument("--plot", type=Path, default=None)
    args = p.parse_args()
    runs: dict[str, dict[str, Any]] = {}
    for item in args.runs:
        label, sep, folder = item.partition("=")
        path = Path(folder) / "results.json"
        if not sep or not path.is_file():
            print(f"error: {item!r}: expected LABEL=DIR with DIR/results.json", file=sys.stderr)
            return 2
        runs[label] = json.loads(path.read_text())
    curves = {label: _curves(r) for label, r in runs.items()}
    at = [n for n in args.at if all(n <= len(c["mapper"]) for c in curves.values())]
    print("| run | curve | " + " | ".join(f"after {n}" for n in at) + " |")
    print("|---|---|" + "---:|" * len(at))
    for label, c in curves.items():
        for name, values in c.items():
            print(f"| {label} | {name} | " + " | ".join(f"{values[n - 1]:.3f}" for n in at)
                  + " |")
    for label, r in runs.items():
        key = label.lower().replace(" ", "_").replace(",", "").replace("-", "_")
        sizes = list(r["learner_report"]["bundle_bytes"].values())
        print(f"{key}_final_mapper = {curves[label]['mapper'][-1]:.4f}")
        print(f"{key}_final_end_to_end = {curves[label]['end to end'][-1]:.4f}")
        print(f"{key}_bundle_bytes_per_task = {np.mean(sizes):.0f}")
    if args.plot is not None:
        flat = {f"{label}: {name}": v for label, c in curves.items() for name, v in c.items()
                if name != "oracle"}
        plots.plot_average_accuracy(flat, args.plot,
                                    title="LLL on the stream: average over the tasks so far")
        print(f"-> {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
