"""What a finished run leaves in its directory, each file written atomically:

``config.yaml`` (resolved settings), ``results.json`` (summary and per-task metrics, the
accuracy matrix), ``history.csv`` (every evaluation row), ``accuracy_matrix.csv`` and the
plots ``accuracy.png`` (DF-CNN Figure 4 style) and ``forgetting.png``; ``train_macs.json``
(written by the runner for the user, never read back: training MACs per task, see
:mod:`lifelong.macs`).

``results.json`` of ``lifelong run`` and of ``lifelong skill`` share their top-level fields
(:func:`common_fields`: version, kind, learner, benchmark, seed, setting, summary, device,
machine, finished, config); each adds its own sections.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from lifelong import __version__, metrics, plots
from lifelong.errors import RunError
from lifelong.experiment import Experiment
from lifelong.history import History
from lifelong.io import atomic_write_json, atomic_write_text
from lifelong.learners import LearnerReport
from lifelong.macs import MACS_FILE
from lifelong.tasks import TaskStream

__all__ = ["write_config", "write_results", "read_results", "read_history", "matrix_from_json",
           "common_fields", "RESULT_FILES"]

RESULT_FILES = ("results.json", "history.csv", "accuracy_matrix.csv", "accuracy.png",
                "forgetting.png", MACS_FILE)


def _opt(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def _matrix_json(R: np.ndarray) -> list[list[float | None]]:
    return [[_opt(v) for v in row] for row in R]


def matrix_from_json(rows: list[list[float | None]]) -> np.ndarray:
    """Inverse of the JSON form of an accuracy matrix (None -> NaN)."""
    return np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=float)


def write_config(out: Path, exp: Experiment) -> None:
    atomic_write_text(out / "config.yaml", yaml.safe_dump(exp.to_dict(), sort_keys=False))


def _history_csv(h: History) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    T = h.num_tasks
    views = sorted(h.views)
    w.writerow(["epoch", "task", "task_epoch", "loss", "train_seconds",
                *[f"val_{j}" for j in range(T)], *[f"test_{j}" for j in range(T)],
                *[f"{v}_{j}" for v in views for j in range(T)]])
    for i in range(len(h.epoch)):
        cells = [*h.val[i], *h.test[i], *[c for v in views for c in h.views[v][i]]]
        w.writerow([int(h.epoch[i]), int(h.task[i]), int(h.task_epoch[i]),
                    "" if not np.isfinite(h.loss[i]) else f"{h.loss[i]:.6g}",
                    f"{h.seconds[i]:.3f}", *["" if np.isnan(c) else f"{c:.6g}" for c in cells]])
    return buf.getvalue()


def _matrix_csv(R: np.ndarray) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["after_task", *[f"task_{j}" for j in range(R.shape[1])]])
    for i, row in enumerate(R):
        w.writerow([i, *["" if np.isnan(c) else f"{c:.6g}" for c in row]])
    return buf.getvalue()


def common_fields(kind: str, exp: Experiment, summary: dict[str, Any],
                  device: torch.device | str) -> dict[str, Any]:
    """The top-level fields every ``results.json`` starts with, whichever command wrote it:
    ``kind`` is ``"run"`` (one learner on a stream) or ``"population"`` (``lifelong
    skill``); ``summary`` holds the command's headline numbers."""
    return {
        "lifelong_version": __version__,
        "kind": kind,
        "learner": exp.run.learner,
        "benchmark": exp.run.benchmark,
        "seed": exp.run.seed,
        "setting": exp.run.setting,
        "summary": summary,
        "device": str(device),
        "machine": f"{platform.machine()} {platform.system()}",
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": exp.to_dict(),
    }


def write_results(out: Path, exp: Experiment, stream: TaskStream, h: History, *,
                  parameters: int, train_seconds: float, wall_seconds: float,
                  device: torch.device, stl_matrix: np.ndarray | None = None,
                  train_macs: dict[str, Any] | None = None,
                  report: LearnerReport | None = None,
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Compute the metrics of ``h`` and write every result file; returns results.json's dict.

    ``train_macs`` is the runner's measurement (``RunOutcome.train_macs``); ``report`` the
    learner's (:meth:`~lifelong.learners.Learner.learner_report`).

    ``stl_matrix`` is the accuracy matrix of an STL run on the same stream; when given, the
    summary holds ``forward_transfer_vs_stl``.
    """
    names = [t.name for t in stream]
    title = f"{exp.run.learner} on {exp.run.benchmark} (seed {exp.run.seed})"
    R = metrics.accuracy_matrix(h)
    summary = metrics.summarize(h, parameters=parameters, train_seconds=train_seconds)
    # Training MACs (SKILL Table 1): the learner's own count (LLL) or the runner's
    # measurement (lifelong.macs); None when neither counted.
    report = report or LearnerReport()
    own = report.total_train_macs()
    measured = (train_macs or {}).get("train_macs")
    summary["train_macs"] = own if own is not None else (
        int(measured) if isinstance(measured, (int, float)) else None)
    if stl_matrix is not None:
        summary["forward_transfer_vs_stl"] = _opt(metrics.forward_transfer_vs_stl(R, stl_matrix))
    results: dict[str, Any] = {
        **common_fields("run", exp, summary, device),
        "tasks": metrics.per_task(h, names),
        "accuracy_matrix": _matrix_json(R),
        "normalized_accuracy": _matrix_json(metrics.normalized_accuracy(R)),
        "average_accuracy_after_task": [_opt(v) for v in metrics.average_accuracy(R)],
        "wall_seconds": wall_seconds,
        "threads": torch.get_num_threads(),
        "stream_fingerprint": stream.fingerprint(),  # identifies the tasks (for --stl, compare)
        "learner_report": report.to_json(),
    }
    for task, entry in zip(stream, results["tasks"], strict=True):
        entry["classes"] = list(task.classes)
    if h.views:
        # e.g. a learner with a task mapper in class-il: "acc" above is end to end (task and
        # class right); "oracle" gives it the task, "mapper" scores the task mapper alone.
        results["views"] = {}
        curves = {f"{exp.run.setting} (end to end)": metrics.average_accuracy(R)}
        for name, acc in sorted(h.views.items()):
            Rv = metrics.accuracy_matrix(dataclasses.replace(h, test=acc))
            avg = metrics.average_accuracy(Rv)
            results["views"][name] = {"accuracy_matrix": _matrix_json(Rv),
                                      "average_accuracy_after_task": [_opt(v) for v in avg],
                                      "final": [_opt(v) for v in acc[-1]]}
            summary[f"mean_final_{name}_accuracy"] = _opt(float(np.nanmean(acc[-1])))
            curves[name] = avg
        plots.plot_average_accuracy(curves, out / "views.png",
                                    title=f"{title}: average over tasks learned so far")
    if extra:
        results.update(extra)
    atomic_write_text(out / "history.csv", _history_csv(h))
    atomic_write_text(out / "accuracy_matrix.csv", _matrix_csv(R))
    plots.plot_accuracy_over_time(h, names, out / "accuracy.png", title=title)
    plots.plot_forgetting_ratio(metrics.forgetting_ratio(h), names, out / "forgetting.png",
                                title=title)
    if report.configurations:  # selective-transfer learners: the LASEM paper's Figures 4 and 8
        chosen = [c for _, c in sorted(report.configurations.items())]
        plots.plot_configurations(chosen, out / "configurations.png",
                                  title=f"{title}: transfer configurations")
    # results.json last: its presence means the run finished and every other file is there.
    atomic_write_json(out / "results.json", results)
    return results


def read_results(run_dir: str | Path) -> dict[str, Any]:
    """Load a finished run's results.json (RunError if absent or not JSON)."""
    path = Path(run_dir) / "results.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{run_dir} has no results.json (not a finished run)") from None
    except (OSError, ValueError) as err:
        raise RunError(f"{path} is not valid JSON: {err}") from None


def read_history(run_dir: str | Path) -> History:
    """The history of a finished run, read back from its ``history.csv``."""
    path = Path(run_dir) / "history.csv"
    try:
        rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
        header, body = rows[0], rows[1:]
        T = sum(1 for c in header if c.startswith("test_"))
        views = list(dict.fromkeys(c.rsplit("_", 1)[0] for c in header[5 + 2 * T:]))

        def num(cell: str) -> float:
            return float(cell) if cell != "" else np.nan

        cols = np.array([[num(c) for c in r] for r in body], dtype=np.float64)
        cols = cols.reshape(-1, 5 + (2 + len(views)) * T)
    except (OSError, IndexError, ValueError) as err:
        raise RunError(f"{path} is not a readable history: {err}") from None
    start = 5 + 2 * T
    return History(epoch=cols[:, 0].astype(np.int64), task=cols[:, 1].astype(np.int64),
                   task_epoch=cols[:, 2].astype(np.int64), loss=cols[:, 3], seconds=cols[:, 4],
                   val=cols[:, 5:5 + T], test=cols[:, 5 + T:5 + 2 * T],
                   views={v: cols[:, start + k * T:start + (k + 1) * T]
                          for k, v in enumerate(views)})
