"""Joint training: an upper bound, not a lifelong learner.

While task t trains, the network trains on the union of the training sets of tasks 1..t:
every task's training images are kept when the task ends (all of them, decoded: the memory
grows with the stream, as no lifelong learner's may), and each step adds to the current
batch of n images r = ceil(n * |earlier tasks' images| / |task t's images|) earlier images,
taken in turn from a random permutation of them that is redrawn when used up. Over an epoch
of the current task every earlier image is therefore trained on once, as in an epoch over
the union; the batch's cross-entropy is averaged over all n + r rows, each through its own
task's head (task-il) or over every seen class (class-il). The network is the one that
trained the earlier tasks, not a fresh one.

It is what the sequential methods are measured against from above (as fine-tuning is from
below): it breaks the lifelong setting by storing every past example.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from lifelong.learners.base import LEARNERS
from lifelong.learners.cl.base import CLConfig, CLLearner
from lifelong.learners.cl.memory import TensorStore
from lifelong.tasks import Batch, Task

__all__ = ["Joint"]

DECODE_BATCH = 1000  # images per decode when a task's training set is stored


@LEARNERS.register("joint")
class Joint(CLLearner[CLConfig]):
    """Joint training on every task seen so far (an upper bound, not a lifelong learner)."""

    def __init__(self, cfg: CLConfig, ctx) -> None:
        super().__init__(cfg, ctx)
        self.past = TensorStore()  # x, y, task of every earlier task's training images
        self.order: torch.Tensor | None = None  # permutation of self.past's rows in use
        self.cursor = 0  # next position in self.order
        self.train_size = 0  # the current task's training images (for r)

    def begin_task(self, task: Task) -> None:
        self.train_size = len(task.train)  # re-attached on resume too
        super().begin_task(task)

    def _past_rows(self, r: int) -> torch.Tensor:
        """The next ``r`` rows of the earlier tasks' images, walking random permutations."""
        out = []
        while r > 0:
            if self.order is None or self.cursor >= len(self.order):
                self.order, self.cursor = torch.randperm(len(self.past), generator=self.gen), 0
            take = self.order[self.cursor:self.cursor + r]
            self.cursor += len(take)
            r -= len(take)
            out.append(take)
        return torch.cat(out)

    def observe(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.check_batch(batch)
        self.net.train()
        n = len(batch.y)
        r = math.ceil(n * len(self.past) / max(self.train_size, 1)) if len(self.past) else 0
        self.note_replay(r)
        x, y = batch.x, batch.y
        tasks: torch.Tensor | int = batch.task_id
        if r:
            old = self.past.get(self._past_rows(r))
            x, y = torch.cat([x, old["x"]]), torch.cat([y, old["y"]])
            tasks = torch.cat([torch.full_like(batch.y, batch.task_id), old["task"]])
        ce = self.ce_per_example(self.net.features(x), y, tasks)  # (n + r,)
        loss = self.reduce(ce)
        self.step(loss)
        # "loss" is the current batch's cross-entropy, comparable across learners
        return {"loss": self.logged(self.reduce(ce[:n].detach()), n),
                "union_loss": loss.detach()}

    def end_task(self, task: Task) -> None:
        split = task.train
        for start in range(0, len(split), DECODE_BATCH):
            idx = torch.arange(start, min(len(split), start + DECODE_BATCH))
            y = split.labels[idx].to(self.device)
            self.past.append(x=split.images(idx.numpy()).to(self.device), y=y,
                             task=torch.full_like(y, task.id))
        self.order, self.cursor = None, 0  # the union changed: a new permutation
        super().end_task(task)

    def stored_examples(self) -> int:
        return len(self.past)

    def method_state(self) -> dict[str, Any]:
        return {"past": self.past.state_dict(), "cursor": self.cursor,
                "order": self.order, "train_size": self.train_size}

    def load_method_state(self, state: dict[str, Any]) -> None:
        self.past = TensorStore()
        if int(state["past"]["size"]):
            self.past.load_state_dict(state["past"], self.device)
        self.order = state["order"]
        self.cursor = int(state["cursor"])
        self.train_size = int(state["train_size"])
