"""MAS: Memory Aware Synapses (Aljundi et al., ECCV 2018).

Importance is the sensitivity of the learned function's output to each parameter,
averaged over the task's data (unlabelled; Eq. 2 of the paper):

    Omega_i = 1/N sum_k | d ||F(x_k; theta)||_2^2 / d theta_i |

computed from exact per-example gradients (the absolute value does not commute with a
batch mean). F is the task's head (task-il) or the concatenated heads (class-il).
Importances add up over tasks, and later tasks minimise
L(theta) + lambda * sum_i Omega_i (theta_i - theta*_i)^2 with theta* the last task's end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn as nn

from lifelong.config import check
from lifelong.learners.base import LEARNERS
from lifelong.learners.cl.base import CLConfig, CLLearner
from lifelong.learners.cl.penalty import QuadraticPenalty, chunk_size, per_example_grads
from lifelong.tasks import Batch, Task

__all__ = ["MAS", "MASConfig", "mas_importance"]


@dataclass
class MASConfig(CLConfig):
    # Tuned with `lifelong tune` on validation (seed 0) for split-mnist task-il, net mlp,
    # RMSProp-TF lr 1e-3, batch 10, 10 epochs per task, mean loss: 0.1 of (0.1, 1, 10)
    # (validation 0.972 / 0.966 / 0.950); class-il also 0.1. Aljundi et al. 2018 and
    # Avalanche's default: lambda = 1.
    mas_lambda: float = 0.1
    SEARCH: ClassVar[dict[str, tuple[Any, ...]]] = {
        "mas_lambda": (0.1, 0.3, 1.0, 3.0, 10.0, 30.0)}
    SEARCH_SOURCE: ClassVar[str] = "log grid around Aljundi et al.'s lambda = 1"
    importance_samples: int | None = None  # examples of the task used; None: all

    def validate(self) -> None:
        super().validate()
        check(self.mas_lambda >= 0, "mas_lambda must be >= 0")
        check(self.importance_samples is None or self.importance_samples >= 1,
              "importance_samples must be >= 1")


def mas_importance(module: nn.Module, x: torch.Tensor, forward_kwargs: dict[str, Any],
                   names: list[str], chunk: int = 64) -> dict[str, torch.Tensor]:
    """mean_k |d ||module(x_k)||^2 / d theta| for examples ``x`` (N, ...): name -> tensor."""
    params = dict(module.named_parameters())
    total = {n: torch.zeros_like(params[n]) for n in names}
    dummy = torch.zeros(len(x))

    def sq_norm(out: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
        return (out * out).sum()

    for start in range(0, len(x), chunk):
        xb = x[start:start + chunk]
        grads = per_example_grads(module, xb, dummy[start:start + chunk], sq_norm,
                                  forward_kwargs, names)
        for n, g in grads.items():
            total[n] += g.abs().sum(0)
    return {n: t / len(x) for n, t in total.items()}


@LEARNERS.register("mas")
class MAS(CLLearner[MASConfig]):
    """MAS: importance from the sensitivity of the output's squared norm to each weight."""

    Config = MASConfig

    def __init__(self, cfg: MASConfig, ctx) -> None:
        super().__init__(cfg, ctx)
        self.penalty = QuadraticPenalty()

    def observe(self, batch: Batch) -> dict[str, torch.Tensor]:
        loss = self.current_loss(batch)
        self.backward(loss)
        pen = self.penalty.add_grad_(self.named_trainable(), self.cfg.mas_lambda)
        assert self.optimizer is not None  # checked by current_loss
        self.optimizer.step()
        return {"loss": self.logged(loss, len(batch.y)), "penalty": pen}

    @torch.no_grad()
    def end_task(self, task: Task) -> None:
        n = len(task.train)
        idx = torch.arange(n)
        if self.cfg.importance_samples is not None and self.cfg.importance_samples < n:
            idx = torch.randperm(n, generator=self.gen)[: self.cfg.importance_samples]
        x = task.train.images(idx.numpy()).to(self.device)
        names = list(self.named_trainable())
        kwargs: dict[str, Any] = {}
        if not self.class_il:
            kwargs = {"task_id": task.id}
            names = [m for m in names
                     if not m.startswith("heads.") or m.startswith(f"heads.{task.id}.")]
        self.net.eval()
        with torch.enable_grad():
            omega = mas_importance(self.net, x, kwargs, names, chunk_size(self.net))
        for name, o in omega.items():
            old = self.penalty.importance.get(name)
            self.penalty.importance[name] = o if old is None else old + o
        for name, p in self.named_trainable().items():
            if name in self.penalty.importance:
                self.penalty.anchor[name] = p.detach().clone()
        super().end_task(task)

    def method_state(self) -> dict[str, Any]:
        return {"penalty": self.penalty.state_dict()}

    def load_method_state(self, state: dict[str, Any]) -> None:
        self.penalty.load_state_dict(state["penalty"], self.device)
