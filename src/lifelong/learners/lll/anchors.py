"""Task anchors and task mappers (SKILL section 5): they let an agent tell which of the tasks
it knows a test input belongs to, without a task oracle.

GMMC (Eqs. 3-4): the teacher fits k diagonal Gaussians to its task's training features
(scikit-learn's ``GaussianMixture``); the student pools the components of every task it has
received into one mixture, each task's component weights scaled by its share of training
samples (as the original code appends ``weights * N``), and maps an input to the task of
its most probable component.

Mahalanobis (Eq. 5): the teacher shares its class means and m samples per class; the student
estimates one covariance tied over all classes from the shared samples (centred on their
class means) and maps an input to the task of the class at the smallest Mahalanobis
distance. With fewer samples than feature dimensions the covariance is singular; by default
we use its pseudo-inverse (as scikit-learn's ``EmpiricalCovariance`` does for the original
code). ``shrinkage`` s > 0 estimates (1 - s) S + s mu I instead, mu = tr(S) / D (scikit-learn's
``ShrunkCovariance``), or picks s from the samples (``"ledoit-wolf"``, scikit-learn's
``LedoitWolf``): positive definite, so no direction has zero variance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

__all__ = ["GMMCAnchor", "MahaAnchor", "GMMCMapper", "MahaMapper", "fit_gmmc", "fit_maha",
           "tied_precision"]


@dataclass
class GMMCAnchor:
    """One task's mixture: means (k, D), variances (k, D), weights (k,), training size."""

    means: np.ndarray
    variances: np.ndarray
    weights: np.ndarray
    num_samples: int


def fit_gmmc(features: np.ndarray, k: int, seed: int, reg_covar: float = 1e-4,
             stats: dict[str, int] | None = None) -> GMMCAnchor:
    """Fit k diagonal Gaussians to a task's training features (N, D); ``stats``, if given,
    receives the components and the k-means and EM iterations (for the teacher's MACs,
    :func:`lifelong.learners.lll.cost.gmmc_fit_macs`).

    ``reg_covar`` is added to every variance: pooled features of ReLU6 backbones have
    dimensions that are constant within a cluster, which scikit-learn's default (1e-6) does
    not keep invertible in float precision.
    """
    from lifelong.learners.lll.cost import counting_mixture  # sklearn's, iterations kept

    k = min(k, len(features))  # a tiny task cannot have more components than samples
    gmm = counting_mixture(n_components=k, covariance_type="diag", random_state=seed,
                           reg_covar=reg_covar)
    gmm.fit(features.astype(np.float64))
    if stats is not None:
        stats.update(components=k, kmeans_iterations=gmm.kmeans_iter_,
                     em_iterations=int(gmm.n_iter_))
    return GMMCAnchor(gmm.means_.astype(np.float32), gmm.covariances_.astype(np.float32),
                      gmm.weights_.astype(np.float32), len(features))


class GMMCMapper:
    """All received tasks' components pooled into one mixture (Eq. 4)."""

    def __init__(self, anchors: dict[int, GMMCAnchor]) -> None:
        tasks = sorted(anchors)
        total = sum(anchors[t].num_samples for t in tasks)
        self.owner = torch.tensor(np.concatenate([np.full(len(anchors[t].weights), t)
                                                  for t in tasks]))
        means = np.concatenate([anchors[t].means for t in tasks]).astype(np.float64)
        var = np.concatenate([anchors[t].variances for t in tasks]).astype(np.float64)
        weights = np.concatenate([anchors[t].weights * anchors[t].num_samples / total
                                  for t in tasks]).astype(np.float64)
        precision = 1.0 / var  # (M, D)
        # Two (M, D) float64 tables, made once: the precisions and mu / var. The means
        # themselves are only needed inside the constant (at 102 tasks each table is 26 MB;
        # building mu / var at every call cost another two of them per call).
        self.precision = torch.tensor(precision)  # (M, D)
        self.scaled_means = torch.tensor(means * precision)  # (M, D)
        # log phi_m - 1/2 (D log 2 pi + sum log var_m + sum mu_m^2 / var_m): the part
        # that does not depend on the sample
        self.const = torch.tensor(np.log(weights) - 0.5 * (
            means.shape[1] * np.log(2 * np.pi) + np.log(var).sum(1)
            + (means * means * precision).sum(1)))  # (M,)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log phi_m N(x | mu_m, diag var_m) for every component: (B, D) -> (B, M)."""
        x = x.double()
        # sum_d (x_d - mu_md)^2 / var_md, expanded to avoid a (B, M, D) tensor; its
        # sample-independent term is in const
        quad = (x**2) @ self.precision.T - 2 * x @ self.scaled_means.T
        return self.const - 0.5 * quad

    def map(self, x: torch.Tensor) -> torch.Tensor:
        """Task id of each input's most probable component: (B, D) -> (B,)."""
        return self.owner[self.log_prob(x).argmax(1)]


@dataclass
class MahaAnchor:
    """One task's class means (C, D) and shared samples (m per class): (S, D), labels (S,)."""

    means: np.ndarray
    samples: np.ndarray
    sample_labels: np.ndarray


def fit_maha(features: np.ndarray, labels: np.ndarray, num_classes: int, m: int,
             seed: int) -> MahaAnchor:
    """Class means of all training features and m randomly drawn samples per class."""
    rng = np.random.default_rng(seed)
    means = np.stack([features[labels == c].mean(0) for c in range(num_classes)])
    picks = [rng.permutation(np.flatnonzero(labels == c))[:m] for c in range(num_classes)]
    rows = np.concatenate(picks)
    return MahaAnchor(means.astype(np.float32), features[rows].astype(np.float32),
                      labels[rows].astype(np.int64))


def tied_precision(centred: np.ndarray, shrinkage: float | Literal["ledoit-wolf"] = 0.0
                   ) -> tuple[np.ndarray, float]:
    """Precision (D, D) of the tied covariance of samples already centred on their class
    means (N, D), and the shrinkage s used.

    s = 0: the empirical covariance S = X^T X / N (Eq. 5), pseudo-inverted (singular when
    N <= D). s > 0: scikit-learn's ``ShrunkCovariance``, (1 - s) S + s tr(S)/D I, inverted.
    ``"ledoit-wolf"``: scikit-learn's ``LedoitWolf`` chooses s. Both with
    ``assume_centered=True``: the samples are centred on their own class means, not on their
    pooled mean.
    """
    if shrinkage == 0:
        # kept apart (not ShrunkCovariance(0)): the paper's estimate, exactly as before
        cov = centred.T @ centred / len(centred)
        return np.linalg.pinv(cov, hermitian=True), 0.0
    from sklearn.covariance import LedoitWolf, ShrunkCovariance

    # store_precision=False: scikit-learn's precision (scipy's pinvh) took 16-18 CPU s for
    # D = 1280 on one thread, numpy's 0.5 s
    if shrinkage == "ledoit-wolf":
        est = LedoitWolf(assume_centered=True, store_precision=False).fit(centred)
        s = float(est.shrinkage_)
    elif isinstance(shrinkage, (int, float)) and 0 < shrinkage <= 1:
        est = ShrunkCovariance(shrinkage=float(shrinkage), assume_centered=True,
                               store_precision=False).fit(centred)
        s = float(shrinkage)
    else:
        raise ValueError(f"shrinkage must be in [0, 1] or 'ledoit-wolf', not {shrinkage!r}")
    # with s > 0 and tr(S) > 0 the shrunk covariance (D, D) is positive definite and this
    # is its inverse; the pseudo-inverse only matters if every shared sample is its mean
    cov = np.asarray(est.covariance_, dtype=np.float64)
    return np.linalg.pinv(cov, hermitian=True), s


class MahaMapper:
    """Class-conditional Gaussians with one tied covariance from all shared samples (Eq. 5).

    ``shrinkage``: 0 (the paper's empirical covariance S, pseudo-inverted), a fixed s in
    (0, 1] for (1 - s) S + s tr(S)/D I, or ``"ledoit-wolf"`` for the s of Ledoit and Wolf
    (2004) computed from the centred samples; :attr:`shrinkage_` is the s used.
    """

    def __init__(self, anchors: dict[int, MahaAnchor],
                 shrinkage: float | Literal["ledoit-wolf"] = 0.0) -> None:
        tasks = sorted(anchors)
        means = np.concatenate([anchors[t].means for t in tasks]).astype(np.float64)
        self.owner = torch.tensor(np.concatenate([np.full(len(anchors[t].means), t)
                                                  for t in tasks]))
        # Centre every shared sample on its own class mean, then pool: Sigma = X^T X / N.
        centred = np.concatenate([a.samples.astype(np.float64) - a.means[a.sample_labels]
                                  for a in (anchors[t] for t in tasks)])  # (N, D)
        precision, self.shrinkage_ = tied_precision(centred, shrinkage)
        # exactly symmetric (pinv's is to ~1e-16), so x P mu^T = x (mu P)^T below holds
        precision = (precision + precision.T) / 2
        self.precision = torch.tensor(precision)  # (D, D)
        # P mu and mu^T P mu, once: the means themselves are not needed after this (at 102
        # tasks computing P mu at every call was 5,000 x 1280^2 MACs per call)
        mp = means @ precision  # (C, D)
        self.projected_means = torch.tensor(mp)  # (C, D)
        self.mpm = torch.tensor((mp * means).sum(1))  # (C,)

    def distances(self, x: torch.Tensor) -> torch.Tensor:
        """Squared Mahalanobis distance to every class: (B, D) -> (B, C).

        (x - mu)^T P (x - mu) = x^T P x - 2 x^T P mu + mu^T P mu, without a (B, C, D) tensor.
        """
        x = x.double()
        xp = x @ self.precision  # (B, D)
        return (xp * x).sum(1, keepdim=True) - 2 * x @ self.projected_means.T + self.mpm

    def map(self, x: torch.Tensor) -> torch.Tensor:
        """Task id of each input's nearest class: (B, D) -> (B,)."""
        return self.owner[self.distances(x).argmin(1)]
