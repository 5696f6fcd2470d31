"""SI: Synaptic Intelligence (Zenke, Poole & Ganguli, ICML 2017).

While task mu trains, each parameter accumulates its contribution to the fall of the task
loss along the optimisation path, omega_i += -g_i * delta_theta_i per step (g: gradient of
the task loss without the SI penalty, as in the authors' code; delta: the step actually
taken by the optimizer). At the task's end

    Omega_i += omega_i / ((theta_i(end) - theta_i(start))^2 + xi),  omega <- 0,
    anchor theta~ <- theta(end),

and later tasks minimise L(theta) + c * sum_i Omega_i (theta~_i - theta_i)^2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, cast

import torch
import torch.nn as nn

from lifelong.config import check
from lifelong.learners.base import LEARNERS
from lifelong.learners.cl.base import CLConfig, CLLearner
from lifelong.learners.cl.penalty import QuadraticPenalty
from lifelong.tasks import Batch, Task

__all__ = ["SI", "SIConfig", "PathIntegral"]


@dataclass
class SIConfig(CLConfig):
    # Tuned with `lifelong tune` on validation (seed 0) for split-mnist task-il, net mlp,
    # RMSProp-TF lr 1e-3, batch 10, 10 epochs per task, mean loss: c 10 of (0.1, 1, 10)
    # (validation 0.982 / 0.966 / 0.964 for 10 / 0.1 / 1). Class-il chose 0.1 (0.228).
    # Not Avalanche's: its plugin penalises (lambda / 2) sum min(Omega, 1e-3) d^2, so our
    # c = 1 is at least 2x its si_lambda 1; Mammoth's seq-mnist si (c 1, xi 0.9) has our form.
    si_c: float = 10.0
    # Zenke et al. (2017) chose c on validation data; Mammoth's and Avalanche's c (0.5-1)
    # lie inside this log grid.
    SEARCH: ClassVar[dict[str, tuple[Any, ...]]] = {"si_c": (0.01, 0.1, 0.5, 1.0, 5.0, 10.0)}
    SEARCH_SOURCE: ClassVar[str] = "log grid around Mammoth's and Avalanche's c"
    si_xi: float = 0.1  # Avalanche's Split-MNIST reference run's eps 0.1 (not tuned)

    def validate(self) -> None:
        super().validate()
        check(self.si_c >= 0 and self.si_xi > 0, "si_c must be >= 0 and si_xi > 0")


class PathIntegral:
    """SI's running omega over named parameters.

    Per step: :meth:`before_step` after ``backward`` (copies the task-loss gradient and the
    parameters), then the optimizer steps, then :meth:`after_step` adds -g * delta.
    :meth:`consolidate` folds omega into a :class:`QuadraticPenalty` at the task's end.
    """

    def __init__(self) -> None:
        self.omega: dict[str, torch.Tensor] = {}  # running path integral of the task
        self.start: dict[str, torch.Tensor] = {}  # parameters at the task's start
        self._prev: dict[str, torch.Tensor] = {}  # scratch: parameters before the step
        self._live: list[str] = []
        self._grads: list[torch.Tensor] | tuple[torch.Tensor, ...] = []

    @torch.no_grad()
    def begin(self, params: dict[str, nn.Parameter]) -> None:
        self.omega = {n: torch.zeros_like(p) for n, p in params.items()}
        self.start = {n: p.detach().clone() for n, p in params.items()}
        self._prev = {n: torch.empty_like(p) for n, p in params.items()}

    @torch.no_grad()
    def before_step(self, params: dict[str, nn.Parameter]) -> None:
        self._live = [n for n, p in params.items() if p.grad is not None and n in self.omega]
        if any(n not in self._prev for n in self._live):  # after a resume
            self._prev = {n: torch.empty_like(params[n]) for n in self.omega}
        plist: list[torch.Tensor] = [params[n] for n in self._live]
        grads = cast(list[torch.Tensor], [p.grad for p in plist])  # none is None (_live)
        self._grads = torch._foreach_mul(grads, 1.0)  # copies
        torch._foreach_copy_([self._prev[n] for n in self._live], plist)

    @torch.no_grad()
    def after_step(self, params: dict[str, nn.Parameter]) -> None:
        live = self._live
        delta = torch._foreach_sub([params[n] for n in live], [self._prev[n] for n in live])
        torch._foreach_addcmul_([self.omega[n] for n in live], self._grads, delta, value=-1.0)
        self._grads = []

    @torch.no_grad()
    def consolidate(self, params: dict[str, nn.Parameter], xi: float,
                    penalty: QuadraticPenalty) -> None:
        for n, p in params.items():
            if n not in self.omega:
                continue
            total = p.detach() - self.start[n]
            big = penalty.importance.get(n, torch.zeros_like(p))
            penalty.importance[n] = big + self.omega[n] / (total * total + xi)
            penalty.anchor[n] = p.detach().clone()
        self.omega, self.start = {}, {}

    def state_dict(self) -> dict[str, Any]:
        return {"omega": dict(self.omega), "start": dict(self.start)}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        self.omega = {k: v.to(device).clone() for k, v in state["omega"].items()}
        self.start = {k: v.to(device).clone() for k, v in state["start"].items()}


@LEARNERS.register("si")
class SI(CLLearner[SIConfig]):
    """SI: importance from each parameter's path integral of the loss decrease."""

    Config = SIConfig

    def __init__(self, cfg: SIConfig, ctx) -> None:
        super().__init__(cfg, ctx)
        self.penalty = QuadraticPenalty()
        self.path = PathIntegral()

    def begin_task(self, task: Task) -> None:
        if self.resuming(task):
            return
        super().begin_task(task)
        self.path.begin(self.named_trainable())

    def observe(self, batch: Batch) -> dict[str, torch.Tensor]:
        loss = self.current_loss(batch)
        self.backward(loss)
        params = self.named_trainable()
        self.path.before_step(params)  # the task loss's gradient, before the penalty's
        pen = self.penalty.add_grad_(params, self.cfg.si_c)
        assert self.optimizer is not None  # checked by current_loss
        self.optimizer.step()
        self.path.after_step(params)
        return {"loss": self.logged(loss, len(batch.y)), "penalty": pen}

    def end_task(self, task: Task) -> None:
        self.path.consolidate(self.named_trainable(), self.cfg.si_xi, self.penalty)
        super().end_task(task)

    def method_state(self) -> dict[str, Any]:
        return {"penalty": self.penalty.state_dict(), "path": self.path.state_dict()}

    def load_method_state(self, state: dict[str, Any]) -> None:
        self.penalty.load_state_dict(state["penalty"], self.device)
        self.path.load_state_dict(state["path"], self.device)
