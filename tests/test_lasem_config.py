"""The selective-transfer learners' configs: the base learners' fields come from the base
configs (a field added to TFConfig or DFCNNConfig appears in every ``lasem-*``,
``bruteforce-*``, ``static-*`` and ``darts-*`` config), only the LASEM code's defaults
differ, and the fixed-posterior ablation (LASEM Figure 5) is set from the command line."""

from __future__ import annotations

import dataclasses
import json

import pytest

from lifelong.cli import main
from lifelong.config import merge, parse_overrides
from lifelong.experiment import make_experiment
from lifelong.learners import LEARNERS
from lifelong.learners.base import NetLearnerConfig
from lifelong.learners.dfcnn import DFCNNConfig
from lifelong.learners.tf import TFConfig

BASES = {"hps": NetLearnerConfig, "tf": TFConfig, "dfcnn": DFCNNConfig}
#: The defaults the LASEM code sets differently from the base learners' own (selective.py).
CODE_DEFAULTS = {"hps": {"loss_reduction": "mean"},
                 "tf": {"loss_reduction": "mean", "orthogonality": 0.1},
                 "dfcnn": {"loss_reduction": "mean", "kb_l2": 1e-7, "ts_l2": 1e-7}}


def _defaults(cls: type) -> dict[str, object]:
    return {f.name: f.default for f in dataclasses.fields(cls)}


@pytest.mark.parametrize("method", ["lasem", "bruteforce", "static", "darts"])
@pytest.mark.parametrize("base", sorted(BASES))
def test_selective_configs_hold_every_base_field_with_the_lasem_code_defaults(method, base):
    ours, theirs = _defaults(LEARNERS.get(f"{method}-{base}").Config), _defaults(BASES[base])
    assert set(theirs) <= set(ours)  # every field of the base config, automatically
    changed = {k: ours[k] for k in theirs if ours[k] != theirs[k]}
    assert changed == CODE_DEFAULTS[base]


def test_a_new_dfcnn_field_reaches_the_selective_configs():
    """Subclassing is how the fields are derived: a field added to DFCNNConfig is inherited
    (checked on a subclass, not by editing DFCNNConfig)."""
    from lifelong.learners.selective import DFCNNFields

    assert issubclass(DFCNNFields, DFCNNConfig) and issubclass(
        LEARNERS.get("lasem-dfcnn").Config, DFCNNFields)
    assert "variant" in _defaults(LEARNERS.get("lasem-dfcnn").Config)
    assert _defaults(LEARNERS.get("darts-dfcnn").Config)["search"] == "code"


def test_dfcnn_variant_is_honoured_by_selective_learners():
    raw = {"run": {"benchmark": "synthetic", "learner": "static-dfcnn", "net": "tiny"},
           "learner": {"variant": "direct"}}
    exp = make_experiment(raw)
    stream = exp.build_stream()
    learner = exp.build_learner(stream, "cpu")
    learner.begin_task(stream[0])
    gen = learner.task_part(0, "transfer")[0]
    assert type(gen).__name__ == "DirectDeconv"


def test_fixed_posterior_is_a_learner_value_on_the_command_line(tmp_path):
    """``lifelong run ... learner.fixed_posterior=top-1 learner.fixed_posterior_prob=0.8``:
    no E-step, every epoch's posterior is the fixed one, every task ends with top-1."""
    overrides = ["learner.fixed_posterior=top-1", "learner.fixed_posterior_prob=0.8"]
    raw = merge({"run": {"benchmark": "synthetic", "learner": "lasem-hps"}},
                parse_overrides(overrides))
    cfg = make_experiment(raw).learner
    assert (cfg.fixed_posterior, cfg.fixed_posterior_prob) == ("top-1", 0.8)
    out = tmp_path / "run"
    assert main(["run", "--benchmark", "synthetic", "--learner", "lasem-hps", "--epochs", "1",
                 "--quiet", "--out", str(out), "net=tiny", "benchmark.num_tasks=2",
                 "benchmark.images_per_class=40",
                 *overrides]) == 0
    report = json.loads((out / "results.json").read_text())["learner_report"]
    assert set(report["configurations"].values()) == {"1"}  # tiny: one conv layer
    for trace in report["posterior_trace"].values():
        assert trace == [[0.2, 0.8]]  # (0, 1): the rest, then top-1's 0.8
    assert report["configs_per_batch"]["evaluated"] == 0
