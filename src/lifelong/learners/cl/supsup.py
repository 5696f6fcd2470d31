"""SupSup: Supermasks in Superposition (Wortsman et al., NeurIPS 2020): scenario GG (the task
id is given at training and test time) in task-il, scenario GN (given at training time,
inferred at test time) in class-il.

The network's weights are random and never trained: each weight is a signed constant,
w = ±sqrt(2 / fan_in) with the sign of a Kaiming-normal draw (the "signed Kaiming constant"
of the SupSup code's ``signed_constant`` init, from edge-popup). Each task t learns
real-valued scores s_t, one per weight, and uses the supermask

    M_t = top-k(|s_t|)    (1 for the k fraction of largest |score| in each layer, else 0)
    y   = (W ⊙ M_t) x,

trained by the straight-through estimator: the backward pass of top-k is the identity, so
dL/ds = dL/dM ⊙ sign(s) (as the SupSup code's ``GetSubnet`` applied to ``scores.abs()``).
Scores start U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (Kaiming uniform, a = sqrt(5), the code's
score init). When a task ends its mask is stored as a bool tensor per layer and its scores
are dropped; earlier masks and the weights are never touched, so an earlier task's
predictions are exactly what they were when it ended.

All layers are masked, biases are absent and there is no dropout, as in the SupSup code's
masked layers (``bias=False``). The output layer is a fixed random signed-constant layer per
task (the task's head), masked like the rest: the code's shared output layer, one per task
here because tasks may differ in their number of classes. Only the papers' trunk is built
(conv layers with their pooling, then the hidden FC layers); the code's per-task
non-affine BatchNorm is not (the benchmark networks have none).

One-shot task inference (the paper's section 3.3, used by ``predict(x, None)``, class-il):
with the k masks learned so far, mixture coefficients alpha_i = 1/k give the superposed
network f(x, W ⊙ sum_i alpha_i M_i) (every layer mixed with the same alpha); the task is

    t = argmax_i ( -dH(f(x, alpha)) / d alpha_i ),    H the entropy of softmax(f),

the mask whose weight would most reduce the output's entropy, from one gradient. Each layer
is linear in its mask, so the mixed layer is sum_i alpha_i (W ⊙ M_i) x before its ReLU and
pooling; computed that way alpha can be given per example, (B, k), and with ``infer:
example`` (default) every test image picks its own task from its own gradient. ``infer:
batch`` sums the entropies over the batch and picks one task for all of it, as the paper
does with batches drawn from one task (an evaluation batch of one task's images then tells
the method something the task-il oracle would). The output layers differ per task here (a
fixed random one each); the mixed output is sum_i alpha_i (W_i ⊙ M_i) h, tasks with fewer
classes padded with zero logits. The inferred task's head gives the scores of its classes;
every other class scores -inf. The task in training (if any) takes part with the mask of
its current scores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from lifelong.config import check
from lifelong.learners.base import LEARNERS
from lifelong.learners.cl.base import CLConfig, CLLearner
from lifelong.nets import NetSpec
from lifelong.nets.convnet import same_max_pool
from lifelong.tasks import Batch, Task

__all__ = ["SupSup", "SupSupConfig", "SupSupNet", "FixedLayer", "top_k_mask",
           "entropy_gradient"]


INFER_CHUNK = 64  # images per superposed forward pass in per-example task inference


@dataclass
class SupSupConfig(CLConfig):
    # k: the fraction of each layer's weights a supermask keeps, the SupSup code's
    # ``sparsity`` argument of GetSubnet (top k kept); 0.5, not checked against the
    # paper's per-experiment values
    density: float = 0.5
    # class-il task inference: one task per test image ("example", ours) or per batch
    # ("batch", the paper's one-shot inference on a batch from one task)
    infer: Literal["example", "batch"] = "example"

    def validate(self) -> None:
        super().validate()
        check(0.0 < self.density <= 1.0, "density must be in (0, 1]")
        check(self.backbone is None,
              "SupSup masks a fixed random network; a pretrained backbone is not supported")


class _TopK(torch.autograd.Function):
    """Forward: 1 for the ``density`` fraction of largest entries of ``scores``, else 0.
    Backward: the gradient passes straight through to ``scores``."""

    @staticmethod
    def forward(ctx: Any, scores: torch.Tensor, density: float) -> torch.Tensor:
        flat = scores.flatten()
        keep = flat.numel() - int((1 - density) * flat.numel())  # as the SupSup code's j
        mask = torch.zeros_like(flat)
        mask[flat.topk(keep, sorted=False).indices] = 1.0
        return mask.view_as(scores)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None]:
        return g, None


def top_k_mask(scores: torch.Tensor, density: float) -> torch.Tensor:
    """Supermask (same shape as ``scores``, 0/1 floats) of the largest |scores|, with the
    straight-through gradient to ``scores`` (through abs)."""
    return _TopK.apply(scores.abs(), density)


def signed_kaiming_constant(shape: tuple[int, ...], fan_in: int) -> torch.Tensor:
    """Weights ±sqrt(2 / fan_in) with random signs (ReLU gain, fan-in mode)."""
    w = torch.empty(shape)
    nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu")
    return w.sign() * (math.sqrt(2.0) / math.sqrt(fan_in))


class FixedLayer(nn.Module):
    """A conv (weight (out, in, k, k), 'same' padding, then ReLU and max-pool) or linear
    (weight (out, in), then ReLU unless it is an output layer) layer whose weight is a fixed
    buffer; ``forward(x, mask)`` uses weight ⊙ mask."""

    weight: torch.Tensor  # a buffer

    def __init__(self, shape: tuple[int, ...], pool: int = 1, relu: bool = True) -> None:
        super().__init__()
        fan_in = math.prod(shape[1:])
        self.register_buffer("weight", signed_kaiming_constant(shape, fan_in))
        self.conv = len(shape) == 4
        self.pool = pool
        self.relu = relu

    def linear(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The layer before its ReLU and pooling: (W ⊙ mask) applied to ``x``."""
        w = self.weight * mask
        if self.conv:
            return F.conv2d(x, w, padding=w.shape[-1] // 2)
        return F.linear(x.flatten(1), w)

    def activate(self, z: torch.Tensor) -> torch.Tensor:
        """ReLU and pooling (conv), ReLU unless an output layer (linear)."""
        if self.conv:
            return same_max_pool(F.relu(z), self.pool)
        return F.relu(z) if self.relu else z

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.activate(self.linear(x, mask))


class SupSupNet(nn.Module):
    """The benchmark network as fixed masked layers: ``body`` (convs, then hidden FCs) and a
    fixed output layer per task in ``heads``. ``forward(x, masks, task_id)``: ``masks`` has
    one entry per body layer and a last one for the task's head."""

    def __init__(self, spec: NetSpec, input_shape: tuple[int, int, int]) -> None:
        super().__init__()
        layers: list[FixedLayer] = []
        c = input_shape[0]
        for c_out, k, p in zip(spec.channels, spec.kernels, spec.pools, strict=True):
            layers.append(FixedLayer((c_out, c, k, k), pool=p))
            c = c_out
        features = spec.feature_size(input_shape)
        for h in spec.fc:
            layers.append(FixedLayer((h, features)))
            features = h
        self.body = nn.ModuleList(layers)
        self.out_features = features
        self.heads = nn.ModuleDict()
        self.order: list[int] = []

    def add_head(self, task_id: int, num_classes: int) -> None:
        self.heads[str(task_id)] = FixedLayer((num_classes, self.out_features), relu=False)
        self.order.append(task_id)

    def layers(self, task_id: int) -> list[FixedLayer]:
        return cast(list[FixedLayer], [*self.body, self.heads[str(task_id)]])

    def forward(self, x: torch.Tensor, masks: list[torch.Tensor], task_id: int) -> torch.Tensor:
        for layer, mask in zip(self.layers(task_id), masks, strict=True):
            x = layer(x, mask)
        return x  # (B, C_task)

    def superposed(self, x: torch.Tensor, masks: dict[int, list[torch.Tensor]],
                   alpha: torch.Tensor) -> torch.Tensor:
        """The superposed network's output (B, C_max) for tasks ``list(masks)`` mixed by
        ``alpha`` (B, k): every body layer is sum_i alpha_i (W ⊙ M_i) x, then its ReLU and
        pooling; the output is sum_i alpha_i head_i(h; M_i), zero-padded to C_max."""
        tasks = list(masks)

        def mix(parts: list[torch.Tensor]) -> torch.Tensor:
            shape = (len(x), len(tasks)) + (1,) * (parts[0].dim() - 1)
            return (alpha.reshape(shape) * torch.stack(parts, dim=1)).sum(1)

        for li, layer in enumerate(self.body):
            x = cast(FixedLayer, layer).activate(
                mix([cast(FixedLayer, layer).linear(x, masks[t][li]) for t in tasks]))
        width = max(cast(FixedLayer, self.heads[str(t)]).weight.shape[0] for t in tasks)
        outs = [cast(FixedLayer, self.heads[str(t)])(x, masks[t][-1]) for t in tasks]
        return mix([F.pad(o, (0, width - o.shape[1])) for o in outs])  # (B, C_max)


def entropy_gradient(net: SupSupNet, x: torch.Tensor, masks: dict[int, list[torch.Tensor]],
                     per_example: bool = True) -> torch.Tensor:
    """dH / d alpha at alpha = 1/k: (B, k) per example, or (1, k) for the batch's summed
    entropy; H is the entropy of the superposed network's softmax output."""
    k = len(masks)
    rows = len(x) if per_example else 1
    alpha = torch.full((rows, k), 1.0 / k, device=x.device, dtype=x.dtype, requires_grad=True)
    with torch.enable_grad():
        a = alpha if per_example else alpha.expand(len(x), k)
        logp = F.log_softmax(net.superposed(x, masks, a), dim=1)
        entropy = -(logp.exp() * logp).sum()  # examples are independent: per-row gradients
        (grad,) = torch.autograd.grad(entropy, alpha)
    return grad


@LEARNERS.register("supsup")
class SupSup(CLLearner[SupSupConfig]):
    """SupSup: a fixed random network, one learned top-k supermask per task (GG; GN with
    one-shot task inference in class-il)."""

    Config = SupSupConfig
    settings = frozenset({"task-il", "class-il"})
    # not a MultiHeadNet, but with the same head API (add_head, heads, order) the base uses
    net: SupSupNet  # type: ignore[assignment]

    def __init__(self, cfg: SupSupConfig, ctx) -> None:
        super().__init__(cfg, ctx)
        self.scores: list[nn.Parameter] | None = None  # the task in training's, per layer
        self.masks: dict[int, list[torch.Tensor]] = {}  # finished tasks' bool masks

    def build_net(self) -> SupSupNet:
        return SupSupNet(self.ctx.net, self.ctx.input_shape)

    def trainable(self) -> list[nn.Parameter]:
        """Only the current task's scores learn; the weights are buffers."""
        return list(self.scores or [])

    def named_trainable(self) -> dict[str, nn.Parameter]:
        return {f"scores.{i}": s for i, s in enumerate(self.scores or [])}

    def begin_task(self, task: Task) -> None:
        if self.resuming(task):
            return
        if task.id not in self.num_classes:
            self._add_task(task.id, task.num_classes, task.class_ids)
        # scores U(-1/sqrt(fan_in), 1/sqrt(fan_in)) = kaiming_uniform_(a=sqrt(5)), drawn from
        # the learner's stream so a resumed run draws the same
        scores = []
        for layer in self.net.layers(task.id):
            w = layer.weight
            bound = 1.0 / math.sqrt(math.prod(w.shape[1:]))
            s = (torch.rand(w.shape, generator=self.gen) * 2 - 1) * bound
            scores.append(nn.Parameter(s.to(w.device)))
        self.scores = scores
        super().begin_task(task)  # makes the optimizer over the scores

    def _masks(self, task_id: int) -> list[torch.Tensor]:
        """Task ``task_id``'s masks: stored (finished task) or from the current scores."""
        if task_id in self.masks:
            dtype = cast(FixedLayer, self.net.heads[str(task_id)]).weight.dtype
            return [m.to(dtype) for m in self.masks[task_id]]
        if task_id == self.current_task and self.scores is not None:
            return [top_k_mask(s, self.cfg.density) for s in self.scores]
        raise ValueError(f"SupSup has no mask for task {task_id}")

    def observe(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.check_batch(batch)
        logits = self.net(batch.x, self._masks(batch.task_id), batch.task_id)
        loss = self.reduce(F.cross_entropy(logits, batch.y, reduction="none"))
        self.step(loss)
        return {"loss": self.logged(loss, len(batch.y))}

    def end_task(self, task: Task) -> None:
        if self.scores is not None:  # keep the mask, drop the scores
            with torch.no_grad():
                self.masks[task.id] = [top_k_mask(s, self.cfg.density).bool()
                                       for s in self.scores]
        self.scores = None
        super().end_task(task)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        if task_id is not None:
            return self.net(x, self._masks(task_id), task_id)
        tasks = self.inferable()
        chosen = self.infer_task(x)  # (B,) task ids
        out = torch.full((len(x), self.ctx.num_global_classes), float("-inf"), device=x.device)
        for t in tasks:
            rows = (chosen == t).nonzero().flatten()
            if len(rows):
                ids = torch.tensor(self.class_ids[t], device=x.device)
                out[rows[:, None], ids[None, :]] = self.net(x[rows], self._masks(t), t)
        return out

    def inferable(self) -> list[int]:
        """Tasks with a mask: the finished ones and the one in training, in arrival order."""
        return [t for t in self.net.order
                if t in self.masks or (t == self.current_task and self.scores is not None)]

    @torch.no_grad()
    def infer_task(self, x: torch.Tensor) -> torch.Tensor:
        """One-shot task inference: the task (B,) of each image of ``x`` (or one for the
        whole batch, ``infer: batch``), argmax_i -dH/d alpha_i at alpha = 1/k."""
        tasks = self.inferable()
        if len(tasks) == 1:
            return torch.full((len(x),), tasks[0], dtype=torch.long, device=x.device)
        masks = {t: [m.detach() for m in self._masks(t)] for t in tasks}
        if self.cfg.infer == "batch":
            grad = entropy_gradient(self.net, x, masks, per_example=False)  # (1, k)
        else:  # in chunks: the mixed layers hold k outputs per image, (b, k, C, H, W)
            grad = torch.cat([entropy_gradient(self.net, x[i:i + INFER_CHUNK], masks)
                              for i in range(0, len(x), INFER_CHUNK)])  # (B, k)
        pick = (-grad).argmax(1).expand(len(x))  # (B,) positions in tasks
        return torch.tensor(tasks, device=x.device)[pick]

    def parameter_count(self) -> int:
        """The fixed weights (body and heads); each task's mask adds one bit per weight of
        the body and its head, reported as ``mask_bits``."""
        return sum(b.numel() for b in self.net.buffers())

    def report(self) -> dict[str, Any]:
        return {"mask_bits": sum(int(m.numel()) for ms in self.masks.values() for m in ms)}

    def method_state(self) -> dict[str, Any]:
        return {"masks": {str(t): list(ms) for t, ms in self.masks.items()},
                "scores": None if self.scores is None else [s.detach() for s in self.scores]}

    def load_method_state(self, state: dict[str, Any]) -> None:
        self.masks = {int(t): [m.to(self.device).bool() for m in ms]
                      for t, ms in state["masks"].items()}
        self.scores = None
        if state["scores"] is not None:
            self.scores = [nn.Parameter(s.to(self.device).clone()) for s in state["scores"]]
