"""ProgNN: progressive neural networks (Rusu et al. 2016) for CNNs, as the DF-CNN code
builds them (``utils_nn.py::new_progressive_cnn_layer``).

Each task adds a column (a full conv + FC network). Conv layer l >= 1 of column t also
receives, from every earlier column j, an adapter of j's layer l-1 output h_j:

    a_j = U_j * relu(V_j * (alpha_j h_j) + b_j)   # V: 1x1 conv to n_ic channels, U: k x k conv

added to the column's pre-activation. n_ic = c_in / (dim_reduction * (t + 1)) (at least 1):
the "dimension reduction by 2" of the paper, divided among the columns as in the code.
Earlier columns are frozen, so there is no forgetting; FC layers get no laterals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from lifelong.config import check
from lifelong.learners.base import LEARNERS, NetLearnerConfig
from lifelong.learners.tasknet import TaskNetLearner
from lifelong.nets import FCHead
from lifelong.nets.convnet import same_max_pool
from lifelong.nets.init import init_tf_

__all__ = ["ProgressiveNets", "ProgNNConfig"]


@dataclass
class ProgNNConfig(NetLearnerConfig):
    dim_reduction: float = 2.0  # DF-CNN paper 4.1, following Rusu et al. section 2

    def validate(self) -> None:
        super().validate()
        check(self.dim_reduction > 0, "dim_reduction must be > 0")


class Adapter(nn.Module):
    """Lateral connection from one earlier column's layer l-1 output into layer l."""

    def __init__(self, c_in: int, reduced: int, c_out: int, k: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.empty(1))
        nn.init.trunc_normal_(self.alpha, std=0.05, a=-0.1, b=0.1)  # the code's new_weight([1])
        self.V = nn.Conv2d(c_in, reduced, 1)
        self.U = nn.Conv2d(reduced, c_out, k, padding=k // 2, bias=False)
        init_tf_(self.V)
        init_tf_(self.U)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.U(F.relu(self.V(self.alpha * h)))


class Column(nn.Module):
    """One task's network: conv layers, its adapters from earlier columns and its FC head."""

    def __init__(self, spec, input_shape: tuple[int, int, int], num_classes: int,
                 num_previous: int, dim_reduction: float) -> None:
        super().__init__()
        chans = [input_shape[0], *spec.channels]
        self.convs = nn.ModuleList(
            nn.Conv2d(a, b, k, padding=k // 2)
            for a, b, k in zip(chans[:-1], chans[1:], spec.kernels, strict=True)
        )
        init_tf_(self.convs)
        self.laterals = nn.ModuleList()
        for layer, (c_in, c_out, k) in enumerate(
            zip(chans[:-1], chans[1:], spec.kernels, strict=True)
        ):
            reduced = max(1, int(c_in / (dim_reduction * (num_previous + 1))))
            self.laterals.append(
                nn.ModuleList(
                    Adapter(c_in, reduced, c_out, k) for _ in range(num_previous if layer else 0)
                )
            )
        self.head = FCHead(spec.feature_size(input_shape), spec.fc, num_classes, spec.dropout)


@LEARNERS.register("prognn")
class ProgressiveNets(TaskNetLearner[ProgNNConfig]):
    """Progressive neural networks: a new column per task with lateral adapters from all
    earlier (frozen) columns."""

    Config = ProgNNConfig

    def build_task(self, task_id: int, num_classes: int) -> nn.Module:
        return Column(
            self.ctx.net,
            self.ctx.input_shape,
            num_classes,
            len(self.num_classes),
            self.cfg.dim_reduction,
        )

    def trainable_parameters(self, task_id: int) -> list[nn.Parameter]:
        return list(self.task_module(task_id).parameters())  # earlier columns stay frozen

    def forward(self, x: torch.Tensor, task_id: int) -> torch.Tensor:
        columns = [cast(Column, self.task_module(j)) for j in range(task_id + 1)]
        pools = self.ctx.net.pools
        hs = [x] * len(columns)  # each column's current layer input
        for layer, pool in enumerate(pools):
            new = []
            for j, col in enumerate(columns):
                # Earlier columns are frozen: no graph through them while training task_id.
                with torch.set_grad_enabled(torch.is_grad_enabled() and j == task_id):
                    pre = col.convs[layer](hs[j])
                    for i, adapter in enumerate(cast(nn.ModuleList, col.laterals[layer])):
                        pre = pre + adapter(hs[i])
                    new.append(same_max_pool(F.relu(pre), pool))
            hs = new
        return columns[-1].head(hs[-1].flatten(1))
