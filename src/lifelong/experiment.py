"""An experiment: the resolved run, benchmark and learner configs, and how to build it.

Precedence of settings, lowest first: the configs' defaults (the papers' values), the
benchmark's paper training settings for fields left unset, a YAML file, command-line flags,
then ``key=value`` overrides. ``to_dict`` is what a run directory's ``config.yaml`` holds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from lifelong.config import Config, RunConfig, build_config, config_to_dict
from lifelong.errors import ConfigError
from lifelong.learners import Learner, LearnerContext, resolve_learner
from lifelong.nets import get_net
from lifelong.protocols import BENCHMARKS, Benchmark
from lifelong.tasks import TaskStream

__all__ = ["Experiment", "make_experiment", "normalize_raw", "resolve_device"]

_SECTIONS = ("run", "benchmark", "learner")


def normalize_raw(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Bring a user mapping to ``{"run": {...}, "benchmark": {...}, "learner": {...}}``.

    Run fields may be given at the top level (``epochs: 5``); ``benchmark`` and ``learner``
    at the top level are the run's names when they are strings and sections when mappings.
    """
    out: dict[str, dict[str, Any]] = {s: {} for s in _SECTIONS}
    run_fields = {f.name for f in dataclasses.fields(RunConfig)}
    for key, value in raw.items():
        if key in _SECTIONS and isinstance(value, dict):
            out[key].update(value)
        elif key in run_fields and (key not in _SECTIONS or isinstance(value, str)):
            out["run"][key] = value
        elif key in _SECTIONS:
            raise ConfigError(f"section {key} must be a mapping, not {value!r}")
        else:
            raise ConfigError(f"unknown key {key!r}; expected run, benchmark, learner or a run "
                              f"field ({', '.join(sorted(run_fields))})")
    return out


@dataclass
class Experiment:
    """Resolved configs of one run; every field holds a concrete value."""

    run: RunConfig
    benchmark: Config
    learner: Config

    @property
    def benchmark_cls(self) -> type[Benchmark]:
        return BENCHMARKS.get(self.run.benchmark)

    @property
    def learner_cls(self) -> type[Learner]:
        return resolve_learner(self.run.learner)[0]

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {"run": config_to_dict(self.run), "benchmark": config_to_dict(self.benchmark),
                "learner": config_to_dict(self.learner)}

    def comparable(self) -> dict[str, dict[str, Any]]:
        """The settings that determine results: execution-only fields and the data's location
        removed (what the data holds is checked by the stream's fingerprint instead)."""
        d = self.to_dict()
        for k in RunConfig.EXECUTION_ONLY:
            d["run"].pop(k, None)
        d["benchmark"].pop("root", None)
        return d

    def build_stream(self) -> TaskStream:
        """Read the data and build the task stream (DataError if unusable)."""
        return self.benchmark_cls(self.benchmark).build(self.run.seed)

    def build_learner(self, stream: TaskStream, device: torch.device) -> Learner:
        assert self.run.net is not None and self.run.epochs is not None  # make_experiment
        ctx = LearnerContext(input_shape=stream.input_shape, net=get_net(self.run.net),
                             net_name=self.run.net, epochs=self.run.epochs, seed=self.run.seed,
                             device=device,
                             setting=self.run.setting,
                             num_global_classes=stream.num_global_classes)
        return self.learner_cls(self.learner, ctx)


def make_experiment(raw: dict[str, Any]) -> Experiment:
    """Validate ``raw`` (normalised sections) and fill unset values from the paper defaults."""
    sections = normalize_raw(raw)
    run = build_config(RunConfig, sections["run"], section="run")
    bench_cls = BENCHMARKS.get(run.benchmark)
    learner_cls, implied = resolve_learner(run.learner)
    # A saved config.yaml holds the implied value itself (e.g. transfer: all): only a
    # different value clashes.
    clash = {k for k in set(implied) & set(sections["learner"])
             if str(sections["learner"][k]) != str(implied[k])}
    if clash:
        raise ConfigError(f"learner {run.learner} sets {', '.join(sorted(clash))} itself")
    bench_cfg = build_config(bench_cls.Config, sections["benchmark"], section="benchmark")
    learner_cfg = build_config(learner_cls.Config, {**implied, **sections["learner"]},
                               section="learner")
    d = bench_cls.defaults
    run = dataclasses.replace(
        run,
        epochs=run.epochs if run.epochs is not None else d.epochs,
        batch_size=run.batch_size if run.batch_size is not None else
        learner_cls.batch_sizes.get(run.benchmark, d.batch_size),
        net=run.net if run.net is not None else d.net,
    )
    assert run.net is not None
    get_net(run.net)  # unknown network names fail here, before any data is read
    if run.setting not in learner_cls.settings:
        supported = ", ".join(sorted(learner_cls.settings))
        raise ConfigError(f"learner {run.learner} supports {supported}, not {run.setting}")
    learner_cfg = learner_cls.resolve_config(learner_cfg, d)
    learner_cfg.validate()
    return Experiment(run=run, benchmark=bench_cfg, learner=learner_cfg)


def resolve_device(name: str) -> torch.device:
    """``auto`` takes CUDA, then MPS, when torch sees one; an unavailable device is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name} requested but torch sees no CUDA GPU")
    if name == "mps" and not (getattr(torch.backends, "mps", None)
                              and torch.backends.mps.is_available()):
        raise ConfigError("device mps requested but it is not available")
    return torch.device(name)
