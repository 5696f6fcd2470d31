"""The SKILL paper's views in ``lifelong compare`` (Figures 4, 5 and 8 over seeds) against
hand computations, the training-MAC counter against hand counts, and compare writing the
new plots and the ``train_macs`` column."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from lifelong import plots
from lifelong.compare import compare, skill_views
from lifelong.macs import MACS_FILE, TrainMacs, count_macs, total_train_macs

nan = math.nan
# t quantile of the two-sided 95% interval with 1 degree of freedom (two seeds): the
# Student t with one degree of freedom is the Cauchy distribution, quantile tan(pi (p - 1/2)).
T1 = math.tan(math.pi * 0.475)

# Two seeds' accuracy matrices, R[i, j] = accuracy on task j after learning task i.
R1 = np.array([[0.9, nan, nan],
               [0.6, 0.8, nan],
               [0.3, 0.4, 0.7]])
R2 = np.array([[0.7, nan, nan],
               [0.7, 0.6, nan],
               [0.5, 0.6, 0.9]])


def _pair(a: list[float], b: list[float]) -> tuple[list[float], list[float]]:
    """Hand mean and 95% half-width of two seeds: s / sqrt(2) = |a - b| / 2."""
    return ([(x + y) / 2 for x, y in zip(a, b, strict=True)],
            [T1 * abs(x - y) / 2 if not math.isnan(x) else nan for x, y in zip(a, b, strict=True)])


def _close(got: tuple[np.ndarray, np.ndarray], want: tuple[list[float], list[float]]) -> None:
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-9, atol=1e-12)


def test_skill_views_equal_hand_computations_over_two_seeds():
    v = skill_views([R1, R2], first_tasks=2)
    # Figure 4: accuracy on the first task after each task.
    _close(v["first_task_accuracy"], _pair([0.9, 0.6, 0.3], [0.7, 0.7, 0.5]))
    # Figure 5: R[i, j] / R[j, j] of tasks 0 and 1, undefined before task j is learned.
    assert len(v["normalized_first_tasks"]) == 2
    _close(v["normalized_first_tasks"][0],
           _pair([1.0, 0.6 / 0.9, 0.3 / 0.9], [1.0, 0.7 / 0.7, 0.5 / 0.7]))
    _close(v["normalized_first_tasks"][1], _pair([nan, 1.0, 0.4 / 0.8], [nan, 1.0, 0.6 / 0.6]))
    # Figure 8: mean over the tasks learned so far.
    _close(v["average_accuracy"], _pair([0.9, (0.6 + 0.8) / 2, (0.3 + 0.4 + 0.7) / 3],
                                        [0.7, (0.7 + 0.6) / 2, (0.5 + 0.6 + 0.9) / 3]))
    # One seed: the values themselves, no interval; a seed missing an entry is left out of
    # that entry only.
    one = skill_views([R1])
    np.testing.assert_allclose(one["first_task_accuracy"][0], [0.9, 0.6, 0.3])
    np.testing.assert_allclose(one["first_task_accuracy"][1], [0.0, 0.0, 0.0])
    R3 = R2.copy()
    R3[2, 0] = nan
    gap = skill_views([R1, R3])["first_task_accuracy"]
    np.testing.assert_allclose(gap[0], [0.8, 0.65, 0.3])
    assert gap[1][2] == 0.0


# -- MACs -------------------------------------------------------------------------------------
def test_mac_counter_equals_hand_counts_of_linear_and_depthwise_layers():
    torch.manual_seed(0)
    B, n_in, n_out = 4, 5, 3
    lin = nn.Linear(n_in, n_out)
    x = torch.randn(B, n_in)
    fwd = B * n_in * n_out
    _, m = count_macs(lambda: lin(x))
    assert m == fwd  # the bias add is not a MAC
    _, m = count_macs(lambda: lin(x).sum().backward())
    assert m == fwd + fwd  # backward: the weight's gradient only (x needs none)
    x.requires_grad_(True)
    _, m = count_macs(lambda: lin(x).sum().backward())
    assert m == fwd + 2 * fwd  # backward: the input's and the weight's gradients
    # A depthwise convolution: torch counts its weight gradient as dense (C times too many);
    # ours counts B * C * H * W * k * k, like the forward and the input gradient.
    C, H, k = 6, 5, 3
    conv = nn.Conv2d(C, C, k, padding=1, groups=C, bias=False)
    z = torch.randn(B, C, H, H, requires_grad=True)
    _, m = count_macs(lambda: conv(z).sum().backward())
    assert m == 3 * B * C * H * H * k * k


class _Replay:
    """A stand-in learner: a step is a (10, 8) -> 4 linear layer forward and backward, and
    from its second step on also one over a replayed batch of 10 (as ER with a buffer)."""

    def __init__(self) -> None:
        self.lin = nn.Linear(8, 4)
        self.x = torch.randn(10, 8)
        self.seen = 0

    def observe(self) -> None:
        x = self.x if self.seen == 0 else torch.cat([self.x, self.x])
        self.lin(x).sum().backward()
        self.seen += 1

    def end_task(self) -> None:
        self.lin(self.x)  # 10 * 8 * 4 MACs, counted in full


def test_train_macs_are_measured_steps_times_steps_plus_task_work_and_survive_a_checkpoint():
    step = 2 * 10 * 8 * 4  # forward + weight gradient of a batch of 10 (input needs none)
    learner, meter = _Replay(), TrainMacs()
    for epoch in range(2):
        if epoch == 1:  # a checkpoint between epochs: the count continues from JSON
            meter = TrainMacs.from_json(json.loads(json.dumps(meter.to_json())))
        meter.begin_epoch(0)
        for _ in range(40):
            with meter.step():
                learner.observe()
        meter.end_epoch()
    with meter.work(0):
        learner.end_task()
    rep = meter.report()["tasks"][0]
    # Steps 1 and 32 of each epoch are measured (both with replay, 2 * step); the task's
    # first step (no replay yet) is measured but does not stand for the epoch.
    assert rep["steps"] == 80 and rep["measured_steps"] == 4
    assert rep["step_macs"] == 80 * 2 * step and rep["other_macs"] == 10 * 8 * 4
    assert meter.total() == 80 * 2 * step + 10 * 8 * 4
    # An epoch of one step: its step 0 is all there is.
    one = TrainMacs()
    one.begin_epoch(3)
    with one.step():
        _Replay().observe()
    one.end_epoch()
    assert one.total() == step
    # A learner that counts its own (LLL): not measured; its report's count is the total.
    off = TrainMacs(enabled=False)
    off.begin_epoch(0)
    with off.step():
        _Replay().observe()
    off.end_epoch()
    assert off.total() is None and off.report()["tasks"] == [{"task": 0, "steps": 1}]
    assert total_train_macs(None, {"train_macs": {"0": 5, "1": 7}}) == 12
    assert total_train_macs(one.report(), None) == one.total()


# -- compare ----------------------------------------------------------------------------------
def test_compare_writes_the_skill_views_and_the_train_macs_column(tmp_path, monkeypatch):
    # The figures tests/test_compare.py checks are not drawn here (most of a synthetic run's
    # time is drawing): the runs' own plots and the DF-CNN paper's comparison.
    for name in ("plot_accuracy_over_time", "plot_forgetting_ratio", "plot_accuracy_panels",
                 "plot_bars_with_ci", "plot_grouped_bars"):
        monkeypatch.setattr(plots, name, lambda *args, **kwargs: None)
    out = tmp_path / "cmp"
    raw = {"run": {"benchmark": "synthetic", "epochs": 2}, "benchmark": {}, "learner": {}}
    summary = compare(raw, ["hps", "ewc"], [0, 1], out, progress=False, echo=lambda _: None)
    for name in ("first_task_accuracy.png", "normalized_first_tasks.png",
                 "average_accuracy.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    for learner in ("hps", "ewc"):
        runs = [json.loads((out / learner / f"seed{s}" / "results.json").read_text())
                for s in (0, 1)]
        macs = [r["summary"]["train_macs"] for r in runs]
        detail = json.loads((out / learner / "seed0" / MACS_FILE).read_text())
        assert macs[0] == detail["train_macs"] > 0
        assert [t["steps"] for t in detail["tasks"]] == [48, 48, 48]  # 240 images / 10, x 2
        row = summary["learners"][learner]
        assert row["train_macs"]["mean"] == pytest.approx(np.mean(macs))
        # The views in comparison.json are those of the runs' accuracy matrices.
        views = skill_views([np.array(r["accuracy_matrix"], dtype=float) for r in runs])
        np.testing.assert_allclose(row["skill_views"]["first_task_accuracy"]["mean"],
                                   views["first_task_accuracy"][0])
    # EWC's Fisher at each task's end is training work, so it costs more than HPS's steps.
    rows = summary["learners"]
    assert rows["ewc"]["train_macs"]["mean"] > rows["hps"]["train_macs"]["mean"]
    md = (out / "comparison.md").read_text().splitlines()
    assert "training MACs" in next(ln for ln in md if ln.startswith("| learner |"))
    assert any("Loss reduction differs" in ln for ln in md)  # hps sums, ewc averages
    table = list(csv.DictReader((out / "comparison.csv").open()))
    assert float(table[0]["train_macs_mean"]) == pytest.approx(rows["hps"]["train_macs"]["mean"],
                                                              rel=1e-5)
    saved = json.loads((out / "comparison.json").read_text())
    assert saved["learners"]["ewc"]["train_macs"]["values"] == rows["ewc"]["train_macs"]["values"]
