"""PSP: Superposition of many models into one (Cheung, Terekhov, Chen, Agrawal & Olshausen,
NeurIPS 2019).

One set of weights stores many task models in superposition. Each layer l has, for each
task k, a fixed random context key c_k^l, and task k's layer computes

    y = W (c_k ⊙ x) + b          (linear, W (out, in), c_k in {-1, +1}^in)
      = (W ⊙ c_k[None, :]) x + b,

the paper's binary superposition ("PSP binary"), or, with ``context: complex``, its complex
superposition ("PSP complex"): the weights are complex, W = W_re + i W_im, and each key is
a unit complex number per input entry, c_k = exp(i phi_k), phi_k uniform on [0, 2 pi), so

    y = Re(W (c_k ⊙ x)) + b = (W_re ⊙ cos phi_k - W_im ⊙ sin phi_k) x + b   (x real).

Only the real part of each layer's output is kept, so the activations stay real (our
reading of how a complex superposition feeds the ReLUs and the real heads). A step made
for task k moves the effective weights of task j by cos(phi_j - phi_k) times that step,
mean zero with variance 1/2, where binary keys give ±1 (variance 1): half the interference
for the same weights, at twice their number (W_im). W_im starts as a random permutation of
W_re's initial entries (the same distribution, so each task's effective weights start with
the variance of the binary network's). A convolution is a
linear map of each (in, k, k) input patch, so its key has one sign per patch entry and
multiplies the filters (out, in, k, k) broadcast over the output channels. Because keys of
different tasks are nearly orthogonal in high dimension, the weight change made while
learning task k projects onto another task's context as near-random noise, so earlier
tasks' models are approximately preserved. Keys are drawn once per
task from a generator seeded by (run seed, task id) and kept in the learner's state; they
never change. Biases are shared and not keyed (the paper's keys act on the weights' inputs).

The network is the benchmark's trunk and hidden FC layers (every weight matrix keyed) with
one linear head per task (task-specific already, so not keyed). The task id chooses the
keys, so PSP is task-incremental only. The paper's rotation contexts (powers of one random
rotation) are not built; neither is a pretrained ``backbone`` (random sign flips or phases
of its inputs would destroy what it learned).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from lifelong.config import check
from lifelong.learners.base import LEARNERS
from lifelong.learners.cl.base import CLConfig, CLLearner, MultiHeadNet
from lifelong.nets import ConvTrunk, NetSpec
from lifelong.tasks import Batch

__all__ = ["PSP", "PSPConfig", "PSPNet"]


@dataclass
class PSPConfig(CLConfig):
    # Cheung et al. 2019: "binary" superposition, c_k uniform on {-1, +1}^N per layer and
    # task (the default, our earlier results), or "complex", c_k = exp(i phi), phi uniform
    # on [0, 2 pi) with complex weights (the paper's best-performing context)
    context: Literal["binary", "complex"] = "binary"

    def validate(self) -> None:
        super().validate()
        check(self.backbone is None,
              "PSP keys every weight matrix of its own network; a pretrained backbone is not "
              "supported")


class PSPNet(MultiHeadNet):
    """:class:`MultiHeadNet` whose conv and hidden FC weights are keyed per task.

    ``keys[t]`` is a list with one key per weighted layer, in forward order: binary, a ±1
    float tensor (in, k, k) for a conv layer, (in,) for a linear layer; complex, (2, in,
    k, k) or (2, in), the cosines and sines of the phases. ``imag`` (complex only) holds
    W_im for each weighted layer.
    """

    trunk: ConvTrunk  # built without a backbone

    def __init__(self, spec: NetSpec, input_shape: tuple[int, int, int],
                 context: str = "binary") -> None:
        super().__init__(spec, input_shape)
        self.context = context
        self.keys: dict[int, list[torch.Tensor]] = {}
        self.imag = nn.ParameterList()
        if context == "complex":
            for m in self.weighted():
                w = m.weight.detach().flatten()
                self.imag.append(nn.Parameter(w[torch.randperm(len(w))].view_as(m.weight)))

    def weighted(self) -> list[nn.Conv2d | nn.Linear]:
        """The keyed layers in forward order: the trunk's convs, then the hidden linears."""
        convs: list[nn.Conv2d | nn.Linear] = [
            m for m in self.trunk.layers if isinstance(m, nn.Conv2d)]
        return convs + [m for m in self.hidden if isinstance(m, nn.Linear)]

    def make_keys(self, gen: torch.Generator) -> list[torch.Tensor]:
        """Fresh keys, one per keyed layer: binary, each entry -1 or +1 with probability
        1/2; complex, the (cos, sin) of phases uniform on [0, 2 pi)."""
        keys = []
        for m in self.weighted():
            shape = m.weight.shape[1:]  # (in, k, k) or (in,)
            if self.context == "complex":
                phi = torch.rand(shape, generator=gen, dtype=torch.float64) * (2 * math.pi)
                key = torch.stack([phi.cos(), phi.sin()])  # (2, *shape)
            else:
                key = 2 * torch.randint(0, 2, shape, generator=gen) - 1
            keys.append(key.to(m.weight.dtype).to(m.weight.device))
        return keys

    def keyed_weight(self, i: int, m: nn.Conv2d | nn.Linear, key: torch.Tensor) -> torch.Tensor:
        """Layer ``i``'s effective weight under ``key``: W ⊙ c (binary) or
        Re(W ⊙ c) = W_re ⊙ cos phi - W_im ⊙ sin phi (complex), the key broadcast over the
        output dimension."""
        if self.context == "complex":
            return m.weight * key[0] - self.imag[i] * key[1]
        return m.weight * key

    def features(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        """Task ``task_id``'s features (B, D): each weight matrix is used keyed by c_t."""
        if task_id is None:
            raise ValueError("PSP needs the task id: it selects the context keys")
        keys = iter(enumerate(self.keys[task_id]))
        for m in self.trunk.layers:
            if isinstance(m, nn.Conv2d):  # filters (out, in, k, k) ⊙ key (in, k, k)
                i, key = next(keys)
                x = F.conv2d(x, self.keyed_weight(i, m, key), m.bias, m.stride, m.padding)
            else:  # ReLU, pooling
                x = m(x)
        x = x.flatten(1)  # (B, trunk features), as ConvTrunk.forward
        for m in self.hidden:
            if isinstance(m, nn.Linear):  # weight (out, in) ⊙ key (in,) = W (c ⊙ x)
                i, key = next(keys)
                x = F.linear(x, self.keyed_weight(i, m, key), m.bias)
            else:  # ReLU, dropout
                x = m(x)
        return x

    def forward(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        if task_id is None:
            raise ValueError("PSP needs the task id: it selects the context keys")
        return self.head(self.features(x, task_id), task_id)


@LEARNERS.register("psp")
class PSP(CLLearner[PSPConfig]):
    """PSP: one set of weights, a random binary or complex context key per task and layer."""

    Config = PSPConfig
    settings = frozenset({"task-il"})
    net: PSPNet

    def build_net(self) -> PSPNet:
        return PSPNet(self.ctx.net, self.ctx.input_shape, self.cfg.context)

    def _add_task(self, task_id: int, num_classes: int, class_ids: list[int]) -> None:
        super()._add_task(task_id, num_classes, class_ids)
        # keys from their own generator (run seed, task id): fixed per task whatever else
        # draws random numbers, and not taken from the learner's stream
        gen = torch.Generator().manual_seed(1_000_003 * self.ctx.seed + 7_919 * (task_id + 1))
        self.net.keys[task_id] = self.net.make_keys(gen)

    def observe(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.check_batch(batch)
        self.net.train()
        logits = self.net(batch.x, batch.task_id)  # (B, C_task)
        loss = self.reduce(F.cross_entropy(logits, batch.y, reduction="none"))
        self.step(loss)
        return {"loss": self.logged(loss, len(batch.y))}

    @torch.no_grad()
    def predict(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        if task_id is None:
            raise ValueError("PSP is task-incremental: predict needs the task id")
        self.net.eval()
        return self.net(x, task_id)

    def method_state(self) -> dict[str, Any]:
        return {"keys": {str(t): list(k) for t, k in self.net.keys.items()}}

    def load_method_state(self, state: dict[str, Any]) -> None:
        self.net.keys = {int(t): [k.to(self.device) for k in keys]
                         for t, keys in state["keys"].items()}
