"""lifelong tune: candidates scored on validation only (a poisoned test split changes
nothing), the test split never evaluated, and compare --tuned applying the choice."""

from __future__ import annotations

import json

import pytest
import torch

from lifelong.cli import main
from lifelong.errors import ConfigError
from lifelong.protocols import BENCHMARKS
from lifelong.tune import tune

RAW = {"run": {"benchmark": "synthetic", "epochs": 2}, "benchmark": {}, "learner": {}}


def _poison_test_labels(monkeypatch):
    """Every task's test labels replaced by a random permutation of the classes."""
    cls = BENCHMARKS.get("synthetic")
    original = cls.build

    def build(self, seed):
        stream = original(self, seed)
        g = torch.Generator().manual_seed(99)
        for task in stream:
            labels = task.test.labels
            task.test.labels = labels[torch.randperm(len(labels), generator=g)]
            task.test.labels = (task.test.labels + 1) % task.num_classes
        return stream

    monkeypatch.setattr(cls, "build", build)


def test_the_tuner_never_reads_a_test_split(tmp_path, monkeypatch):
    import lifelong.runner as runner

    seen = []
    real = runner.evaluate

    def spy(learner, task, split, *args, **kwargs):
        seen.append(split is task.test)
        return real(learner, task, split, *args, **kwargs)

    monkeypatch.setattr(runner, "evaluate", spy)
    clean = tune(RAW, ["ewc", "hps"], tmp_path / "clean", trials=3, progress=False,
                 echo=lambda _: None)
    assert seen and not any(seen)  # validation only
    from lifelong.experiment import make_experiment

    exp = make_experiment({"run": {"benchmark": "synthetic", "learner": "ewc"}})
    before = [t.test.labels.clone() for t in exp.build_stream()]
    _poison_test_labels(monkeypatch)
    after = [t.test.labels for t in exp.build_stream()]
    assert all(not torch.equal(x, y) for x, y in zip(before, after, strict=True))  # poisoned
    poisoned = tune(RAW, ["ewc"], tmp_path / "poisoned", trials=3, progress=False,
                    echo=lambda _: None)
    a, b = clean["learners"]["ewc"], poisoned["learners"]["ewc"]
    assert a["values"] == b["values"] and [t["val"] for t in a["trials"]] == \
        [t["val"] for t in b["trials"]]
    assert len(a["trials"]) == 3 and a["values"]["ewc_lambda"] in (1.0, 10.0, 100.0, 1e3,
                                                                  1e4, 1e5, 1e6)
    assert clean["learners"]["hps"]["values"] == {}  # nothing declared to tune
    saved = json.loads((tmp_path / "clean" / "tuned.json").read_text())
    assert saved["learners"]["ewc"]["values"] == a["values"]


def test_compare_applies_the_tuned_values(tmp_path, capsys):
    tuned = tmp_path / "tuned.json"
    tuned.write_text(json.dumps({"learners": {"ewc": {"values": {"ewc_lambda": 1e4}}}}))
    out = tmp_path / "cmp"
    assert main(["compare", "--benchmark", "synthetic", "--learners", "finetune,ewc",
                 "--seeds", "1", "--epochs", "1", "--quiet", "--tuned", str(tuned),
                 "--out", str(out)]) == 0
    capsys.readouterr()
    cfg = (out / "ewc" / "seed0" / "config.yaml").read_text()
    assert "ewc_lambda: 10000.0" in cfg
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["compare", "--benchmark", "synthetic", "--learners", "ewc", "--tuned",
                 str(bad), "--out", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.startswith("error:")
    with pytest.raises(ConfigError):
        tune(RAW, ["ewc"], tmp_path / "t", trials=0, progress=False, echo=lambda _: None)


def test_trials_made_with_other_settings_are_retrained_not_reused(tmp_path):
    out = tmp_path / "t"
    tune(RAW, ["ewc"], out, trials=1, progress=False, echo=lambda _: None)
    shorter = {**RAW, "run": {**RAW["run"], "epochs": 1}}
    tune(shorter, ["ewc"], out, trials=1, progress=False, echo=lambda _: None)
    cfg = (out / "ewc" / "trial0" / "seed0" / "config.yaml").read_text()
    assert "epochs: 1" in cfg  # the two-epoch trial was not taken for the one-epoch one
