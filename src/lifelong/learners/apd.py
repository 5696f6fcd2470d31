"""APD-Net: additive parameter decomposition (Yoon et al., ICLR 2020), the strongest
selective-sharing comparator of LASEM's Table 1 (lambda1 = 4e-4, lambda2 = 100, its
appendix A).

Every conv and hidden FC layer's weights for task t are decomposed as

    theta_t = sigma * sigmoid(v_t) + tau_t

with shared base parameters sigma, a task-adaptive mask sigmoid(v_t) over the layer's output
units, and task-adaptive parameters tau_t kept sparse by an L1 penalty. Learning task t
minimises

    CE(theta_t) + lambda1 * sum_{i<=t} ||tau_i||_1
                + lambda2 * sum_{i<t} ||theta_i* - (sigma * sigmoid(v_i) + tau_i)||^2

where theta_i* are task i's parameters when it finished: sigma may drift, and the earlier
tasks' tau_i are retrained to compensate ("retroactive" updates), so earlier tasks keep
their parameters while the shared base keeps learning. At the end of a task, entries of tau_t
below ``prune_below`` in magnitude are set to zero (parameter counts count non-zero tau).
The paper's hierarchical knowledge consolidation (clustering tau's) is not implemented.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from lifelong.config import check
from lifelong.learners.base import LEARNERS, LearnerContext, NetLearnerConfig
from lifelong.learners.tasknet import TaskNetLearner
from lifelong.nets.convnet import same_max_pool
from lifelong.tasks import Batch, Task

__all__ = ["APD", "APDConfig"]


@dataclass
class APDConfig(NetLearnerConfig):
    lambda1: float = 4e-4  # L1 sparsity of the task-adaptive parameters tau
    lambda2: float = 100.0  # retroactive L2 keeping earlier tasks' parameters
    prune_below: float = 1e-4  # |tau| below this is zeroed when a task ends
    loss_reduction: Literal["sum", "mean"] = "mean"  # APD's objective averages the CE

    def validate(self) -> None:
        super().validate()
        check(min(self.lambda1, self.lambda2, self.prune_below) >= 0,
              "lambda1, lambda2 and prune_below must be >= 0")


def _trunc(shape: tuple[int, ...]) -> nn.Parameter:
    return nn.Parameter(nn.init.trunc_normal_(torch.empty(shape), std=0.05, a=-0.1, b=0.1))


class _TaskParams(Protocol):
    """What :meth:`APD.build_task` puts on a task's module (for typing)."""

    v: nn.ParameterList
    tau: nn.ParameterList
    bias: nn.ParameterList
    head: nn.Linear

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...


@LEARNERS.register("apd")
class APD(TaskNetLearner[APDConfig]):
    """APD-Net: shared base weights with task masks and sparse task-adaptive additions."""

    Config = APDConfig

    def __init__(self, cfg: APDConfig, ctx: LearnerContext) -> None:
        spec = ctx.net
        c, h, w = ctx.input_shape
        self.shapes: list[tuple[int, ...]] = []
        fan_in = c
        for ch, k in zip(spec.channels, spec.kernels, strict=True):
            self.shapes.append((ch, fan_in, k, k))
            fan_in = ch
        fan_in = spec.feature_size(ctx.input_shape)
        for units in spec.fc:
            self.shapes.append((units, fan_in))
            fan_in = units
        self.num_conv = len(spec.channels)
        self.head_in = fan_in
        self.stored: dict[int, list[torch.Tensor]] = {}  # theta_i* of finished tasks
        super().__init__(cfg, ctx)

    def build_shared(self) -> nn.Module:
        return nn.ParameterList(_trunc(s) for s in self.shapes)  # sigma, one per layer

    def build_task(self, task_id: int, num_classes: int) -> nn.Module:
        module = nn.Module()
        # v_t starts at 0 (mask 0.5 everywhere); tau_t at 0: the task begins from the base.
        module.v = nn.ParameterList(nn.Parameter(torch.zeros(s[0])) for s in self.shapes)
        module.tau = nn.ParameterList(nn.Parameter(torch.zeros(s)) for s in self.shapes)
        module.bias = nn.ParameterList(nn.Parameter(torch.full((s[0],), 0.2))
                                       for s in self.shapes)
        head = nn.Linear(self.head_in, num_classes)
        nn.init.trunc_normal_(head.weight, std=0.05, a=-0.1, b=0.1)
        nn.init.constant_(head.bias, 0.2)
        module.head = head
        return module

    @property
    def sigma(self) -> nn.ParameterList:
        return cast(nn.ParameterList, self.model["shared"])

    def _task(self, task_id: int) -> _TaskParams:
        return cast(_TaskParams, self.task_module(task_id))

    def weights(self, task_id: int) -> list[torch.Tensor]:
        """theta_t = sigma * sigmoid(v_t) + tau_t for every layer."""
        m = self._task(task_id)
        out = []
        for sigma, v, tau in zip(self.sigma, m.v, m.tau, strict=True):
            mask = torch.sigmoid(v).view(-1, *([1] * (sigma.dim() - 1)))
            out.append(sigma * mask + tau)
        return out

    def forward(self, x: torch.Tensor, task_id: int) -> torch.Tensor:
        m = self._task(task_id)
        spec = self.ctx.net
        for layer, (w, b) in enumerate(zip(self.weights(task_id), m.bias, strict=True)):
            if layer < self.num_conv:
                x = F.relu(F.conv2d(x, w, b, padding=w.shape[-1] // 2))
                x = same_max_pool(x, spec.pools[layer])
                if layer == self.num_conv - 1:
                    x = F.dropout(x.flatten(1), spec.dropout, self.model.training)
            else:
                if layer == 0:
                    x = F.dropout(x.flatten(1), spec.dropout, self.model.training)
                x = F.relu(F.linear(x, w, b))
        return m.head(x)

    def trainable_parameters(self, task_id: int) -> list[nn.Parameter]:
        """sigma, every task's tau (retroactive), and task t's mask, biases and head."""
        current = self._task(task_id)
        taus = [p for t in self.num_classes for p in self._task(t).tau]
        return [*self.sigma, *taus, *current.v, *current.bias,
                *current.head.parameters()]

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        loss = self.task_loss(logits, batch.y)
        cfg = self.cfg
        if cfg.lambda1 > 0:
            loss = loss + cfg.lambda1 * sum(p.abs().sum() for t in self.num_classes
                                            for p in self._task(t).tau)
        earlier = {t: olds for t, olds in self.stored.items() if t != batch.task_id}
        if cfg.lambda2 > 0 and earlier:
            drift = sum((now - old).square().sum() for t, olds in earlier.items()
                        for now, old in zip(self.weights(t), olds, strict=True))
            loss = loss + cfg.lambda2 * drift
        return loss

    def end_task(self, task: Task) -> None:
        with torch.no_grad():
            for tau in self._task(task.id).tau:
                tau[tau.abs() < self.cfg.prune_below] = 0.0
            self.stored[task.id] = [w.detach().clone() for w in self.weights(task.id)]
        super().end_task(task)

    def parameter_count(self) -> int:
        """sigma, masks, biases, heads and the non-zero entries of the sparse tau's."""
        dense = sum(p.numel() for name, p in self.model.named_parameters() if ".tau." not in name)
        sparse = sum(int((p != 0).sum()) for name, p in self.model.named_parameters()
                     if ".tau." in name)
        return dense + sparse

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["stored"] = [[t, ws] for t, ws in self.stored.items()]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.stored = {int(t): [w.to(self.device) for w in ws] for t, ws in state["stored"]}
