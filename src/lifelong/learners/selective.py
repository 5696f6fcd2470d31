"""Networks whose conv layers can each be transfer-based or task-specific (LASEM section 3),
for the three base learners of the LASEM paper:

========  =============================================  ================================
base      transfer-based layer l of task t               task-specific layer l of task t
========  =============================================  ================================
hps       the shared conv layer                          the task's own conv layer
tf        shared core x task factor matrices (+ bias)    the task's own conv layer
dfcnn     generated from the shared KB by task t's        the task's own conv layer
          deconvolution and contraction
========  =============================================  ================================

A task that has not fixed its configuration yet holds both kinds of parameters for every
layer; once it has, the unused kind is dropped (so parameter counts are those of the chosen
configurations). :meth:`SelectiveLearner.forward_configs` evaluates many configurations on
one mini-batch sharing the computation of common prefixes: configurations that agree on
layers 1..l share the activations of those layers, and all branches through the same
parameters at a layer go through one batched convolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar, cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from lifelong.learners.base import LearnerContext, NetLearnerConfig
from lifelong.learners.dfcnn import DFCNNConfig
from lifelong.learners.tasknet import TaskNetLearner
from lifelong.learners.tf import Core, Factors, TFConfig
from lifelong.learners.transfer import Bits, config_name
from lifelong.nets import FCHead
from lifelong.nets.convnet import conv_block
from lifelong.nets.dfcnn import KnowledgeBase, dfcnn_sizes, make_generator
from lifelong.nets.init import init_tf_
from lifelong.tasks import Batch, Task

__all__ = ["SelectiveLearner", "SelectiveConfig", "BASE_FIELDS", "ConvParams", "HPSFields",
           "TFFields", "DFCNNFields"]


@dataclass
class SelectiveConfig(NetLearnerConfig):
    """Settings shared by every selective-transfer learner (LASEM, static, brute force,
    DARTS): the LASEM code's choices, not the DF-CNN code's."""

    # LASEM code: tf.reduce_mean of the cross-entropy (lifelong_model_frame.py, define_loss);
    # the DF-CNN code (and our plain hps/tf/dfcnn) sums it.
    loss_reduction: Literal["sum", "mean"] = "mean"


# The base learners' own fields, inherited from their configs so that a field added there
# (to TFConfig or DFCNNConfig) is a field of every selective learner on that base too. Only
# the defaults the LASEM code sets differently are restated, each with its source.
@dataclass
class HPSFields(NetLearnerConfig):
    """HPS's settings: its config is :class:`NetLearnerConfig` itself (it has none of its
    own)."""


@dataclass
class TFFields(TFConfig):
    """TF's settings (:class:`~lifelong.learners.tf.TFConfig`) with the LASEM code's
    default."""

    # LASEM code: auxiliary_loss_weight 0.1 for test_type % 5 == 0, the default of main.py
    # (utils_env_cl.py); the paper's grid is {0.001, ..., 0.1}; TFConfig has 0.01.
    orthogonality: float = 0.1


@dataclass
class DFCNNFields(DFCNNConfig):
    """DF-CNN's settings (:class:`~lifelong.learners.dfcnn.DFCNNConfig`) with the LASEM
    code's defaults."""

    # LASEM code: cnn_para_activation_fn=None (no ReLU after the deconvolution); the same as
    # DFCNNConfig's, restated because the LASEM code's choice must not follow a change there
    deconv_activation: Literal["relu", "none"] = "none"
    # LASEM code: regularization_scale [_, 1e-7, _, 1e-7] (KB, TS) for test_type % 5 == 0,
    # main.py's default (utils_env_cl.py); DFCNNConfig has 0 (the DF-CNN code has none)
    kb_l2: float = 1e-7
    ts_l2: float = 1e-7


#: The settings each base learner adds to a selective learner's config.
BASE_FIELDS: dict[str, type[NetLearnerConfig]] = {"hps": HPSFields, "tf": TFFields,
                                                   "dfcnn": DFCNNFields}


class ConvParams(nn.Module):
    """A plain conv layer's parameters (the original code's init: trunc. normal 0.05, 0.2)."""

    def __init__(self, c_in: int, c_out: int, k: int) -> None:
        super().__init__()
        conv = init_tf_(nn.Conv2d(c_in, c_out, k))
        self.weight, self.bias = conv.weight, cast(nn.Parameter, conv.bias)  # bias=True


SC = TypeVar("SC", bound=NetLearnerConfig)


class SelectiveLearner(TaskNetLearner[SC]):
    """Base of the learners that choose, per task, which conv layers transfer."""

    kind: ClassVar[str] = "hps"

    def __init__(self, cfg: SC, ctx: LearnerContext) -> None:
        spec = ctx.net
        if not spec.channels:
            raise ValueError("selective transfer needs conv layers")
        self.chans = [ctx.input_shape[0], *spec.channels]
        self.num_layers = len(spec.channels)
        if self.kind == "dfcnn":
            dcfg = cast(DFCNNFields, cfg)
            self.sizes = dfcnn_sizes(ctx.net_name, spec, ctx.input_shape[0], dcfg.variant,
                                     reduced=dcfg.size == "reduced")
        #: Fixed configuration of each task (absent while a task still searches).
        self.task_configs: dict[int, Bits] = {}
        #: Shared parameters as they were before the current task's first visit (name ->
        #: tensor), for the roll-back at its end; None when no new task is training.
        self.pretask_shared: dict[str, torch.Tensor] | None = None
        super().__init__(cfg, ctx)

    # -- parameters ------------------------------------------------------------------------
    def _layers(self) -> list[tuple[int, int, int]]:
        return list(zip(self.chans[:-1], self.chans[1:], self.ctx.net.kernels, strict=True))

    def build_shared(self) -> nn.Module:
        if self.kind == "hps":
            return nn.ModuleList(ConvParams(a, b, k) for a, b, k in self._layers())
        if self.kind == "tf":
            return nn.ModuleList(Core(a, b, k) for a, b, k in self._layers())
        s = self.sizes
        return nn.ModuleList(KnowledgeBase(d, c, k) for d, c, k in
                             zip(s.depth, s.kb_channels, s.kb_size, strict=True))

    def _transfer_module(self, layer: int) -> nn.Module:
        """Task-specific parameters of layer ``layer``'s transfer-based form."""
        c_in, c_out, k = self._layers()[layer]
        if self.kind == "hps":
            return nn.Module()  # the shared layer is used as is
        if self.kind == "tf":
            return Factors(c_in, c_out, k)
        s = self.sizes
        dcfg = cast(DFCNNFields, self.cfg)
        return make_generator(dcfg.variant, c_in, c_out, s.kb_channels[layer],
                              s.ts_channels[layer], s.depth[layer],
                              activation=dcfg.deconv_activation == "relu")

    def build_task(self, task_id: int, num_classes: int) -> nn.Module:
        fixed = self.task_configs.get(task_id)
        transfer, specific = nn.ModuleList(), nn.ModuleList()
        for layer, (c_in, c_out, k) in enumerate(self._layers()):
            use = (0, 1) if fixed is None else (fixed[layer],)
            transfer.append(self._transfer_module(layer) if 1 in use else nn.Module())
            specific.append(ConvParams(c_in, c_out, k) if 0 in use else nn.Module())
        spec = self.ctx.net
        head = FCHead(spec.feature_size(self.ctx.input_shape), spec.fc, num_classes,
                      spec.dropout)
        return nn.ModuleDict({"transfer": transfer, "specific": specific, "head": head})

    @property
    def shared(self) -> nn.ModuleList:
        """The shared parameters, one module per conv layer."""
        return cast(nn.ModuleList, self.model["shared"])

    def task_part(self, task_id: int, part: str) -> nn.ModuleList:
        """Task ``task_id``'s "transfer" or "specific" modules, one per conv layer."""
        return cast(nn.ModuleList, cast(nn.ModuleDict, self.task_module(task_id))[part])

    def task_head(self, task_id: int) -> nn.Module:
        return cast(nn.ModuleDict, self.task_module(task_id))["head"]

    def fix_config(self, task_id: int, cfg: Bits) -> None:
        """Fix task ``task_id``'s configuration and drop the parameters it does not use."""
        self.task_configs[task_id] = tuple(cfg)
        for layer, bit in enumerate(cfg):
            if bit:
                self.task_part(task_id, "specific")[layer] = nn.Module()
            else:
                self.task_part(task_id, "transfer")[layer] = nn.Module()

    # -- the roll-back at task end (the LASEM code's convert_tfVar_to_npVar) -----------------
    def snapshot_shared(self) -> None:
        """Remember the shared parameters before a new task trains them."""
        self.pretask_shared = {k: v.detach().clone()
                               for k, v in self.model["shared"].state_dict().items()}

    def roll_back(self, task_id: int) -> None:
        """Restore, bit for bit, the shared parameters (shared conv, TF core, DF-CNN KB) of
        every layer task ``task_id`` does not transfer to their pre-task values.

        While a task searches, the shared parameters of a layer get gradient from the
        configurations that transfer there (and from the KB L2), so they move even if the
        task ends up task-specific at that layer; the LASEM code
        (``model/cnn_lasem_model.py`` post_process, ``cnn_darts_model.py`` likewise) undoes
        that drift, so only layers the task uses carry its changes to earlier tasks."""
        if self.pretask_shared is None:
            return
        cfg = self.task_configs[task_id]
        with torch.no_grad():
            for name, p in self.model["shared"].state_dict(keep_vars=True).items():
                layer = int(name.split(".", 1)[0])  # shared is a ModuleList, one per layer
                if not cfg[layer]:
                    p.copy_(self.pretask_shared[name])
        self.pretask_shared = None

    def begin_task(self, task: Task) -> None:
        if task.id not in self.num_classes:  # a new task (not a revisit, not a resume)
            self.snapshot_shared()
        super().begin_task(task)

    def end_task(self, task: Task) -> None:
        if task.id in self.task_configs:
            self.roll_back(task.id)
        super().end_task(task)

    # -- forward -----------------------------------------------------------------------------
    def layer_filter(self, layer: int, task_id: int, bit: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """Filters (c_out, c_in, k, k) and bias of a layer in its transfer-based (bit 1) or
        task-specific (bit 0) form."""
        if not bit:
            p = cast(ConvParams, self.task_part(task_id, "specific")[layer])
            return p.weight, p.bias
        shared = self.shared[layer]
        if self.kind == "hps":
            conv = cast(ConvParams, shared)
            return conv.weight, conv.bias
        if self.kind == "tf":
            f = cast(Factors, self.task_part(task_id, "transfer")[layer])
            return f.filters(cast(Core, shared).W0), f.bias
        return self.task_part(task_id, "transfer")[layer](shared())

    def forward_configs(self, x: torch.Tensor, task_id: int, configs: list[Bits]
                        ) -> torch.Tensor:
        """Logits (n_configs, B, C) of task ``task_id`` under each configuration."""
        feats = self.config_features(x, task_id, configs)  # (n * B, F)
        return self.task_head(task_id)(feats).view(len(configs), x.shape[0], -1)

    def config_features(self, x: torch.Tensor, task_id: int, configs: list[Bits]
                        ) -> torch.Tensor:
        """Flattened conv features (n_configs * B, F) of task ``task_id`` under each
        configuration, configuration-major (rows i*B..(i+1)*B-1 are configuration i).

        Configurations sharing their first l bits share the activations of layers 1..l; at
        each layer the branches through the same parameters are one batched convolution.
        """
        B = x.shape[0]
        level: dict[Bits, torch.Tensor] = {(): x}
        for layer, pool in enumerate(self.ctx.net.pools):
            wanted = {c[:layer + 1] for c in configs}
            new: dict[Bits, torch.Tensor] = {}
            for bit in (0, 1):
                parents = [p for p in level if p + (bit,) in wanted]
                if not parents:
                    continue
                w, b = self.layer_filter(layer, task_id, bit)
                out = conv_block(torch.cat([level[p] for p in parents]), w, b, pool)
                for p, y in zip(parents, out.split(B), strict=True):
                    new[p + (bit,)] = y
            level = new
        return torch.cat([level[c] for c in configs]).flatten(1)  # (n * B, F)

    def current_config(self, task_id: int) -> Bits:
        """The configuration task ``task_id`` uses for prediction."""
        return self.task_configs[task_id]

    def forward(self, x: torch.Tensor, task_id: int) -> torch.Tensor:
        return self.forward_configs(x, task_id, [self.current_config(task_id)])[0]

    def penalty(self, task_id: int, transfer_weight: torch.Tensor | None = None
                ) -> torch.Tensor | float:
        """The base learner's regularisers on the current task's parameters.

        ``transfer_weight`` (layers,): the posterior mass of the configurations that transfer
        at each layer, while a task searches; None = 1 for every layer the task has factors
        for. TF's orthogonality penalty of layer l is weighted by it: the LASEM code adds a
        configuration's penalty (on the factors of the layers it transfers) to that
        configuration's loss before the posterior-weighted sum of gradients
        (``cnn_lasem_model.py``, LL_hybrid_TF_EM_algo.define_opt). DF-CNN's L2 terms are in
        every configuration's loss there, so with weights summing to one they are unweighted.
        """
        transfer = self.task_part(task_id, "transfer")
        tf_cfg, dfcnn_cfg = cast(TFFields, self.cfg), cast(DFCNNFields, self.cfg)  # by kind
        if self.kind == "tf" and tf_cfg.orthogonality > 0:
            terms = [(layer, f.orthogonality()) for layer, f in enumerate(transfer)
                     if isinstance(f, Factors)]
            if terms:
                if transfer_weight is None:
                    return tf_cfg.orthogonality * sum(o for _, o in terms)
                return tf_cfg.orthogonality * sum(transfer_weight[layer] * o
                                                  for layer, o in terms)
        if self.kind == "dfcnn":
            total: torch.Tensor | float = 0.0
            if dfcnn_cfg.kb_l2 > 0:
                total = total + dfcnn_cfg.kb_l2 * sum(cast(KnowledgeBase, kb).L.square().sum()
                                                      for kb in self.shared)
            if dfcnn_cfg.ts_l2 > 0:
                total = total + dfcnn_cfg.ts_l2 * sum(p.square().sum()
                                                      for p in transfer.parameters())
            return total
        return 0.0

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return self.task_loss(logits, batch.y) + self.penalty(batch.task_id)

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["task_configs"] = [[t, config_name(c)] for t, c in self.task_configs.items()]
        state["pretask_shared"] = self.pretask_shared
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # Fixed configurations first: they decide which parameters a task module has.
        self.task_configs = {int(t): tuple(int(b) for b in c) for t, c in state["task_configs"]}
        super().load_state_dict(state)
        saved = state.get("pretask_shared")
        self.pretask_shared = None if saved is None else \
            {k: v.to(self.device).clone() for k, v in saved.items()}

    def chosen_configurations(self) -> dict[int, str]:
        """Chosen configuration per task, by name (``"0011"``: layers 3-4 task-specific)."""
        return {t: config_name(c) for t, c in sorted(self.task_configs.items())}


def per_config_loss(logits: torch.Tensor, y: torch.Tensor, reduction: str) -> torch.Tensor:
    """Cross-entropy of each configuration: logits (n, B, C), labels (B,) -> (n,)."""
    n, B, C = logits.shape
    ce = F.cross_entropy(logits.reshape(n * B, C), y.repeat(n), reduction="none").view(n, B)
    return ce.sum(1) if reduction == "sum" else ce.mean(1)
