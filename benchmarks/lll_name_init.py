"""Class-name initialisation (SKILL section 7.2), with against without, from two finished
``lll`` runs on the same benchmark and seed (both ``head_norm=inf``; one ``name_init=true``).

Per task: the classes that started from a learned class's weights, the epoch of the best
validation accuracy (the learner keeps that state: "epochs to best accuracy"), the epochs
run before early stopping, and the oracle test accuracy (the task's head given the task)
at the end of the run. Means over the tasks with at least one name match.

    python benchmarks/lll_name_init.py runs/mix-inf runs/mix-inf-nameinit
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("without", type=Path, help="run directory, name_init=false")
    p.add_argument("with_", metavar="with", type=Path, help="run directory, name_init=true")
    args = p.parse_args()
    a, b = (json.loads((d / "results.json").read_text()) for d in (args.without, args.with_))
    if a.get("stream_fingerprint") != b.get("stream_fingerprint"):
        raise SystemExit("the two runs did not learn the same tasks")
    la, lb = a["learner_report"]["learning"], b["learner_report"]["learning"]
    oa = a["views"]["oracle"]["final"] if "views" in a else a["accuracy_matrix"][-1]
    ob = b["views"]["oracle"]["final"] if "views" in b else b["accuracy_matrix"][-1]
    print("| task | classes initialised by name | best epoch without | best epoch with | "
          "epochs run without / with | oracle acc without | oracle acc with |")
    print("|---|---|---|---|---|---|---|")
    matched = []
    for t, task in enumerate(a["tasks"]):
        m = lb[str(t)].get("name_matches", {})
        if m:
            matched.append(t)
        print(f"| {task['name']} | {len(m)}/{len(task['classes'])} | "
              f"{la[str(t)]['best_epoch']} | {lb[str(t)]['best_epoch']} | "
              f"{la[str(t)]['epochs']} / {lb[str(t)]['epochs']} | {oa[t]:.3f} | {ob[t]:.3f} |")
    if matched:
        def mean(learning: dict, key: str) -> float:
            return float(np.mean([learning[str(t)][key] for t in matched]))

        print(f"| mean over the {len(matched)} tasks with matches | | "
              f"{mean(la, 'best_epoch'):.1f} | {mean(lb, 'best_epoch'):.1f} | "
              f"{mean(la, 'epochs'):.1f} / {mean(lb, 'epochs'):.1f} | "
              f"{np.mean([oa[t] for t in matched]):.3f} | "
              f"{np.mean([ob[t] for t in matched]):.3f} |")


if __name__ == "__main__":
    main()
