"""The frozen backbone's inference engine: ONNX Runtime agrees with eager PyTorch (tiny
backbone and EfficientNet-Lite0), its cached graphs are checked and rebuilt, an
unexportable backbone falls back to PyTorch, bundles cross engines, and a population on
ONNX Runtime shares identical bundles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lifelong.backbones import BACKBONES, onnx_cache
from lifelong.backbones import engine as engine_mod
from lifelong.backbones.engine import OnnxEngine, TorchEngine, make_engine, resolve_engine
from lifelong.backbones.tiny import TinyCNN
from lifelong.experiment import make_experiment
from lifelong.runner import Runner

CPU = torch.device("cpu")


def _images(n: int, size: int = 28, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_auto_is_onnx_runtime_on_cpu_and_pytorch_on_accelerators():
    assert resolve_engine("auto", CPU) == "onnxruntime"
    assert resolve_engine("auto", torch.device("cuda")) == "torch"
    assert resolve_engine("auto", torch.device("mps")) == "torch"
    assert resolve_engine("torch", CPU) == "torch"
    net = TinyCNN(image_size=32)
    assert make_engine(net, "torch", CPU, [3]).name == "torch"


def test_tiny_backbone_engines_agree_on_every_prefix():
    net = TinyCNN(image_size=32)
    stops = list(range(1, net.num_stages + 1))
    ort, eager = make_engine(net, "onnxruntime", CPU, stops), TorchEngine(net)
    assert isinstance(ort, OnnxEngine)
    x = _images(7)  # another batch size than the export's and the check's
    for stop in stops:
        got, ref = ort.prefix(x, stop), eager.prefix(x, stop)
        assert got.shape == ref.shape and got.dtype == torch.float32
        assert float((got - ref).abs().max()) <= 1e-4, stop
    # biases set on the PyTorch modules never reach the engine (it serves bias-free passes)
    net.use_bb(torch.ones(net.bb_size))
    torch.testing.assert_close(ort.prefix(x, 3), eager.prefix(x, 3), rtol=0, atol=1e-4)


def test_efficientnet_lite0_features_and_frozen_prefix_agree_within_1e_4():
    net = BACKBONES.get("efficientnet-lite0")(image_size=96)
    top = net.num_stages - 3  # partial BB's default frozen prefix (the input of block 15)
    ort = make_engine(net, "onnxruntime", CPU, [net.num_stages, top])
    assert ort.name == "onnxruntime"
    x = _images(16, 32)
    with torch.no_grad():
        ref, ref_h = net(x), net.stage_input(x, top)  # (16, 1280), (16, 192, 3, 3)
    got, got_h = ort.prefix(x, net.num_stages), ort.prefix(x, top)
    assert got.shape == (16, 1280) and got_h.shape == ref_h.shape
    assert float((got - ref).abs().max()) <= 1e-4
    assert float((got_h - ref_h).abs().max()) <= 1e-4


def test_sessions_use_the_run_thread_count_and_start_once_per_process():
    net = TinyCNN(image_size=32)
    graph = onnx_cache.load_graph(net, net.num_stages)
    for threads in (1, 2):
        s = onnx_cache.session(graph, threads)
        assert s.get_session_options().intra_op_num_threads == threads
        assert onnx_cache.session(graph, threads) is s  # cached: start-up paid once


def test_a_corrupt_or_foreign_cached_graph_is_rebuilt(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(onnx_cache.ENV, str(tmp_path / "cache"))
    net = TinyCNN(image_size=24)
    first = onnx_cache.load_graph(net, net.num_stages)
    side = first.path.with_suffix(".json")
    assert first.path.read_bytes() == first.data
    assert json.loads(side.read_text())["sha256"] == first.sha256
    assert onnx_cache.load_graph(net, net.num_stages).data == first.data  # a cache hit
    assert capsys.readouterr().err == ""

    damaged = bytearray(first.data)
    damaged[len(damaged) // 2] ^= 0xFF  # one flipped byte in the weights
    first.path.write_bytes(bytes(damaged))
    again = onnx_cache.load_graph(net, net.num_stages)
    assert "rebuilding" in capsys.readouterr().err
    assert again.sha256 == json.loads(side.read_text())["sha256"]
    assert again.path.read_bytes() == again.data != bytes(damaged)

    # A graph and sidecar made by another cache (another key) are not trusted either.
    other = tmp_path / "other"
    monkeypatch.setenv(onnx_cache.ENV, str(other))
    theirs = onnx_cache.load_graph(net, net.num_stages)
    (other / "onnx" / "key").write_bytes(b"\x00" * 32)  # as if copied from elsewhere
    onnx_cache.load_graph(net, net.num_stages)
    assert "signature does not verify" in capsys.readouterr().err
    assert theirs.path.exists()

    # An edited sidecar claiming the damaged bytes' hash fails its signature.
    monkeypatch.setenv(onnx_cache.ENV, str(tmp_path / "cache"))
    record = json.loads(side.read_text())
    import hashlib

    record["sha256"] = hashlib.sha256(bytes(damaged)).hexdigest()
    first.path.write_bytes(bytes(damaged))
    side.write_text(json.dumps(record))
    onnx_cache.load_graph(net, net.num_stages)
    assert "signature does not verify" in capsys.readouterr().err


class _Unexportable(TinyCNN):
    """A custom backbone with an op ONNX has no export for (a Bessel function)."""

    def stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        x = super().stage(i, x)
        return torch.special.bessel_j0(x) if i == self.num_stages - 1 else x


class _ValueDependent(TinyCNN):
    """Python on tensor values: tracing bakes the example's mean into the graph."""

    def stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        x = super().stage(i, x)
        return x * float(x.mean()) if i == self.num_stages - 1 else x


@pytest.mark.parametrize("cls,reason", [(_Unexportable, "cannot be exported to ONNX"),
                                        (_ValueDependent, "disagrees with PyTorch")])
def test_an_unexportable_backbone_falls_back_to_pytorch_with_one_line(
        cls, reason, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(onnx_cache.ENV, str(tmp_path))
    monkeypatch.setattr(engine_mod, "_warned", set())
    net = cls(image_size=32)
    before = torch.random.get_rng_state()
    eng = make_engine(net, "onnxruntime", CPU, [net.num_stages])
    assert torch.equal(torch.random.get_rng_state(), before)  # seeded heads unaffected
    assert eng.name == "torch"
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: ") and reason in lines[0], err
    assert cls.__name__ in lines[0] and "using PyTorch" in lines[0]
    x = _images(4)
    with torch.no_grad():
        torch.testing.assert_close(eng.prefix(x, net.num_stages), net(x))
    assert not list((tmp_path / "onnx").glob("*.onnx"))  # nothing wrong was cached


def test_an_lll_on_an_unexportable_registered_backbone_learns_with_pytorch(monkeypatch,
                                                                          capsys):
    monkeypatch.setitem(BACKBONES._entries, "test-unexportable", _Unexportable)
    monkeypatch.setattr(engine_mod, "_warned", set())
    exp = make_experiment(_raw("onnxruntime", backbone="test-unexportable"))
    learner = exp.build_learner(exp.build_stream(), CPU)
    assert learner.extract.engine.name == "torch"
    assert "aten::special_bessel_j0" in capsys.readouterr().err


def _raw(engine: str, **learner) -> dict:
    return {"run": {"benchmark": "split-digits", "learner": "lll", "epochs": 4,
                    "setting": "class-il", "batch_size": 32},
            "benchmark": {"num_tasks": 3},
            "learner": {"backbone": "tiny-cnn", "image_size": 32, "gmm_components": 3,
                        "engine": engine, **learner}}


def _learn(tmp_path: Path, engine: str, **learner):
    exp = make_experiment(_raw(engine, **learner))
    stream = exp.build_stream()
    lll = exp.build_learner(stream, CPU)
    torch.manual_seed(0)
    Runner(exp, stream, lll, tmp_path, CPU, progress=False).run()
    return lll, stream


@pytest.mark.parametrize("bb", ["none", "partial"])
def test_the_two_engines_learn_the_same_tasks_and_bundles_cross_engines(tmp_path, bb):
    ort, stream = _learn(tmp_path / "ort", "onnxruntime", bb=bb, bb_stages=1)
    eager, _ = _learn(tmp_path / "torch", "torch", bb=bb, bb_stages=1)
    assert ort.extract.engine.name == "onnxruntime" and eager.extract.engine.name == "torch"
    assert ort.report()["engine"] == "onnxruntime"
    assert {b.info["engine"] for b in ort.bundles.values()} == {"onnxruntime"}
    assert {b.info["engine"] for b in eager.bundles.values()} == {"torch"}
    assert ort.train_macs == eager.train_macs  # the same work, counted the same
    # Same seeded heads, same batches, features within float noise: the heads agree.
    for t in ort.bundles:
        torch.testing.assert_close(ort.bundles[t].head_weight, eager.bundles[t].head_weight,
                                   rtol=0, atol=1e-3)
    # Bundles learned with PyTorch serve an agent on ONNX Runtime (and back): the task
    # mapper and the heads answer as on the engine they were learned with.
    mixed = make_experiment(_raw("onnxruntime", bb=bb, bb_stages=1)).build_learner(stream, CPU)
    for t in eager.bundles:
        assert mixed.import_bundle(eager.export_bundle(t)) == t
    x = torch.cat([task.test.images() for task in stream])
    with torch.no_grad():
        agree_map = float((mixed.map_task(x) == eager.map_task(x)).float().mean())
        agree_cls = float((mixed.predict(x).argmax(1) == eager.predict(x).argmax(1))
                          .float().mean())
    assert agree_map >= 0.99 and agree_cls >= 0.99, (agree_map, agree_cls)
    back = make_experiment(_raw("torch", bb=bb, bb_stages=1)).build_learner(stream, CPU)
    for t in ort.bundles:
        assert back.import_bundle(ort.export_bundle(t)) == t


def test_a_population_on_onnx_runtime_holds_identical_bundles(tmp_path):
    from lifelong.skill.bundle_cli import inspect_file
    from lifelong.skill.population import PopulationConfig, run_population

    raw = {"run": {"benchmark": "synthetic", "learner": "lll", "setting": "class-il",
                   "epochs": 20, "seed": 1},
           "benchmark": {"num_tasks": 4},
           "learner": {"backbone": "tiny-cnn", "image_size": 16, "engine": "onnxruntime"}}
    result = run_population(raw, PopulationConfig(agents=2, backend="local"), tmp_path)
    assert result.dead == [] and result.lost == []
    assert result.agree() and len(result.holdings[0]) == 4
    files = sorted(tmp_path.glob("agent-*/bundles/*"))
    assert files
    engines = {inspect_file(str(f))["manifest"]["info"]["engine"] for f in files}
    assert engines == {"onnxruntime"}
    accs = [v["acc"] for v in result.accuracy[0].values()]
    assert float(np.mean(accs)) > 0.6  # it learned (chance: 0.125)


def test_head_features_match_between_engines_on_a_task(tmp_path):
    """The no-BB task's cached features (train + val, one pass) are the engine's."""
    lll, stream = _learn(tmp_path, "onnxruntime", bb="none")
    task = stream[0]
    x = task.test.images()
    feats = lll.extract.raw(x)
    with torch.no_grad():
        ref = lll.backbone(x)
    assert float((feats - ref).abs().max()) <= 1e-4
    logits = F.linear(feats, lll.bundles[0].head_weight, lll.bundles[0].head_bias)
    assert logits.shape == (len(x), task.num_classes)
