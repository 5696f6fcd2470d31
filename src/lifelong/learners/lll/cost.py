"""Multiply-accumulates of LLL's task anchors and task mappers, counted analytically.

The backbone and the heads are counted with ``torch.utils.flop_counter`` (features.py), but
the GMMC fit runs in scikit-learn (numpy) and the mappers are a few matrix products: both are
counted here from their shapes and iteration counts, by the same convention as
:mod:`lifelong.macs` (matrix products only; element-wise work is not counted).

GMMC fit (scikit-learn's ``GaussianMixture``, diagonal covariances, k-means initialisation,
``n_init=1``), N samples of D features, k components:

- k-means++ seeding: the first centre's distances to every sample (N D) and, for each of the
  k - 1 other centres, ``2 + floor(ln k)`` candidates' distances to every sample:
  ``N D (1 + (k - 1)(2 + floor(ln k)))``;
- Lloyd: each iteration's sample-centre distances, N k D, for ``n_iter`` iterations plus
  the final relabelling pass scikit-learn runs unless the labels stopped changing (counted
  always: at most N k D too many);
- EM: the initial M-step from the k-means labels (means ``resp^T X`` and second moments
  ``resp^T X^2``: 2 N k D), per iteration an E-step (``X (mu P)^T`` and ``X^2 P^T``:
  2 N k D) and an M-step (2 N k D), and the final E-step of ``fit``: ``(4 n_iter + 4) N k D``.

Mappers, per image (D features):

- GMMC over M components in all (``GMMCMapper.log_prob``): ``x^2 P^T`` and ``x (mu P)^T``,
  2 M D;
- Mahalanobis over C classes in all (``MahaMapper.distances``): ``x P`` (D^2) and
  ``x (P mu)^T`` with P mu computed once (C D).

:func:`counting_mixture` makes scikit-learn's ``GaussianMixture`` that also remembers how
many k-means iterations its initialisation took (scikit-learn keeps only EM's).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = ["counting_mixture", "gmmc_fit_macs", "gmmc_map_macs", "kmeans_macs",
           "maha_map_macs"]


@lru_cache(maxsize=1)
def _counting_class() -> type:
    # scikit-learn is imported on the first fit only (it takes ~1 s)
    from sklearn.cluster import KMeans
    from sklearn.mixture import GaussianMixture

    class CountingGaussianMixture(GaussianMixture):
        """``GaussianMixture`` whose k-means initialisation records its iterations in
        ``kmeans_iter_`` (EM's are in ``n_iter_``). The initialisation is scikit-learn's
        own (1.9), step for step: the same ``KMeans`` call on the same random state, the
        same one-hot responsibilities, so the fitted mixture is ``GaussianMixture``'s."""

        kmeans_iter_: int = 0

        def _initialize_parameters(self, X: np.ndarray, random_state: Any,
                                   xp: Any = None) -> None:
            if self.init_params != "kmeans":
                self.kmeans_iter_ = 0
                super()._initialize_parameters(X, random_state, xp=xp)
                return
            km = KMeans(n_clusters=self.n_components, n_init=1,
                        random_state=random_state).fit(X)
            self.kmeans_iter_ = int(km.n_iter_)
            resp = np.zeros((X.shape[0], self.n_components), dtype=X.dtype)  # (N, k)
            resp[np.arange(X.shape[0]), km.labels_] = 1
            self._initialize(X, resp)

    return CountingGaussianMixture


def counting_mixture(**params: Any) -> Any:
    """A ``GaussianMixture(**params)`` that also sets ``kmeans_iter_`` when fitted."""
    return _counting_class()(**params)


def kmeans_macs(n: int, d: int, k: int, iterations: int) -> int:
    """k-means++ seeding and ``iterations`` Lloyd iterations plus the final relabelling."""
    trials = 2 + int(math.log(k))
    return n * d * (1 + (k - 1) * trials) + (iterations + 1) * n * k * d


def gmmc_fit_macs(n: int, d: int, k: int, em_iterations: int, kmeans_iterations: int) -> int:
    """MACs of fitting k diagonal Gaussians to (n, d) features (the module's formula)."""
    return kmeans_macs(n, d, k, kmeans_iterations) + (4 * em_iterations + 4) * n * k * d


def gmmc_map_macs(num_components: int, d: int) -> int:
    """MACs per image of the GMMC task mapper over ``num_components`` components."""
    return 2 * num_components * d


def maha_map_macs(num_classes: int, d: int) -> int:
    """MACs per image of the Mahalanobis task mapper over ``num_classes`` classes."""
    return d * d + num_classes * d
