"""Learners built from a shared module and one module per task, trained with one optimizer
per task (as the original TF code, which made a new train op and optimizer slots per task).

Subclasses say what is shared and what a task adds; this class owns the training step,
the learning-rate schedule, prediction and checkpoint state.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, TypeVar, cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from lifelong.learners.base import (
    Learner,
    LearnerContext,
    NetLearnerConfig,
)
from lifelong.learners.optim import make_optimizer
from lifelong.tasks import Batch, Task

__all__ = ["TaskNetLearner"]

NC = TypeVar("NC", bound=NetLearnerConfig)


class TaskNetLearner(Learner[NC]):
    """Shared module + per-task modules; see :meth:`forward` for how they compose."""

    Config = NetLearnerConfig

    def __init__(self, cfg: NC, ctx: LearnerContext) -> None:
        super().__init__(cfg, ctx)
        self.model = nn.ModuleDict({"shared": self.build_shared(), "tasks": nn.ModuleDict()})
        self.model.to(self.device)
        self.num_classes: dict[int, int] = {}
        self.current_task: int | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.epoch = 0

    # -- what subclasses define -------------------------------------------------------------
    def build_shared(self) -> nn.Module:
        """Parameters shared by all tasks (none by default)."""
        return nn.Module()

    @abstractmethod
    def build_task(self, task_id: int, num_classes: int) -> nn.Module:
        """A new task's own parameters."""

    def forward(self, x: torch.Tensor, task_id: int) -> torch.Tensor:
        """Logits (B, C_task) of task ``task_id``: shared module, then the task's module."""
        return self.task_module(task_id)(self.model["shared"](x))

    def trainable_parameters(self, task_id: int) -> list[nn.Parameter]:
        """What the optimizer updates while ``task_id`` trains: shared + that task's."""
        return [*self.model["shared"].parameters(), *self.task_module(task_id).parameters()]

    def task_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy, summed or averaged over the batch as ``loss_reduction`` says."""
        return F.cross_entropy(logits, y, reduction=self.cfg.loss_reduction)

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """The objective of one mini-batch (subclasses add their penalties)."""
        return self.task_loss(logits, batch.y)

    # -- the learner contract --------------------------------------------------------------
    def task_module(self, task_id: int) -> nn.Module:
        return self.tasks[str(task_id)]

    @property
    def tasks(self) -> nn.ModuleDict:
        """The per-task modules, by task id as a string."""
        return cast(nn.ModuleDict, self.model["tasks"])

    def _add_task(self, task_id: int, num_classes: int) -> None:
        self.tasks[str(task_id)] = self.build_task(task_id, num_classes).to(self.device)
        self.num_classes[task_id] = num_classes

    def _make_optimizer(self, task_id: int) -> torch.optim.Optimizer:
        lr = self.cfg.epoch_lr(self.epoch)
        return make_optimizer(self.cfg.optimizer, self.trainable_parameters(task_id), lr)

    def begin_task(self, task: Task) -> None:
        if self.current_task == task.id and self.optimizer is not None:
            return  # a run resumed inside this task: parameters and optimizer are restored
        if task.id not in self.num_classes:
            self._add_task(task.id, task.num_classes)
        self.current_task = task.id
        self.optimizer = self._make_optimizer(task.id)

    def begin_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self.optimizer is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = self.cfg.epoch_lr(epoch)

    def observe(self, batch: Batch) -> dict[str, torch.Tensor]:
        assert self.optimizer is not None and batch.task_id == self.current_task
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(self.forward(batch.x, batch.task_id), batch)
        loss.backward()
        self.optimizer.step()
        # Logged per example, whatever the reduction, so runs are comparable.
        scale = len(batch.y) if self.cfg.loss_reduction == "sum" else 1
        return {"loss": loss.detach() / scale}

    def end_task(self, task: Task) -> None:
        self.current_task = None
        self.optimizer = None

    @torch.no_grad()
    def predict(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        if task_id is None:
            raise ValueError(f"{type(self).__name__} is task-incremental: predict needs a task id")
        self.model.eval()
        return self.forward(x, task_id)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def state_dict(self) -> dict[str, Any]:
        return {
            "num_classes": [[t, n] for t, n in self.num_classes.items()],
            "current_task": self.current_task,
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for t, n in state["num_classes"]:
            if t not in self.num_classes:
                self._add_task(int(t), int(n))
        self.model.load_state_dict(state["model"])
        self.epoch = int(state["epoch"])
        self.current_task = state["current_task"]
        self.optimizer = None
        if self.current_task is not None:
            self.optimizer = self._make_optimizer(self.current_task)
            self.optimizer.load_state_dict(state["optimizer"])
