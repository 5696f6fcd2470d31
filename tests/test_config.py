"""Typed configs: coercion, unknown keys, layering and paper defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from lifelong.config import Config, RunConfig, build_config, load_yaml, merge, parse_overrides
from lifelong.errors import ConfigError
from lifelong.experiment import make_experiment, normalize_raw


@dataclass
class Example(Config):
    rate: float = 0.1
    steps: int = 3
    name: str = "x"
    flag: bool = False
    maybe: int | None = None
    sizes: tuple[int, ...] = (1, 2)
    mode: Literal["a", "b"] = "a"
    level: float | Literal["auto"] = 0.0


def test_coercion_from_strings_and_yaml_values():
    cfg = build_config(Example, {"rate": "1e-3", "steps": "7", "flag": "true", "maybe": "none",
                                 "sizes": "[3, 4]", "mode": "b"}, section="x")
    assert cfg == Example(rate=1e-3, steps=7, name="x", flag=True, maybe=None, sizes=(3, 4),
                          mode="b")
    assert build_config(Example, {"rate": 2, "sizes": [5]}, section="x").rate == 2.0


@pytest.mark.parametrize("values", [{"steps": "1.5"}, {"steps": True}, {"rate": "fast"},
                                    {"flag": "maybe"}, {"mode": "c"}, {"sizes": "x"},
                                    {"unknown": 1}, {"rate": "inf"}, {"rate": ".nan"},
                                    {"rate": float("nan")}])
def test_bad_values_and_unknown_keys_are_config_errors(values):
    with pytest.raises(ConfigError) as err:
        build_config(Example, values, section="x")
    assert "x." in str(err.value) and "\n" not in str(err.value)


def test_a_value_fitting_no_alternative_of_a_union_names_them_all():
    assert build_config(Example, {"level": "auto"}, section="x").level == "auto"
    assert build_config(Example, {"level": "0.5"}, section="x").level == 0.5
    with pytest.raises(ConfigError) as err:
        build_config(Example, {"level": "fast"}, section="x")
    assert str(err.value) == "x.level must be a finite number or one of auto, not 'fast'"


@pytest.mark.parametrize("values", [{"epochs": 0}, {"device": "tpu"}, {"seed": -1},
                                    {"seed": 2**40}, {"threads": 10**6}, {"threads": 0}])
def test_validate_runs_after_construction(values):
    with pytest.raises(ConfigError):
        build_config(RunConfig, values, section="run")


def test_overrides_parse_into_sections_and_merge_without_mutation():
    over = parse_overrides(["epochs=5", "learner.lr=1e-3", "benchmark.split=[0.5,0.2,0.3]"])
    # Values stay text until the field's type converts them.
    assert over == {"epochs": "5", "learner": {"lr": "1e-3"},
                    "benchmark": {"split": "[0.5,0.2,0.3]"}}
    exp = make_experiment(merge({"run": {"benchmark": "split-mnist", "learner": "hps"}},
                                parse_overrides(["epochs=010", "seed=1:30"][:1])))
    assert exp.run.epochs == 10  # not YAML 1.1's octal 8
    with pytest.raises(ConfigError):
        make_experiment({"run": {"benchmark": "split-mnist", "learner": "hps", "seed": "1:30"}})
    # benchmark=NAME names the run's benchmark; it cannot replace the benchmark section.
    assert parse_overrides(["benchmark.num_tasks=2", "benchmark=split-mnist"]) == {
        "benchmark": {"num_tasks": "2"}, "run": {"benchmark": "split-mnist"}}
    with pytest.raises(ConfigError):
        parse_overrides(["learner.lr=1", "learner.lr.x=2"])
    base = {"learner": {"lr": 1.0, "optimizer": "sgd"}}
    merged = merge(base, over)
    assert merged["learner"] == {"lr": "1e-3", "optimizer": "sgd"}
    assert base == {"learner": {"lr": 1.0, "optimizer": "sgd"}}
    with pytest.raises(ConfigError):
        parse_overrides(["no_equals_sign"])


def test_yaml_file_sections(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("benchmark: split-digits\nlearner:\n  lr: 0.01\nrun:\n  epochs: 2\n")
    raw = normalize_raw(load_yaml(path))
    assert raw == {"run": {"benchmark": "split-digits", "epochs": 2}, "benchmark": {},
                   "learner": {"lr": 0.01}}
    (tmp_path / "bad.yaml").write_text("a: [unclosed\n")
    with pytest.raises(ConfigError):
        load_yaml(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError):
        load_yaml(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError):
        normalize_raw({"not_a_field": 1})


def test_experiment_fills_paper_defaults_from_the_benchmark():
    exp = make_experiment({"run": {"benchmark": "split-mnist", "learner": "stl"}})
    assert (exp.run.epochs, exp.run.batch_size, exp.run.net) == (10, 10, "mnist")
    assert exp.learner.lr == 1e-3 and exp.learner.lr_decay == pytest.approx(1 / 250)
    exp = make_experiment({"run": {"benchmark": "split-mnist", "learner": "stl", "epochs": 3},
                           "learner": {"lr": 0.5}})
    assert exp.run.epochs == 3 and exp.learner.lr == 0.5


def test_experiment_rejects_unknown_names_and_unsupported_settings():
    for raw in ({"run": {"benchmark": "nope", "learner": "stl"}},
                {"run": {"benchmark": "split-mnist", "learner": "nope"}},
                {"run": {"benchmark": "split-mnist", "learner": "stl", "net": "nope"}},
                {"run": {"benchmark": "split-mnist", "learner": "stl", "setting": "class-il"}}):
        with pytest.raises(ConfigError):
            make_experiment(raw)


def test_base_at_config_learners_reload_from_their_saved_config():
    # config.yaml of a `hps@all` run holds transfer: all; reloading it (compare's reuse
    # check) must work, and only a different transfer clashes with the name.
    from lifelong.experiment import make_experiment

    exp = make_experiment({"run": {"benchmark": "synthetic", "learner": "hps@all"}})
    saved = exp.to_dict()
    assert saved["learner"]["transfer"] == "all"
    assert make_experiment(saved).comparable() == exp.comparable()
    saved["learner"]["transfer"] = "none"
    with pytest.raises(ConfigError):
        make_experiment(saved)
