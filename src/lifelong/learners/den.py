"""DEN: dynamically expandable networks (Yoon et al., ICLR 2018, Algorithm 1), for the
papers' CNNs. Units are conv channels and FC hidden neurons; each task has its own output
layer. Neither the DF-CNN nor the LASEM repository contains the DEN code they ran (both are
stubs), so this follows the DEN paper, with the regularisation values of the DF-CNN code.
Sizes: on the CIFAR network the LASEM code's DEN settings (expansion 16, FC [128]); elsewhere
the expansion size 32 of the LASEM paper (appendix A) and the network's FC layers.

    task 1:  train the whole network with an L1 penalty (sparse weights)
    task t:  the task's epoch budget is cut into phases (fractions 1/6, 1/6, 1/3, 1/3):
      head    train only task t's new output layer, L1-penalised, to find relevant units
      select  breadth-first from the output layer's non-zero weights: the subnetwork S of
              units with a non-zero path to it; retrain only S's weights (L2-penalised)
      expand  if the loss is still above loss_threshold: add `expansion` units to every
              hidden layer, train only the new weights with L1 + group lasso per unit, then
              remove new units whose incoming weights are (almost) all zero
      split   train all of task t's weights, L2-pulled towards their values before task t;
              at the end, a unit whose incoming weights moved more than split_threshold is
              duplicated: the old copy gets its old weights back and serves tasks < t, the
              new copy keeps the new weights and serves tasks >= t (timestamped units)

A task uses only the units alive at its time stamp, so earlier tasks are protected from
expansion and from drifted units; shared units that moved less than the threshold still
change for earlier tasks, which is where DEN forgets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from lifelong.config import check
from lifelong.learners.base import LEARNERS, LearnerContext, NetLearnerConfig
from lifelong.learners.optim import make_optimizer
from lifelong.learners.tasknet import TaskNetLearner
from lifelong.nets.convnet import same_max_pool
from lifelong.tasks import Batch, Task

__all__ = ["DEN", "DENConfig"]

NEVER = 1 << 30  # "not retired" time stamp

#: The LASEM code's DEN sizes by network, (expansion, FC hidden layers): Lifelong-ML/LASEM
#: c4ec052, utils/utils_env_cl.py lines 483-486 ('cifar' data, 4 conv layers: den_expansion
#: 16, hidden_layer [128]). Office-Home's (lines 488-492: 32, [256, 64]) equal our defaults.
CODE_SIZES: dict[str, tuple[int, tuple[int, ...]]] = {"cifar": (16, (128,))}
PAPER_EXPANSION = 32  # LASEM paper appendix A ("the size of the dynamic expansion ... 32")


@dataclass
class DENConfig(NetLearnerConfig):
    l1: float = 1e-6  # sparsity of task 1, of the new output layer and of expanded units
    l2: float = 0.01  # L2 on the selected subnetwork while it is retrained
    group_lasso: float = 0.8  # group sparsity on each expanded unit's incoming weights
    drift: float = 0.5  # L2 pull towards the pre-task weights in the split phase ("reg")
    loss_threshold: float = 0.01  # expand when the loss after selective retraining is above
    zero_threshold: float = 0.01  # |w| below this is treated as zero (sparsity_threshold[1])
    # an expanded unit with this fraction of zero incoming weights is removed
    # (sparsity_threshold[0] of the DF-CNN code's DEN settings)
    useless_fraction: float = 0.98
    split_threshold: float = 0.05  # drift (L2 norm of a unit's incoming change) that splits it
    # Units added per hidden layer; None: the LASEM code's value for the network
    # (CODE_SIZES: 16 on cifar), else 32 (LASEM appendix A).
    expansion: int | None = None
    # FC hidden layers; None: the LASEM code's for the network (CODE_SIZES: [128] on cifar),
    # else the network's own.
    fc: tuple[int, ...] | None = None

    def validate(self) -> None:
        super().validate()
        check(min(self.l1, self.l2, self.group_lasso, self.drift) >= 0,
              "l1, l2, group_lasso and drift must be >= 0")
        check(self.expansion is None or self.expansion >= 1, "expansion must be >= 1")
        check(self.fc is None or (len(self.fc) >= 1 and min(self.fc) >= 1),
              "fc needs at least one hidden layer of >= 1 units")
        check(0 < self.useless_fraction <= 1, "useless_fraction must be in (0, 1]")


class DENNet(nn.Module):
    """The shared, growing network: conv layers then FC hidden layers, with the time stamps
    of every unit. ``weights[l]`` is (units_l, inputs_l[, k, k]); ``born[l][u]`` is the task
    that created unit u and ``retired[l][u]`` the first task that no longer uses it."""

    def __init__(self, ctx: LearnerContext, fc: tuple[int, ...]) -> None:
        super().__init__()
        spec = ctx.net
        self.kernels = list(spec.kernels)
        self.pools = list(spec.pools)
        self.num_conv = len(spec.channels)
        c, h, w = ctx.input_shape
        for p in spec.pools:
            h, w = -(-h // p), -(-w // p)
        self.spatial = h * w  # positions per channel after the last conv layer
        sizes = [*spec.channels, *fc]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        fan_in = c
        for layer, units in enumerate(sizes):
            if layer < self.num_conv:
                k = self.kernels[layer]
                shape: tuple[int, ...] = (units, fan_in, k, k)
            else:
                shape = (units, fan_in * (self.spatial if layer == self.num_conv else 1))
            self.weights.append(nn.Parameter(_trunc(shape)))
            self.biases.append(nn.Parameter(torch.full((units,), 0.2)))
            fan_in = units
        for layer, units in enumerate(sizes):
            self.register_buffer(f"born{layer}", torch.zeros(units, dtype=torch.long))
            self.register_buffer(f"retired{layer}", torch.full((units,), NEVER, dtype=torch.long))

    @property
    def num_layers(self) -> int:
        return len(self.weights)

    def born(self, layer: int) -> torch.Tensor:
        return getattr(self, f"born{layer}")

    def retired(self, layer: int) -> torch.Tensor:
        return getattr(self, f"retired{layer}")

    def active(self, layer: int, task: int) -> torch.Tensor:
        """(units,) bool: units that task ``task`` uses."""
        return (self.born(layer) <= task) & (task < self.retired(layer))

    def units(self, layer: int) -> int:
        return int(self.weights[layer].shape[0])

    def expand_input(self, layer: int, count: int) -> int:
        """Input columns that ``count`` new units of the layer below add to ``layer``."""
        return count * (self.spatial if layer == self.num_conv else 1)

    def forward(self, x: torch.Tensor, task: int, dropout: float, train: bool) -> torch.Tensor:
        """Features (B, units of the last hidden layer) of task ``task``."""
        for layer in range(self.num_layers):
            mask = self.active(layer, task).to(x.dtype)
            if layer < self.num_conv:
                w = self.weights[layer]
                x = F.relu(F.conv2d(x, w, self.biases[layer], padding=w.shape[-1] // 2))
                x = same_max_pool(x, self.pools[layer]) * mask[None, :, None, None]
                if layer == self.num_conv - 1:
                    x = F.dropout(x.flatten(1), dropout, train)  # (B, C * h * w)
            else:
                if layer == 0:
                    x = F.dropout(x.flatten(1), dropout, train)
                x = F.relu(F.linear(x, self.weights[layer], self.biases[layer])) * mask
        return x


def _trunc(shape: tuple[int, ...]) -> torch.Tensor:
    """The original code's weight init: normal, std 0.05, truncated at two std."""
    return nn.init.trunc_normal_(torch.empty(shape), std=0.05, a=-0.1, b=0.1)


@LEARNERS.register("den")
class DEN(TaskNetLearner[DENConfig]):
    """Dynamically expandable network: selective retraining, dynamic expansion and
    split/duplication of units (Yoon et al. 2018)."""

    Config = DENConfig
    PHASES = (("head", 1 / 6), ("select", 1 / 6), ("expand", 1 / 3), ("split", 1 / 3))

    def __init__(self, cfg: DENConfig, ctx: LearnerContext) -> None:
        code_expansion, code_fc = CODE_SIZES.get(ctx.net_name, (PAPER_EXPANSION, ctx.net.fc))
        self.expansion = cfg.expansion if cfg.expansion is not None else code_expansion
        self.fc = tuple(cfg.fc) if cfg.fc is not None else tuple(code_fc)
        if not self.fc:
            raise ValueError("DEN needs at least one hidden FC layer")
        super().__init__(cfg, ctx)
        self.task_epoch = 0
        self.phase = "initial"
        self.grad_masks: list[torch.Tensor] | None = None
        self.before: list[torch.Tensor] = []  # weights when the task began (split phase)
        self.epoch_loss = [0.0, 0]

    @property
    def net(self) -> DENNet:
        return cast(DENNet, self.model["shared"])

    def task_module(self, task_id: int) -> nn.Linear:
        return cast(nn.Linear, super().task_module(task_id))  # DEN's heads are linear

    def _heads(self) -> list[tuple[str, nn.Linear]]:
        return [(key, cast(nn.Linear, head)) for key, head in self.tasks.items()]

    def build_shared(self) -> nn.Module:
        return DENNet(self.ctx, self.fc)

    def report(self) -> dict[str, Any]:
        """The sizes this run used (the config's or the network's preset)."""
        return {"expansion": self.expansion, "fc": list(self.fc)}

    def build_task(self, task_id: int, num_classes: int) -> nn.Module:
        head = nn.Linear(self.net.units(self.net.num_layers - 1), num_classes)
        nn.init.trunc_normal_(head.weight, std=0.05, a=-0.1, b=0.1)
        nn.init.constant_(head.bias, 0.2)
        return head

    def forward(self, x: torch.Tensor, task_id: int) -> torch.Tensor:
        feats = self.net(x, task_id, self.ctx.net.dropout, self.model.training)
        return self.task_module(task_id)(feats)

    # -- phases ------------------------------------------------------------------------------
    def begin_task(self, task: Task) -> None:
        if self.current_task == task.id and self.optimizer is not None:
            return  # resumed inside this task: its phase state is restored
        super().begin_task(task)
        self.task_epoch = 0
        self.before = [w.detach().clone() for w in self.net.weights]
        self._enter("initial" if task.id == 0 else "head")

    def _phase_at(self, epoch: int) -> str:
        """Phase of the task's ``epoch``-th epoch (0-based) under the 1/6, 1/6, 1/3, 1/3 split."""
        if self.current_task == 0:
            return "initial"
        bounds, total = [], 0.0
        for name, frac in self.PHASES:
            total += frac
            bounds.append((name, round(total * self.ctx.epochs)))
        return next((name for name, end in bounds if epoch < end), "split")

    def begin_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        phase = self._phase_at(self.task_epoch)
        # Walk through every phase boundary crossed since the last epoch (short budgets
        # can skip whole phases; their end-of-phase steps still run, in order).
        order = [p for p, _ in self.PHASES]
        while self.phase != phase and self.phase != "initial":
            nxt = order[order.index(self.phase) + 1]
            self._leave(self.phase)
            self._enter(nxt)
        self.task_epoch += 1
        self.epoch_loss = [0.0, 0]
        assert self.optimizer is not None
        for group in self.optimizer.param_groups:
            group["lr"] = self.cfg.epoch_lr(epoch)

    def _enter(self, phase: str) -> None:
        self.phase = phase
        t = self.current_task
        assert t is not None
        net = self.net
        if phase == "head":
            params = list(self.task_module(t).parameters())
            masks = None
        elif phase == "select":
            masks = self._select_subnetwork(t)
            params = [*net.weights, *net.biases, *self.task_module(t).parameters()]
        elif phase == "expand":
            if self._last_loss() <= self.cfg.loss_threshold:
                return self._enter("split")
            masks = self._expand(t)
            params = [*net.weights, *net.biases, *self.task_module(t).parameters()]
        else:  # initial, split: everything task t uses
            masks = None
            params = self.trainable_parameters(t)
        self.grad_masks = masks
        lr = self.cfg.epoch_lr(self.epoch)
        self.optimizer = make_optimizer(self.cfg.optimizer, params, lr)

    def _leave(self, phase: str) -> None:
        if phase == "expand" and self.grad_masks is not None:
            assert self.current_task is not None
            self._prune_new_units(self.current_task)

    def _last_loss(self) -> float:
        total, count = self.epoch_loss
        return total / count if count else float("inf")

    # -- one mini-batch ----------------------------------------------------------------------
    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        cfg, net, t = self.cfg, self.net, batch.task_id
        loss = self.task_loss(logits, batch.y)
        if self.phase in ("initial", "head"):
            weights = list(net.weights) if self.phase == "initial" else []
            weights.append(self.task_module(t).weight)
            loss = loss + cfg.l1 * sum(w.abs().sum() for w in weights)
        elif self.phase == "select":
            assert self.grad_masks is not None
            loss = loss + cfg.l2 * sum((w * m).square().sum()
                                       for w, m in zip(net.weights, self.grad_masks, strict=True))
        elif self.phase == "expand":
            assert self.grad_masks is not None
            for layer, (w, m) in enumerate(zip(net.weights, self.grad_masks, strict=True)):
                new = net.born(layer) == t  # rows of this task's new units
                loss = loss + cfg.l1 * (w * m).abs().sum()
                loss = loss + cfg.group_lasso * w[new].flatten(1).norm(dim=1).sum()
        elif self.phase == "split":
            for w, old in zip(net.weights, self.before, strict=True):
                rows, cols = old.shape[0], old.shape[1]
                loss = loss + cfg.drift * (w[:rows, :cols] - old).square().sum()
        return loss

    def observe(self, batch: Batch) -> dict[str, torch.Tensor]:
        assert self.optimizer is not None
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(self.forward(batch.x, batch.task_id), batch)
        loss.backward()
        if self.grad_masks is not None:
            for w, m in zip(self.net.weights, self.grad_masks, strict=True):
                if w.grad is not None:
                    w.grad.mul_(m)
            for b, m in zip(self.net.biases, self.grad_masks, strict=True):
                if b.grad is not None:
                    b.grad.mul_(m.flatten(1).amax(1))  # a unit's bias trains with its weights
        self.optimizer.step()
        scale = len(batch.y) if self.cfg.loss_reduction == "sum" else 1
        per_example = loss.detach() / scale
        self.epoch_loss[0] += float(per_example)
        self.epoch_loss[1] += 1
        return {"loss": per_example}

    def end_task(self, task: Task) -> None:
        if task.id > 0:
            while self.phase != "split":  # a very short budget may end before the split
                order = [p for p, _ in self.PHASES]
                self._leave(self.phase)
                self._enter(order[order.index(self.phase) + 1])
            self._split(task.id)
        super().end_task(task)
        self.grad_masks = None
        self.phase = "initial"

    # -- the three DEN operations ----------------------------------------------------------
    def _nonzero(self, w: torch.Tensor) -> torch.Tensor:
        return w.detach().abs() > self.cfg.zero_threshold

    def _select_subnetwork(self, t: int) -> list[torch.Tensor]:
        """Gradient masks of S: units reachable from task t's non-zero output weights."""
        net = self.net
        head_w = self.task_module(t).weight  # (classes, units_last)
        selected = self._nonzero(head_w).any(0) & net.active(net.num_layers - 1, t)
        masks: list[torch.Tensor] = [torch.empty(0)] * net.num_layers
        for layer in reversed(range(net.num_layers)):
            w = net.weights[layer]
            below = (net.active(layer - 1, t) if layer else torch.ones(w.shape[1], dtype=torch.bool,
                                                                       device=w.device))
            if layer == net.num_conv:  # FC input columns come in blocks of h * w per channel
                below_cols = below.repeat_interleave(net.spatial)
            else:
                below_cols = below
            rows = selected.float()[:, None]
            cols = below_cols.float()[None, :]
            mask = rows * cols
            masks[layer] = mask.view(mask.shape + (1,) * (w.dim() - 2)).expand_as(w).clone()
            # units below with a non-zero weight into a selected unit are selected too
            reach = (self._nonzero(w) & (mask.view(mask.shape + (1,) * (w.dim() - 2)) > 0))
            reach = reach.flatten(2).any(2) if w.dim() > 2 else reach
            if layer == net.num_conv:
                reach = reach.view(w.shape[0], -1, net.spatial).any(2)
            if layer:
                selected = reach.any(0) & net.active(layer - 1, t)
        return masks

    def _expand(self, t: int) -> list[torch.Tensor]:
        """Add ``expansion`` units to every hidden layer; masks that train only new weights."""
        net, k = self.net, self.expansion
        added_below = 0
        for layer in range(net.num_layers):
            w, b = net.weights[layer], net.biases[layer]
            extra_in = net.expand_input(layer, added_below) if layer else 0
            if extra_in:  # columns for the new units below
                w = torch.cat([w.detach(), _trunc((w.shape[0], extra_in, *w.shape[2:]))], 1)
            w = torch.cat([w.detach(), _trunc((k, *w.shape[1:]))], 0)
            net.weights[layer] = nn.Parameter(w.to(self.device))
            net.biases[layer] = nn.Parameter(torch.cat([b.detach(), torch.full((k,), 0.2,
                                                        device=self.device)]))
            self._grow_stamps(layer, k, t)
            added_below = k
        self._grow_heads(k)
        masks = []
        for layer in range(net.num_layers):
            new_rows = (net.born(layer) == t).float()
            new_cols = (net.born(layer - 1) == t).float() if layer else torch.zeros(
                net.weights[0].shape[1], device=self.device)
            if layer == net.num_conv:
                new_cols = new_cols.repeat_interleave(net.spatial)
            m = torch.maximum(new_rows[:, None], new_cols[None, :])  # into or out of new units
            w = net.weights[layer]
            masks.append(m.view(m.shape + (1,) * (w.dim() - 2)).expand_as(w).clone())
        return masks

    def _grow_stamps(self, layer: int, count: int, t: int) -> None:
        net = self.net
        born = torch.cat([net.born(layer), torch.full((count,), t, device=self.device)])
        retired = torch.cat([net.retired(layer), torch.full((count,), NEVER, device=self.device)])
        setattr(net, f"born{layer}", born)
        setattr(net, f"retired{layer}", retired)

    def _grow_heads(self, count: int) -> None:
        """Every output layer reads the last hidden layer: pad with zero weights."""
        for key, head in self._heads():
            pad = torch.zeros(head.weight.shape[0], count, device=self.device)
            new = nn.Linear(head.in_features + count, head.out_features).to(self.device)
            with torch.no_grad():
                new.weight.copy_(torch.cat([head.weight, pad], 1))
                new.bias.copy_(head.bias)
            self.tasks[key] = new

    def _keep_units(self, layer: int, keep: torch.Tensor) -> None:
        """Drop the units of ``layer`` where ``keep`` is False (and their outgoing columns)."""
        net = self.net
        idx = keep.nonzero().flatten()
        net.weights[layer] = nn.Parameter(net.weights[layer].detach()[idx])
        net.biases[layer] = nn.Parameter(net.biases[layer].detach()[idx])
        for name in ("born", "retired"):
            setattr(net, f"{name}{layer}", getattr(net, f"{name}{layer}")[idx])
        if layer + 1 < net.num_layers:
            cols = keep.repeat_interleave(net.spatial) if layer + 1 == net.num_conv else keep
            w = net.weights[layer + 1].detach()
            net.weights[layer + 1] = nn.Parameter(w[:, cols.nonzero().flatten()])
        else:
            for key, head in self._heads():
                new = nn.Linear(int(keep.sum()), head.out_features).to(self.device)
                with torch.no_grad():
                    new.weight.copy_(head.weight[:, idx])
                    new.bias.copy_(head.bias)
                self.tasks[key] = new

    def _prune_new_units(self, t: int) -> None:
        """Remove this task's new units whose incoming weights are almost all zero."""
        net = self.net
        for layer in range(net.num_layers):
            w = net.weights[layer].detach().flatten(1)
            zero_frac = (w.abs() <= self.cfg.zero_threshold).float().mean(1)
            useless = (net.born(layer) == t) & (zero_frac >= self.cfg.useless_fraction)
            if useless.any():
                self._keep_units(layer, ~useless)

    def _split(self, t: int) -> None:
        """Duplicate units whose incoming weights drifted more than ``split_threshold``."""
        net = self.net
        for layer in range(net.num_layers):
            old = self.before[layer]
            w = net.weights[layer].detach()
            n_old, c_old = old.shape[0], old.shape[1]
            drift = (w[:n_old, :c_old] - old).flatten(1).norm(dim=1)
            used_before = (net.born(layer)[:n_old] < t) & (net.retired(layer)[:n_old] >= t)
            split = (drift > self.cfg.split_threshold) & used_before
            n = int(split.sum())
            if not n:
                continue
            idx = split.nonzero().flatten()
            copies = w[idx].clone()  # the drifted weights serve task t onwards
            restored = w.clone()
            restored[idx, :c_old] = old[idx]  # the originals go back to their old weights
            net.weights[layer] = nn.Parameter(torch.cat([restored, copies], 0))
            net.biases[layer] = nn.Parameter(torch.cat([net.biases[layer].detach(),
                                                        net.biases[layer].detach()[idx]]))
            net.retired(layer)[idx] = t
            self._grow_stamps(layer, n, t)
            # the copies feed the layer above (or the heads) like their originals
            if layer + 1 < net.num_layers:
                above = net.weights[layer + 1].detach()
                if layer + 1 == net.num_conv:
                    cols = above.view(above.shape[0], -1, net.spatial)[:, idx].flatten(1)
                else:
                    cols = above[:, idx]
                net.weights[layer + 1] = nn.Parameter(torch.cat([above, cols], 1))
            else:
                for key, head in self._heads():
                    new = nn.Linear(head.in_features + n, head.out_features).to(self.device)
                    with torch.no_grad():
                        new.weight.copy_(torch.cat([head.weight, head.weight[:, idx]], 1))
                        new.bias.copy_(head.bias)
                    self.tasks[key] = new

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        net = self.net
        state["den"] = {
            "shapes": [list(w.shape) for w in net.weights],
            "heads": [[int(k), self.task_module(int(k)).in_features] for k in self.tasks],
            "phase": self.phase, "task_epoch": self.task_epoch,
            "before": list(self.before), "epoch_loss": list(self.epoch_loss),
            "grad_masks": list(self.grad_masks) if self.grad_masks is not None else None,
        }
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        den, net = state["den"], self.net
        for layer, shape in enumerate(den["shapes"]):  # grow to the saved shapes first
            net.weights[layer] = nn.Parameter(torch.zeros(shape, device=self.device))
            net.biases[layer] = nn.Parameter(torch.zeros(shape[0], device=self.device))
            for name in ("born", "retired"):
                setattr(net, f"{name}{layer}", torch.zeros(shape[0], dtype=torch.long,
                                                           device=self.device))
        for t, n in state["num_classes"]:
            if t not in self.num_classes:
                self._add_task(int(t), int(n))
        for t, fan_in in den["heads"]:
            head = self.task_module(t)
            self.tasks[str(t)] = nn.Linear(fan_in, head.out_features).to(self.device)
        self.model.load_state_dict(state["model"])
        self.epoch, self.current_task = int(state["epoch"]), state["current_task"]
        self.phase, self.task_epoch = den["phase"], int(den["task_epoch"])
        self.before = [b.to(self.device) for b in den["before"]]
        self.epoch_loss = list(den["epoch_loss"])
        self.grad_masks = ([m.to(self.device) for m in den["grad_masks"]]
                           if den["grad_masks"] is not None else None)
        self.optimizer = None
        if self.current_task is not None:
            self._enter_optimizer_only()
            assert self.optimizer is not None
            self.optimizer.load_state_dict(state["optimizer"])

    def _enter_optimizer_only(self) -> None:
        """Rebuild the current phase's optimizer (same parameter list as ``_enter``)."""
        t, net = self.current_task, self.net
        assert t is not None
        if self.phase == "head":
            params = list(self.task_module(t).parameters())
        elif self.phase in ("select", "expand"):
            params = [*net.weights, *net.biases, *self.task_module(t).parameters()]
        else:
            params = self.trainable_parameters(t)
        lr = self.cfg.epoch_lr(self.epoch)
        self.optimizer = make_optimizer(self.cfg.optimizer, params, lr)
