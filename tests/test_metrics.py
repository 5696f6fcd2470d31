"""Metrics against numbers computed by hand (see the comments), never by re-implementation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from lifelong import metrics as M
from lifelong.history import History

nan = np.nan


def make_history(rows: list[tuple[int, int, int, list[float]]], num_tasks: int) -> History:
    """History from (epoch, task, task_epoch, test) rows; val = test, read-only arrays."""
    n = len(rows)
    test = np.full((n, num_tasks), nan)
    for k, r in enumerate(rows):
        test[k] = r[3]
    arrays = dict(
        epoch=np.array([r[0] for r in rows], dtype=np.int64),
        task=np.array([r[1] for r in rows], dtype=np.int64),
        task_epoch=np.array([r[2] for r in rows], dtype=np.int64),
        val=test.copy(), test=test,
        loss=np.linspace(2.0, 1.0, n), seconds=np.arange(n, dtype=np.float64),
    )
    for a in arrays.values():
        a.setflags(write=False)  # any in-place write by a metric raises
    return History(**arrays)


# 3 tasks, 2 evaluations each. Task 0 is forgotten (0.60 -> 0.36), task 1 gains from
# task 2 (0.80 -> 0.88: positive reverse transfer), task 2 ends at its peak.
ROWS = [
    # epoch, task, task_epoch, test accuracy of tasks 0, 1, 2
    (1, 0, 1, [0.40, nan, nan]),
    (2, 0, 2, [0.60, nan, nan]),
    (3, 1, 1, [0.50, 0.30, nan]),
    (4, 1, 2, [0.45, 0.80, nan]),
    (5, 2, 1, [0.30, 0.70, 0.50]),
    (6, 2, 2, [0.36, 0.88, 0.50]),
]
# Last row of each task's phase (rows 1, 3, 5), lower triangle only.
R_HAND = np.array([
    [0.60, nan, nan],
    [0.45, 0.80, nan],
    [0.36, 0.88, 0.50],
])


@pytest.fixture
def h() -> History:
    return make_history(ROWS, 3)


@pytest.fixture
def interrupted() -> History:
    # Same run stopped after task 1: task 2 never trained and never seen.
    return make_history(ROWS[:4], 3)


def readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float64)
    a.setflags(write=False)
    return a


def test_accuracy_matrix(h: History) -> None:
    np.testing.assert_allclose(M.accuracy_matrix(h), R_HAND)


def test_accuracy_matrix_hides_unseen_tasks_even_if_logged() -> None:
    # A learner that evaluated every head from the start: task 1's 0.1 at the end of task 0
    # is "not yet seen" and must not leak into R[0, 1].
    h = make_history([(1, 0, 1, [0.7, 0.1]), (2, 1, 1, [0.6, 0.9])], 2)
    np.testing.assert_allclose(M.accuracy_matrix(h), [[0.7, nan], [0.6, 0.9]])


def test_accuracy_matrix_task_without_rows_is_nan(interrupted: History) -> None:
    R = M.accuracy_matrix(interrupted)
    np.testing.assert_allclose(R[:2], R_HAND[:2])
    assert np.isnan(R[2]).all()


def test_peak_final_ratio(h: History) -> None:
    # Peak during own phase: max(0.40, 0.60), max(0.30, 0.80), max(0.50, 0.50).
    np.testing.assert_allclose(M.peak_accuracy(h), [0.60, 0.80, 0.50])
    # Last row.
    np.testing.assert_allclose(M.final_accuracy(h), [0.36, 0.88, 0.50])
    # 0.36/0.60 = 0.6 (forgetting), 0.88/0.80 = 1.1 (> 1: positive reverse transfer), 1.0.
    ratio = M.forgetting_ratio(h)
    np.testing.assert_allclose(ratio, [0.6, 1.1, 1.0])
    assert ratio[1] > 1.0


def test_peak_ignores_later_improvements(h: History) -> None:
    # Task 1 reaches 0.88 only after its phase; its peak stays 0.80.
    assert M.peak_accuracy(h)[1] == pytest.approx(0.80)


def test_nan_for_tasks_not_trained(interrupted: History) -> None:
    np.testing.assert_allclose(M.peak_accuracy(interrupted), [0.60, 0.80, nan])
    np.testing.assert_allclose(M.final_accuracy(interrupted), [0.45, 0.80, nan])
    # 0.45/0.60 = 0.75; 0.80/0.80 = 1.
    np.testing.assert_allclose(M.forgetting_ratio(interrupted), [0.75, 1.0, nan])
    np.testing.assert_allclose(M.convergence_epochs(interrupted), [2, 2, nan])


def test_zero_peak_gives_nan_ratio() -> None:
    h = make_history([(1, 0, 1, [0.0, nan]), (2, 1, 1, [0.0, 0.5])], 2)
    ratio = M.forgetting_ratio(h)
    assert np.isnan(ratio[0]) and ratio[1] == pytest.approx(1.0)


def test_empty_history() -> None:
    h = make_history([], 2)
    assert np.isnan(M.final_accuracy(h)).all()
    assert np.isnan(M.peak_accuracy(h)).all()
    assert M.summarize(h, 10, 0.0)["mean_peak_accuracy"] is None


def test_convergence_epochs(h: History) -> None:
    # 98% of peak: task 0 needs 0.588 -> 0.40 no, 0.60 yes at task_epoch 2;
    # task 1 needs 0.784 -> 0.30 no, 0.80 at 2; task 2 needs 0.49 -> 0.50 at 1.
    np.testing.assert_allclose(M.convergence_epochs(h), [2, 2, 1])
    # 50% of peak: 0.30 -> 0.40 at 1; 0.40 -> 0.30 no, 0.80 at 2; 0.25 -> 0.50 at 1.
    np.testing.assert_allclose(M.convergence_epochs(h, threshold=0.5), [1, 2, 1])


def test_convergence_crosses_at_known_epoch() -> None:
    # Peak 1.0 at task_epoch 5; 0.98 * 1.0 = 0.98 is first reached by 0.985 at task_epoch 3
    # (0.95 afterwards does not matter; a NaN row never counts). Global epochs 11.. differ
    # from task_epoch on purpose: the metric counts epochs within the task.
    accs = [0.1, nan, 0.985, 0.95, 1.0]
    h = make_history([(10 + k, 0, k, [a]) for k, a in enumerate(accs, start=1)], 1)
    assert M.convergence_epochs(h)[0] == 3
    # 99%: 0.99 is only reached by 1.0 at task_epoch 5.
    assert M.convergence_epochs(h, threshold=0.99)[0] == 5


def test_average_accuracy() -> None:
    # 0.60; (0.45 + 0.80) / 2 = 0.625; (0.36 + 0.88 + 0.50) / 3 = 0.58.
    np.testing.assert_allclose(M.average_accuracy(readonly(R_HAND)), [0.60, 0.625, 0.58])


def test_backward_transfer_sign() -> None:
    # ((0.36 - 0.60) + (0.88 - 0.80)) / 2 = (-0.24 + 0.08) / 2 = -0.08: net forgetting < 0.
    assert M.backward_transfer(readonly(R_HAND)) == pytest.approx(-0.08)
    # No forgetting at all: R[T-1, j] == R[j, j] -> 0; improvement -> positive.
    assert M.backward_transfer(np.array([[0.5, nan], [0.5, 0.7]])) == pytest.approx(0.0)
    assert M.backward_transfer(np.array([[0.5, nan], [0.6, 0.7]])) == pytest.approx(0.1)
    assert math.isnan(M.backward_transfer(np.array([[0.5]])))


def test_forgetting_sign() -> None:
    # Task 0: max(R[0,0], R[1,0]) = max(0.60, 0.45) = 0.60, minus final 0.36 = +0.24 (forgot).
    # Task 1: max(R[1,1]) = 0.80, minus final 0.88 = -0.08 (improved). Last task excluded.
    np.testing.assert_allclose(M.forgetting(readonly(R_HAND)), [0.24, -0.08])
    assert M.forgetting(np.array([[0.5]])).shape == (0,)


def test_forgetting_uses_max_over_time_not_first() -> None:
    # Task 0: 0.5 after itself, 0.9 after task 1, 0.6 at the end -> max 0.9 - 0.6 = 0.3.
    R = np.array([[0.5, nan, nan], [0.9, 0.8, nan], [0.6, 0.8, 0.7]])
    np.testing.assert_allclose(M.forgetting(R), [0.3, 0.0])


def test_forward_transfer_vs_stl() -> None:
    R_stl = readonly(np.diag([0.55, 0.70, 0.60]))
    # (0.60 - 0.55) + (0.80 - 0.70) + (0.50 - 0.60) = 0.05 + 0.10 - 0.10 = 0.05; / 3.
    assert M.forward_transfer_vs_stl(readonly(R_HAND), R_stl) == pytest.approx(0.05 / 3)
    with pytest.raises(ValueError):
        M.forward_transfer_vs_stl(R_HAND, np.eye(2))


def test_normalized_accuracy() -> None:
    # Column j divided by R[j, j]: 0.45/0.60 = 0.75, 0.36/0.60 = 0.6, 0.88/0.80 = 1.1.
    expected = np.array([[1.0, nan, nan], [0.75, 1.0, nan], [0.6, 1.1, 1.0]])
    np.testing.assert_allclose(M.normalized_accuracy(readonly(R_HAND)), expected)
    # A zero diagonal is undefined, not inf.
    out = M.normalized_accuracy(np.array([[0.0, nan], [0.3, 0.5]]))
    np.testing.assert_allclose(out, [[nan, nan], [nan, 1.0]])


def test_mean_ignoring_nan() -> None:
    assert M.mean_ignoring_nan([1.0, nan, 3.0]) == pytest.approx(2.0)
    assert M.mean_ignoring_nan([nan, nan]) is None
    assert M.mean_ignoring_nan([]) is None


def test_summarize(h: History) -> None:
    s = M.summarize(h, parameters=np.int64(1234), train_seconds=np.float32(12.5))
    assert set(s) == {"mean_peak_accuracy", "mean_best_val_accuracy", "mean_final_accuracy",
                      "mean_final_val_accuracy", "mean_forgetting_ratio",
                      "mean_convergence_epochs", "average_accuracy", "backward_transfer",
                      "train_seconds", "parameters"}
    assert s["mean_final_val_accuracy"] == pytest.approx(0.58)  # val = test here
    assert s["mean_best_val_accuracy"] == pytest.approx(1.9 / 3)  # val = test here
    # (0.6 + 0.8 + 0.5)/3; (0.36 + 0.88 + 0.5)/3; (0.6 + 1.1 + 1.0)/3; (2 + 2 + 1)/3.
    assert s["mean_peak_accuracy"] == pytest.approx(1.9 / 3)
    assert s["mean_final_accuracy"] == pytest.approx(0.58)
    assert s["mean_forgetting_ratio"] == pytest.approx(0.9)
    assert s["mean_convergence_epochs"] == pytest.approx(5 / 3)
    assert s["average_accuracy"] == pytest.approx(0.58)
    assert s["backward_transfer"] == pytest.approx(-0.08)
    assert s["train_seconds"] == 12.5 and type(s["train_seconds"]) is float
    assert s["parameters"] == 1234 and type(s["parameters"]) is int
    assert all(v is None or type(v) in (int, float) for v in s.values())
    json.dumps(s, allow_nan=False)


def test_summarize_and_per_task_use_none_for_nan(interrupted: History) -> None:
    s = M.summarize(interrupted, parameters=10, train_seconds=1.0)
    # Task 2 never trained: no last-task average, no BWT; means cover tasks 0 and 1 only.
    assert s["average_accuracy"] is None and s["backward_transfer"] is None
    assert s["mean_peak_accuracy"] == pytest.approx(0.70)  # (0.60 + 0.80) / 2
    rows = M.per_task(interrupted, ["a", "b", "c"])
    assert rows[2] == {"name": "c", "peak_accuracy": None, "final_accuracy": None,
                       "forgetting_ratio": None, "convergence_epochs": None}
    json.dumps([s, rows], allow_nan=False)


def test_per_task(h: History) -> None:
    rows = M.per_task(h, ["cifar-0", "cifar-1", "cifar-2"])
    assert [r["name"] for r in rows] == ["cifar-0", "cifar-1", "cifar-2"]
    assert rows[1]["peak_accuracy"] == pytest.approx(0.80)
    assert rows[1]["final_accuracy"] == pytest.approx(0.88)
    assert rows[1]["forgetting_ratio"] == pytest.approx(1.1)
    assert rows[0]["convergence_epochs"] == 2.0
    assert all(type(v) is float for r in rows for k, v in r.items() if k != "name")
    json.dumps(rows, allow_nan=False)
    with pytest.raises(ValueError):
        M.per_task(h, ["only one"])


def test_confidence_interval() -> None:
    # [1, 2, 3]: mean 2, s = 1, t_{0.975, 2} = 4.302653 -> 4.302653 / sqrt(3) = 2.48414.
    mean, half = M.confidence_interval([1.0, 2.0, 3.0])
    assert mean == pytest.approx(2.0)
    assert half == pytest.approx(2.48414, abs=1e-4)
    # 90%: t_{0.95, 2} = 2.919986 -> 2.919986 / sqrt(3) = 1.68585.
    assert M.confidence_interval((1.0, 2.0, 3.0), level=0.9)[1] == pytest.approx(1.68585,
                                                                                 abs=1e-4)
    assert M.confidence_interval([0.7]) == (0.7, 0.0)
    for bad in ([], [1.0, nan], [1.0, None]):
        with pytest.raises(ValueError):
            M.confidence_interval(bad)
    with pytest.raises(ValueError):
        M.confidence_interval([1.0, 2.0], level=1.5)


def test_inputs_not_mutated(h: History) -> None:
    # make_history arrays are read-only, so a write would raise; also compare values.
    before = {k: getattr(h, k).copy() for k in ("epoch", "task", "task_epoch", "val", "test",
                                                 "loss", "seconds")}
    R, R_stl = readonly(R_HAND), readonly(np.diag([0.5, 0.5, 0.5]))
    R_before = R.copy()
    M.accuracy_matrix(h), M.peak_accuracy(h), M.convergence_epochs(h)
    M.summarize(h, 1, 1.0), M.per_task(h, ["a", "b", "c"])
    final = M.final_accuracy(h)
    final[:] = -1.0  # the returned array is a copy, writable, and not a view of h.test
    M.average_accuracy(R), M.backward_transfer(R), M.forgetting(R)
    M.forward_transfer_vs_stl(R, R_stl), M.normalized_accuracy(R)
    values = readonly([1.0, 2.0, 3.0])
    M.confidence_interval(values), M.mean_ignoring_nan(values)
    for k, v in before.items():
        np.testing.assert_array_equal(getattr(h, k), v)
    np.testing.assert_array_equal(R, R_before)
    np.testing.assert_array_equal(values, [1.0, 2.0, 3.0])


def test_best_val_accuracy_takes_the_test_score_where_validation_peaked() -> None:
    # Task 0's validation peaks at its first evaluation (0.70), where its test is 0.40,
    # though test later reaches 0.60; task 1's validation ties (0.50, 0.50): the first row.
    h = make_history(ROWS, 3)
    val = np.array(h.val)
    val[0, 0], val[1, 0] = 0.70, 0.65
    val[2, 1], val[3, 1] = 0.50, 0.50
    h2 = History(epoch=h.epoch, task=h.task, task_epoch=h.task_epoch, val=val, test=h.test,
                 loss=h.loss, seconds=h.seconds)
    np.testing.assert_allclose(M.best_val_accuracy(h2), [0.40, 0.30, 0.50])
    np.testing.assert_allclose(M.peak_accuracy(h2), [0.60, 0.80, 0.50])
    # A task that never trained has none.
    assert np.isnan(M.best_val_accuracy(make_history(ROWS[:4], 3))[2])


def test_paired_difference_against_hand_computation() -> None:
    # d = a - b = [0.01, 0.02, 0.03, 0.04, -0.05]: mean 0.01; sample sd
    # sqrt((0 + 1 + 4 + 9 + 36) e-4 / 4) = sqrt(12.5e-4) = 0.035355; sem = 0.015811;
    # t(0.975, 4) = 2.776445 -> half-width 0.0438994.
    b = [0.80, 0.70, 0.60, 0.50, 0.90]
    a = [x + d for x, d in zip(b, [0.01, 0.02, 0.03, 0.04, -0.05], strict=True)]
    r = M.paired_difference(a, b)
    assert r["mean"] == pytest.approx(0.01) and r["n"] == 5
    assert r["ci95"] == pytest.approx(0.0438994, abs=1e-6)
    assert r["significant"] is False
    # Wilcoxon: ranks 1-5, W- = 5; P(W+ <= 5) = 10/32 exactly, two-sided 0.625.
    assert r["wilcoxon_p"] == pytest.approx(0.625)
    # Sign test: 4 of 5 positive, two-sided 2 * 6/32 = 0.375.
    assert r["sign_p"] == pytest.approx(0.375)
    # A consistent gain is significant; an unpaired view of the same numbers would not be.
    gain = M.paired_difference([x + 0.01 for x in b], b)
    assert gain["significant"] is True and gain["ci95"] == pytest.approx(0.0, abs=1e-12)
    assert M.paired_difference([0.5], [0.4])["ci95"] is None
    with pytest.raises(ValueError):
        M.paired_difference([0.1, 0.2], [0.1])
