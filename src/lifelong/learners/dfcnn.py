"""DF-CNN: task CNNs whose filters are generated from shared per-layer knowledge bases
(Lee, Stokes & Eaton, IJCAI 2019, Algorithm 1).

    L^(1..d) <- randInit                      # shared knowledge bases: __init__
    for each new task t:                      # begin_task
        (V_t, U_t)^(1..d) <- randInit         #   new filter generators + FC layers
        for each mini-batch:                  # observe
            W_t^(l) = tensorDot(deconv(L^(l), V_t^(l)), U_t^(l))
            update L, V_t, U_t (and task t's FC layers) by gradient
    # earlier tasks' V, U and FC layers are never updated again, but their filters are
    # regenerated from the current L: changes to L are reverse transfer (or forgetting).

Variants (the paper's online appendix): ``variant=direct`` (deconvolution straight to the
filters), ``variant=tc2`` (two tensor contractions), ``size=reduced`` (about 2.8M parameters
for 10 CIFAR-100 tasks). ``deconv_activation=relu`` puts a ReLU after the deconvolution (the
default of the DF-CNN code's layer function, which its training script overrides with none);
``kb_l2`` / ``ts_l2`` are the LASEM code's L2 penalties (the DF-CNN code has none).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

import torch
import torch.nn as nn

from lifelong.config import check
from lifelong.learners.base import LEARNERS, LearnerContext, NetLearnerConfig
from lifelong.learners.tasknet import TaskNetLearner
from lifelong.nets import FCHead
from lifelong.nets.convnet import conv_block
from lifelong.nets.dfcnn import KnowledgeBase, dfcnn_sizes, make_generator
from lifelong.tasks import Batch

__all__ = ["DFCNN", "DFCNNConfig", "DFCNNDirect", "DFCNNTC2", "DFCNNReduced"]


@dataclass
class DFCNNConfig(NetLearnerConfig):
    variant: Literal["dfcnn", "direct", "tc2"] = "dfcnn"
    size: Literal["paper", "reduced"] = "paper"
    # none: what the DF-CNN code's train.py and the LASEM code build; relu: the default of the
    # DF-CNN code's layer function, which train.py overrides (see docs/learners.md)
    deconv_activation: Literal["relu", "none"] = "none"
    kb_l2: float = 0.0  # L2 weight on the knowledge bases (LASEM code grid: 1e-7, 1e-9)
    ts_l2: float = 0.0  # L2 weight on the current task's generator (LASEM: 1e-7 ... 1e-11)

    def validate(self) -> None:
        super().validate()
        check(self.kb_l2 >= 0 and self.ts_l2 >= 0, "kb_l2 and ts_l2 must be >= 0")


@LEARNERS.register("dfcnn")
class DFCNN(TaskNetLearner[DFCNNConfig]):
    """DF-CNN: conv filters generated from shared knowledge bases by task-specific deconvolution
    and tensor contraction."""

    Config = DFCNNConfig

    def __init__(self, cfg: DFCNNConfig, ctx: LearnerContext) -> None:
        spec = ctx.net
        self.sizes = dfcnn_sizes(ctx.net_name, spec, ctx.input_shape[0], cfg.variant,
                                 reduced=cfg.size == "reduced")
        self.channels = [ctx.input_shape[0], *spec.channels]
        super().__init__(cfg, ctx)

    def build_shared(self) -> nn.Module:
        s = self.sizes
        return nn.ModuleList(KnowledgeBase(d, c, k) for d, c, k in
                             zip(s.depth, s.kb_channels, s.kb_size, strict=True))

    def build_task(self, task_id: int, num_classes: int) -> nn.Module:
        s, spec = self.sizes, self.ctx.net
        generators = nn.ModuleList(
            make_generator(
                self.cfg.variant,
                c_in,
                c_out,
                kb_c,
                ts_c,
                depth,
                activation=self.cfg.deconv_activation == "relu",
            )
            for c_in, c_out, kb_c, ts_c, depth in zip(
                self.channels[:-1],
                self.channels[1:],
                s.kb_channels,
                s.ts_channels,
                s.depth,
                strict=True,
            )
        )
        features = spec.feature_size(self.ctx.input_shape)
        head = FCHead(features, spec.fc, num_classes, spec.dropout)
        return nn.ModuleDict({"generators": generators, "head": head})

    def filters(self, task_id: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Task ``task_id``'s conv filters and biases, generated from the current KBs."""
        gens = self.generators(task_id)
        return [g(kb()) for g, kb in zip(gens, self.kbs(), strict=True)]

    def kbs(self) -> list[KnowledgeBase]:
        return [cast(KnowledgeBase, m) for m in cast(nn.ModuleList, self.model["shared"])]

    def generators(self, task_id: int) -> nn.ModuleList:
        return cast(nn.ModuleList, cast(nn.ModuleDict, self.task_module(task_id))["generators"])

    def forward(self, x: torch.Tensor, task_id: int) -> torch.Tensor:
        for (w, b), pool in zip(self.filters(task_id), self.ctx.net.pools, strict=True):
            x = conv_block(x, w, b, pool)  # (B, C_l, H_l, W_l)
        head = cast(nn.ModuleDict, self.task_module(task_id))["head"]
        return head(x.flatten(1))  # (B, C_task)

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        loss = self.task_loss(logits, batch.y)
        if self.cfg.kb_l2 > 0:
            loss = loss + self.cfg.kb_l2 * sum(kb.L.square().sum() for kb in self.kbs())
        if self.cfg.ts_l2 > 0:
            gens = self.generators(batch.task_id)
            loss = loss + self.cfg.ts_l2 * sum(p.square().sum() for p in gens.parameters())
        return loss


@dataclass
class DFCNNDirectConfig(DFCNNConfig):
    variant: Literal["dfcnn", "direct", "tc2"] = "direct"


@LEARNERS.register("dfcnn-direct")
class DFCNNDirect(DFCNN):
    """DF-CNN.direct ablation: the deconvolution maps the KB straight to the filters."""

    Config = DFCNNDirectConfig
    cfg: DFCNNDirectConfig


@dataclass
class DFCNNTC2Config(DFCNNConfig):
    variant: Literal["dfcnn", "direct", "tc2"] = "tc2"


@LEARNERS.register("dfcnn-tc2")
class DFCNNTC2(DFCNN):
    """DF-CNN.tc2 ablation: stacked KB maps and two tensor contractions."""

    Config = DFCNNTC2Config
    cfg: DFCNNTC2Config


@dataclass
class DFCNNReducedConfig(DFCNNConfig):
    size: Literal["paper", "reduced"] = "reduced"


@LEARNERS.register("dfcnn-reduced")
class DFCNNReduced(DFCNN):
    """Reduced-size DF-CNN: about 2.8M parameters for 10 CIFAR-100 tasks."""

    Config = DFCNNReducedConfig
    cfg: DFCNNReducedConfig
