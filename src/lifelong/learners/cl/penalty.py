"""Per-example gradients (for empirical Fisher and MAS-style importances) and the quadratic
parameter penalty shared by EWC, Online EWC, SI and MAS."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch
import torch.nn as nn
from torch.func import functional_call, grad, vmap

__all__ = ["per_example_grads", "chunk_size", "QuadraticPenalty"]


def per_example_grads(module: nn.Module, x: torch.Tensor, extra: torch.Tensor,
                      scalar: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                      forward_kwargs: dict[str, Any] | None = None,
                      names: list[str] | None = None) -> dict[str, torch.Tensor]:
    """Gradient of ``scalar(module(x_i), extra_i)`` for each example i: name -> (B, *shape).

    ``module`` is called on one example at a time (a batch of one) under ``vmap``, so the
    result is exact per-example gradients at the cost of about one batched backward pass.
    Only parameters in ``names`` (default: those requiring grad) are differentiated.
    """
    names = names or [n for n, p in module.named_parameters() if p.requires_grad]
    all_params = dict(module.named_parameters())
    params = {n: all_params[n].detach() for n in names}
    fixed = {n: p.detach() for n, p in all_params.items() if n not in params}
    buffers = dict(module.named_buffers())
    kwargs = forward_kwargs or {}

    def one(p: dict[str, torch.Tensor], xi: torch.Tensor, ei: torch.Tensor) -> torch.Tensor:
        out = functional_call(module, ({**p, **fixed}, buffers), (xi.unsqueeze(0),), kwargs)
        return scalar(out[0], ei)

    return vmap(grad(one), in_dims=(None, 0, 0))(params, x, extra)


def chunk_size(module: nn.Module, budget: int = 1 << 24) -> int:
    """Examples per per-example-gradient chunk so that B x parameters stays near ``budget``
    floats (64 MB)."""
    n = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return max(1, budget // max(n, 1))


class QuadraticPenalty:
    """sum_i A_i (theta_i - m_i)^2 (+ a constant): the form shared by EWC (A = Fisher),
    Online EWC, SI (A = path-integral importance) and MAS (A = output-sensitivity).

    Parameters are named as in ``net.named_parameters()``; a parameter without an entry has
    no penalty (a head added after the last consolidation). The gradient, 2 A (theta - m), is
    added straight into ``.grad`` with fused foreach kernels (no autograd graph for the
    penalty), which keeps the step cost near that of plain training.
    """

    def __init__(self) -> None:
        self.importance: dict[str, torch.Tensor] = {}
        self.anchor: dict[str, torch.Tensor] = {}
        self.const = 0.0

    def __bool__(self) -> bool:
        return bool(self.importance)

    @torch.no_grad()
    def value(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """The penalty sum_i A_i (theta_i - m_i)^2 + const (a scalar tensor)."""
        names = [n for n in self.importance if n in params]
        if not names:
            return torch.zeros(())
        d = torch._foreach_sub([params[n] for n in names], [self.anchor[n] for n in names])
        ad = torch._foreach_mul(d, [self.importance[n] for n in names])
        total = cast(torch.Tensor, sum((a * b).sum() for a, b in zip(ad, d, strict=True)))
        return total + self.const

    @torch.no_grad()
    def add_grad_(self, params: dict[str, nn.Parameter], scale: float) -> torch.Tensor:
        """Add ``scale`` x the penalty's gradient to ``params``' grads; returns ``scale`` x
        the penalty value. Parameters with no gradient this step are left alone: they are
        not in this step's graph (e.g. an old head in task-il), so nothing moves them."""
        names = [n for n in self.importance if n in params and params[n].grad is not None]
        if not names:
            return torch.zeros(())
        d = torch._foreach_sub([params[n] for n in names], [self.anchor[n] for n in names])
        ad = torch._foreach_mul(d, [self.importance[n] for n in names])
        grads = cast(list[torch.Tensor], [params[n].grad for n in names])  # none is None
        torch._foreach_add_(grads, ad, alpha=2.0 * scale)
        total = cast(torch.Tensor, sum((a * b).sum() for a, b in zip(ad, d, strict=True)))
        return scale * (total + self.const)

    def state_dict(self) -> dict[str, Any]:
        return {"importance": dict(self.importance), "anchor": dict(self.anchor),
                "const": self.const}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        self.importance = {k: v.to(device) for k, v in state["importance"].items()}
        self.anchor = {k: v.to(device) for k, v in state["anchor"].items()}
        self.const = float(state["const"])
