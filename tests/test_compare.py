"""lifelong compare: runs every learner x seed, reuses and resumes runs, and reports
confidence intervals that match the runs' own results."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lifelong.cli import main
from lifelong.compare import compare
from lifelong.errors import ConfigError, RunError
from lifelong.metrics import confidence_interval

RAW = {"run": {"benchmark": "synthetic", "epochs": 2}, "benchmark": {}, "learner": {}}


def test_compare_writes_the_table_and_plots_and_reuses_runs(tmp_path, capsys):
    out = tmp_path / "cmp"
    lines: list[str] = []
    summary = compare(RAW, ["stl", "hps"], [0, 1], out, progress=False, echo=lines.append)
    assert len(lines) == 4 and all("trained" in line for line in lines)
    for name in ("comparison.md", "comparison.csv", "comparison.json", "accuracy_panels.png",
                 "peak_accuracy.png", "forgetting_ratio.png", "forgetting_per_task.png",
                 "convergence.png", "average_accuracy.png"):
        assert (out / name).is_file(), name
    # The interval of each learner is the t-interval over its seeds' results.json values.
    peaks = [json.loads((out / "hps" / f"seed{s}" / "results.json").read_text())["summary"]
             ["mean_peak_accuracy"] for s in (0, 1)]
    mean, half = confidence_interval(peaks)
    row = summary["learners"]["hps"]
    assert row["mean_peak_accuracy"]["mean"] == pytest.approx(mean)
    assert row["mean_peak_accuracy"]["ci95"] == pytest.approx(half)
    assert "forward_transfer_vs_stl" in row and "forward_transfer_vs_stl" not in \
        summary["learners"]["stl"]
    text = (out / "comparison.md").read_text()
    table, paired = text.split("## Paired against stl")
    assert sum(line.startswith(("| stl ", "| hps ")) for line in table.splitlines()) == 2
    # hps against stl, seed by seed: the mean of the per-seed differences of final accuracy
    finals = {n: [json.loads((out / n / f"seed{s}" / "results.json").read_text())["summary"]
                  ["mean_final_accuracy"] for s in (0, 1)] for n in ("stl", "hps")}
    diff = row["vs_reference"]["mean_final_accuracy"]
    assert summary["reference"] == "stl" and diff["n"] == 2
    assert diff["mean"] == pytest.approx(np.mean(np.subtract(finals["hps"], finals["stl"])))
    assert [ln.startswith("| hps ") for ln in paired.splitlines()].count(True) == 1

    # Started again: finished runs are reused; a run without results is resumed.
    (out / "stl" / "seed1" / "results.json").unlink()
    lines.clear()
    again = compare(RAW, ["stl", "hps"], [0, 1], out, progress=False, echo=lines.append)
    assert ["reused" in line for line in lines] == [True, False, True, True]
    assert "resumed" in lines[1]
    np.testing.assert_allclose(again["learners"]["stl"]["mean_peak_accuracy"]["values"],
                               summary["learners"]["stl"]["mean_peak_accuracy"]["values"])


def test_compare_refuses_runs_made_with_other_settings(tmp_path):
    out = tmp_path / "cmp"
    compare(RAW, ["hps"], [0], out, progress=False, echo=lambda _: None)
    other = {"run": {"benchmark": "synthetic", "epochs": 3}, "benchmark": {}, "learner": {}}
    with pytest.raises(RunError):
        compare(other, ["hps"], [0], out, progress=False, echo=lambda _: None)
    compare(other, ["hps"], [0], out, progress=False, overwrite=True, echo=lambda _: None)


def test_compare_cli_per_learner_settings_and_bad_input(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--benchmark", "synthetic", "--learners", "hps,dfcnn", "--seeds",
                 "1", "--out", str(out), "--quiet", "epochs=1", "dfcnn.kb_l2=1e-7"]) == 0
    cfg = (out / "dfcnn" / "seed0" / "config.yaml").read_text()
    assert "kb_l2: 1.0e-07" in cfg
    capsys.readouterr()
    for argv in (["--learners", "hps,nope"], ["--learners", "hps,hps"], ["--seeds", "0"],
                 ["--learners", "hps", "stl.lr=1"], ["--learners", "hps", "learner=stl"]):
        assert main(["compare", "--benchmark", "synthetic", "--out", str(tmp_path / "x"),
                     *argv]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_memory_gives_every_rehearsal_method_the_same_buffer(tmp_path, monkeypatch):
    from lifelong import plots

    for name in ("plot_accuracy_over_time", "plot_forgetting_ratio", "plot_accuracy_panels",
                 "plot_bars_with_ci", "plot_grouped_bars", "plot_average_accuracy",
                 "plot_curves_over_tasks", "plot_curve_panels"):
        monkeypatch.setattr(plots, name, lambda *args, **kwargs: None)
    raw = {"run": {"benchmark": "synthetic", "epochs": 1, "setting": "class-il"},
           "benchmark": {}, "learner": {}}
    rehearsal = ["er", "agem", "der", "derpp", "icarl"]
    summary = compare(raw, [*rehearsal, "finetune"], [0], tmp_path / "cmp", progress=False,
                      echo=lambda _: None, memory=30)
    rows = summary["learners"]
    # 30 stored examples each at the end (iCaRL: 5 exemplars for each of the 6 classes)
    assert {n: rows[n]["memory_examples"]["mean"] for n in rehearsal} == dict.fromkeys(
        rehearsal, 30.0)
    assert all(rows[n]["replay_per_step"]["mean"] > 0 for n in rehearsal)
    assert "memory_examples" in rows["finetune"] and rows["finetune"]["memory_examples"][
        "mean"] == 0
    assert "stored examples" in (tmp_path / "cmp" / "comparison.md").read_text()
    with pytest.raises(ConfigError):  # --memory sets the buffer itself
        compare(raw, ["er"], [0], tmp_path / "x", progress=False, echo=lambda _: None,
                memory=30, per_learner={"er": {"buffer_size": 10}})


@pytest.mark.system
def test_the_grid_on_ray_gives_the_local_grids_results(tmp_path, monkeypatch):
    """Two runs at once as Ray tasks on a local (loopback) cluster: the same accuracy
    matrices as one after another in this process; finished runs are reused."""
    ray = pytest.importorskip("ray")
    from lifelong import plots
    from lifelong.compare import GridBackend

    for name in ("plot_accuracy_over_time", "plot_forgetting_ratio", "plot_accuracy_panels",
                 "plot_bars_with_ci", "plot_grouped_bars", "plot_average_accuracy",
                 "plot_curves_over_tasks", "plot_curve_panels"):
        monkeypatch.setattr(plots, name, lambda *args, **kwargs: None)
    raw = {"run": {"benchmark": "synthetic", "epochs": 1, "threads": 1}, "benchmark": {},
           "learner": {}}
    local = compare(raw, ["hps", "ewc"], [0, 1], tmp_path / "local", progress=False,
                    echo=lambda _: None)
    lines: list[str] = []
    try:
        remote = compare(raw, ["hps", "ewc"], [0, 1], tmp_path / "ray", progress=False,
                         echo=lines.append, backend=GridBackend("ray", workers=2))
        again: list[str] = []
        compare(raw, ["hps", "ewc"], [0, 1], tmp_path / "ray", progress=False,
                echo=again.append, backend=GridBackend("ray", workers=2))
    finally:
        ray.shutdown()
    assert len(lines) == 4 and all("trained" in ln for ln in lines)
    assert all("reused" in ln for ln in again)
    for name in ("hps", "ewc"):
        for s in (0, 1):
            a, b = (json.loads((tmp_path / d / name / f"seed{s}" / "results.json").read_text())
                    for d in ("local", "ray"))
            assert a["accuracy_matrix"] == b["accuracy_matrix"], (name, s)
    assert remote["learners"]["hps"]["mean_final_accuracy"]["values"] == \
        local["learners"]["hps"]["mean_final_accuracy"]["values"]
