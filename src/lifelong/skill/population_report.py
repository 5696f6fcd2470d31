"""What a SKILL population run leaves in its directory, each file written atomically:

- ``results.json``: the fields every results.json starts with
  (:func:`lifelong.outputs.common_fields`, ``kind: population``; ``summary`` holds the mean
  accuracies over survivors, per agent and per task), then the population's own sections:
  settings, task assignment, per-agent accuracy on every task (end to end, task mapper,
  oracle), which agent tested which task (``tested_by``: all of them each, or one share
  each when the final test was split, ``PopulationConfig.evaluate``), holdings (bundle
  SHA-256s) and whether the survivors agree, dead agents and lost tasks, refused bundles
  with reasons, and the Table 2 row;
- ``table2.md``: the SKILL paper's Table 2 for this run (measured MACs, bytes, speed);
- ``accuracy.png``: accuracy after sharing, per task (mean over surviving agents);
- ``agent-K/log.jsonl`` and ``agent-K/bundles/`` are written by the agents themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lifelong.experiment import Experiment
from lifelong.io import atomic_write_json, atomic_write_text
from lifelong.outputs import common_fields
from lifelong.plots import plot_grouped_bars
from lifelong.skill.population import PopulationResult

__all__ = ["summarise", "write_population"]


def summarise(result: PopulationResult, task_names: list[str]) -> dict[str, Any]:
    """Mean accuracies over tasks for each survivor, and per task over survivors."""
    per_agent = {}
    for a, acc in result.accuracy.items():
        per_agent[str(a)] = {k: float(np.nanmean([v[k] for v in acc.values()]))
                             for k in ("acc", "mapper", "oracle")}
    per_task = {}
    for t in range(len(task_names)):
        rows = [acc[str(t)] for acc in result.accuracy.values()]
        per_task[str(t)] = {k: float(np.nanmean([r[k] for r in rows])) if rows else float("nan")
                            for k in ("acc", "mapper", "oracle")}
    return {"per_agent": per_agent, "per_task": per_task}


def _fmt_macs(x: float) -> str:
    return f"{x / 1e9:,.2f} G"


def table2_markdown(row: dict[str, Any], accuracy: float) -> str:
    lines = ["| agents | teacher MACs | received bytes | communication MACs | student MACs | "
             "total MACs | single-agent MACs | efficiency (xN) | bytes/task | wall s | "
             "speedup | accuracy |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    speed = f"{row['speedup']:.2f}" if "speedup" in row else "-"
    lines.append(f"| {row['agents']} | {_fmt_macs(row['teacher_macs'])} | "
                 f"{row['received_bytes']:,} | {_fmt_macs(row['communication_macs'])} | "
                 f"{_fmt_macs(row['student_macs'])} | {_fmt_macs(row['total_macs'])} | "
                 f"{_fmt_macs(row['single_agent_macs'])} | {row['efficiency']:.3f} | "
                 f"{row['bytes_per_task']:,.0f} | {row['wall_seconds']:.1f} | {speed} | "
                 f"{accuracy:.3f} |")
    return "\n".join(lines) + "\n"


def write_population(out: Path, exp: Experiment, result: PopulationResult,
                     settings: dict[str, Any], task_names: list[str],
                     table: dict[str, Any]) -> dict[str, Any]:
    """Write results.json, table2.md and accuracy.png; return the results mapping.

    ``exp`` is the agents' experiment (learner lll and its settings, the benchmark)."""
    summary: dict[str, Any] = summarise(result, task_names)
    for key, name in (("acc", "mean_accuracy"), ("mapper", "mean_mapper_accuracy"),
                      ("oracle", "mean_oracle_accuracy")):
        summary[name] = (float(np.mean([v[key] for v in summary["per_agent"].values()]))
                         if summary["per_agent"] else float("nan"))
    mean_acc = summary["mean_accuracy"]
    results = {**common_fields("population", exp, summary, exp.run.device),
               "settings": settings, "tasks": task_names,
               "assignment": result.assignment,
               "accuracy": {str(a): acc for a, acc in result.accuracy.items()},
               "holdings": {str(a): {str(t): h for t, h in hs.items()}
                            for a, hs in result.holdings.items()},
               "tested_by": {str(a): ts for a, ts in result.tested_by.items()},
               "agree": result.agree(), "dead": result.dead, "lost": result.lost,
               "restarted": result.restarted,
               "refused": {str(a): r["refused"] for a, r in result.reports.items()},
               "failures": result.failures,
               "agents": {str(a): r for a, r in result.reports.items()},
               "events": result.events, "table2": table}
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "table2.md", table2_markdown(table, mean_acc))
    per = summary["per_task"]
    bars = {view: np.array([per[str(t)][key] for t in range(len(task_names))])
            for view, key in (("end to end", "acc"), ("task mapper", "mapper"),
                              ("oracle", "oracle"))}
    plot_grouped_bars(bars, task_names, out / "accuracy.png",
                      title=f"After sharing: {len(result.accuracy)} agents, mean over agents",
                      ylabel="test accuracy")
    return results
