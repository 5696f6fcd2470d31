"""Shared test setup: small thread counts and runs that never write into the repository."""

from __future__ import annotations

import os

import pytest
import torch

# Two cores in CI: keep intra-op threads at 2 so timings and numerics are stable.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session", autouse=True)
def engine_cache(tmp_path_factory):
    """The backbone engine's graph cache in a session directory (never ~/.cache), with the
    tiny test backbone's graphs exported once for the session (image sizes 16 and 32; the
    cache serves every later learner, and subprocesses inherit the variable)."""
    from lifelong.backbones import BACKBONES
    from lifelong.backbones.onnx_cache import ENV, load_graph

    path = tmp_path_factory.mktemp("engine-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV, str(path))
        for size in (16, 32):
            net = BACKBONES.get("tiny-cnn")(image_size=size)
            for stop in range(1, net.num_stages + 1):
                load_graph(net, stop)
        yield path


@pytest.fixture(autouse=True)
def _no_runs_in_repo(tmp_path, monkeypatch):
    """Default run directories (runs/...) land in the test's temporary directory."""
    monkeypatch.chdir(tmp_path)
    yield


#: The kind of every test file (CONTRIBUTING.md): ``pytest -m "not system"`` is the quick loop.
KINDS = {
    "unit": ("test_metrics", "test_config", "test_formats", "test_checkpoint", "test_plots",
             "test_bundle_trust", "test_lasem", "test_lasem_em", "test_dfcnn", "test_engine",
             "test_lasem_config", "test_compare_loss"),
    "contract": ("test_learners", "test_contributing", "test_baselines", "test_cl_baselines",
                 "test_cl_isolation", "test_lll",
                 "test_cl_methods_more", "test_lll_fidelity", "test_mappers"),
    "protocol": ("test_benchmarks", "test_protocols_lasem", "test_shipped102"),
    "system": ("test_runner", "test_cli", "test_compare", "test_compare_views", "test_tune",
               "test_population", "test_population_faults",
               "test_population_sharing", "test_results_schema", "test_planted"),
}
_KIND_OF = {name: kind for kind, names in KINDS.items() for name in names}


def pytest_collection_modifyitems(config, items):
    for item in items:
        kind = _KIND_OF.get(item.path.stem)
        if kind is None:
            raise pytest.UsageError(f"{item.path.name}: add it to KINDS in tests/conftest.py")
        item.add_marker(getattr(pytest.mark, kind))
