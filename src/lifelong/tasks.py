"""Tasks and task streams: the data a learner sees, one task after another."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from lifelong.data.images import ImageSet

__all__ = ["Task", "TaskStream", "Batch"]


@dataclass
class Task:
    """One classification task of a stream.

    Labels of every split are 0..num_classes-1 and ``classes[k]`` names label k
    (task-incremental); ``class_ids[k]`` is the class's index among all classes of the
    stream, for class-incremental evaluation.
    """

    id: int
    name: str
    classes: list[str]
    class_ids: list[int]
    train: ImageSet
    val: ImageSet
    test: ImageSet
    info: dict[str, Any] = field(default_factory=dict)  # protocol details (noise, domain, ...)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.train.shape

    def splits(self) -> dict[str, ImageSet]:
        return {"train": self.train, "val": self.val, "test": self.test}


@dataclass
class TaskStream:
    """An ordered list of tasks built by a protocol, plus what learners need to size networks."""

    name: str
    tasks: list[Task]
    num_global_classes: int
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks)

    def __getitem__(self, i: int) -> Task:
        return self.tasks[i]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.tasks[0].input_shape

    def fingerprint(self) -> str:
        """Hash of every split's content description: a resumed run must see the same data."""
        h = hashlib.sha256()
        for t in self.tasks:
            h.update(f"{t.id}:{t.name}:{t.classes}".encode())
            for s in (t.train, t.val, t.test):
                h.update(s.fingerprint().encode())
        return h.hexdigest()

    def describe(self) -> list[dict[str, Any]]:
        """One row per task: name, classes and split sizes (for ``lifelong data describe``)."""
        return [
            dict(id=t.id, name=t.name, classes=list(t.classes), train=len(t.train),
                 val=len(t.val), test=len(t.test), **t.info)
            for t in self.tasks
        ]


@dataclass
class Batch:
    """A mini-batch of one task: images (B, C, H, W), labels (B,) in the task's label space.

    ``index`` (B,) int64, when given, holds each example's row in ``task.train`` (the
    runner's training loop fills it), so a learner can look up what it recorded per
    training example (LwF's old-model outputs). None when the batch does not come from
    ``task.train`` rows or the caller does not know them; learners must then cope without.
    ``x`` is (B, 0), no pixels, when the learner said it does not need them
    (``Learner.needs_pixels``); ``index`` is then always given.
    """

    x: torch.Tensor
    y: torch.Tensor
    task_id: int
    index: torch.Tensor | None = None
