"""The base of the sequential continual-learning baselines: their config, the multi-head
network and the training plumbing of the learner contract (:class:`CLLearner`). Replay buffers
live in :mod:`lifelong.learners.cl.memory`; per-example gradients and the quadratic penalty of
EWC / Online EWC / SI / MAS in :mod:`lifelong.learners.cl.penalty`.

Multi-head, task-incremental (task-il): one shared trunk (the papers' CNN, or a registered
backbone that is fine-tuned) and one linear output layer per task. A task's loss and logits
use that task's head only; replayed examples use their own task's head.

Class-incremental (class-il): the same heads, concatenated in the order the tasks arrived,
form one growing output layer over every class seen so far; the loss of an example is the
cross-entropy over all of those columns, and ``predict(x, None)`` scatters them to the
stream's global class ids (-inf for classes not seen yet).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar, cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from lifelong.backbones import BACKBONES
from lifelong.config import check
from lifelong.learners.base import Learner, LearnerContext, NetLearnerConfig
from lifelong.learners.cl.memory import TensorStore, select_per_class
from lifelong.learners.optim import make_optimizer
from lifelong.nets import ConvTrunk, NetSpec
from lifelong.nets.init import init_tf_
from lifelong.tasks import Batch, Task

__all__ = ["CLConfig", "MultiHeadNet", "CLLearner"]


@dataclass
class CLConfig(NetLearnerConfig):
    """Settings every baseline shares.

    ``lr`` / ``lr_decay`` / ``optimizer`` default to the benchmark's paper values, as for
    the other network learners, so a comparison differs only in the method. The loss is
    averaged over the batch (``mean``): the published penalty strengths (lambda, c, alpha)
    were set against a batch-mean cross-entropy.

    ``backbone`` replaces the papers' CNN trunk by a registered pretrained backbone (e.g.
    ``efficientnet-lite0``), fine-tuned unless ``finetune_backbone`` is false, with the task
    heads directly on its pooled features (the SKILL comparison's setup).
    """

    loss_reduction: Literal["sum", "mean"] = "mean"
    backbone: str | None = None
    finetune_backbone: bool = True

    def validate(self) -> None:
        super().validate()
        check(self.backbone is None or self.backbone in BACKBONES,
              f"unknown backbone {self.backbone!r}; known: {', '.join(BACKBONES.names())}")


class MultiHeadNet(nn.Module):
    """Trunk -> shared hidden FC layers -> one linear head per task.

    ``forward(x, task_id)`` gives that task's logits (B, C_task); ``forward(x)`` gives the
    concatenation of every head in arrival order (B, sum C_t), the class-il output layer.
    """

    def __init__(self, spec: NetSpec, input_shape: tuple[int, int, int],
                 backbone: str | None = None, finetune_backbone: bool = True) -> None:
        super().__init__()
        trunk: nn.Module
        features: int
        hidden: tuple[int, ...]
        if backbone is not None:
            trunk = BACKBONES.get(backbone)()
            trunk.requires_grad_(finetune_backbone)  # backbones are built frozen
            features, hidden = trunk.num_features, ()
        else:
            conv = ConvTrunk(spec, input_shape)
            trunk, features, hidden = conv, conv.out_features, spec.fc
        self.trunk = trunk
        layers: list[nn.Module] = [nn.Dropout(spec.dropout)] if spec.dropout > 0 and hidden else []
        for h in hidden:
            layers += [nn.Linear(features, h), nn.ReLU(inplace=True)]
            features = h
        self.hidden = cast(nn.Sequential, init_tf_(nn.Sequential(*layers)))
        self.out_features = features
        self.heads = nn.ModuleDict()
        self.order: list[int] = []  # task ids in arrival order (column order in class-il)

    def add_head(self, task_id: int, num_classes: int) -> None:
        self.heads[str(task_id)] = init_tf_(nn.Linear(self.out_features, num_classes))
        self.order.append(task_id)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.hidden(self.trunk(x))  # (B, D)

    def head(self, h: torch.Tensor, task_id: int) -> torch.Tensor:
        return self.heads[str(task_id)](h)  # (B, C_task)

    def all_heads(self, h: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.heads[str(t)](h) for t in self.order], dim=1)  # (B, sum C_t)

    def forward(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        h = self.features(x)
        return self.all_heads(h) if task_id is None else self.head(h, task_id)


# ---------------------------------------------------------------------------------------------
# the learner
# ---------------------------------------------------------------------------------------------
CLC = TypeVar("CLC", bound="CLConfig")


class CLLearner(Learner[CLC]):
    """Multi-head network learner; subclasses write their method in :meth:`observe` (and
    :meth:`begin_task` / :meth:`end_task`), and keep their state in :meth:`method_state`."""

    net: MultiHeadNet

    Config: ClassVar[type[CLConfig]] = CLConfig
    settings: ClassVar[frozenset[str]] = frozenset({"task-il", "class-il"})

    def __init__(self, cfg: CLC, ctx: LearnerContext) -> None:
        super().__init__(cfg, ctx)
        self._replayed = [0, 0]  # stored examples trained on, steps (note_replay)
        # a MultiHeadNet, or a net with the same head API (SupSup declares its own)
        self.net = cast(MultiHeadNet, self.build_net().to(self.device))
        self.num_classes: dict[int, int] = {}
        self.class_ids: dict[int, list[int]] = {}
        self.offsets: dict[int, int] = {}  # first column of each task in the class-il layer
        self.current_task: int | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.epoch = 0
        # Our own random stream (buffer sampling, exemplar choice): saved in checkpoints so
        # a resumed run draws exactly what the uninterrupted one would have.
        self.gen = torch.Generator().manual_seed(1_000_003 * ctx.seed + 17)

    # -- building ----------------------------------------------------------------------------
    def stored_examples(self) -> int:
        """Training examples the method keeps in memory now (0: no rehearsal)."""
        return 0

    def note_replay(self, rows: int) -> None:
        """Record that a step trained on ``rows`` stored examples (rehearsal methods)."""
        self._replayed[0] += int(rows)
        self._replayed[1] += 1

    def report(self) -> dict[str, Any]:
        """Memory held at the end and stored examples per step, measured (for comparisons
        at equal memory; ``lifelong compare --memory``)."""
        total, steps = self._replayed
        return {"memory_examples": self.stored_examples(),
                "replay_per_step": total / steps if steps else 0.0}

    def build_net(self) -> nn.Module:
        return MultiHeadNet(self.ctx.net, self.ctx.input_shape, self.cfg.backbone,
                            self.cfg.finetune_backbone)

    @property
    def class_il(self) -> bool:
        return self.ctx.setting == "class-il"

    def _add_task(self, task_id: int, num_classes: int, class_ids: list[int]) -> None:
        self.offsets[task_id] = sum(self.num_classes.values())
        self.num_classes[task_id] = num_classes
        self.class_ids[task_id] = list(class_ids)
        self.net.add_head(task_id, num_classes)
        self.net.heads[str(task_id)].to(self.device)

    def trainable(self) -> list[nn.Parameter]:
        """Every parameter that learns: trunk, hidden layers and all heads (old heads get
        gradients only from replay, distillation or the class-il loss)."""
        return [p for p in self.net.parameters() if p.requires_grad]

    def named_trainable(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.net.named_parameters() if p.requires_grad}

    def _make_optimizer(self) -> torch.optim.Optimizer:
        lr = self.cfg.epoch_lr(self.epoch)
        return make_optimizer(self.cfg.optimizer, self.trainable(), lr)

    # -- the contract ------------------------------------------------------------------------
    def resuming(self, task: Task) -> bool:
        """True when a run resumed inside ``task``: its state is restored already."""
        return self.current_task == task.id and self.optimizer is not None

    def begin_task(self, task: Task) -> None:
        if self.resuming(task):
            return
        if task.id not in self.num_classes:
            self._add_task(task.id, task.num_classes, task.class_ids)
        self.current_task = task.id
        self.optimizer = self._make_optimizer()

    def begin_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self.optimizer is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = self.cfg.epoch_lr(epoch)

    def end_task(self, task: Task) -> None:
        self.current_task = None
        self.optimizer = None

    # -- losses --------------------------------------------------------------------------------
    def reduce(self, per_example: torch.Tensor) -> torch.Tensor:
        return per_example.sum() if self.cfg.loss_reduction == "sum" else per_example.mean()

    def logits_and_targets(self, h: torch.Tensor, y: torch.Tensor, tasks: torch.Tensor | int
                           ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Groups (rows, logits, targets) of features ``h`` (B, D) with labels ``y`` (B,) of
        tasks ``tasks`` (an int or (B,)): task-il, one group per task with its own head;
        class-il, one group over all heads with targets shifted to the task's columns."""
        n = len(y)
        if isinstance(tasks, int):
            tasks_t: torch.Tensor | None = None
        else:
            tasks_t = tasks
        if self.class_il:
            if isinstance(tasks, int):
                target = y + self.offsets[tasks]
            else:
                table = self._offset_table(y.device)
                target = y + table[tasks_t]
            return [(torch.arange(n, device=y.device), self.net.all_heads(h), target)]
        if isinstance(tasks, int):
            return [(torch.arange(n, device=y.device), self.net.head(h, tasks), y)]
        assert tasks_t is not None
        groups = []
        for t in tasks_t.unique().tolist():
            rows = (tasks_t == t).nonzero().flatten()
            groups.append((rows, self.net.head(h[rows], t), y[rows]))
        return groups

    def _offset_table(self, device: torch.device) -> torch.Tensor:
        size = max(self.offsets) + 1
        table = torch.zeros(size, dtype=torch.long)
        for t, o in self.offsets.items():
            table[t] = o
        return table.to(device)

    def ce_per_example(self, h: torch.Tensor, y: torch.Tensor, tasks: torch.Tensor | int
                       ) -> torch.Tensor:
        """Cross-entropy of each example (B,), each with its own head (task-il)."""
        groups = self.logits_and_targets(h, y, tasks)
        if len(groups) == 1:  # one head, or class-il: rows are all of them, in order
            return F.cross_entropy(groups[0][1], groups[0][2], reduction="none")
        out = torch.empty(len(y), device=h.device)
        for rows, logits, target in groups:
            out = out.index_put((rows,), F.cross_entropy(logits, target, reduction="none"))
        return out

    # -- prediction ----------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        self.net.eval()
        h = self.net.features(x)
        if task_id is not None:
            return self.net.head(h, task_id)
        return self.scatter_global(self.net.all_heads(h))

    def scatter_global(self, seen: torch.Tensor) -> torch.Tensor:
        """Class-il scores (B, num_global_classes) from the concatenated heads (B, sum C_t);
        classes not seen yet score -inf."""
        ids = torch.tensor([c for t in self.net.order for c in self.class_ids[t]],
                           device=seen.device)
        out = torch.full((len(seen), self.ctx.num_global_classes), float("-inf"),
                         device=seen.device, dtype=seen.dtype)
        out[:, ids] = seen
        return out

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.net.parameters() if p.requires_grad)

    # -- checkpoints ---------------------------------------------------------------------------
    def method_state(self) -> dict[str, Any]:
        """The method's own state (importances, buffers, old model): tensors and plain values."""
        return {}

    def load_method_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`method_state`."""

    def state_dict(self) -> dict[str, Any]:
        return {
            "tasks": [[t, self.num_classes[t], self.class_ids[t]] for t in self.net.order],
            "current_task": self.current_task,
            "epoch": self.epoch,
            "net": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "generator": self.gen.get_state(),
            "method": self.method_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for t, n, ids in state["tasks"]:
            if int(t) not in self.num_classes:
                self._add_task(int(t), int(n), [int(c) for c in ids])
        self.net.load_state_dict(state["net"])
        self.epoch = int(state["epoch"])
        self.current_task = state["current_task"]
        self.gen.set_state(state["generator"])
        self.load_method_state(state["method"])
        self.optimizer = None
        if self.current_task is not None:
            self.optimizer = self._make_optimizer()
            self.optimizer.load_state_dict(state["optimizer"])

    # -- helpers for methods -------------------------------------------------------------------
    def frozen_copy(self) -> MultiHeadNet:
        """A frozen copy of the network in eval mode (LwF's and DER's old model, iCaRL's)."""
        old = copy.deepcopy(self.net)
        old.requires_grad_(False)
        return old.eval()

    def current_loss(self, batch: Batch) -> torch.Tensor:
        """The current task's reduced cross-entropy on ``batch``, in training mode."""
        self.check_batch(batch)
        self.net.train()
        h = self.net.features(batch.x)
        return self.reduce(self.ce_per_example(h, batch.y, batch.task_id))

    def backward(self, loss: torch.Tensor) -> None:
        """zero_grad and backward, for methods that change the gradient before stepping."""
        assert self.optimizer is not None
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()

    def remember_per_class(self, store: TensorStore, task: Task, per_class: int) -> None:
        """Add ``per_class`` random training images of each of ``task``'s classes to
        ``store`` (ER's class-balanced memory, A-GEM's episodic memory)."""
        idx = select_per_class(task.train.labels, per_class, self.gen)
        y = task.train.labels[idx].to(self.device)
        store.append(x=task.train.images(idx.numpy()).to(self.device), y=y,
                     task=torch.full_like(y, task.id))

    def step(self, loss: torch.Tensor) -> None:
        """zero_grad, backward, optimizer step (methods with extra gradient work do it
        themselves)."""
        self.backward(loss)
        assert self.optimizer is not None  # checked by backward
        self.optimizer.step()

    def logged(self, loss: torch.Tensor, n: int) -> torch.Tensor:
        """The loss per example, detached, whatever the reduction (runs stay comparable)."""
        return loss.detach() / (n if self.cfg.loss_reduction == "sum" else 1)

    def check_batch(self, batch: Batch) -> None:
        assert self.optimizer is not None and batch.task_id == self.current_task
