"""Lifelong-learning metrics computed from a :class:`~lifelong.history.History`.

* DF-CNN (Lee, Stokes & Eaton, IJCAI 2019, sec. 4.2), read off the learning curve: peak
  per-task accuracy, catastrophic forgetting ratio, speed of convergence.
* On the accuracy matrix ``R`` (``R[i, j]`` = test accuracy on task j after training task i):
  average accuracy, backward transfer (Lopez-Paz & Ranzato, 2017), forgetting (Chaudhry et
  al., 2018), forward transfer vs. a single-task learner, and normalized accuracy (Ge et al.,
  "Lightweight Learner for Shared Knowledge Lifelong Learning" (SKILL), Fig. 5).

Every function is pure: inputs are never written to (they may be read-only arrays), and
NaN means "undefined" (task not seen yet, no rows, zero peak). ``summarize``/``per_task``
turn NaN into None because JSON has no NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from lifelong.history import History

__all__ = ["accuracy_matrix", "peak_accuracy", "final_accuracy", "forgetting_ratio",
           "convergence_epochs", "average_accuracy", "backward_transfer", "forgetting",
           "forward_transfer_vs_stl", "normalized_accuracy", "mean_ignoring_nan", "summarize",
           "per_task", "confidence_interval", "best_val_accuracy", "paired_difference"]


def _nanmax(x: np.ndarray) -> float:
    # np.nanmax warns on all-NaN input; an all-NaN slice is a normal case here (unseen task).
    finite = x[~np.isnan(x)]
    return float(finite.max()) if finite.size else math.nan


def _nanmean(x: np.ndarray) -> float:
    finite = x[~np.isnan(x)]
    return float(finite.mean()) if finite.size else math.nan


def _square(R: np.ndarray) -> np.ndarray:
    R = np.asarray(R, dtype=np.float64)
    if R.ndim != 2 or R.shape[0] != R.shape[1]:
        raise ValueError(f"accuracy matrix must be square (T, T), got shape {R.shape}")
    return R


def accuracy_matrix(h: History) -> np.ndarray:
    """Accuracy matrix of a run (the layout of Lopez-Paz & Ranzato, 2017).

    Returns:
        (T, T) array: ``R[i, j]`` is the test accuracy of task j at the last row recorded
        while task i was being trained. NaN for j > i (not seen yet, even if logged) and for
        a whole row i when task i has no rows (e.g. an interrupted run).
    """
    T = h.num_tasks
    R = np.full((T, T), np.nan)
    for i in range(T):
        rows = h.rows_of_task(i)
        if rows.size:
            R[i, : i + 1] = h.test[rows[-1], : i + 1]
    return R


def peak_accuracy(h: History) -> np.ndarray:
    """DF-CNN "peak per-task accuracy": best test accuracy of each task during its own training.

    Returns:
        (T,) array; entry j is the max of ``h.test[:, j]`` over rows with ``h.task == j``
        (NaN if task j has no rows).
    """
    return np.array([_nanmax(h.test[h.rows_of_task(j), j]) for j in range(h.num_tasks)])


def best_val_accuracy(h: History) -> np.ndarray:
    """Test accuracy of each task at the evaluation, during its own training, where its
    *validation* accuracy was highest (the first such row on ties): the model selection a
    reviewer accepts, unlike :func:`peak_accuracy`, which is a maximum over test scores and
    grows with the number of evaluations (``eval_every``).

    Returns:
        (T,) array; NaN for a task with no rows or no finite validation accuracy.
    """
    out = np.full(h.num_tasks, np.nan)
    for j in range(h.num_tasks):
        rows = h.rows_of_task(j)
        val = h.val[rows, j] if rows.size else np.array([])
        ok = np.isfinite(val)
        if ok.any():
            best = rows[np.flatnonzero(ok)[np.argmax(val[ok])]]
            out[j] = h.test[best, j]
    return out


def final_accuracy(h: History) -> np.ndarray:
    """Test accuracy of every task at the last recorded row, shape (T,); NaN if never seen."""
    if len(h.epoch) == 0:
        return np.full(h.num_tasks, np.nan)
    return np.array(h.test[-1], dtype=np.float64)  # a copy: callers may write to it


def forgetting_ratio(h: History) -> np.ndarray:
    """DF-CNN "catastrophic forgetting ratio": final accuracy / peak per-task accuracy.

    1 means no forgetting, below 1 forgetting, above 1 positive reverse transfer (later tasks
    improved an earlier one). The last task's ratio compares its final row to its peak.

    Returns:
        (T,) array; NaN where the peak is 0 or either accuracy is undefined.
    """
    peak, final = peak_accuracy(h), final_accuracy(h)
    safe = np.where(peak > 0, peak, 1.0)  # NaN/0 peaks are masked below; avoids divide warnings
    return np.where(peak > 0, final / safe, np.nan)


def convergence_epochs(h: History, threshold: float = 0.98) -> np.ndarray:
    """DF-CNN "speed of convergence": epochs until test accuracy first reaches 98% of its peak.

    Args:
        h: The run's history.
        threshold: Fraction of the peak per-task accuracy to reach (0.98 in the paper).

    Returns:
        (T,) float array; entry j is the ``task_epoch`` of the first row of task j's training
        phase whose test accuracy is >= ``threshold * peak``. NaN if task j has no rows.
    """
    peak = peak_accuracy(h)
    out = np.full(h.num_tasks, np.nan)
    for j in range(h.num_tasks):
        rows = h.rows_of_task(j)
        if rows.size == 0 or np.isnan(peak[j]):
            continue
        acc = h.test[rows, j]
        # NaN compares False, so a row with a missing value never counts as converged.
        hit = np.flatnonzero(acc >= threshold * peak[j])
        out[j] = float(h.task_epoch[rows[hit[0]]])
    return out


def average_accuracy(R: np.ndarray) -> np.ndarray:
    """Average accuracy over the tasks learned so far (e.g. Chaudhry et al., 2018).

    Returns:
        (T,) array; entry i is the mean of ``R[i, :i+1]`` (NaN entries ignored; NaN if none).
    """
    R = _square(R)
    return np.array([_nanmean(R[i, : i + 1]) for i in range(R.shape[0])])


def backward_transfer(R: np.ndarray) -> float:
    """Backward transfer, BWT (Lopez-Paz & Ranzato, "Gradient Episodic Memory", 2017).

    ``BWT = mean_{j < T-1} (R[T-1, j] - R[j, j])``. Negative means forgetting, positive means
    learning later tasks improved earlier ones. Pairs with a NaN are skipped.

    Returns:
        The BWT, or NaN if T < 2 or no pair is defined.
    """
    R = _square(R)
    T = R.shape[0]
    if T < 2:
        return math.nan
    j = np.arange(T - 1)
    return _nanmean(R[T - 1, j] - R[j, j])


def forgetting(R: np.ndarray) -> np.ndarray:
    """Forgetting measure (Chaudhry et al., "Riemannian Walk", ECCV 2018).

    Max-over-time minus final: ``f_j = max_{i in [j, T-2]} R[i, j] - R[T-1, j]`` for j < T-1,
    i.e. how far task j fell from the best accuracy it had at any earlier task boundary.
    Positive means forgetting (opposite sign convention to BWT); the last task is excluded.

    Returns:
        (T-1,) array; NaN where undefined.
    """
    R = _square(R)
    T = R.shape[0]
    return np.array([_nanmax(R[j: T - 1, j]) - R[T - 1, j] for j in range(T - 1)])


def forward_transfer_vs_stl(R: np.ndarray, R_stl: np.ndarray) -> float:
    """Forward transfer relative to a single-task learner (STL).

    ``mean_j (R[j, j] - R_stl[j, j])``: the accuracy on each task just after learning it,
    minus that of independent per-task models trained on the same task stream (same tasks,
    same order, same data). Positive means knowledge from earlier tasks helped. This needs a
    separate STL run; ``R_stl`` is that run's accuracy matrix (only its diagonal is used).

    Args:
        R: (T, T) accuracy matrix of the lifelong learner.
        R_stl: (T, T) accuracy matrix of the STL run on the same stream.

    Returns:
        Mean difference of diagonals, NaN entries skipped (NaN if none).
    """
    R, R_stl = _square(R), _square(R_stl)
    if R.shape != R_stl.shape:
        raise ValueError(f"shape mismatch: R {R.shape} vs R_stl {R_stl.shape}")
    return _nanmean(np.diag(R) - np.diag(R_stl))


def normalized_accuracy(R: np.ndarray) -> np.ndarray:
    """SKILL's normalized accuracy (Ge et al., Fig. 5): accuracy relative to just after learning.

    Returns:
        (T, T) array with ``R[i, j] / R[j, j]`` for i >= j (1 on the diagonal), NaN elsewhere
        and where ``R[j, j]`` is 0 or NaN.
    """
    R = _square(R)
    diag = np.diag(R).copy()
    diag[~(diag > 0)] = np.nan  # zero/NaN diagonal: ratio undefined, not inf
    out = R / diag[None, :]
    out[np.triu_indices(R.shape[0], k=1)] = np.nan
    return out


def mean_ignoring_nan(x: Sequence[float] | np.ndarray) -> float | None:
    """Mean of the finite entries of ``x``, or None if there are none (JSON-friendly)."""
    a = np.asarray(x, dtype=np.float64).ravel()
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else None


def _opt(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


def summarize(h: History, parameters: int, train_seconds: float) -> dict:
    """Headline numbers of a run, JSON-ready (Python floats/ints, None for undefined).

    Args:
        h: The run's history.
        parameters: Trainable parameter count of the learner.
        train_seconds: Total training time in seconds.

    Returns:
        Dict with keys ``mean_peak_accuracy``, ``mean_best_val_accuracy``
        (:func:`best_val_accuracy`), ``mean_final_val_accuracy`` (validation accuracy of
        every task at the last row), ``mean_final_accuracy``,
        ``mean_forgetting_ratio``, ``mean_convergence_epochs`` (means over tasks, NaN
        ignored), ``average_accuracy`` (last entry of :func:`average_accuracy`),
        ``backward_transfer``, ``train_seconds`` and ``parameters``.
    """
    R = accuracy_matrix(h)
    avg = average_accuracy(R)
    return {
        "mean_peak_accuracy": mean_ignoring_nan(peak_accuracy(h)),
        "mean_best_val_accuracy": mean_ignoring_nan(best_val_accuracy(h)),
        # validation accuracy of every task after the last one (lifelong tune's score)
        "mean_final_val_accuracy": (mean_ignoring_nan(h.val[-1]) if len(h.epoch)
                                    else None),
        "mean_final_accuracy": mean_ignoring_nan(final_accuracy(h)),
        "mean_forgetting_ratio": mean_ignoring_nan(forgetting_ratio(h)),
        "mean_convergence_epochs": mean_ignoring_nan(convergence_epochs(h)),
        "average_accuracy": _opt(avg[-1]) if avg.size else None,
        "backward_transfer": _opt(backward_transfer(R)),
        "train_seconds": float(train_seconds),
        "parameters": int(parameters),
    }


def per_task(h: History, names: list[str]) -> list[dict]:
    """One JSON-ready dict per task: ``name``, ``peak_accuracy``, ``final_accuracy``,
    ``forgetting_ratio``, ``convergence_epochs`` (None where undefined).

    Raises:
        ValueError: If ``len(names)`` differs from the number of tasks.
    """
    if len(names) != h.num_tasks:
        raise ValueError(f"{len(names)} task names for {h.num_tasks} tasks")
    cols = (peak_accuracy(h), final_accuracy(h), forgetting_ratio(h), convergence_epochs(h))
    return [
        {"name": str(name), "peak_accuracy": _opt(cols[0][j]), "final_accuracy": _opt(cols[1][j]),
         "forgetting_ratio": _opt(cols[2][j]), "convergence_epochs": _opt(cols[3][j])}
        for j, name in enumerate(names)
    ]


def confidence_interval(values: Sequence[float] | np.ndarray,
                        level: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the two-sided Student-t confidence interval (e.g. over seeds).

    Half-width is ``t_{(1+level)/2, n-1} * s / sqrt(n)`` with ``s`` the sample standard
    deviation (ddof=1); it is 0 for a single value.

    Args:
        values: Finite numbers, at least one.
        level: Confidence level in (0, 1).

    Returns:
        ``(mean, half_width)``.

    Raises:
        ValueError: On no values, a non-finite value (filter None/NaN seeds explicitly, so a
            dropped seed is never silent) or a level outside (0, 1).
    """
    a = np.asarray(values, dtype=np.float64).ravel()
    if a.size == 0:
        raise ValueError("confidence_interval needs at least one value")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"confidence_interval got non-finite values: {a.tolist()}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    mean = float(a.mean())
    if a.size == 1:
        return mean, 0.0
    from scipy.stats import t  # imported lazily: scipy is heavy and only needed here

    sem = float(a.std(ddof=1)) / math.sqrt(a.size)
    return mean, float(t.ppf((1.0 + level) / 2.0, a.size - 1)) * sem


def paired_difference(a: Sequence[float], b: Sequence[float], level: float = 0.95
                      ) -> dict[str, float | int | None]:
    """Paired comparison of two learners over the same seeds: ``a[k]`` and ``b[k]`` come
    from runs with seed k (same data split, same initialisation draws), so their
    differences d = a - b are the sample, not two independent samples.

    Returns:
        ``mean`` and ``ci95`` (mean of d and half-width of its Student-t interval at
        ``level``), ``n``, ``wilcoxon_p`` (two-sided Wilcoxon signed-rank test, exact for
        small n; None when every difference is 0 or n < 2), ``sign_p`` (two-sided sign
        test on the non-zero differences; None when there are none) and ``significant``
        (the interval excludes 0; False for n < 2).

    Raises:
        ValueError: Different lengths, no pairs, or non-finite values.
    """
    x, y = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape or x.size == 0:
        raise ValueError(f"paired_difference needs equal, non-empty samples: {x.size}, {y.size}")
    d = x - y
    mean, half = confidence_interval(d, level)
    from scipy.stats import binomtest, wilcoxon

    nonzero = d[d != 0]
    w = None
    if d.size >= 2 and nonzero.size:
        w = float(wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)
    sign = None
    if nonzero.size:
        sign = float(binomtest(int((nonzero > 0).sum()), int(nonzero.size), 0.5).pvalue)
    return {"mean": mean, "ci95": half if d.size > 1 else None, "n": int(d.size),
            "wilcoxon_p": w, "sign_p": sign,
            "significant": bool(d.size > 1 and abs(mean) > half)}
