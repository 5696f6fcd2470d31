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
the prior) is fixed, the unused parameters are dropped and the shared parameters of the
layers it does not transfer are rolled back to their pre-task values
(:meth:`SelectiveLearner.roll_back`, as the authors' code).

By default every configuration is evaluated and trained on every mini-batch (exact Eq. 3;
one pass shares the computation of common prefixes, :meth:`SelectiveLearner.config_features`).
``epsilon > 0`` truncates: each E-step keeps the smallest set of configurations that holds at
least 1 - epsilon of the posterior mass, so the M-step's weights differ from the exact
posterior by at most epsilon in total variation (see :meth:`LASEM._e_step`).

Options: ``prior=average`` (running average of the posteriors, the LASEM code's default),
``reset_prior`` (restart the prior every epoch, the code's ``--reset_prior``), ``groups``
(LASEM-G: configurations over groups of layers, appendix E), ``fixed_posterior`` (the paper's
Figure 5 ablation: a fixed posterior instead of the E-step, the code's
``train_lifelong_LASEM_fixedProb``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from lifelong.config import check
from lifelong.learners.base import LEARNERS, LearnerContext
from lifelong.learners.selective import (
    DFCNNFields,
    HPSFields,
    SelectiveConfig,
    SelectiveLearner,
    TFFields,
    per_config_loss,
)
from lifelong.learners.transfer import Bits, all_configs, check_groups, config_name, parse_config
from lifelong.tasks import Batch, Task

__all__ = ["LASEMHPS", "LASEMTF", "LASEMDFCNN", "LASEM", "LASEMFields", "kept_set"]


@dataclass
class LASEMFields(SelectiveConfig):
    m_steps: int = 1  # numMSteps (LASEM appendix A uses 1)
    # count: Eq. 1, the paper's text ("which we adopt in the experiments"); average: running
    # average of the posteriors, the LASEM code's default (train_selective_transfer.py without
    # --em_cnt_prior) and ours: on `planted` it agreed more often with brute force where
    # brute force's choice was clear, for all three bases (docs/results.md, 2026-12-04)
    prior: Literal["count", "average"] = "average"
    reset_prior: bool = False  # restart the prior at every epoch (the code's --reset_prior)
    groups: tuple[tuple[int, ...], ...] = ()  # e.g. [[1,2,3],[4,5,6],[7,8,9]]; () = per layer
    # 0: exact Eq. 3. > 0: keep the smallest set of configurations holding >= 1 - epsilon of
    # the posterior mass at each E-step (ours; not in the paper or the code)
    epsilon: float = 0.0
    # Figure 5 ablation: a configuration name (e.g. top-1) that gets posterior
    # fixed_posterior_prob, the others share the rest; no E-step (the code's --em_fix_maxC)
    fixed_posterior: str = ""
    fixed_posterior_prob: float = 0.9  # the code's --em_maxP default

    def validate(self) -> None:
        super().validate()
        check(self.m_steps >= 1, "m_steps must be >= 1")
        check(0 <= self.epsilon < 1, "epsilon must be in [0, 1)")
        check(0 < self.fixed_posterior_prob <= 1, "fixed_posterior_prob must be in (0, 1]")


def kept_set(pl: np.ndarray, evaluated: np.ndarray, unevaluated_prior: float,
             epsilon: float) -> np.ndarray:
    """The smallest set of evaluated configurations certified to hold >= 1 - epsilon of the
    posterior mass.

    ``pl`` (n,): prior x likelihood of every configuration (read at ``evaluated`` only);
    ``unevaluated_prior``: the prior mass of the configurations not evaluated. A likelihood
    is at most 1, so those hold at most ``unevaluated_prior`` of the unnormalised mass, and
    the posterior mass outside a set K is at most
    (sum_{E \\ K} pl + unevaluated_prior) / (sum_E pl + unevaluated_prior). K is the shortest
    prefix of the evaluated configurations by decreasing pl for which that is <= epsilon
    (when everything is evaluated, exactly the smallest set holding 1 - epsilon). Returns
    indices into the configurations, most probable first."""
    order = evaluated[np.argsort(-pl[evaluated], kind="stable")]
    total = pl[evaluated].sum() + unevaluated_prior
    if total <= 0:
        return order
    outside = total - np.cumsum(pl[order])  # mass outside the first k + 1
    ok = np.flatnonzero(outside <= epsilon * total)
    return order[: (int(ok[0]) + 1) if len(ok) else len(order)]


class LASEM(SelectiveLearner):
    """LASEM: EM over which conv layers transfer, per task (Lee et al. 2021)."""

    def __init__(self, cfg: LASEMFields, ctx: LearnerContext) -> None:
        super().__init__(cfg, ctx)
        self.configs: list[Bits] = all_configs(self.num_layers,
                                               check_groups(cfg.groups, self.num_layers))
        self.fixed = self._fixed_posterior()
        self._reset_search()
        #: Per task: mean posterior of every configuration in each epoch (the paper's trace).
        self.traces: dict[int, list[list[float]]] = {}
        #: Configurations evaluated (E-step) and trained (M-step), summed over mini-batches.
        self.cost = {"batches": 0, "evaluated": 0, "trained": 0}

    def _fixed_posterior(self) -> np.ndarray | None:
        """The Figure 5 ablation's posterior: p on one configuration, the rest uniform."""
        if not self.cfg.fixed_posterior:
            return None
        bits = parse_config(self.cfg.fixed_posterior, self.num_layers)
        check(bits in self.configs, f"fixed_posterior {self.cfg.fixed_posterior!r} is not "
                                    "among the searched configurations")
        n, p = len(self.configs), self.cfg.fixed_posterior_prob
        post = np.full(n, (1 - p) / (n - 1) if n > 1 else 0.0)
        post[self.configs.index(bits)] = p if n > 1 else 1.0
        return post

    def _reset_search(self) -> None:
        n = len(self.configs)
        self.counts = np.zeros(n)  # n_c of Eq. 1
        self.post_sum, self.post_batches = np.zeros(n), 0  # for prior=average
        self.epoch_post, self.epoch_batches = np.zeros(n), 0
        self.last_pl_sum = 0.0  # the previous batch's sum of prior x likelihood
        self.last_evaluated = 0  # how many configurations the previous batch evaluated

    # -- the E-step's ingredients --------------------------------------------------------------
    def prior_probs(self) -> np.ndarray:
        """pi(c) over all configurations."""
        if self.fixed is not None:
            return self.fixed
        if self.cfg.prior == "average" and self.post_batches:
            p = self.post_sum / self.post_batches
            return p / p.sum()
        return (self.counts + 1) / (self.counts + 1).sum()

    @staticmethod
    def likelihood(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """P(y | X, c): mean softmax probability of the true class. logits (n, B, C) -> (n,)."""
        probs = logits.detach().softmax(-1)  # (n, B, C)
        return probs.gather(2, y.view(1, -1, 1).expand(probs.shape[0], -1, 1)).squeeze(2).mean(1)

    def _eval_likelihood(self, feats: torch.Tensor, y: torch.Tensor, task_id: int
                         ) -> np.ndarray:
        """E-step likelihoods (n,) from conv features (n * B, F), with the head's dropout off
        as in the LASEM code (its posterior pass feeds dropout_prob=1.0): dropout noise,
        drawn independently per configuration, would otherwise decide which configuration
        looks most probable on a batch."""
        head = self.task_head(task_id)
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
            if self.cfg.reset_prior:  # the code resets to uniform (average) / init counts
                self.counts[:], self.post_sum[:], self.post_batches = 0, 0, 0

    def _e_step(self, x: torch.Tensor, y: torch.Tensor, task_id: int
                ) -> tuple[np.ndarray, np.ndarray, torch.Tensor | None, np.ndarray, int]:
        """Posterior (n,) for the prior update, the M-step's configurations (indices) and
        weights, the conv features of the first evaluated set (with grad) and how many
        configurations were evaluated.

        Exact (epsilon = 0): every configuration, one pass. Truncated: first the fewest
        configurations by prior whose remaining prior mass is below epsilon * S / (1 -
        epsilon), S the previous batch's sum of prior x likelihood, but no fewer than the
        previous batch evaluated (one pass, with grad, usually all the M-step needs); if that
        does not certify this batch (:func:`kept_set`), the next configurations by prior are
        evaluated (no grad) until the remaining prior mass is below epsilon * sum(pl) /
        (1 - epsilon), which does. The M-step trains the kept set K with weights
        pl / sum_K pl: the exact posterior differs from them by at
        most epsilon in total variation (the mass outside K)."""
        n, eps = len(self.configs), self.cfg.epsilon
        prior = self.prior_probs()
        by_prior = np.argsort(-prior, kind="stable")
        if eps == 0:
            first = np.arange(n)
        else:
            # Guess the set the certificate will need from the previous batch's
            # sum(prior x likelihood), so that one pass usually suffices (a second pass
            # costs a forward of its own); on a task's first batch, everything.
            allowed = eps * self.last_pl_sum / (1 - eps)
            tail = np.append(np.cumsum(prior[by_prior][::-1])[::-1], 0.0)  # mass of [k:]
            k = max(int(np.flatnonzero(tail <= allowed)[0]), 1)
            # ... and at least as many as the previous batch had to evaluate: the prior moves
            # slowly, so a batch that needed k configurations is followed by one that needs
            # about k, and a too-small guess costs a second pass plus a fresh forward for the
            # M-step (with a flat posterior, every batch needs all: one pass, as exact)
            k = max(k, self.last_evaluated)
            # evaluated in the configurations' own order: with nothing dropped the numbers
            # are those of the exact algorithm, bit for bit
            first = np.sort(by_prior[:k])
        feats = self.config_features(x, task_id, [self.configs[i] for i in first])
        lik = np.zeros(n)
        lik[first] = self._eval_likelihood(feats, y, task_id)
        evaluated = first
        rest = by_prior[len(first):]  # by decreasing prior
        if len(rest):
            pl_sum = float((prior[first] * lik[first]).sum())
            allowed = eps * pl_sum / (1 - eps)
            if prior[rest].sum() > allowed:  # not certified: evaluate more, forward only
                tail = np.cumsum(prior[rest][::-1])[::-1]  # prior mass of rest[k:]
                k = int(np.flatnonzero(np.append(tail, 0.0) <= allowed)[0])
                more = np.sort(rest[:k])
                with torch.no_grad():
                    more_feats = self.config_features(x, task_id,
                                                      [self.configs[i] for i in more])
                lik[more] = self._eval_likelihood(more_feats, y, task_id)
                evaluated = np.sort(np.concatenate([first, more]))
        pl = prior * lik
        self.last_pl_sum = float(pl[evaluated].sum())
        self.last_evaluated = len(evaluated)
        unevaluated = np.setdiff1d(np.arange(n), evaluated)
        post = np.zeros(n)
        total = pl[evaluated].sum()
        # all likelihoods can underflow to 0 on a hopeless batch: fall back to uniform
        post[evaluated] = pl[evaluated] / total if total > 0 else 1 / len(evaluated)
        if eps == 0:
            keep = np.arange(n)
        else:  # in the configurations' own order, as ``first``
            keep = np.sort(kept_set(post, evaluated, float(prior[unevaluated].sum()) / total
                                    if total > 0 else 0.0, eps))
        weights = post[keep] / post[keep].sum()
        reuse = feats if np.array_equal(keep, first) else None
        return post, keep, reuse, weights, len(evaluated)

    def observe(self, batch: Batch) -> dict[str, torch.Tensor]:
        t = batch.task_id
        if t in self.task_configs:  # revisiting a task whose configuration is fixed
            return super().observe(batch)
        self.model.train()
        B = len(batch.y)
        if self.fixed is not None:  # Figure 5's ablation: no E-step
            post = self.fixed
            keep, feats, w, evaluated = np.arange(len(self.configs)), None, self.fixed, 0
        else:
            post, keep, feats, w, evaluated = self._e_step(batch.x, batch.y, t)
        configs = [self.configs[i] for i in keep]
        head = self.task_head(t)
        weights = torch.tensor(w, dtype=torch.float32, device=self.device)  # (k,)
        bits = torch.tensor(configs, dtype=torch.float32, device=self.device)  # (k, layers)
        transfer_weight = weights @ bits  # (layers,): posterior of transferring there
        for m in range(self.cfg.m_steps):  # M-steps (Eq. 3); the posterior is held fixed
            if m or feats is None:
                feats = self.config_features(batch.x, t, configs)
            logits = head(feats).view(len(configs), B, -1)  # (k, B, C), dropout on
            ce = per_config_loss(logits, batch.y, self.cfg.loss_reduction)  # (k,)
            loss = (weights * ce).sum() + self.penalty(t, transfer_weight)
            assert self.optimizer is not None
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            feats = None
        self._update_prior(post)
        self.cost["batches"] += 1
        self.cost["evaluated"] += evaluated
        self.cost["trained"] += len(configs)
        scale = B if self.cfg.loss_reduction == "sum" else 1
        return {"loss": (weights * ce).sum().detach() / scale}

    def _update_prior(self, posterior: np.ndarray) -> None:
        self.counts[int(np.argmax(posterior))] += 1
        self.post_sum += posterior
        self.post_batches += 1
        self.epoch_post += posterior
        self.epoch_batches += 1

    def _close_epoch_trace(self, task_id: int) -> None:
        if self.epoch_batches:
            self.traces.setdefault(task_id, []).append(
                (self.epoch_post / self.epoch_batches).round(6).tolist())
        self.epoch_post, self.epoch_batches = np.zeros(len(self.configs)), 0

    def end_task(self, task: Task) -> None:
        if task.id not in self.task_configs:
            self._close_epoch_trace(task.id)
            self.fix_config(task.id, self.configs[int(np.argmax(self.prior_probs()))])
        super().end_task(task)  # rolls back the layers the task does not transfer

    # -- outputs and checkpoints ------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        b = max(self.cost["batches"], 1)
        return {"config_names": [config_name(c) for c in self.configs],
                "posterior_trace": {str(t): tr for t, tr in self.traces.items()},
                "configs_per_batch": {"evaluated": self.cost["evaluated"] / b,
                                      "trained": self.cost["trained"] / b}}

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["lasem"] = {
            "counts": torch.tensor(self.counts), "post_sum": torch.tensor(self.post_sum),
            "post_batches": self.post_batches, "epoch_post": torch.tensor(self.epoch_post),
            "epoch_batches": self.epoch_batches, "cost": dict(self.cost),
            "last_pl_sum": self.last_pl_sum, "last_evaluated": self.last_evaluated,
            "traces": [[t, tr] for t, tr in self.traces.items()],
        }
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        s = state["lasem"]
        self.counts = s["counts"].numpy().copy()
        self.post_sum, self.post_batches = s["post_sum"].numpy().copy(), int(s["post_batches"])
        self.epoch_post = s["epoch_post"].numpy().copy()
        self.epoch_batches = int(s["epoch_batches"])
        self.cost = {k: int(v) for k, v in s["cost"].items()}
        self.last_pl_sum = float(s["last_pl_sum"])
        self.last_evaluated = int(s.get("last_evaluated", 0))  # absent in older checkpoints
        self.traces = {int(t): tr for t, tr in s["traces"]}


# -- LASEM on each base learner of the LASEM paper: named, registered classes --
@dataclass
class LASEMHPSConfig(LASEMFields, HPSFields):
    """Settings of LASEM on hps: the method's fields and the base's."""


@LEARNERS.register("lasem-hps")
class LASEMHPS(LASEM):
    """LASEM on HPS.

    The method is :class:`LASEM`; the layers of base ``hps`` are built by
    :class:`~lifelong.learners.selective.SelectiveLearner`."""

    kind = "hps"
    Config = LASEMHPSConfig
    cfg: LASEMHPSConfig


@dataclass
class LASEMTFConfig(LASEMFields, TFFields):
    """Settings of LASEM on tf: the method's fields and the base's."""


@LEARNERS.register("lasem-tf")
class LASEMTF(LASEM):
    """LASEM on TF.

    The method is :class:`LASEM`; the layers of base ``tf`` are built by
    :class:`~lifelong.learners.selective.SelectiveLearner`."""

    kind = "tf"
    Config = LASEMTFConfig
    cfg: LASEMTFConfig


@dataclass
class LASEMDFCNNConfig(LASEMFields, DFCNNFields):
    """Settings of LASEM on dfcnn: the method's fields and the base's."""


@LEARNERS.register("lasem-dfcnn")
class LASEMDFCNN(LASEM):
    """LASEM on DF-CNN.

    The method is :class:`LASEM`; the layers of base ``dfcnn`` are built by
    :class:`~lifelong.learners.selective.SelectiveLearner`."""

    kind = "dfcnn"
    Config = LASEMDFCNNConfig
    cfg: LASEMDFCNNConfig
