"""LASEM: lifelong architecture search via EM (Lee, Behpour & Eaton, 2021, Algorithm 1).

For each new task: new task-specific parameters of both kinds for every layer and a fresh
prior over configurations. Then for every mini-batch (X, y):

    likelihood  P(y | X, c) = mean over the batch of softmax(f_c(X))[y]       (E-step)
    prior       pi(c) = (n_c + 1) / sum_c' (n_c' + 1)                          (Eq. 1)
                n_c = number of earlier mini-batches in which c was most probable
    posterior   P(c | X, y) ~ pi(c) P(y | X, c)                                 (Eq. 2)
    M-step      minimise sum_c P(c | X, y) CE(f_c(X), y), numMSteps times       (Eq. 3)

The weighted sum puts gradient on a layer's transfer-based parameters only from the
configurations that transfer at that layer, and on its task-specific parameters only from
the others (Eq. 3's two sums). At the end of the task its most probable configuration (by
the prior) is fixed and the unused parameters are dropped.

Cost: all configurations are evaluated in one pass that shares common prefixes
(:meth:`SelectiveLearner.forward_configs`); configurations whose posterior falls below
``skip_below`` are left out of the E- and M-steps, and every ``recheck_every`` mini-batches
the skipped ones are evaluated again (forward only) in a full E-step, so the posterior stays
honest while the cost approaches that of the few configurations still in play.

Options: ``prior=average`` (running average of the posteriors, the LASEM code's default),
``reset_prior`` (restart the prior every epoch, the code's ``--reset_prior``), ``groups``
(LASEM-G: configurations over groups of layers, appendix E).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn as nn

from lifelong.config import check
from lifelong.learners.base import LearnerContext, NetLearnerConfig
from lifelong.learners.selective import SelectiveLearner, per_config_loss
from lifelong.learners.transfer import Bits, all_configs, check_groups, config_name
from lifelong.tasks import Batch, Task

__all__ = ["LASEM", "LASEMFields"]


@dataclass
class LASEMFields(NetLearnerConfig):
    m_steps: int = 1  # numMSteps (LASEM appendix A uses 1)
    prior: Literal["count", "average"] = "count"  # Eq. 1, or the running average of posteriors
    reset_prior: bool = False  # restart the prior at every epoch
    groups: tuple[tuple[int, ...], ...] = ()  # e.g. [[1,2,3],[4,5,6],[7,8,9]]; () = per layer
    skip_below: float = 0.05  # posterior below which a configuration is not evaluated ...
    recheck_every: int = 20  # ... until the next full E-step, every this many mini-batches

    def validate(self) -> None:
        super().validate()
        check(self.m_steps >= 1, "m_steps must be >= 1")
        check(0 <= self.skip_below < 1, "skip_below must be in [0, 1)")
        check(self.recheck_every >= 1, "recheck_every must be >= 1")


class LASEM(SelectiveLearner):
    """LASEM: EM over which conv layers transfer, per task (Lee et al. 2021)."""

    def __init__(self, cfg: LASEMFields, ctx: LearnerContext) -> None:
        super().__init__(cfg, ctx)
        self.configs: list[Bits] = all_configs(self.num_layers,
                                               check_groups(cfg.groups, self.num_layers))
        self._reset_search()
        #: Per task: mean posterior of every configuration in each epoch (the paper's trace).
        self.traces: dict[int, list[list[float]]] = {}

    def _reset_search(self) -> None:
        n = len(self.configs)
        self.counts = np.zeros(n)  # n_c of Eq. 1
        self.post_sum, self.post_batches = np.zeros(n), 0  # for prior=average
        self.skipped = np.zeros(n, dtype=bool)
        self.step = 0
        self.epoch_post, self.epoch_batches = np.zeros(n), 0

    # -- the E-step's ingredients --------------------------------------------------------------
    def prior_probs(self) -> np.ndarray:
        """pi(c) over all configurations."""
        if self.cfg.prior == "average" and self.post_batches:
            p = self.post_sum / self.post_batches
            return p / p.sum()
        return (self.counts + 1) / (self.counts + 1).sum()

    @staticmethod
    def likelihood(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """P(y | X, c): mean softmax probability of the true class. logits (n, B, C) -> (n,)."""
        probs = logits.detach().softmax(-1)  # (n, B, C)
        return probs.gather(2, y.view(1, -1, 1).expand(probs.shape[0], -1, 1)).squeeze(2).mean(1)

    def _eval_likelihood(self, feats: torch.Tensor, train_logits: torch.Tensor | None,
                         y: torch.Tensor, task_id: int) -> np.ndarray:
        """E-step likelihoods (n,) from conv features (n * B, F), with the head's dropout off
        as in the LASEM code (its posterior pass feeds dropout_prob=1.0): dropout noise,
        drawn independently per configuration, would otherwise decide which configuration
        looks most probable on a batch. Without dropout the M-step's logits
        ``train_logits`` (n, B, C) are the same numbers and are reused."""
        head = self.task_module(task_id)["head"]
        if train_logits is not None and not any(
                isinstance(m, nn.Dropout) and m.p > 0 for m in head.modules()):
            return self.likelihood(train_logits, y).double().cpu().numpy()
        was_training = head.training
        head.eval()
        with torch.no_grad():
            logits = head(feats.detach()).unflatten(0, (-1, len(y)))  # (n, B, C)
        head.train(was_training)
        return self.likelihood(logits, y).double().cpu().numpy()

    def current_config(self, task_id: int) -> Bits:
        if task_id in self.task_configs:
            return self.task_configs[task_id]
        return self.configs[int(np.argmax(self.prior_probs()))]  # MAP while searching

    # -- the algorithm --------------------------------------------------------------------------
    def begin_task(self, task: Task) -> None:
        if task.id not in self.num_classes:
            self._reset_search()  # a new task: new parameters (built below) and a new prior
            self.traces[task.id] = []
        super().begin_task(task)

    def begin_epoch(self, epoch: int) -> None:
        super().begin_epoch(epoch)
        if self.current_task is not None and self.current_task not in self.task_configs:
            self._close_epoch_trace(self.current_task)
            if self.cfg.reset_prior and self.step:
                self.counts[:], self.post_sum[:], self.post_batches = 0, 0, 0

    def observe(self, batch: Batch) -> dict[str, torch.Tensor]:
        t = batch.task_id
        if t in self.task_configs:  # revisiting a task whose configuration is fixed
            return super().observe(batch)
        self.model.train()
        active = np.flatnonzero(~self.skipped)
        configs = [self.configs[i] for i in active]
        B = len(batch.y)
        head = self.task_module(t)["head"]
        lik = np.zeros(len(self.configs))
        feats = self.config_features(batch.x, t, configs)  # (n_active * B, F), with grad
        logits = head(feats).view(len(configs), B, -1)  # (n_active, B, C), for the M-step
        lik[active] = self._eval_likelihood(feats, logits, batch.y, t)
        evaluated = active
        if self.step % self.cfg.recheck_every == 0 and self.skipped.any():
            # Full E-step: the skipped configurations' likelihoods, forward only (they take
            # no part in this batch's M-step).
            rest = np.flatnonzero(self.skipped)
            with torch.no_grad():
                rest_feats = self.config_features(batch.x, t, [self.configs[i] for i in rest])
            lik[rest] = self._eval_likelihood(rest_feats, None, batch.y, t)
            evaluated = np.sort(np.concatenate([active, rest]))
        post = np.zeros(len(self.configs))  # E-step (Eq. 2), over the evaluated ones
        post[evaluated] = self.prior_probs()[evaluated] * lik[evaluated]
        total = post.sum()
        # all likelihoods can underflow to 0 on a hopeless batch: fall back to uniform
        post[evaluated] = post[evaluated] / total if total > 0 else 1 / len(evaluated)
        weights = torch.tensor(post[active], dtype=logits.dtype, device=logits.device)
        for m in range(self.cfg.m_steps):  # M-steps (Eq. 3); the posterior is held fixed
            if m:
                logits = self.forward_configs(batch.x, t, configs)
            ce = per_config_loss(logits, batch.y, self.cfg.loss_reduction)  # (n_active,)
            loss = (weights * ce).sum() + self.penalty(t)  # posterior-weighted gradients
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        self._update_prior(post, evaluated)
        scale = len(batch.y) if self.cfg.loss_reduction == "sum" else 1
        return {"loss": (weights * ce).sum().detach() / scale}

    def _update_prior(self, posterior: np.ndarray, active: np.ndarray) -> None:
        self.counts[int(np.argmax(posterior))] += 1
        self.post_sum += posterior
        self.post_batches += 1
        self.epoch_post += posterior
        self.epoch_batches += 1
        # Configurations evaluated in this batch and negligible now are skipped until the
        # next full E-step; the others keep their state.
        negligible = posterior < self.cfg.skip_below
        self.skipped[active] = negligible[active]
        if self.skipped.all():
            self.skipped[int(np.argmax(posterior))] = False
        self.step += 1

    def _close_epoch_trace(self, task_id: int) -> None:
        if self.epoch_batches:
            self.traces.setdefault(task_id, []).append(
                (self.epoch_post / self.epoch_batches).round(6).tolist())
        self.epoch_post, self.epoch_batches = np.zeros(len(self.configs)), 0

    def end_task(self, task: Task) -> None:
        if task.id not in self.task_configs:
            self._close_epoch_trace(task.id)
            self.fix_config(task.id, self.configs[int(np.argmax(self.prior_probs()))])
        super().end_task(task)

    # -- outputs and checkpoints ------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        return {**self.config_report(),
                "config_names": [config_name(c) for c in self.configs],
                "posterior_trace": {str(t): tr for t, tr in self.traces.items()}}

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["lasem"] = {
            "counts": torch.tensor(self.counts), "post_sum": torch.tensor(self.post_sum),
            "post_batches": self.post_batches, "skipped": torch.tensor(self.skipped),
            "step": self.step, "epoch_post": torch.tensor(self.epoch_post),
            "epoch_batches": self.epoch_batches,
            "traces": [[t, tr] for t, tr in self.traces.items()],
        }
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        s = state["lasem"]
        self.counts = s["counts"].numpy().copy()
        self.post_sum, self.post_batches = s["post_sum"].numpy().copy(), int(s["post_batches"])
        self.skipped = s["skipped"].numpy().astype(bool)
        self.step = int(s["step"])
        self.epoch_post = s["epoch_post"].numpy().copy()
        self.epoch_batches = int(s["epoch_batches"])
        self.traces = {int(t): tr for t, tr in s["traces"]}
