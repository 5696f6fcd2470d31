"""A task mapper beyond the paper's two: linear discriminant analysis with a tied covariance
pooled exactly from per-task sufficient statistics (the streaming-LDA family: Hayes and
Kanan 2020, SLDA; RanPAC, McDonnell et al. 2023, also pools second moments over tasks).

The teacher of a task with N training features X (N, D) in C classes shares

- the class means mu_c (C, D) and class counts n_c (C,),
- a rank-r summary of its within-class covariance W / dof, W = sum_i (x_i - mu_{y_i})
  (x_i - mu_{y_i})^T, dof = N - C: the basis B (r, D) = the top r right singular vectors of
  the centred features, each scaled by its singular value / sqrt(dof), so B^T B is the best
  rank-r approximation of W / dof,
- the residual: the trace of W / dof that B leaves out (a scalar).

Bytes per task: (C + r) D values, C counts and one scalar; with r = 4 C (``rank_per_class``)
that is 5 C D values, against the Mahalanobis anchor's 6 C D (C means and m = 5 samples per
class, plus labels) and GMMC's 50 D (k = 25 means and variances); fewer than both for C <= 10.

The student sums the statistics of every task it holds: the pooled within-class covariance
S = sum_t dof_t (B_t^T B_t + residual_t / D I) / sum_t dof_t (exact when r covers the
task's rank: it is then the covariance of all training features centred on their class
means), shrinks it, (1 - s) S + s tr(S) / D I, and maps an input to the task of the class
nearest in Mahalanobis distance under it. Where the paper's Mahalanobis mapper estimates
the covariance from 5 random samples per class (singular below D samples), this one uses
every training image, summarised in its directions of largest variance. Tasks are summed
in task-id order, so the mapper does not depend on the order in which bundles arrive.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["LDAAnchor", "LDAMapper", "fit_lda"]


@dataclass
class LDAAnchor:
    """One task's statistics: class means (C, D), class counts (C,) int64, covariance basis
    (r, D) with B^T B ~ W / dof, and ``residual``, the trace of W / dof outside B."""

    means: np.ndarray
    counts: np.ndarray
    basis: np.ndarray
    residual: float

    @property
    def dof(self) -> int:
        """Degrees of freedom of the within-class covariance: N - C."""
        return int(self.counts.sum()) - len(self.counts)


def fit_lda(features: np.ndarray, labels: np.ndarray, num_classes: int,
            rank_per_class: int) -> LDAAnchor:
    """Class means, counts and the rank-(rank_per_class x C) covariance summary of a task's
    training features (N, D) with labels (N,) in 0..C-1 (every class present)."""
    x = features.astype(np.float64)
    counts = np.bincount(labels, minlength=num_classes).astype(np.int64)
    if len(counts) != num_classes or int(counts.min()) < 1:
        raise ValueError("fit_lda: every class needs at least one training sample")
    means = np.stack([x[labels == c].mean(0) for c in range(num_classes)])  # (C, D)
    centred = x - means[labels]  # (N, D)
    dof = len(x) - num_classes
    D = x.shape[1]
    if dof == 0:  # one sample per class: no within-class spread to share
        return LDAAnchor(means.astype(np.float32), counts, np.zeros((0, D), np.float32), 0.0)
    # singular values s (min(N, D),) and right singular vectors (min(N, D), D)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    r = min(rank_per_class * num_classes, dof, len(s))
    basis = (s[:r, None] / np.sqrt(dof)) * vt[:r]  # (r, D): basis^T basis = top-r of W/dof
    residual = float((s[r:] ** 2).sum() / dof)
    return LDAAnchor(means.astype(np.float32), counts, basis.astype(np.float32), residual)


class LDAMapper:
    """Nearest class mean under the tied covariance pooled from every task's statistics.

    ``shrinkage`` s in [0, 1]: (1 - s) S + s tr(S)/D I (positive definite for s > 0 when
    any task has spread); :attr:`covariance` is the shrunk estimate (D, D).
    """

    def __init__(self, anchors: dict[int, LDAAnchor], shrinkage: float = 0.1) -> None:
        if not 0 <= shrinkage <= 1:
            raise ValueError(f"shrinkage must be in [0, 1], not {shrinkage!r}")
        tasks = sorted(anchors)  # a fixed summation order: arrival order does not matter
        if not tasks:
            raise ValueError("LDAMapper needs at least one task")
        D = anchors[tasks[0]].means.shape[1]
        self.owner = torch.tensor(np.concatenate([np.full(len(anchors[t].means), t)
                                                  for t in tasks]))
        means = np.concatenate([anchors[t].means for t in tasks]).astype(np.float64)  # (M, D)
        dofs = np.array([anchors[t].dof for t in tasks], dtype=np.float64)
        total = float(dofs.sum())
        if total > 0:
            # sum_t dof_t B_t^T B_t as one product: rows sqrt(dof_t) B_t stacked, (R, D)
            rows = np.concatenate([np.sqrt(dofs[i]) * anchors[t].basis.astype(np.float64)
                                   for i, t in enumerate(tasks)])
            resid = float(sum(dofs[i] * anchors[t].residual for i, t in enumerate(tasks)))
            cov = (rows.T @ rows + resid / D * np.eye(D)) / total  # (D, D)
        else:  # no task has within-class spread: Euclidean nearest class mean
            cov = np.eye(D)
        mu = np.trace(cov) / D
        if mu <= 0:
            cov, mu = np.eye(D), 1.0
        cov = (1 - shrinkage) * cov + shrinkage * mu * np.eye(D)
        self.covariance = cov
        self.precision = torch.tensor(np.linalg.pinv(cov, hermitian=True))  # (D, D)
        # P mu and mu^T P mu are all the distances need of the means: they are not kept
        mu_t = torch.tensor(means)  # (M, D)
        self._mp = mu_t @ self.precision  # (M, D)
        self._mpm = (self._mp * mu_t).sum(1)  # (M,) mu^T P mu

    def distances(self, x: torch.Tensor) -> torch.Tensor:
        """Squared Mahalanobis distance to every class mean: (B, D) -> (B, M),
        x^T P x - 2 x^T P mu + mu^T P mu, without a (B, M, D) tensor."""
        x = x.double()
        return ((x @ self.precision) * x).sum(1, keepdim=True) - 2 * x @ self._mp.T + self._mpm

    def map(self, x: torch.Tensor) -> torch.Tensor:
        """Task id of each input's nearest class: (B, D) -> (B,)."""
        return self.owner[self.distances(x).argmin(1)]

    def macs_per_image(self) -> int:
        """Multiply-accumulates of mapping one input: x P (D^2), x^T P x (D), x (P mu) (M D)."""
        M, D = self._mp.shape
        return D * D + D + M * D

    def nbytes(self) -> int:
        """Memory the mapper holds: precision (D, D), the projected means (M, D)."""
        return sum(t.numel() * t.element_size() for t in
                   (self.precision, self._mp, self._mpm, self.owner))
