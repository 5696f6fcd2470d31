"""Direct sharing on Ray (teachers send bundles to their peers' actors; the driver sees
receipts only) and what each agent's actor asks Ray for (CPUs, GPUs)."""

from __future__ import annotations

import hashlib

import pytest

from lifelong.errors import ConfigError
from lifelong.skill.population import PopulationConfig, actor_resources, run_population

RAW = {"run": {"benchmark": "synthetic", "learner": "lll", "setting": "class-il", "epochs": 20,
               "seed": 1},
       "benchmark": {"num_tasks": 4},
       "learner": {"backbone": "tiny-cnn", "image_size": 16}}


def _binary(value, depth: int = 0):
    """Every bytes-like value inside ``value`` (containers and object attributes)."""
    if depth > 6:
        return
    if isinstance(value, bytes | bytearray | memoryview):
        yield bytes(value)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _binary(v, depth + 1)
    elif isinstance(value, list | tuple | set):
        for v in value:
            yield from _binary(v, depth + 1)


def test_bundle_bytes_never_reach_the_driver(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    import ray
    import ray.actor

    from lifelong.skill.ray_cluster import start_ray

    got, called = [], []
    real_get, real_put, real_remote = ray.get, ray.put, ray.actor.ActorMethod._remote

    def get(*args, **kwargs):
        value = real_get(*args, **kwargs)
        got.append(value)
        return value

    def put(value, *args, **kwargs):
        got.append(value)
        return real_put(value, *args, **kwargs)

    def remote(self, *args, **kwargs):
        called.append(self._method_name)
        return real_remote(self, *args, **kwargs)

    start_ray(3)
    try:
        monkeypatch.setattr(ray, "get", get)
        monkeypatch.setattr(ray, "put", put)
        monkeypatch.setattr(ray.actor.ActorMethod, "_remote", remote)
        result = run_population(RAW, PopulationConfig(agents=3, backend="ray"), tmp_path)
    finally:
        monkeypatch.undo()
        ray.shutdown()
    assert result.lost == [] and result.dead == [] and result.agree()
    assert len(result.holdings[0]) == 4  # every agent holds every task ...
    # ... received from the other agents' actors, not through the driver
    assert all(r["received_bytes"] > 0 for r in result.reports.values())
    assert result.driver_bundle_bytes == 0
    held = set(result.holdings[0].values())  # SHA-256 of every bundle
    fetched = [hashlib.sha256(b).hexdigest() for v in got for b in _binary(v)]
    assert not held & set(fetched)
    assert not fetched  # nothing binary at all came back to the driver
    # the driver never asks an actor for a bundle, nor hands one to it
    assert "learn" in called and "set_peers" in called
    assert not {"bundle", "receive", "export_bundle"} & set(called), sorted(set(called))


def test_each_actor_asks_for_its_gpus_only_on_cuda():
    cfg = PopulationConfig(agents=2, threads=2, gpus_per_agent=0.5)
    assert actor_resources(cfg, "cpu") == {"num_cpus": 2.0, "num_gpus": 0.0}
    assert actor_resources(cfg, "cuda") == {"num_cpus": 2.0, "num_gpus": 0.5}
    assert actor_resources(cfg, "cuda:1")["num_gpus"] == 0.5
    assert actor_resources(cfg, "auto", cluster_gpus=0.0)["num_gpus"] == 0.0
    assert actor_resources(cfg, "auto", cluster_gpus=4.0)["num_gpus"] == 0.5
    assert actor_resources(PopulationConfig(), "cuda")["num_gpus"] == 1.0  # the default
    with pytest.raises(ConfigError):
        PopulationConfig(gpus_per_agent=0).validate()


def test_agents_on_cuda_without_gpus_in_the_cluster_is_a_one_line_error(tmp_path):
    pytest.importorskip("ray")
    import ray

    from lifelong.skill.ray_cluster import check_capacity, start_ray

    start_ray(2)
    try:
        if ray.cluster_resources().get("GPU", 0) >= 2:
            pytest.skip("this cluster has GPUs")
        with pytest.raises(ConfigError, match="GPUs") as err:
            check_capacity(2, 1, gpus=1.0)
        assert "\n" not in str(err.value)
        raw = {**RAW, "run": {**RAW["run"], "device": "cuda"}}
        with pytest.raises(ConfigError, match="GPUs"):
            run_population(raw, PopulationConfig(agents=2, backend="ray"), tmp_path)
    finally:
        ray.shutdown()


def test_cli_device_reaches_the_agents(tmp_path):
    """``--device`` is the agents' device (here the CPU: no CUDA in CI)."""
    import json

    from lifelong.cli import main

    out = tmp_path / "pop"
    code = main(["skill", "--backend", "local", "--agents", "2", "--benchmark", "synthetic",
                 "learner.backbone=tiny-cnn", "learner.image_size=16", "--epochs", "2",
                 "--device", "cpu", "--quiet", "--out", str(out)])
    assert code == 0
    for a in (0, 1):
        start = json.loads((out / f"agent-{a}" / "log.jsonl").read_text().splitlines()[0])
        assert start["event"] == "start" and start["device"] == "cpu"
    assert json.loads((out / "population.json").read_text())["raw"]["run"]["device"] == "cpu"
