"""DARTS-style soft selection of transfer per layer (Liu et al. 2019, first-order), the
comparator of LASEM section 4.2.

While a task trains, each conv layer's output is a softmax mixture of its task-specific and
its transfer-based form, weighted by the task's architecture logits alpha (d x 2, zeros at
the start). As in first-order DARTS, each mini-batch first takes an architecture step on
alpha with the weights fixed, then a weight step on the training mini-batch with alpha
fixed. At the end of the task each layer keeps its larger-weighted form, the other is
dropped, and the shared parameters of the layers it does not transfer are restored to their
pre-task values (the LASEM code's ``cnn_darts_model.py`` convert_tfVar_to_npVar).

``search=code`` (default), as the LASEM code (``cnn_darts_model.py``, ``utils_nn.py``
new_darts_conv_layer): the architecture step is the run's optimizer (RMSProp) at the weights'
learning rate on the *training* mini-batch, and the two forms are mixed after the ReLU and
before the max-pool. ``search=paper``, as the LASEM paper's text ("the hyper-parameter
settings described in the original paper", Liu et al. 2019): Adam(``arch_lr`` 3e-4, betas
(0.5, 0.999), weight decay ``arch_weight_decay`` 1e-3) on a *validation* mini-batch, and the
two forms are mixed after pooling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from lifelong.config import check
from lifelong.learners.base import LEARNERS
from lifelong.learners.optim import make_optimizer
from lifelong.learners.selective import (
    DFCNNFields,
    HPSFields,
    SelectiveConfig,
    SelectiveLearner,
    TFFields,
)
from lifelong.learners.transfer import Bits
from lifelong.nets.convnet import conv_block, same_max_pool
from lifelong.tasks import Batch, Task

__all__ = ["DARTSHPS", "DARTSTF", "DARTSDFCNN", "DARTS", "DARTSFields"]


@dataclass
class DARTSFields(SelectiveConfig):
    # named search, not variant: DF-CNN's config has a variant (its filter generator)
    search: Literal["code", "paper"] = "code"  # see the module docstring
    arch_lr: float = 3e-4  # search=paper: the DARTS paper's architecture learning rate
    arch_weight_decay: float = 1e-3  # search=paper: the DARTS paper's weight decay

    def validate(self) -> None:
        super().validate()
        check(self.arch_lr > 0 and self.arch_weight_decay >= 0,
              "arch_lr must be > 0 and arch_weight_decay >= 0")


class Alpha(nn.Module):
    """A task's architecture logits: (layers, 2) for (task-specific, transfer-based)."""

    def __init__(self, num_layers: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(num_layers, 2))


class DARTS(SelectiveLearner):
    """DARTS: a softmax mixture of transfer-based and task-specific forms per layer."""

    def build_task(self, task_id: int, num_classes: int) -> nn.Module:
        module = cast(nn.ModuleDict, super().build_task(task_id, num_classes))
        if task_id not in self.task_configs:
            module["alpha"] = Alpha(self.num_layers)
        return module

    def trainable_parameters(self, task_id: int) -> list[nn.Parameter]:
        alpha = self._alpha(task_id)
        skip = {id(alpha)} if alpha is not None else set()
        return [p for p in super().trainable_parameters(task_id) if id(p) not in skip]

    def _alpha(self, task_id: int) -> nn.Parameter | None:
        module = cast(nn.ModuleDict, self.task_module(task_id))
        return cast(Alpha, module["alpha"]).logits if "alpha" in module else None

    def current_config(self, task_id: int) -> Bits:
        if task_id in self.task_configs:
            return self.task_configs[task_id]
        alpha = self._alpha(task_id)
        assert alpha is not None  # the task is still searching
        return tuple(int(i) for i in alpha.argmax(1).tolist())

    def forward(self, x: torch.Tensor, task_id: int) -> torch.Tensor:
        alpha = self._alpha(task_id)
        if alpha is None:
            return super().forward(x, task_id)
        weights = alpha.softmax(1)  # (layers, 2)
        for layer, pool in enumerate(self.ctx.net.pools):
            filters = [self.layer_filter(layer, task_id, bit) for bit in (0, 1)]
            if self.cfg.search == "code":  # mix after the ReLU, then pool
                outs = [F.relu(F.conv2d(x, w, b, padding=w.shape[-1] // 2)) for w, b in filters]
                x = same_max_pool(weights[layer, 0] * outs[0] + weights[layer, 1] * outs[1],
                                  pool)
            else:  # mix the pooled outputs
                outs = [conv_block(x, w, b, pool) for w, b in filters]
                x = weights[layer, 0] * outs[0] + weights[layer, 1] * outs[1]
        return self.task_head(task_id)(x.flatten(1))

    def begin_task(self, task: Task) -> None:
        resumed = self.current_task == task.id and self.optimizer is not None
        super().begin_task(task)
        self._val = task.val
        if not resumed:
            self.arch_optimizer = self._make_arch_optimizer(task.id)
            self.arch_steps = 0

    def _make_arch_optimizer(self, task_id: int) -> torch.optim.Optimizer:
        alpha = self._alpha(task_id)
        assert alpha is not None  # the task is still searching
        if self.cfg.search == "code":  # the code's second RMSProp, same lr schedule
            return make_optimizer(self.cfg.optimizer, [alpha],
                                  self.cfg.epoch_lr(self.epoch))
        return torch.optim.Adam([alpha], lr=self.cfg.arch_lr, betas=(0.5, 0.999),
                                weight_decay=self.cfg.arch_weight_decay)

    def begin_epoch(self, epoch: int) -> None:
        super().begin_epoch(epoch)
        if self.cfg.search == "code" and getattr(self, "arch_optimizer", None) is not None:
            for group in self.arch_optimizer.param_groups:
                group["lr"] = self.cfg.epoch_lr(epoch)

    def observe(self, batch: Batch) -> dict[str, torch.Tensor]:
        t = batch.task_id
        if self._alpha(t) is None:
            return super().observe(batch)
        if self.cfg.search == "code":  # architecture step on the training mini-batch
            xv, yv = batch.x, batch.y
        else:
            # Architecture step on a validation mini-batch; the batch depends only on the
            # step number, so a resumed run draws the same ones.
            gen = torch.Generator().manual_seed(1_000_003 * (t + 1) + self.arch_steps)
            idx = torch.randperm(len(self._val), generator=gen)[: len(batch.y)].numpy()
            xv, yv = self._val.images(idx).to(self.device), self._val.labels[idx].to(self.device)
        self.model.train()
        self.arch_optimizer.zero_grad(set_to_none=True)
        self.task_loss(self.forward(xv, t), yv).backward()
        self.arch_optimizer.step()
        self.arch_steps += 1
        return super().observe(batch)  # weight step; alpha is not in this optimizer

    def end_task(self, task: Task) -> None:
        if self._alpha(task.id) is not None:
            cfg = self.current_config(task.id)
            del cast(nn.ModuleDict, self.task_module(task.id))["alpha"]
            self.fix_config(task.id, cfg)
        super().end_task(task)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        searching = self.current_task is not None and self._alpha(self.current_task) is not None
        state["darts"] = {"arch_steps": getattr(self, "arch_steps", 0),
                          "arch_optimizer": self.arch_optimizer.state_dict() if searching else None}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        d = state["darts"]
        self.arch_steps = int(d["arch_steps"])
        if d["arch_optimizer"] is not None:
            assert self.current_task is not None
            self.arch_optimizer = self._make_arch_optimizer(self.current_task)
            self.arch_optimizer.load_state_dict(d["arch_optimizer"])


# -- DARTS on each base learner of the LASEM paper: named, registered classes --
@dataclass
class DARTSHPSConfig(DARTSFields, HPSFields):
    """Settings of DARTS on hps: the method's fields and the base's."""


@LEARNERS.register("darts-hps")
class DARTSHPS(DARTS):
    """DARTS selection on HPS.

    The method is :class:`DARTS`; the layers of base ``hps`` are built by
    :class:`~lifelong.learners.selective.SelectiveLearner`."""

    kind = "hps"
    Config = DARTSHPSConfig
    cfg: DARTSHPSConfig


@dataclass
class DARTSTFConfig(DARTSFields, TFFields):
    """Settings of DARTS on tf: the method's fields and the base's."""


@LEARNERS.register("darts-tf")
class DARTSTF(DARTS):
    """DARTS selection on TF.

    The method is :class:`DARTS`; the layers of base ``tf`` are built by
    :class:`~lifelong.learners.selective.SelectiveLearner`."""

    kind = "tf"
    Config = DARTSTFConfig
    cfg: DARTSTFConfig


@dataclass
class DARTSDFCNNConfig(DARTSFields, DFCNNFields):
    """Settings of DARTS on dfcnn: the method's fields and the base's."""


@LEARNERS.register("darts-dfcnn")
class DARTSDFCNN(DARTS):
    """DARTS selection on DF-CNN.

    The method is :class:`DARTS`; the layers of base ``dfcnn`` are built by
    :class:`~lifelong.learners.selective.SelectiveLearner`."""

    kind = "dfcnn"
    Config = DARTSDFCNNConfig
    cfg: DARTSDFCNNConfig
