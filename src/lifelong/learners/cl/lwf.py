"""LwF: Learning without Forgetting (Li & Hoiem, ECCV 2016 / TPAMI 2017).

Before task t trains, the network is frozen into an "old model". On each new-task batch
the old model's outputs for the old tasks are the targets of a distillation term, so the
loss is

    L_new(y, head_t(x)) + lambda_o * sum_{old tasks o} L_old(head_o^old(x), head_o(x)),
    L_old(y_o, yhat_o) = - sum_c softmax(y_o / T)_c * log softmax(yhat_o / T)_c,

averaged over the batch, with T = 2 and lambda_o = 1 as in the paper (the paper's L_old has
no T^2 factor). In task-il each old head is distilled separately, on the new task's data,
and the old heads are trained too (the paper's theta_o). In class-il the distillation is
one softmax over all old classes' columns (LwF as usually run class-incrementally).

As in the paper, the old model's responses are recorded once, before the new task trains:
``begin_task`` runs the frozen old model (eval mode: no dropout, batch-norm on its running
statistics, no gradients) over every training image of the task, in chunks, and keeps its
old-head outputs, (N_train, sum of the old tasks' classes) floats: the distillation
targets of both settings (task-il slices each old head's columns out of them). A training
step then looks its batch's rows up by ``Batch.index`` (the runner fills it) instead of a
second forward pass. Because the old model is in eval mode either way, every example's
outputs do not depend on the rest of its batch, so the recorded targets are the numbers
the on-the-fly pass gives (up to float rounding of differently sized matrix products).
A batch without ``index`` (a caller of ``observe`` outside the runner) is distilled with
the old model run on the fly, as before.

The recorded targets are part of the checkpoint (small: no image, only the old classes'
outputs), so a run resumed inside the task neither recomputes them nor counts their
MACs twice; a checkpoint without them (written before they existed) has them recomputed
by ``begin_task``. Training MACs (``lifelong.macs``): the recording pass runs inside
``begin_task``, which the runner counts in full as the task's own work; the sampled
training steps no longer contain an old-model forward pass.

Warm-up (``warmup_epochs``): the paper's procedure (Li & Hoiem, section 3, "warm-up step")
first freezes the shared parameters theta_s and the old tasks' theta_o and trains only the
new task's theta_n, then trains all of them jointly with the loss above. Here the first
``warmup_epochs`` epochs of every task after the first train only the new task's head on
its cross-entropy (no distillation: nothing it constrains moves); the trunk's features are
computed without gradient and every other parameter's gradient is dropped before the step.
The paper trains the warm-up "to convergence" and gives no epoch count; the default 0 keeps
the joint training from the first epoch (Avalanche's LwF; Mammoth's warms the classifier up
for as many epochs as the task trains).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from lifelong.config import check
from lifelong.data.images import ImageSet
from lifelong.learners.base import LEARNERS
from lifelong.learners.cl.base import CLConfig, CLLearner, MultiHeadNet
from lifelong.tasks import Batch, Task

__all__ = ["LwF", "LwFConfig", "distillation_loss"]

# Images per old-model forward pass when recording the targets. Not larger: on one CPU
# thread the MNIST CNN's forward costs 0.25 s for 700 images in chunks of 10-128 and 0.5 s
# in chunks of 500 (the activations no longer fit in cache).
RECORD_BATCH = 128


@dataclass
class LwFConfig(CLConfig):
    # Tuned with `lifelong tune` on validation (seed 0) for split-mnist task-il, net mlp,
    # RMSProp-TF lr 1e-3, batch 10, 10 epochs per task, mean loss: 0.1 of (0.1, 1, 5)
    # (0.986 / 0.982 / 0.984). Class-il chose 1.0. Li & Hoiem and Mammoth: lambda_o = 1.
    lwf_alpha: float = 0.1
    temperature: float = 2.0  # T = 2 (Li & Hoiem; Mammoth's softmax_temp)
    # epochs per task (after the first) training the new head alone, shared part frozen:
    # Li & Hoiem's warm-up, "to convergence" in the paper; 0: none (Avalanche's LwF)
    warmup_epochs: int = 0
    SEARCH: ClassVar[dict[str, tuple[Any, ...]]] = {"lwf_alpha": (0.1, 0.5, 1.0, 2.0, 5.0)}
    SEARCH_SOURCE: ClassVar[str] = "around Li & Hoiem's lambda_o = 1 (T kept at their 2)"

    def validate(self) -> None:
        super().validate()
        check(self.lwf_alpha >= 0 and self.temperature > 0,
              "lwf_alpha must be >= 0 and temperature > 0")
        check(self.warmup_epochs >= 0, "warmup_epochs must be >= 0")


def distillation_loss(new_logits: torch.Tensor, old_logits: torch.Tensor,
                      temperature: float) -> torch.Tensor:
    """Per-example (B,) cross-entropy between softened old and new outputs:
    -sum_c softmax(old / T)_c log softmax(new / T)_c."""
    target = F.softmax(old_logits / temperature, dim=1)
    return -(target * F.log_softmax(new_logits / temperature, dim=1)).sum(1)


@LEARNERS.register("lwf")
class LwF(CLLearner[LwFConfig]):
    """LwF: distil the old tasks' outputs on the new task's data."""

    Config = LwFConfig

    def __init__(self, cfg: LwFConfig, ctx) -> None:
        super().__init__(cfg, ctx)
        self.old: MultiHeadNet | None = None
        self.old_tasks: list[int] = []
        # The old model's outputs on the current task's training images, row i for
        # task.train's row i: (N_train, sum_{o in old_tasks} C_o), columns in old_tasks
        # order (= self.offsets). None before the first old model exists / between tasks.
        self.targets: torch.Tensor | None = None
        self.targets_task: int | None = None  # the task whose training images they cover
        self.first_epoch: int | None = None  # global epoch of the current task's first epoch

    def begin_task(self, task: Task) -> None:
        if self.resuming(task):
            # Restored with the checkpoint; recomputed only if it predates them.
            if self.old is not None and not self._targets_fit(task):
                self._record_targets(task)
            return
        if self.net.order:  # a frozen copy of the network as the previous task left it
            self.old = self.frozen_copy()
            self.old_tasks = list(self.net.order)
        super().begin_task(task)
        self.first_epoch = None
        self.targets, self.targets_task = None, None
        if self.old is not None:
            self._record_targets(task)

    def begin_epoch(self, epoch: int) -> None:
        super().begin_epoch(epoch)
        if self.first_epoch is None:
            self.first_epoch = epoch

    def warming_up(self) -> bool:
        """Whether this epoch trains the new head alone (the warm-up of a task that has an
        old model; an ``observe`` before any ``begin_epoch`` counts as the first epoch)."""
        if self.old is None or self.cfg.warmup_epochs == 0:
            return False
        done = 0 if self.first_epoch is None else self.epoch - self.first_epoch
        return done < self.cfg.warmup_epochs

    def _warmup_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One warm-up step: the new task's head on its cross-entropy, nothing else moves."""
        with torch.no_grad():
            h = self.net.features(batch.x)  # the frozen theta_s
        loss = self.reduce(self.ce_per_example(h, batch.y, batch.task_id))
        self.backward(loss)
        new_head = {id(p) for p in self.net.heads[str(batch.task_id)].parameters()}
        for p in self.trainable():  # class-il's loss reaches the old heads' columns too
            if id(p) not in new_head:
                p.grad = None  # optimizers skip parameters without a gradient
        assert self.optimizer is not None
        self.optimizer.step()
        return {"loss": self.logged(loss, len(batch.y)), "distill": torch.zeros(())}

    def end_task(self, task: Task) -> None:
        self.targets, self.targets_task = None, None  # only the task being trained uses them
        super().end_task(task)

    def _targets_fit(self, task: Task) -> bool:
        return (self.targets is not None and self.targets_task == task.id
                and len(self.targets) == len(task.train))

    def _record_targets(self, task: Task) -> None:
        """Record the old model's outputs on every training image of ``task`` (the paper's
        Y_o <- CNN(X_n, theta_s, theta_o) before training)."""
        self.targets = self.old_outputs_of(task.train)
        self.targets_task = task.id

    @torch.no_grad()
    def old_outputs_of(self, split: ImageSet) -> torch.Tensor:
        """The old model's concatenated old-head outputs on every image of ``split``:
        (len(split), sum_{o old} C_o), in chunks of RECORD_BATCH images."""
        assert self.old is not None
        self.old.eval()  # frozen_copy's mode already; the targets must never see dropout
        n = len(split)
        width = sum(self.num_classes[t] for t in self.old_tasks)
        out = torch.empty((n, width), device=self.device)
        for start in range(0, n, RECORD_BATCH):
            idx = np.arange(start, min(n, start + RECORD_BATCH))
            x = split.images(idx).to(self.device)  # (b, C, H, W)
            out[start:start + len(idx)] = self.old.all_heads(self.old.features(x))
        return out

    def old_outputs(self, batch: Batch) -> torch.Tensor:
        """The old model's outputs (B, sum_{o old} C_o) on ``batch``: looked up in the
        recorded targets when the batch says which training rows it holds, else computed
        on the fly (eval mode, no gradients)."""
        assert self.old is not None
        if batch.index is not None and self.targets is not None \
                and self.targets_task == batch.task_id:
            return self.targets[batch.index.to(self.targets.device)]
        with torch.no_grad():
            return self.old.all_heads(self.old.features(batch.x))

    def observe(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.check_batch(batch)
        self.net.train()
        if self.warming_up():
            return self._warmup_step(batch)
        h = self.net.features(batch.x)
        ce = self.ce_per_example(h, batch.y, batch.task_id)
        distill = torch.zeros_like(ce)
        if self.old is not None:
            old_out = self.old_outputs(batch)  # (B, old classes), no gradient
            T = self.cfg.temperature
            if self.class_il:
                new_cols = self.net.all_heads(h)[:, : old_out.shape[1]]
                distill = distillation_loss(new_cols, old_out, T)
            else:
                for t in self.old_tasks:  # each old head against its own columns
                    lo = self.offsets[t]
                    target = old_out[:, lo:lo + self.num_classes[t]]  # (B, C_t)
                    distill = distill + distillation_loss(self.net.head(h, t), target, T)
        loss = self.reduce(ce + self.cfg.lwf_alpha * distill)
        self.step(loss)
        # "loss" is the current task's cross-entropy, comparable across learners
        return {"loss": self.logged(self.reduce(ce), len(batch.y)),
                "distill": self.reduce(distill).detach()}

    def method_state(self) -> dict[str, Any]:
        if self.old is None:
            return {"old": None, "old_tasks": [], "targets": None, "targets_task": None,
                    "first_epoch": self.first_epoch}
        return {"old": self.old.state_dict(), "old_tasks": list(self.old_tasks),
                "targets": self.targets, "targets_task": self.targets_task,
                "first_epoch": self.first_epoch}

    def load_method_state(self, state: dict[str, Any]) -> None:
        self.old_tasks = [int(t) for t in state["old_tasks"]]
        self.old = None
        if state["old"] is not None:
            old = self.frozen_copy()
            # the old model had the heads of old_tasks only
            for t in [t for t in old.order if t not in self.old_tasks]:
                del old.heads[str(t)]
            old.order = list(self.old_tasks)
            old.load_state_dict(state["old"])
            self.old = old
        # absent from checkpoints written before targets were recorded: begin_task redoes them
        targets = state.get("targets")
        self.targets = targets.to(self.device) if targets is not None else None
        task = state.get("targets_task")
        self.targets_task = int(task) if task is not None else None
        first = state.get("first_epoch")  # absent from checkpoints older than the warm-up
        self.first_epoch = int(first) if first is not None else None
