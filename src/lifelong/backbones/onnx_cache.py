"""ONNX graphs of a frozen backbone's bias-free prefixes, cached on disk and checked.

One graph per (backbone fingerprint, image size, number of stages, opset, torch version),
exported from the loaded weights with PyTorch's TorchScript-based exporter and kept under
``$LIFELONG_CACHE_DIR`` (default ``$XDG_CACHE_HOME/lifelong`` or ``~/.cache/lifelong``),
in ``onnx/``. Nothing in that directory is trusted as it is:

- each graph has a JSON sidecar with what it was built for and the SHA-256 of its bytes,
  signed with HMAC-SHA256 under a random key made once per cache directory (``key``,
  mode 0600): a graph copied in from elsewhere, or altered, or its sidecar edited, fails
  the check and is rebuilt from the weights;
- the bytes checked are the bytes ONNX Runtime is given (read once, never re-read);
- before first use in a process, the graph's output on a seeded probe batch is compared
  with PyTorch's; a graph that disagrees is rebuilt once, then the engine is refused.

Exporting EfficientNet-Lite0 takes ~6 s on one core; later processes load the cached
file. ONNX Runtime sessions are made once per (graph, thread count) and process.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import io
import json
import os
import secrets
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from lifelong.backbones.base import Backbone

__all__ = ["ENV", "OPSET", "EngineUnavailable", "Graph", "cache_dir", "load_graph",
           "session"]

ENV = "LIFELONG_CACHE_DIR"  # overrides the cache directory (tests use a temporary one)
OPSET = 17
_TOLERANCE = 1e-4  # probe check: max |onnx - torch| <= 1e-4 x max(1, max |torch|)
_sessions: dict[tuple[str, int], Any] = {}  # (graph sha256, threads) -> InferenceSession
_checked: set[str] = set()  # graph sha256s whose probe check passed in this process


class EngineUnavailable(Exception):
    """The backbone cannot run in ONNX Runtime; the message says why (one line)."""


@dataclass(frozen=True)
class Graph:
    """A checked ONNX graph: ``data`` are the verified bytes sessions are built from."""

    path: Path
    data: bytes
    sha256: str
    stop: int


class _Prefix(nn.Module):
    """The first ``stop`` stages of a backbone: preprocessed images (B, 3, S, S) -> the
    activations entering stage ``stop`` (pooled features (B, D) when ``stop`` is all)."""

    def __init__(self, backbone: Backbone, stop: int) -> None:
        super().__init__()
        self.backbone, self.stop = backbone, stop

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for i in range(self.stop):
            h = self.backbone.stage(i, h)
        return h


def cache_dir() -> Path:
    """Where graphs are cached: ``$LIFELONG_CACHE_DIR``, else ``$XDG_CACHE_HOME/lifelong``,
    else ``~/.cache/lifelong``."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lifelong"


def load_graph(backbone: Backbone, stop: int) -> Graph:
    """The checked graph of ``backbone``'s first ``stop`` stages: from the cache if it
    verifies, else exported now (and cached). EngineUnavailable says why not."""
    try:
        import onnxruntime  # noqa: F401  (the runtime, not only the exporter, must exist)
    except ImportError as err:
        raise EngineUnavailable(f"onnxruntime cannot be imported ({err})") from None
    if not 1 <= stop <= backbone.num_stages:
        raise ValueError(f"stop must be in 1..{backbone.num_stages}, not {stop}")
    meta: dict[str, Any] = {"schema": 1, "fingerprint": backbone.fingerprint(), "backbone":
            type(backbone).__name__, "image_size": backbone.image_size, "stop": stop,
            "opset": OPSET, "torch": torch.__version__}
    root = cache_dir() / "onnx"
    try:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = _key(root)
    except OSError as err:
        raise EngineUnavailable(f"cannot use the graph cache {root} ({err.strerror})") from None
    name = f"{meta['fingerprint'][:32]}-{backbone.image_size}px-stages{stop}-opset{OPSET}"
    path, side = root / f"{name}.onnx", root / f"{name}.json"
    with _locked(root / f"{name}.lock"):
        data, why = _read_checked(path, side, meta, key)
        if data is not None:
            graph = Graph(path, data, hashlib.sha256(data).hexdigest(), stop)
            problem = _probe(backbone, graph)
            if problem is None:
                return graph
            why = problem
        if why != "missing":
            print(f"note: rebuilding the cached ONNX graph {path.name}: {why}",
                  file=sys.stderr, flush=True)
        data = _export(backbone, stop)
        graph = Graph(path, data, hashlib.sha256(data).hexdigest(), stop)
        problem = _probe(backbone, graph)
        if problem is not None:
            raise EngineUnavailable(f"its exported graph {problem}")
        _write(path, side, data, meta, key)
        return graph


def session(graph: Graph, threads: int) -> Any:
    """An ONNX Runtime CPU session for ``graph`` with ``threads`` intra-op threads, made
    once per process (start-up costs ~0.1-0.5 s for EfficientNet-Lite0)."""
    threads = max(1, int(threads))
    key = (graph.sha256, threads)
    if key not in _sessions:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # One thread: nothing to spin for. Several: the run asked for those cores (a SKILL
        # agent's are reserved for it by Ray), and letting the pool's threads spin briefly
        # between the graph's operators instead of sleeping made 96-px batches of 64 on 2
        # threads 1.2-1.3x faster (1,250-1,325 -> 1,586-1,633 img/s, 3 runs, 2026-12-04). The
        # threads block once idle for longer, so torch's own threads in the same process
        # lose little: in benchmarks/backbone_speed.py, which alternates the two engines in
        # one process, eager PyTorch on 2 threads ran at 315-369 img/s after the change and
        # 289-299 before.
        opts.add_session_config_entry("session.intra_op.allow_spinning",
                                      "1" if threads > 1 else "0")
        opts.log_severity_level = 3  # errors only
        _sessions[key] = ort.InferenceSession(graph.data, opts,
                                              providers=["CPUExecutionProvider"])
    return _sessions[key]


# -- building ---------------------------------------------------------------------------------
def _export(backbone: Backbone, stop: int) -> bytes:
    """ONNX bytes of the first ``stop`` stages (batch dimension dynamic, biases off)."""
    backbone.use_bb(None)
    size = backbone.image_size
    gen = torch.Generator().manual_seed(0)
    example = torch.rand(2, 3, size, size, generator=gen) * 2 - 1  # preprocessed: [-1, 1]
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad(), _quiet_stderr():
            warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notes
            # the stubs omit file objects, which the TorchScript exporter takes
            torch.onnx.export(_Prefix(backbone, stop), (example,), buf,  # type: ignore[arg-type]
                              dynamo=False,
                              input_names=["input"], output_names=["output"],
                              dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                              opset_version=OPSET, do_constant_folding=True)
    except Exception as err:  # any failure of the exporter means: not exportable
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        raise EngineUnavailable(f"cannot be exported to ONNX ({type(err).__name__}: "
                                f"{first})") from None
    return buf.getvalue()


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Hold back what is written to file descriptor 2 (C++ included) and pass it on only if
    the block succeeds: on failure the exporter dumps its whole TorchScript graph there
    (torch 2.13 logs it whatever its logging setting), and the fallback is one line."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        ok = False
        try:
            yield
            ok = True
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if ok:
                held.seek(0)
                text = held.read()
                if text:
                    os.write(2, text)


def _probe(backbone: Backbone, graph: Graph) -> str | None:
    """None if the graph computes what PyTorch computes on a seeded probe batch (another
    batch size and values than the export's example); else what is wrong."""
    if graph.sha256 in _checked:
        return None
    size = backbone.image_size
    gen = torch.Generator().manual_seed(1)
    probe = torch.rand(3, 3, size, size, generator=gen) * 2 - 1  # (3, 3, S, S)
    backbone.use_bb(None)
    with torch.no_grad():
        ref = _Prefix(backbone, graph.stop)(probe)
    try:
        (out,) = session(graph, torch.get_num_threads()).run(None, {"input": probe.numpy()})
    except Exception as err:  # a graph ONNX Runtime cannot load or run
        _sessions.pop((graph.sha256, max(1, torch.get_num_threads())), None)
        return f"does not run in ONNX Runtime ({type(err).__name__})"
    out = torch.from_numpy(out)
    if out.shape != ref.shape:
        return f"gives shape {tuple(out.shape)}, PyTorch {tuple(ref.shape)}"
    diff = float((out - ref).abs().max()) if ref.numel() else 0.0
    scale = max(1.0, float(ref.abs().max()) if ref.numel() else 1.0)
    if not diff <= _TOLERANCE * scale:  # also catches NaN
        return f"disagrees with PyTorch (max abs difference {diff:.3g} on a probe batch)"
    _checked.add(graph.sha256)
    return None


# -- the cache --------------------------------------------------------------------------------
def _key(root: Path) -> bytes:
    """This cache directory's signing key (32 random bytes, made once, mode 0600)."""
    path = root / "key"
    try:
        key = path.read_bytes()
        if len(key) == 32:
            return key
        path.unlink()  # damaged: a new key (every cached graph is rebuilt)
    except FileNotFoundError:
        pass
    tmp = root / f"key.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_bytes(32))
    try:
        os.link(tmp, path)  # atomic; another process may have made the key first
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return _key(root)


def _signature(key: bytes, meta: dict[str, Any], sha256: str) -> str:
    text = json.dumps({"meta": meta, "sha256": sha256}, sort_keys=True).encode()
    return hmac.new(key, text, hashlib.sha256).hexdigest()


def _read_checked(path: Path, side: Path, meta: dict[str, Any],
                  key: bytes) -> tuple[bytes | None, str]:
    """The graph's bytes if graph and sidecar verify, else (None, why)."""
    if not path.exists():
        return None, "missing"
    try:
        record = json.loads(side.read_text())
        data = path.read_bytes()
    except (OSError, ValueError):
        return None, "its sidecar is missing or unreadable"
    if not isinstance(record, dict) or record.get("meta") != meta:
        return None, "its sidecar was made for another backbone or setting"
    sha = hashlib.sha256(data).hexdigest()
    if not hmac.compare_digest(str(record.get("signature", "")),
                               _signature(key, meta, str(record.get("sha256", "")))):
        return None, "its sidecar's signature does not verify (not built by this cache)"
    if not hmac.compare_digest(sha, str(record.get("sha256", ""))):
        return None, "its bytes do not match the recorded SHA-256 (corrupt or altered)"
    return data, ""


def _write(path: Path, side: Path, data: bytes, meta: dict[str, Any], key: bytes) -> None:
    """Graph, then sidecar, each atomically (a crash in between leaves a graph that fails
    its check and is rebuilt)."""
    sha = hashlib.sha256(data).hexdigest()
    record = {"meta": meta, "sha256": sha, "signature": _signature(key, meta, sha)}
    for target, payload in ((path, data), (side, json.dumps(record, indent=1).encode())):
        tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        tmp.write_bytes(payload)
        os.replace(tmp, target)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock across processes (agents of a population build the same graph)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
