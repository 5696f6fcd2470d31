"""HPS: hard parameter sharing (Caruana 1993), as the DF-CNN paper sets it up: every conv
layer shared by all tasks, every fully connected layer task-specific."""

from __future__ import annotations

from typing import cast

import torch.nn as nn

from lifelong.learners.base import LEARNERS, NetLearnerConfig
from lifelong.learners.tasknet import TaskNetLearner
from lifelong.nets import ConvTrunk, FCHead

__all__ = ["HPS"]


@LEARNERS.register("hps")
class HPS(TaskNetLearner[NetLearnerConfig]):
    """Hard parameter sharing: shared conv layers, task-specific FC layers."""

    def build_shared(self) -> nn.Module:
        return ConvTrunk(self.ctx.net, self.ctx.input_shape)  # (B, C, H, W) -> (B, F)

    def build_task(self, task_id: int, num_classes: int) -> nn.Module:
        spec = self.ctx.net
        return FCHead(self.model_features, spec.fc, num_classes, spec.dropout)

    @property
    def model_features(self) -> int:
        return cast(ConvTrunk, self.model["shared"]).out_features
