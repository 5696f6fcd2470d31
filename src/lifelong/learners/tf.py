"""TF: tensor factorization across tasks, as the LASEM code's Bulat-style layer
(``utils/utils_nn.py::new_tensorfactored_conv_layer``; Bulat et al. 2020).

Per conv layer a shared core W0 (k x k x c_in x c_out) is mode-multiplied by four
task-specific square factor matrices:

    W_t = W0 x_1 U1_t x_2 U2_t x_3 U3_t x_4 U4_t
    U1, U2: (k, k), U3: (c_in, c_in), U4: (c_out, c_out)

plus a task-specific bias, with the orthogonality penalty sum_U ||U^T U - I||_F (Frobenius
norm, not squared) on the current task's factors. W0 keeps training on every task; earlier
tasks' factors and FC layers are frozen, so changes to W0 show up on earlier tasks as they do
for DF-CNN. Everything is Glorot-uniform initialised as in the code (the factors are not
identities).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
import torch.nn as nn

from lifelong.config import check
from lifelong.learners.base import LEARNERS, NetLearnerConfig
from lifelong.learners.tasknet import TaskNetLearner
from lifelong.nets import FCHead
from lifelong.nets.convnet import conv_block
from lifelong.nets.tf import Core, Factors
from lifelong.tasks import Batch

__all__ = ["TensorFactorization", "TFConfig"]


@dataclass
class TFConfig(NetLearnerConfig):
    # LASEM appendix A: chosen by grid search among 0.001, 0.005, 0.01, 0.05, 0.1.
    orthogonality: float = 0.01

    def validate(self) -> None:
        super().validate()
        check(self.orthogonality >= 0, "orthogonality must be >= 0")


@LEARNERS.register("tf")
class TensorFactorization(TaskNetLearner[TFConfig]):
    """Tensor factorization: a shared conv core per layer, mode-multiplied by task-specific
    factor matrices (Bulat-style, with an orthogonality penalty)."""

    Config = TFConfig

    def _layers(self) -> list[tuple[int, int, int]]:
        chans = [self.ctx.input_shape[0], *self.ctx.net.channels]
        return list(zip(chans[:-1], chans[1:], self.ctx.net.kernels, strict=True))

    def build_shared(self) -> nn.Module:
        return nn.ModuleList(Core(c_in, c_out, k) for c_in, c_out, k in self._layers())

    def build_task(self, task_id: int, num_classes: int) -> nn.Module:
        spec = self.ctx.net
        factors = nn.ModuleList(Factors(c_in, c_out, k) for c_in, c_out, k in self._layers())
        head = FCHead(spec.feature_size(self.ctx.input_shape), spec.fc, num_classes,
                      spec.dropout)
        return nn.ModuleDict({"factors": factors, "head": head})

    def cores(self) -> list[Core]:
        return [cast(Core, m) for m in cast(nn.ModuleList, self.model["shared"])]

    def factors(self, task_id: int) -> list[Factors]:
        task = cast(nn.ModuleDict, self.task_module(task_id))
        return [cast(Factors, m) for m in cast(nn.ModuleList, task["factors"])]

    def forward(self, x: torch.Tensor, task_id: int) -> torch.Tensor:
        task = cast(nn.ModuleDict, self.task_module(task_id))
        for core, f, pool in zip(
            self.cores(), self.factors(task_id), self.ctx.net.pools, strict=True
        ):
            x = conv_block(x, f.filters(core.W0), f.bias, pool)  # (B, C_l, H_l, W_l)
        return task["head"](x.flatten(1))

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        loss = self.task_loss(logits, batch.y)
        if self.cfg.orthogonality > 0:
            factors = self.factors(batch.task_id)
            loss = loss + self.cfg.orthogonality * sum(f.orthogonality() for f in factors)
        return loss
