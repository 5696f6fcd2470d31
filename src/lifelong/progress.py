"""Progress you can watch: a live bar on a terminal, one line per finished task otherwise."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress

from lifelong.tasks import Task, TaskStream

__all__ = ["Progress"]


class Progress:
    """Shows task, epoch, loss and the current task's test accuracy while a run trains."""

    def __init__(self, stream: TaskStream, epochs: int, *, enabled: bool = True,
                 done: int = 0) -> None:
        self.stream = stream
        self.epochs = epochs
        self.enabled = enabled
        self.done = done
        self.console = Console(stderr=True)
        self.live = enabled and self.console.is_terminal
        self._bar: RichProgress | None = None
        self._id: Any = None
        self._acc: float | None = None

    def __enter__(self) -> Progress:
        if self.live:
            self._bar = RichProgress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                console=self.console)
            self._bar.__enter__()
            self._id = self._bar.add_task("training", total=len(self.stream) * self.epochs,
                                          completed=self.done, status="")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def update(self, task: Task, epoch: int, loss: float, accuracy: float | None) -> None:
        if accuracy is not None:
            self._acc = accuracy
        if self._bar is not None:
            acc = "" if self._acc is None else f" test acc {self._acc:.3f}"
            self._bar.update(
                self._id, advance=1,
                description=f"task {task.id + 1}/{len(self.stream)} epoch {epoch}/{self.epochs}",
                status=f"loss {loss:.4f}{acc}")

    def task_done(self, task: Task, test: list[float | None]) -> None:
        self._acc = None
        if not self.enabled:
            return
        seen = ", ".join("-" if a is None else f"{a:.3f}" for a in test)
        line = (f"task {task.id + 1}/{len(self.stream)} done ({task.name}); "
                f"test acc of seen tasks: {seen}")
        if self._bar is not None:
            self._bar.console.print(line, highlight=False)
        else:
            print(line, file=sys.stderr, flush=True)
