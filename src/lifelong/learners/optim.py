"""Optimizers and the papers' learning-rate schedule.

We write RMSProp ourselves because TensorFlow 1's, which the original DF-CNN and LASEM code
used and for which the papers' learning rates were tuned, differs from PyTorch's in two ways
that matter: its squared-gradient accumulator starts at 1 (PyTorch: 0), and it divides by
sqrt(ms + eps) (PyTorch: sqrt(ms) + eps), which changes the step once gradients are small.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import overload

import torch

__all__ = ["TFRMSprop", "make_optimizer", "decayed_lr", "OPTIMIZERS"]

OPTIMIZERS = ("rmsprop-tf", "rmsprop", "adam", "sgd")


def decayed_lr(lr: float, decay: float, epoch: int) -> float:
    """The papers' schedule: ``lr / (1 + epoch * decay)``, epoch counted over the stream."""
    return lr / (1.0 + epoch * decay)


class TFRMSprop(torch.optim.Optimizer):
    """RMSProp as ``tf.train.RMSPropOptimizer`` (decay 0.9, momentum 0, epsilon 1e-10):

        ms <- decay * ms + (1 - decay) * g^2,   ms starts at 1
        w  <- w - lr * g / sqrt(ms + epsilon)
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, decay: float = 0.9,
                 eps: float = 1e-10, initial_accumulator: float = 1.0) -> None:
        defaults = dict(lr=lr, decay=decay, eps=eps, initial_accumulator=initial_accumulator)
        super().__init__(params, defaults)

    @overload
    def step(self, closure: None = None) -> None: ...

    @overload
    def step(self, closure: Callable[[], float]) -> float: ...

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            ms = []
            for p in params:
                state = self.state[p]
                if "ms" not in state:
                    state["ms"] = torch.full_like(p, group["initial_accumulator"])
                ms.append(state["ms"])
            # foreach kernels: one call per operation over all tensors (this runs every step)
            torch._foreach_mul_(ms, group["decay"])
            torch._foreach_addcmul_(ms, grads, grads, value=1.0 - group["decay"])
            denom = torch._foreach_add(ms, group["eps"])
            torch._foreach_sqrt_(denom)
            torch._foreach_addcdiv_(params, grads, denom, value=-group["lr"])
        return loss


def make_optimizer(name: str | None, params: list[torch.nn.Parameter], lr: float
                   ) -> torch.optim.Optimizer:
    """An optimizer over ``params``: ``rmsprop-tf`` (TF1 RMSProp), ``rmsprop`` (PyTorch's),
    ``adam`` or ``sgd`` (None: a config ``Learner.resolve_config`` has not filled)."""
    if name is None:
        raise ValueError("optimizer not resolved (Learner.resolve_config fills it)")
    if name == "rmsprop-tf":
        return TFRMSprop(params, lr=lr)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}")
