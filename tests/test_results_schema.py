"""Results passed in memory and one results.json schema: the typed learner report, the
declared task-mapper protocol, ``run`` and ``skill`` sharing their top-level fields, and
``compare`` building each run's config once and reading back no file it wrote itself."""

from __future__ import annotations

import lifelong.compare as compare_mod
from lifelong.api import run_experiment
from lifelong.compare import compare
from lifelong.experiment import make_experiment
from lifelong.learners import LearnerReport, SynonymMatcher, TaskMapper
from lifelong.skill.population import PopulationConfig
from lifelong.skill.run import run_skill

# Four tasks of the synthetic stream on the tiny backbone (as tests/test_population.py).
LLL_RAW = {"run": {"benchmark": "synthetic", "learner": "lll", "setting": "class-il",
                   "epochs": 5, "seed": 1},
           "benchmark": {"num_tasks": 2},
           "learner": {"backbone": "tiny-cnn", "image_size": 16}}

COMMON = ("lifelong_version", "kind", "learner", "benchmark", "seed", "setting", "summary",
          "device", "machine", "finished", "config")


def test_learner_report_json_has_typed_fields_and_details():
    rep = LearnerReport(configurations={1: "01", 0: "11"}, train_macs={0: 5, 1: 7},
                        details={"posterior_trace": {}})
    assert rep.to_json() == {"posterior_trace": {}, "configurations": {"0": "11", "1": "01"},
                             "train_macs": {"0": 5, "1": 7}}
    assert rep.total_train_macs() == 12
    assert LearnerReport().to_json() == {} and LearnerReport().total_train_macs() is None


def test_task_mapper_is_declared_not_guessed():
    import torch

    exp = make_experiment(LLL_RAW)
    stream = exp.build_stream()
    lll = exp.build_learner(stream, torch.device("cpu"))
    assert isinstance(lll, TaskMapper) and isinstance(lll, SynonymMatcher)
    assert not lll.matches_synonyms  # synonyms off by default: no synonym view
    ewc = make_experiment({"run": {"benchmark": "synthetic", "learner": "ewc", "epochs": 1}})
    assert not isinstance(ewc.build_learner(ewc.build_stream(), torch.device("cpu")),
                          TaskMapper)


def test_run_and_skill_results_share_the_top_level_fields(tmp_path):
    run = run_experiment(LLL_RAW, out=tmp_path / "run", progress=False)
    pop = run_skill(LLL_RAW, PopulationConfig(agents=1, backend="local"), tmp_path / "skill",
                    progress=False)
    for res, kind in ((run, "run"), (pop, "population")):
        assert all(k in res for k in COMMON), sorted(set(COMMON) - set(res))
        assert res["kind"] == kind
        assert (res["learner"], res["benchmark"], res["seed"]) == ("lll", "synthetic", 1)
    assert 0.0 <= pop["summary"]["mean_accuracy"] <= 1.0
    assert "mapper" in run["views"]  # recorded because LLL declares itself a TaskMapper
    # the learner's own MAC count travels typed and lands in the summary
    own = run["learner_report"]["train_macs"]
    assert set(own) == {"0", "1"} and run["summary"]["train_macs"] == sum(own.values())


def test_compare_builds_each_config_once_and_reads_back_nothing(tmp_path, monkeypatch):
    raw = {"run": {"benchmark": "synthetic", "epochs": 1}, "benchmark": {"num_tasks": 2},
           "learner": {}}

    def forbidden(run_dir):
        raise AssertionError(f"read back {run_dir}/history.csv in the process that wrote it")

    built = []
    real = compare_mod.make_experiment

    def counting(r):
        built.append(r)
        return real(r)

    monkeypatch.setattr(compare_mod, "read_history", forbidden)
    monkeypatch.setattr(compare_mod, "make_experiment", counting)
    summary = compare(raw, ["finetune", "ewc"], [0, 1], tmp_path / "cmp", progress=False,
                      echo=lambda _: None)
    assert len(built) == 4  # one per (learner, seed), none rebuilt on the way down
    assert set(summary["learners"]) == {"finetune", "ewc"}
    # a second compare reuses the finished runs: reading what another process wrote is fine
    monkeypatch.undo()
    again = compare(raw, ["finetune", "ewc"], [0, 1], tmp_path / "cmp", progress=False,
                    echo=lambda _: None)
    assert again["learners"]["ewc"]["mean_final_accuracy"] == \
        summary["learners"]["ewc"]["mean_final_accuracy"]
