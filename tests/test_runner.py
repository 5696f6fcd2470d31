"""The runner end to end: outputs and their schema, accuracy floors on the shipped data,
and kill-and-resume giving the same results as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lifelong.api import run_experiment
from lifelong.errors import ConfigError
from lifelong.outputs import RESULT_FILES


def test_run_directory_holds_every_output_with_the_documented_schema(tmp_path):
    out = tmp_path / "run"
    run_experiment({"run": {"benchmark": "synthetic", "learner": "hps", "epochs": 2}}, out=out,
                   progress=False)
    for name in (*RESULT_FILES, "config.yaml", "checkpoint/state.json"):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    assert {"learner", "benchmark", "seed", "summary", "tasks"} <= set(results)
    assert set(results["summary"]) >= {"mean_peak_accuracy", "mean_final_accuracy",
                                       "mean_forgetting_ratio", "mean_convergence_epochs",
                                       "train_seconds", "parameters"}
    for task in results["tasks"]:
        assert set(task) >= {"name", "peak_accuracy", "final_accuracy", "forgetting_ratio",
                             "convergence_epochs"}
        assert 0.0 <= task["peak_accuracy"] <= 1.0 and 0.0 <= task["final_accuracy"] <= 1.0
    history = (out / "history.csv").read_text().splitlines()
    assert len(history) == 1 + 3 * 2  # header + one row per epoch (eval_every=1)
    assert len((out / "accuracy_matrix.csv").read_text().splitlines()) == 1 + 3
    assert (out / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_every_thins_the_history_but_always_evaluates_a_tasks_last_epoch(tmp_path):
    out = tmp_path / "run"
    run_experiment({"run": {"benchmark": "synthetic", "learner": "stl", "epochs": 5,
                            "eval_every": 2}}, out=out, progress=False)
    rows = (out / "history.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[2]) for r in rows] == [2, 4, 5] * 3


def test_forward_transfer_against_a_given_stl_run(tmp_path):
    run = {"benchmark": "synthetic", "epochs": 2}
    run_experiment({"run": dict(run, learner="stl")}, out=tmp_path / "stl", progress=False)
    hps = run_experiment({"run": dict(run, learner="hps")}, out=tmp_path / "hps",
                         progress=False, stl=tmp_path / "stl")
    R, S = (np.array(r["accuracy_matrix"], dtype=float) for r in
            (hps, json.loads((tmp_path / "stl" / "results.json").read_text())))
    expected = float(np.mean(np.diag(R) - np.diag(S)))
    assert hps["summary"]["forward_transfer_vs_stl"] == pytest.approx(expected)
    with pytest.raises(ConfigError):  # the reference must be an STL run
        run_experiment({"run": dict(run, learner="stl")}, out=tmp_path / "x", progress=False,
                       stl=tmp_path / "hps")
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
@pytest.mark.parametrize("learner", ["hps", "stl"])
def test_accuracy_floor_on_split_mnist(learner, tmp_path):
    # Two epochs per task (the default is 10) already clear the 0.95 floor.
    results = run_experiment({"run": {"benchmark": "split-mnist", "learner": learner,
                                      "epochs": 2}}, out=tmp_path / learner, progress=False)
    assert results["summary"]["mean_peak_accuracy"] >= 0.95


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "lifelong", "run", "--quiet", "--threads", "2", *args]


def _env() -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[1] / "src")
    return dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _global_epoch(run_dir: Path) -> int:
    try:
        return json.loads((run_dir / "checkpoint" / "state.json").read_text())["meta"][
            "global_epoch"]
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.slow
def test_kill_and_resume_matches_an_uninterrupted_run(tmp_path):
    args = ["--benchmark", "split-mnist", "--learner", "hps", "epochs=3", "checkpoint_every=1"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli(*args, "--out", str(killed)), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300  # generous: a loaded machine is slow to start torch
    # Kill in the middle of the second task (epochs 4..6), after a mid-task checkpoint.
    while _global_epoch(killed) < 4 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "results.json").exists()
    assert 4 <= _global_epoch(killed) < 15

    resumed = subprocess.run(_cli("--resume", str(killed)), env=_env(), capture_output=True,
                             text=True)
    assert resumed.returncode == 0, resumed.stderr
    full = subprocess.run(_cli(*args, "--out", str(tmp_path / "full")), env=_env(),
                          capture_output=True, text=True)
    assert full.returncode == 0, full.stderr

    a = json.loads((killed / "results.json").read_text())
    b = json.loads((tmp_path / "full" / "results.json").read_text())
    assert a["accuracy_matrix"] == b["accuracy_matrix"]
    assert a["tasks"] == b["tasks"]
    def accuracies(run_dir: Path) -> list[list[str]]:
        return [r.split(",")[5:] for r in (run_dir / "history.csv").read_text().splitlines()]

    assert accuracies(killed) == accuracies(tmp_path / "full")  # every evaluation, every epoch


def test_ctrl_c_leaves_a_resumable_run(tmp_path, monkeypatch):
    from lifelong.api import RunInterrupted
    from lifelong.learners.tasknet import TaskNetLearner

    calls = {"n": 0}
    original = TaskNetLearner.observe

    def interrupt_once(self, batch):
        calls["n"] += 1
        if calls["n"] == 30:
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(TaskNetLearner, "observe", interrupt_once)
    out = tmp_path / "run"
    raw = {"run": {"benchmark": "synthetic", "learner": "hps", "epochs": 2}}
    with pytest.raises(RunInterrupted) as err:
        run_experiment(raw, out=out, progress=False)
    assert err.value.run_dir == out and (out / "checkpoint" / "state.json").is_file()
    monkeypatch.setattr(TaskNetLearner, "observe", original)
    resumed = run_experiment({}, resume=out, progress=False)
    full = run_experiment(raw, out=tmp_path / "full", progress=False)
    assert resumed["accuracy_matrix"] == full["accuracy_matrix"]


# -- honest timing and counting ---------------------------------------------------------------
def test_train_seconds_include_the_learners_end_task_work(tmp_path, monkeypatch):
    from lifelong.learners.hps import HPS

    original = HPS.end_task

    def slow_end_task(self, task):  # e.g. EWC's Fisher: training work outside the steps
        time.sleep(0.4)
        original(self, task)

    monkeypatch.setattr(HPS, "end_task", slow_end_task)
    res = run_experiment({"run": {"benchmark": "synthetic", "learner": "hps", "epochs": 1}},
                         out=tmp_path / "run", progress=False)
    assert res["summary"]["train_seconds"] >= 3 * 0.4  # three tasks


def test_with_count_macs_off_no_flop_counter_runs(tmp_path, monkeypatch):
    from torch.utils.flop_counter import FlopCounterMode

    entered = []
    original = FlopCounterMode.__enter__

    def spy(self):
        entered.append(1)
        return original(self)

    monkeypatch.setattr(FlopCounterMode, "__enter__", spy)
    raw = {"run": {"benchmark": "synthetic", "learner": "ewc", "epochs": 1}}
    off = run_experiment(raw, out=tmp_path / "off", progress=False)
    assert entered == [] and off["summary"]["train_macs"] is None
    on = run_experiment({"run": {**raw["run"], "count_macs": True}}, out=tmp_path / "on",
                        progress=False)
    assert entered and on["summary"]["train_macs"] > 0
    assert on["accuracy_matrix"] == off["accuracy_matrix"]  # counting changes no result


def test_drop_last_is_a_setting(tmp_path):
    from lifelong.macs import MACS_FILE

    steps = {}
    for drop in (True, False):
        out = tmp_path / str(drop)
        run_experiment({"run": {"benchmark": "synthetic", "learner": "hps", "epochs": 1,
                                "batch_size": 100, "drop_last": drop, "count_macs": True}},
                       out=out, progress=False)
        steps[drop] = [t["steps"] for t in json.loads((out / MACS_FILE).read_text())["tasks"]]
    # 240 training images per task (synthetic), batches of 100: 2 full batches, 1 partial
    assert steps[True] == [2, 2, 2] and steps[False] == [3, 3, 3]
