"""STL: single-task learning, an independent network per task (no transfer, no forgetting)."""

from __future__ import annotations

import torch
import torch.nn as nn

from lifelong.learners.base import LEARNERS, NetLearnerConfig
from lifelong.learners.tasknet import TaskNetLearner
from lifelong.nets import ConvTrunk, FCHead

__all__ = ["STL"]


@LEARNERS.register("stl")
class STL(TaskNetLearner[NetLearnerConfig]):
    """Single-task learning: a separate conv + FC network for every task."""

    def build_task(self, task_id: int, num_classes: int) -> nn.Module:
        spec = self.ctx.net
        trunk = ConvTrunk(spec, self.ctx.input_shape)
        return nn.Sequential(trunk, FCHead(trunk.out_features, spec.fc, num_classes, spec.dropout))

    def forward(self, x: torch.Tensor, task_id: int) -> torch.Tensor:
        return self.task_module(task_id)(x)  # (B, C_task)
