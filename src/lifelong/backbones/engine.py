"""Inference engines for the frozen backbone: everything it computes without gradients.

A frozen backbone's forward pass without beneficial biases is a fixed function, so it can
run in a faster inference runtime than eager PyTorch. :func:`make_engine` returns

- :class:`TorchEngine`: the backbone's own PyTorch modules (any device);
- :class:`OnnxEngine`: ONNX Runtime on CPU, from graphs exported from the loaded weights
  (:mod:`lifelong.backbones.onnx_cache` keeps them on disk, keyed by the backbone's
  fingerprint, and checks them before use).

Both compute :meth:`Engine.prefix`: the activations after the first ``stop`` stages of
the preprocessed images (``stop = num_stages``: the pooled features), with no biases.
Training paths (full BB, the biased top stages of partial BB) never come here: they
back-propagate through the PyTorch modules. The two engines agree to ~1e-5 (measured:
``benchmarks/backbone_speed.py``), not bit for bit, so the engine is part of a run's
settings and of every bundle's manifest; bundles stay valid across engines (the backbone
and its fingerprint are the same).

A backbone that cannot be exported (an op ONNX lacks, Python control flow on values) or
whose exported graph disagrees with PyTorch falls back to :class:`TorchEngine` with a
one-line warning on stderr naming the reason.
"""

from __future__ import annotations

import sys
from typing import Literal, Protocol

import torch

from lifelong.backbones.base import Backbone

__all__ = ["Engine", "EngineName", "OnnxEngine", "TorchEngine", "make_engine",
           "resolve_engine"]

EngineName = Literal["auto", "torch", "onnxruntime"]

_warned: set[str] = set()  # one warning per reason and process (many learners per run)


class Engine(Protocol):
    """What the feature extractor needs from an engine."""

    name: str

    def prefix(self, x: torch.Tensor, stop: int) -> torch.Tensor:
        """Images in [0, 1] (B, C, H, W) -> activations entering stage ``stop`` without
        biases; ``stop == backbone.num_stages``: pooled features (B, D)."""
        ...


class TorchEngine:
    """Eager PyTorch on the backbone's device."""

    name = "torch"

    def __init__(self, backbone: Backbone) -> None:
        self.backbone = backbone

    @torch.no_grad()
    def prefix(self, x: torch.Tensor, stop: int) -> torch.Tensor:
        b = self.backbone
        b.use_bb(None)  # the engine serves bias-free passes only
        return b(x) if stop == b.num_stages else b.stage_input(x, stop)


class OnnxEngine:
    """ONNX Runtime on CPU: one checked graph per ``stop`` (built in ``__init__``), one
    session per graph and thread count (``torch.get_num_threads()`` at each call, i.e. the
    run's ``--threads``), shared by every learner of the process."""

    name = "onnxruntime"

    def __init__(self, backbone: Backbone, stops: list[int]) -> None:
        from lifelong.backbones.onnx_cache import load_graph

        self.backbone = backbone
        # Raises EngineUnavailable (with the reason) if a graph cannot be exported or checked.
        self.graphs = {stop: load_graph(backbone, stop) for stop in sorted(set(stops))}

    @torch.no_grad()
    def prefix(self, x: torch.Tensor, stop: int) -> torch.Tensor:
        from lifelong.backbones.onnx_cache import session

        if stop not in self.graphs:
            raise KeyError(f"no graph for the first {stop} stages (built: {sorted(self.graphs)})")
        # Preprocessing (resize, normalise) stays in torch: the graph's input is the
        # backbone's own input (B, 3, S, S), so one graph serves every source image size.
        h = self.backbone.preprocess(x.to("cpu", torch.float32)).contiguous()
        sess = session(self.graphs[stop], torch.get_num_threads())
        (out,) = sess.run(None, {"input": h.numpy()})
        return torch.from_numpy(out)


def resolve_engine(name: EngineName, device: torch.device) -> str:
    """``auto``: ONNX Runtime on CPU (4-7x eager PyTorch there, docs/results.md), PyTorch
    on an accelerator, where the backbone's own kernels are fast."""
    if name == "auto":
        return "onnxruntime" if device.type == "cpu" else "torch"
    return name


def make_engine(backbone: Backbone, name: EngineName, device: torch.device,
                stops: list[int]) -> Engine:
    """The engine for ``backbone`` on ``device`` serving the prefixes ``stops``. With
    ``onnxruntime`` on another device than the CPU, or a backbone that cannot be exported,
    PyTorch is used instead and one line says why."""
    from lifelong.backbones.onnx_cache import EngineUnavailable

    chosen = resolve_engine(name, device)
    if chosen == "torch":
        return TorchEngine(backbone)
    if device.type != "cpu":
        _warn(f"engine onnxruntime runs on the CPU only, the backbone is on {device.type}")
        return TorchEngine(backbone)
    try:
        # Building may trace the network: keep the global RNG where it was, so seeded head
        # initialisations do not depend on whether a graph was cached.
        with torch.random.fork_rng(devices=[]):
            return OnnxEngine(backbone, stops)
    except EngineUnavailable as err:
        _warn(f"{type(backbone).__name__}: {err}")
        return TorchEngine(backbone)


def _warn(reason: str) -> None:
    if reason not in _warned:
        _warned.add(reason)
        print(f"warning: {reason}; using PyTorch for the frozen backbone", file=sys.stderr,
              flush=True)
