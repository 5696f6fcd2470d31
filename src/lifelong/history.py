"""The record of a lifelong run: one row per evaluation, as the original DF-CNN/LASEM code
logged it (``history_{validation,test}_accuracy``, ``task_changed_epoch``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["History", "HistoryRecorder"]


@dataclass(frozen=True)
class History:
    """Evaluations over a run, as arrays. Accuracies are fractions; NaN marks a task not yet seen.

    Attributes:
        epoch: (E,) global epoch (1-based, counted over all tasks) of each evaluation.
        task: (E,) index of the task being trained when the row was recorded.
        task_epoch: (E,) epoch within that task (1-based).
        val: (E, T) validation accuracy of every task.
        test: (E, T) test accuracy of every task.
        loss: (E,) mean training loss over the epoch that ended at the row.
        seconds: (E,) cumulative training seconds (evaluation excluded) at the row.
    """

    epoch: np.ndarray
    task: np.ndarray
    task_epoch: np.ndarray
    val: np.ndarray
    test: np.ndarray
    loss: np.ndarray
    seconds: np.ndarray
    #: Other test accuracies of each row, by name (e.g. "oracle", "mapper"): (E, T) each.
    views: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_tasks(self) -> int:
        return int(self.test.shape[1])

    def rows_of_task(self, t: int) -> np.ndarray:
        """Row indices recorded while task ``t`` was being trained."""
        return np.flatnonzero(self.task == t)


@dataclass
class HistoryRecorder:
    """Appends evaluation rows during a run; ``to_history`` freezes them into arrays."""

    num_tasks: int
    rows: list[dict] = field(default_factory=list)

    def add(self, *, epoch: int, task: int, task_epoch: int, val: list[float],
            test: list[float], loss: float, seconds: float,
            views: dict[str, list[float]] | None = None) -> None:
        if len(val) > self.num_tasks or len(test) > self.num_tasks:
            raise ValueError("more accuracies than tasks")
        row = dict(epoch=epoch, task=task, task_epoch=task_epoch, val=list(val),
                   test=list(test), loss=float(loss), seconds=float(seconds))
        if views:
            row["views"] = {k: list(v) for k, v in views.items()}
        self.rows.append(row)

    def to_history(self) -> History:
        n = len(self.rows)

        def acc(get) -> np.ndarray:
            out = np.full((n, self.num_tasks), np.nan)
            for i, r in enumerate(self.rows):
                vals = [np.nan if v is None else v for v in get(r)]
                out[i, : len(vals)] = vals
            return out

        names = sorted({k for r in self.rows for k in r.get("views", {})})
        views = {k: acc(lambda r, k=k: r.get("views", {}).get(k, [])) for k in names}

        return History(
            epoch=np.array([r["epoch"] for r in self.rows], dtype=np.int64),
            task=np.array([r["task"] for r in self.rows], dtype=np.int64),
            task_epoch=np.array([r["task_epoch"] for r in self.rows], dtype=np.int64),
            val=acc(lambda r: r["val"]),
            test=acc(lambda r: r["test"]),
            loss=np.array([np.nan if r["loss"] is None else r["loss"] for r in self.rows],
                          dtype=np.float64),
            seconds=np.array([r["seconds"] for r in self.rows], dtype=np.float64),
            views=views,
        )

    def to_json(self) -> list[dict]:
        """Rows with NaN written as None (JSON has no NaN)."""
        def clean(v: float | None) -> float | None:
            return None if v is None or not np.isfinite(v) else float(v)

        out = []
        for r in self.rows:
            row = dict(r, val=[clean(v) for v in r["val"]], test=[clean(v) for v in r["test"]],
                       loss=clean(r["loss"]))
            if "views" in r:
                row["views"] = {k: [clean(v) for v in vs] for k, vs in r["views"].items()}
            out.append(row)
        return out

    @classmethod
    def from_json(cls, num_tasks: int, rows: list[dict]) -> HistoryRecorder:
        return cls(num_tasks=num_tasks, rows=[dict(r) for r in rows])
