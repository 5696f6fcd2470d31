"""What the sequential continual-learning baselines share: a multi-head network, the
training-loop plumbing of the learner contract, replay buffers, per-example gradients and
the quadratic parameter penalty of EWC / Online EWC / SI / MAS.

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
from typing import Any, Callable, ClassVar, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from lifelong.backbones import BACKBONES
from lifelong.config import check
from lifelong.learners.base import Learner, LearnerContext, NetLearnerConfig
from lifelong.learners.optim import decayed_lr, make_optimizer
from lifelong.nets import ConvTrunk, NetSpec
from lifelong.nets.convnet import init_tf_
from lifelong.tasks import Batch, Task

__all__ = ["CLConfig", "MultiHeadNet", "CLLearner", "TensorStore", "ReservoirBuffer",
           "select_per_class", "per_example_grads", "QuadraticPenalty"]


# ---------------------------------------------------------------------------------------------
# configuration and network
# ---------------------------------------------------------------------------------------------
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
        if backbone is not None:
            trunk = BACKBONES.get(backbone)()
            trunk.requires_grad_(finetune_backbone)  # backbones are built frozen
            features, hidden = trunk.num_features, ()
        else:
            trunk = ConvTrunk(spec, input_shape)
            features, hidden = trunk.out_features, spec.fc
        self.trunk = trunk
        layers: list[nn.Module] = [nn.Dropout(spec.dropout)] if spec.dropout > 0 and hidden else []
        for h in hidden:
            layers += [nn.Linear(features, h), nn.ReLU(inplace=True)]
            features = h
        self.hidden = init_tf_(nn.Sequential(*layers))
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
class CLLearner(Learner):
    """Multi-head network learner; subclasses write their method in :meth:`observe` (and
    :meth:`begin_task` / :meth:`end_task`), and keep their state in :meth:`method_state`."""

    Config: ClassVar[type[CLConfig]] = CLConfig
    settings: ClassVar[frozenset[str]] = frozenset({"task-il", "class-il"})

    def __init__(self, cfg: CLConfig, ctx: LearnerContext) -> None:
        super().__init__(cfg, ctx)
        self._replayed = [0, 0]  # stored examples trained on, steps (note_replay)
        self.net = self.build_net().to(self.device)
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
        lr = decayed_lr(self.cfg.lr, self.cfg.lr_decay, self.epoch)
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
                group["lr"] = decayed_lr(self.cfg.lr, self.cfg.lr_decay, epoch)

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
            tasks_t = None
        else:
            tasks_t = tasks
        if self.class_il:
            if tasks_t is None:
                target = y + self.offsets[tasks]
            else:
                table = self._offset_table(y.device)
                target = y + table[tasks_t]
            return [(torch.arange(n, device=y.device), self.net.all_heads(h), target)]
        if tasks_t is None:
            return [(torch.arange(n, device=y.device), self.net.head(h, tasks), y)]
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
    def frozen_copy(self) -> nn.Module:
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

    def remember_per_class(self, store: "TensorStore", task: Task, per_class: int) -> None:
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
        self.optimizer.step()

    def logged(self, loss: torch.Tensor, n: int) -> torch.Tensor:
        """The loss per example, detached, whatever the reduction (runs stay comparable)."""
        return loss.detach() / (n if self.cfg.loss_reduction == "sum" else 1)

    def check_batch(self, batch: Batch) -> None:
        assert self.optimizer is not None and batch.task_id == self.current_task


# ---------------------------------------------------------------------------------------------
# replay buffers
# ---------------------------------------------------------------------------------------------
class TensorStore:
    """Rows of named tensors (x, y, task, logits, ...) in preallocated storage.

    Appending doubles the storage when full, so a growing buffer costs amortised O(1) per
    row; sampling draws row indices with replacement (O(n) whatever the buffer size) and
    gathers them, so sampling cost does not grow with the buffer either. A 2-D float field
    whose rows get wider (DER's logits when a task with more classes arrives) is padded
    with zeros; ``width`` records each row's valid columns where needed.
    """

    def __init__(self) -> None:
        self.fields: dict[str, torch.Tensor] = {}
        self.size = 0

    def __len__(self) -> int:
        return self.size

    @property
    def allocated(self) -> int:
        return len(next(iter(self.fields.values()))) if self.fields else 0

    def _fit(self, rows: dict[str, torch.Tensor], need: int) -> None:
        """Make sure storage exists for ``need`` rows and is wide enough for ``rows``."""
        if not self.fields:
            self.fields = {k: torch.zeros((max(need, 16), *v.shape[1:]), dtype=v.dtype,
                                          device=v.device) for k, v in rows.items()}
            return
        for k, v in rows.items():
            cur = self.fields[k]
            if v.dim() == 2 and v.shape[1] > cur.shape[1]:
                self.fields[k] = F.pad(cur, (0, v.shape[1] - cur.shape[1]))
        if need > self.allocated:
            new = max(need, 2 * self.allocated)
            for k, cur in self.fields.items():
                grown = torch.zeros((new, *cur.shape[1:]), dtype=cur.dtype, device=cur.device)
                grown[: self.size] = cur[: self.size]
                self.fields[k] = grown

    def _write(self, index: torch.Tensor, rows: dict[str, torch.Tensor]) -> None:
        for k, v in rows.items():
            dest = self.fields[k]
            if v.dim() == 2 and v.shape[1] < dest.shape[1]:
                v = F.pad(v, (0, dest.shape[1] - v.shape[1]))
            dest[index] = v.to(dest.dtype)

    def append(self, **rows: torch.Tensor) -> None:
        """Add all rows (each field (n, ...)) at the end."""
        n = len(next(iter(rows.values())))
        self._fit(rows, self.size + n)
        self._write(torch.arange(self.size, self.size + n), rows)
        self.size += n

    def sample(self, n: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """``n`` rows drawn uniformly with replacement (empty dict if the store is empty)."""
        if self.size == 0:
            return {}
        idx = torch.randint(self.size, (n,), generator=gen)
        return self.get(idx)

    def get(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        idx = idx.to(next(iter(self.fields.values())).device)
        return {k: v[idx] for k, v in self.fields.items()}

    def all(self) -> dict[str, torch.Tensor]:
        return {k: v[: self.size] for k, v in self.fields.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"size": self.size, "fields": {k: v[: self.size] for k, v in self.fields.items()}}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        self.size = int(state["size"])
        self.fields = {k: v.to(device).clone() for k, v in state["fields"].items()}


class ReservoirBuffer(TensorStore):
    """At most ``capacity`` rows chosen by reservoir sampling (Vitter's algorithm R): the
    n-th example offered (0-based) is stored if n < capacity, else it replaces row j for a
    uniform j in [0, n] when j < capacity. Every example seen so far is in the buffer with
    the same probability capacity / seen."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self.seen = 0

    def add(self, gen: torch.Generator, **rows: torch.Tensor) -> None:
        n = len(next(iter(rows.values())))
        draws = torch.rand(n, generator=gen).tolist()
        dest: dict[int, int] = {}  # slot -> row of this batch (a later row overwrites)
        for i, u in enumerate(draws):
            seen = self.seen + i
            slot = seen if seen < self.capacity else int(u * (seen + 1))
            if slot < self.capacity:
                dest[slot] = i
        self.seen += n
        if not dest:
            return
        self._fit(rows, self.capacity)  # all of it at once: no copies as the buffer fills
        slots = torch.tensor(list(dest.keys()))
        picked = torch.tensor(list(dest.values()), device=next(iter(rows.values())).device)
        self._write(slots, {k: v[picked] for k, v in rows.items()})
        self.size = min(self.capacity, self.seen)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "seen": self.seen}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        super().load_state_dict(state, device)
        self.seen = int(state["seen"])


def select_per_class(labels: torch.Tensor, per_class: int, gen: torch.Generator) -> torch.Tensor:
    """Indices of ``per_class`` examples of each class in ``labels`` (all of a class when it
    has fewer), chosen uniformly at random without replacement; sorted by class."""
    chosen = []
    for c in labels.unique().tolist():
        rows = (labels == c).nonzero().flatten()
        chosen.append(rows[torch.randperm(len(rows), generator=gen)[:per_class]])
    return torch.cat(chosen) if chosen else torch.zeros(0, dtype=torch.long)


# ---------------------------------------------------------------------------------------------
# per-example gradients and quadratic penalties
# ---------------------------------------------------------------------------------------------
def per_example_grads(module: nn.Module, x: torch.Tensor, extra: torch.Tensor,
                      scalar: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                      forward_kwargs: dict[str, Any] | None = None,
                      names: list[str] | None = None) -> dict[str, torch.Tensor]:
    """Gradient of ``scalar(module(x_i), extra_i)`` for each example i: name -> (B, *shape).

    ``module`` is called on one example at a time (a batch of one) under ``vmap``, so the
    result is exact per-example gradients at the cost of about one batched backward pass.
    Only parameters in ``names`` (default: those requiring grad) are differentiated.
    """
    names = names or [n for n, p in module.named_parameters() if p.requires_grad]
    all_params = dict(module.named_parameters())
    params = {n: all_params[n].detach() for n in names}
    fixed = {n: p.detach() for n, p in all_params.items() if n not in params}
    buffers = dict(module.named_buffers())
    kwargs = forward_kwargs or {}

    def one(p: dict[str, torch.Tensor], xi: torch.Tensor, ei: torch.Tensor) -> torch.Tensor:
        out = functional_call(module, ({**p, **fixed}, buffers), (xi.unsqueeze(0),), kwargs)
        return scalar(out[0], ei)

    return vmap(grad(one), in_dims=(None, 0, 0))(params, x, extra)


def chunk_size(module: nn.Module, budget: int = 1 << 24) -> int:
    """Examples per per-example-gradient chunk so that B x parameters stays near ``budget``
    floats (64 MB)."""
    n = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return max(1, budget // max(n, 1))


class QuadraticPenalty:
    """sum_i A_i (theta_i - m_i)^2 (+ a constant): the form shared by EWC (A = Fisher),
    Online EWC, SI (A = path-integral importance) and MAS (A = output-sensitivity).

    Parameters are named as in ``net.named_parameters()``; a parameter without an entry has
    no penalty (a head added after the last consolidation). The gradient, 2 A (theta - m), is
    added straight into ``.grad`` with fused foreach kernels (no autograd graph for the
    penalty), which keeps the step cost near that of plain training.
    """

    def __init__(self) -> None:
        self.importance: dict[str, torch.Tensor] = {}
        self.anchor: dict[str, torch.Tensor] = {}
        self.const = 0.0

    def __bool__(self) -> bool:
        return bool(self.importance)

    @torch.no_grad()
    def value(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """The penalty sum_i A_i (theta_i - m_i)^2 + const (a scalar tensor)."""
        names = [n for n in self.importance if n in params]
        if not names:
            return torch.zeros(())
        d = torch._foreach_sub([params[n] for n in names], [self.anchor[n] for n in names])
        ad = torch._foreach_mul(d, [self.importance[n] for n in names])
        return sum((a * b).sum() for a, b in zip(ad, d)) + self.const

    @torch.no_grad()
    def add_grad_(self, params: dict[str, nn.Parameter], scale: float) -> torch.Tensor:
        """Add ``scale`` x the penalty's gradient to ``params``' grads; returns ``scale`` x
        the penalty value. Parameters with no gradient this step are left alone: they are
        not in this step's graph (e.g. an old head in task-il), so nothing moves them."""
        names = [n for n in self.importance if n in params and params[n].grad is not None]
        if not names:
            return torch.zeros(())
        d = torch._foreach_sub([params[n] for n in names], [self.anchor[n] for n in names])
        ad = torch._foreach_mul(d, [self.importance[n] for n in names])
        torch._foreach_add_([params[n].grad for n in names], ad, alpha=2.0 * scale)
        return scale * (sum((a * b).sum() for a, b in zip(ad, d)) + self.const)

    def state_dict(self) -> dict[str, Any]:
        return {"importance": dict(self.importance), "anchor": dict(self.anchor),
                "const": self.const}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        self.importance = {k: v.to(device) for k, v in state["importance"].items()}
        self.anchor = {k: v.to(device) for k, v in state["anchor"].items()}
        self.const = float(state["const"])
