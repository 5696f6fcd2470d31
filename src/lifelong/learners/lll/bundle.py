"""Knowledge bundles: what an agent shares about one learned task (SKILL section 5).

A bundle is a single safetensors blob: the tensors (head weights and bias, the beneficial
biases, the task anchor) and, in the safetensors header's metadata, a JSON manifest (task
name, class names, backbone fingerprint, anchor kind, sizes). Nothing in it is executable:
no pickle, no ``torch.load``.

:func:`decode` is the format's trust boundary. It treats the bytes as hostile and either
returns a :class:`Bundle` whose every field has the type, shape and range the rest of the
code relies on, or raises :class:`BundleError` with a one-line reason (values shown with
``repr``, cut to a bounded length). No other exception leaves it, whatever the bytes: deep
JSON nesting, huge integers, odd types and library errors are all turned into refusals.
What the bytes are checked against is an :class:`Expect` (the receiver's backbone and
mapper); what only the receiving agent knows (its stream's tasks, its own tasks, what it
already holds) is checked by :mod:`lifelong.learners.lll.admission`.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from lifelong.errors import LifelongError
from lifelong.learners.lll.anchors import GMMCAnchor, MahaAnchor
from lifelong.learners.lll.lda import LDAAnchor

__all__ = ["Bundle", "BundleError", "Expect", "encode", "decode", "digest", "describe",
           "MAX_BUNDLE_BYTES"]

FORMAT = "lifelong-bundle/1"
MAX_BUNDLE_BYTES = 64 << 20  # a head, 21k biases and an anchor are far below this
# torch.frombuffer warns that an immutable buffer cannot be written: the views of a held
# bundle are never written (``_views``). A filter set once, not warnings.catch_warnings(),
# which swaps the process-wide filter list and is not safe while an agent's other thread
# (scikit-learn's fit) uses it too.
warnings.filterwarnings("ignore", message="The given buffer is not writable",
                        category=UserWarning)

MAX_HEADER_BYTES = 4 << 20  # the safetensors header: tensor table + manifest
MAX_CLASSES = 10_000  # classes of one task (SKILL-102's largest task has a few hundred)
MAX_TEXT = 200  # characters of a task key, class name or fingerprint
MAX_INFO_BYTES = 256 << 10  # the manifest's info mapping, as JSON
MAX_INFO_KEYS = 32
MAX_COMPONENTS = 4_096  # GMMC components of one task, whatever the receiver allows
MAX_SAMPLES = 1 << 20  # Mahalanobis samples of one task
MAX_NUM_SAMPLES = 10**9  # a task's training-set size as claimed by its GMMC anchor
MAX_H2T_POOL = 32  # Head2Toe: each chosen map pooled to at most 32 x 32 values
# |value| bounds. Honest heads and biases trained with Adam at lr 1e-3 stay below 10; pooled
# features of the shipped backbones are ReLU6 outputs (<= 6). The bounds are generous and
# exist so that no accepted value can overflow float32 arithmetic in the mapper or a head.
MAX_PARAM = 1e4
MAX_FEATURE = 1e6
MIN_VARIANCE = 1e-6  # the format's floor; a receiver asks for its own (Expect.min_variance)
MAX_VARIANCE = 1e8
_MANIFEST_KEYS = {"format", "key", "class_names", "fingerprint", "anchor", "bb_from_stage",
                  "head_norm", "info", "payload_sha256", "num_samples", "bb_offset",
                  "h2t_pool"}
_SHOW = 60  # characters of a value quoted in a refusal


class BundleError(LifelongError):
    """A bundle that cannot be used: malformed, foreign, altered, out of range, unsigned."""


@dataclass
class Bundle:
    """One learned task, as shared between agents.

    ``key`` names the task uniquely in a population (e.g. ``"3:folder/birds"``);
    ``head_weight`` is (C, D), ``head_bias`` (C,), ``bb`` the beneficial biases (the
    backbone's whole vector, ``bb_size``) or None; ``anchor`` a :class:`GMMCAnchor` or
    :class:`MahaAnchor`.

    ``bb_offset``: the biases below it are zero (partial BB trains only the last stages) and
    are not shipped: the bytes hold ``bb[bb_offset:]`` and the offset, and :func:`decode`
    puts the zeros back. ``h2t_pool``: BB + Head2Toe pools each chosen map to
    ``h2t_pool x h2t_pool`` values, so the head reads ``D + len(h2t_index) * h2t_pool**2``.
    """

    key: str
    class_names: list[str]
    fingerprint: str
    head_weight: torch.Tensor
    head_bias: torch.Tensor
    bb: torch.Tensor | None
    anchor: GMMCAnchor | MahaAnchor | LDAAnchor
    bb_from_stage: int = 0
    head_norm: str = "none"  # "inf": class rows divided by their infinity norm (section 7.2)
    h2t_index: torch.Tensor | None = None  # BB + Head2Toe: inner channels the head also reads
    bb_offset: int = 0  # position in the BB vector of the first bias shipped
    h2t_pool: int = 1  # BB + Head2Toe: each chosen map pooled to h2t_pool x h2t_pool
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def anchor_kind(self) -> str:
        return "gmmc" if isinstance(self.anchor, GMMCAnchor) else \
            "lda" if isinstance(self.anchor, LDAAnchor) else "maha"


@dataclass(frozen=True)
class Expect:
    """What a receiver's bundles must match. ``None`` fields are taken from the bundle
    itself (a structural check, e.g. ``lifelong bundle inspect`` without a run)."""

    fingerprint: str | None = None
    feature_dim: int | None = None
    bb_size: int | None = None
    num_stages: int | None = None  # bb_from_stage must index one of the backbone's stages
    #: position in the BB vector of each stage's first bias: a bundle's ``bb_offset`` is 0
    #: (the whole vector) or that of its ``bb_from_stage``
    stage_offsets: tuple[int, ...] | None = None
    anchor: str | None = None  # "gmmc", "maha" or "lda": the receiver's task mapper
    max_components: int = MAX_COMPONENTS
    max_samples_per_class: int | None = None  # Mahalanobis: the receiver's m
    max_rank_per_class: int | None = None  # LDA: covariance directions per class (its r / C)
    min_variance: float = MIN_VARIANCE


def _payload_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """Hash of the tensors (names, dtypes, shapes, bytes) in name order: a bundle whose
    tensor bytes were altered or damaged after it was made no longer matches its manifest."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def encode(b: Bundle, anchor_dtype: torch.dtype = torch.float32) -> bytes:
    """The bundle as bytes; ``anchor_dtype=torch.float16`` halves the anchor's size."""
    t: dict[str, torch.Tensor] = {"head.weight": b.head_weight.detach().float().contiguous(),
                                  "head.bias": b.head_bias.detach().float().contiguous()}
    extra: dict[str, Any] = {}
    if b.bb is not None:
        # partial BB: only the trained slice travels; the zeros below it are implied
        t["bb"] = b.bb.detach()[b.bb_offset:].float().contiguous()
        if b.bb_offset:
            extra["bb_offset"] = int(b.bb_offset)
    if b.h2t_index is not None:
        t["h2t.index"] = b.h2t_index.detach().long().contiguous()
        extra["h2t_pool"] = int(b.h2t_pool)
    a = b.anchor
    if isinstance(a, GMMCAnchor):
        kind = "gmmc"
        t["gmmc.means"] = torch.tensor(a.means).to(anchor_dtype)
        t["gmmc.variances"] = torch.tensor(a.variances).to(anchor_dtype)
        t["gmmc.weights"] = torch.tensor(a.weights).float()
        extra["num_samples"] = int(a.num_samples)
    elif isinstance(a, LDAAnchor):
        kind = "lda"
        t["lda.means"] = torch.tensor(a.means).to(anchor_dtype)
        t["lda.counts"] = torch.tensor(a.counts).long()
        t["lda.basis"] = torch.tensor(a.basis).to(anchor_dtype)
        t["lda.residual"] = torch.tensor([a.residual], dtype=torch.float32)
    else:
        kind = "maha"
        t["maha.means"] = torch.tensor(a.means).to(anchor_dtype)
        t["maha.samples"] = torch.tensor(a.samples).to(anchor_dtype)
        t["maha.labels"] = torch.tensor(a.sample_labels).long()
    manifest = {"format": FORMAT, "key": b.key, "class_names": list(b.class_names),
                "fingerprint": b.fingerprint, "anchor": kind, "bb_from_stage": b.bb_from_stage,
                "head_norm": b.head_norm, "info": b.info, "payload_sha256": _payload_sha256(t),
                **extra}
    return st_save(t, metadata={"lifelong": json.dumps(manifest, allow_nan=False)})


def digest(data: bytes) -> str:
    """SHA-256 of a bundle's bytes (agents compare these to check they hold the same)."""
    return hashlib.sha256(data).hexdigest()


def show(value: Any, limit: int = _SHOW) -> str:
    """``repr(value)`` cut to ``limit`` characters: safe to put in a one-line message
    (``repr`` escapes newlines and control characters)."""
    try:
        text = repr(value)
    except Exception:  # a repr that fails (e.g. an int too long to print) is not quoted
        return f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fail(msg: str) -> BundleError:
    return BundleError("bundle refused: " + " ".join(msg.split()))  # one line, always


def _is_int(x: Any) -> bool:
    return type(x) is int  # bool is an int subclass: True must not count as task 1


def _text(x: Any, what: str, limit: int = MAX_TEXT) -> str:
    if not isinstance(x, str) or not 0 < len(x) <= limit or not x.isprintable():
        raise _fail(f"bad {what} {show(x)}")
    return x


def decode(data: bytes, expect: Expect | None = None, *, fingerprint: str | None = None,
           feature_dim: int | None = None, bb_size: int | None = None,
           max_bytes: int = MAX_BUNDLE_BYTES) -> Bundle:
    """Check untrusted bytes and return the bundle; BundleError (one line) if unusable.

    ``expect`` says what the receiver needs; ``fingerprint``, ``feature_dim`` and
    ``bb_size`` are shorthands that override its fields."""
    exp = expect or Expect()
    over = {k: v for k, v in (("fingerprint", fingerprint), ("feature_dim", feature_dim),
                              ("bb_size", bb_size)) if v is not None}
    if over:
        exp = Expect(**{**exp.__dict__, **over})
    try:
        return _decode(data, exp, max_bytes)
    except BundleError:
        raise
    except RecursionError:
        raise _fail("nested too deeply") from None
    except Exception as err:  # the trust boundary: nothing else may escape
        raise _fail(f"not a bundle ({type(err).__name__}: {show(str(err))})") from None


def _header(data: bytes, max_bytes: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The safetensors header and the manifest in its metadata, size-checked first."""
    if not isinstance(data, (bytes, bytearray)):
        raise _fail(f"expected bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise _fail(f"{len(data)} bytes exceeds the limit of {max_bytes}")
    if len(data) < 8:
        raise _fail("truncated (no safetensors header)")
    header_len = int.from_bytes(data[:8], "little")
    if header_len <= 0 or 8 + header_len > len(data):
        raise _fail("not a safetensors blob (bad header length)")
    if header_len > MAX_HEADER_BYTES:
        raise _fail(f"header of {header_len} bytes exceeds the limit of {MAX_HEADER_BYTES}")
    header = json.loads(bytes(data[8:8 + header_len]))
    if not isinstance(header, dict):
        raise _fail("not a bundle (header is not a mapping)")
    meta = header.get("__metadata__")
    if not isinstance(meta, dict) or set(meta) != {"lifelong"} or \
            not isinstance(meta["lifelong"], str):
        raise _fail("not a bundle (no lifelong manifest)")
    manifest = json.loads(meta["lifelong"])
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _fail("unknown manifest format")
    extra = set(manifest) - _MANIFEST_KEYS
    if extra:
        raise _fail(f"unexpected manifest fields {show(sorted(extra))}")
    return header, manifest


def _info(x: Any) -> dict[str, Any]:
    """The free-form ``info`` mapping: flat, small, of plain JSON scalars and int lists."""
    if not isinstance(x, dict) or len(x) > MAX_INFO_KEYS:
        raise _fail("bad info (not a small mapping)")
    if len(json.dumps(x)) > MAX_INFO_BYTES:
        raise _fail(f"info larger than {MAX_INFO_BYTES} bytes")
    for k, v in x.items():
        _text(k, "info key", 64)
        ok = (v is None or isinstance(v, bool) or (_is_int(v) and abs(v) < 2**63)
              or (isinstance(v, float) and math.isfinite(v))
              or (isinstance(v, str) and len(v) <= 1000)
              or (isinstance(v, list) and len(v) <= MAX_CLASSES
                  and all(_is_int(i) and 0 <= i < 2**63 for i in v)))
        if not ok:
            raise _fail(f"bad info value for {show(k)}: {show(v)}")
    return dict(x)


def _tensor(t: dict[str, torch.Tensor], name: str, dtypes: tuple[torch.dtype, ...],
            shape: tuple[int | None, ...], bound: float | None = None) -> torch.Tensor:
    if name not in t:
        raise _fail(f"tensor {name} missing")
    x = t[name]
    if x.dtype not in dtypes:
        raise _fail(f"tensor {name} has dtype {x.dtype}")
    if x.dim() != len(shape) or any(s is not None and s != n
                                    for s, n in zip(shape, x.shape, strict=True)):
        raise _fail(f"tensor {name} has shape {tuple(x.shape)}, expected {shape}")
    if x.is_floating_point():
        if not bool(torch.isfinite(x).all()):
            raise _fail(f"tensor {name} holds NaN or infinite values")
        if bound is not None and x.numel() and float(x.abs().max()) > bound:
            raise _fail(f"tensor {name} has values beyond +-{bound:g}")
    return x


#: safetensors dtype codes of the tensors a bundle may hold.
_DTYPES = {"F16": torch.float16, "F32": torch.float32, "F64": torch.float64,
           "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8}


def _views(data: bytes, header: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The blob's tensors as views of ``data`` itself, without a copy, so an agent's bank
    holds each bundle's bytes once and the decoded bundle reads them in place. Only called
    after safetensors' own parser has accepted the blob (a full table of in-bounds,
    non-overlapping ranges whose sizes match dtype x shape); a dtype a bundle never holds
    is refused here, and so is a range that is not aligned to its dtype (honest writers pad
    the header to 8 bytes; an unaligned view is undefined behaviour for torch's kernels) or
    whose size is not dtype x shape. Nothing may write to the views: the numpy arrays made
    from them are marked read-only (``_readonly``); the torch tensors (head, biases) cannot
    be, and no code writes to a held bundle's tensors in place."""
    base = 8 + int.from_bytes(data[:8], "little")
    out = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(spec["dtype"])
        if dtype is None:
            raise _fail(f"tensor {show(name)} has dtype {show(spec['dtype'])}")
        start, end = (int(v) for v in spec["data_offsets"])
        shape = [int(n) for n in spec["shape"]]
        count = math.prod(shape)
        if not 0 <= start <= end <= len(data) - base or end - start != count * dtype.itemsize:
            raise _fail(f"tensor {show(name)} has a byte range that does not fit its shape")
        if (base + start) % dtype.itemsize:
            raise _fail(f"tensor {show(name)} is not aligned to its dtype")
        if not count:
            out[name] = torch.empty(shape, dtype=dtype)
            continue
        flat = torch.frombuffer(data, dtype=dtype, count=count, offset=base + start)
        out[name] = flat.reshape(shape)
    return out


def _readonly(x: torch.Tensor) -> np.ndarray:
    """A numpy view of a tensor decoded in place (``_views``), marked read-only: writing to
    it would change the shared, signed bytes."""
    arr = x.numpy()
    arr.setflags(write=False)
    return arr


def _decode(data: bytes, exp: Expect, max_bytes: int) -> Bundle:
    header, manifest = _header(data, max_bytes)
    data = bytes(data)  # one immutable object (the same one if it is bytes already)
    st_load(data)  # safetensors' checks of the table; the copies it makes are dropped
    tensors = _views(data, header)
    if manifest.get("payload_sha256") != _payload_sha256(tensors):
        raise _fail("tensor data does not match its manifest (altered or damaged)")
    key = _text(manifest.get("key"), "task key")
    names = manifest.get("class_names")
    if not isinstance(names, list) or not 1 <= len(names) <= MAX_CLASSES:
        raise _fail("bad class names")
    for n in names:
        _text(n, "class name")
    fp = _text(manifest.get("fingerprint"), "backbone fingerprint")
    if exp.fingerprint is not None and fp != exp.fingerprint:
        raise _fail(f"made on another backbone (fingerprint {show(fp[:16])})")
    kind = manifest.get("anchor")
    if kind not in ("gmmc", "maha", "lda"):
        raise _fail(f"unknown anchor kind {show(kind)}")
    if exp.anchor is not None and kind != exp.anchor:
        raise _fail(f"a {kind} anchor, but this agent's task mapper is {exp.anchor}")
    allowed = {"head.weight", "head.bias", "bb", "h2t.index"} | (
        {"gmmc.means", "gmmc.variances", "gmmc.weights"} if kind == "gmmc" else
        {"lda.means", "lda.counts", "lda.basis", "lda.residual"} if kind == "lda" else
        {"maha.means", "maha.samples", "maha.labels"})
    if set(tensors) - allowed:
        raise _fail(f"unexpected tensors {show(sorted(set(tensors) - allowed))}")
    C = len(names)
    if "head.weight" not in tensors or tensors["head.weight"].dim() != 2:
        raise _fail("tensor head.weight missing or not a matrix")
    bb = None
    offset = manifest.get("bb_offset", 0)
    if "bb" in tensors:
        total = exp.bb_size if exp.bb_size is not None else None
        if not _is_int(offset) or offset < 0 or (total is not None and offset >= total):
            raise _fail(f"bb_offset {show(offset)} is not inside the backbone's "
                        f"{show(total)} biases")
        # the shipped slice bb[offset:], then the whole vector with the implied zeros
        size = total - offset if total is not None else tensors["bb"].numel()
        part = _tensor(tensors, "bb", (torch.float32,), (size,), MAX_PARAM)
        if not 1 <= offset + part.numel() <= 10**7:
            raise _fail(f"bad beneficial-bias count {offset + part.numel()}")
        bb = torch.cat([torch.zeros(offset), part]) if offset else part
    elif "bb_offset" in manifest:
        raise _fail("bb_offset without beneficial biases")
    index, pool = None, manifest.get("h2t_pool", 1)
    if "h2t.index" in tensors:
        index = _tensor(tensors, "h2t.index", (torch.int64,), (None,))
        if bb is None or not 1 <= index.numel() <= bb.numel() or int(index.min()) < 0 or \
                int(index.max()) >= bb.numel():
            raise _fail("invalid Head2Toe channel index")
        if not _is_int(pool) or not 1 <= pool <= MAX_H2T_POOL:
            raise _fail(f"invalid Head2Toe pooling size {show(pool)}")
    elif "h2t_pool" in manifest:
        raise _fail("h2t_pool without a Head2Toe channel index")
    extra_in = index.numel() * pool * pool if index is not None else 0
    D = exp.feature_dim if exp.feature_dim is not None else \
        tensors["head.weight"].shape[1] - extra_in
    if D < 1:
        raise _fail("bad feature dimension")
    w = _tensor(tensors, "head.weight", (torch.float32,), (C, D + extra_in), MAX_PARAM)
    bias = _tensor(tensors, "head.bias", (torch.float32,), (C,), MAX_PARAM)
    norm = manifest.get("head_norm", "none")
    if norm not in ("none", "inf"):
        raise _fail(f"unknown head normalisation {show(norm)}")
    stage = manifest.get("bb_from_stage", 0)
    if not _is_int(stage) or stage < 0 or (exp.num_stages is not None
                                           and stage >= exp.num_stages):
        raise _fail(f"bb_from_stage {show(stage)} is not a stage of this backbone")
    if offset and exp.stage_offsets is not None and (
            stage >= len(exp.stage_offsets) or offset != exp.stage_offsets[stage]):
        raise _fail(f"bb_offset {show(offset)} is not where stage {stage}'s biases start")
    anchor: GMMCAnchor | MahaAnchor | LDAAnchor
    if kind == "gmmc":
        anchor = _gmmc(tensors, manifest, D, exp)
    elif kind == "lda":
        anchor = _lda(tensors, manifest, C, D, exp)
    else:
        anchor = _maha(tensors, manifest, C, D, exp)
    info = _info(manifest.get("info", {}))
    return Bundle(key=key, class_names=list(names), fingerprint=fp, head_weight=w,
                  head_bias=bias, bb=bb, anchor=anchor, bb_from_stage=stage, head_norm=norm,
                  h2t_index=index, info=info, bb_offset=offset if bb is not None else 0,
                  h2t_pool=pool if index is not None else 1)


def _gmmc(tensors: dict[str, torch.Tensor], manifest: dict[str, Any], D: int,
          exp: Expect) -> GMMCAnchor:
    floats = (torch.float32, torch.float16)
    means = _tensor(tensors, "gmmc.means", floats, (None, D), MAX_FEATURE)
    k = means.shape[0]
    if not 1 <= k <= min(exp.max_components, MAX_COMPONENTS):
        raise _fail(f"{k} mixture components (this agent allows 1 to "
                    f"{min(exp.max_components, MAX_COMPONENTS)})")
    var = _tensor(tensors, "gmmc.variances", floats, (k, D), MAX_VARIANCE)
    weights = _tensor(tensors, "gmmc.weights", (torch.float32,), (k,))
    floor = max(exp.min_variance, MIN_VARIANCE)
    if float(var.min()) < floor:
        raise _fail(f"mixture variance {float(var.min()):.3g} below the floor {floor:g}")
    if not bool((weights > 1e-30).all()) or abs(float(weights.sum()) - 1) > 1e-3:
        raise _fail("invalid mixture weights (must be positive and sum to 1)")
    n = manifest.get("num_samples")
    if not isinstance(n, int) or not _is_int(n) or not 1 <= n <= MAX_NUM_SAMPLES:
        raise _fail(f"invalid mixture sample count {show(n)}")
    return GMMCAnchor(_readonly(means), _readonly(var), _readonly(weights), n)


def _maha(tensors: dict[str, torch.Tensor], manifest: dict[str, Any], C: int, D: int,
          exp: Expect) -> MahaAnchor:
    if "num_samples" in manifest:
        raise _fail("a Mahalanobis anchor has no num_samples")
    floats = (torch.float32, torch.float16)
    means = _tensor(tensors, "maha.means", floats, (C, D), MAX_FEATURE)
    samples = _tensor(tensors, "maha.samples", floats, (None, D), MAX_FEATURE)
    labels = _tensor(tensors, "maha.labels", (torch.int64,), (samples.shape[0],))
    most = C * exp.max_samples_per_class if exp.max_samples_per_class else MAX_SAMPLES
    if not 1 <= samples.shape[0] <= min(most, MAX_SAMPLES):
        raise _fail(f"{samples.shape[0]} Mahalanobis samples (this agent allows 1 to "
                    f"{min(most, MAX_SAMPLES)})")
    if int(labels.min()) < 0 or int(labels.max()) >= C:
        raise _fail("invalid Mahalanobis sample labels")
    if exp.max_samples_per_class and int(torch.bincount(labels).max()) > \
            exp.max_samples_per_class:
        raise _fail("more Mahalanobis samples for one class than this agent shares")
    return MahaAnchor(_readonly(means), _readonly(samples), _readonly(labels))


def _lda(tensors: dict[str, torch.Tensor], manifest: dict[str, Any], C: int, D: int,
         exp: Expect) -> LDAAnchor:
    """Class means (C, D), counts (C,), covariance basis (r, D) and residual (1,): r at most
    the task's degrees of freedom (N - C), D, and the receiver's ``max_rank_per_class`` x C;
    the residual a finite trace >= 0."""
    if "num_samples" in manifest:
        raise _fail("an LDA anchor has no num_samples")
    floats = (torch.float32, torch.float16)
    means = _tensor(tensors, "lda.means", floats, (C, D), MAX_FEATURE)
    counts = _tensor(tensors, "lda.counts", (torch.int64,), (C,))
    if int(counts.min()) < 1 or int(counts.max()) > MAX_NUM_SAMPLES or \
            int(counts.sum()) > MAX_NUM_SAMPLES:
        raise _fail(f"invalid LDA class counts (each 1 to {MAX_NUM_SAMPLES})")
    basis = _tensor(tensors, "lda.basis", floats, (None, D), MAX_FEATURE)
    dof = int(counts.sum()) - C
    most = min(dof, D) if exp.max_rank_per_class is None else \
        min(dof, D, exp.max_rank_per_class * C)
    if basis.shape[0] > most:
        raise _fail(f"LDA covariance basis of rank {basis.shape[0]} (this agent allows at "
                    f"most {most} for {C} classes and {dof} degrees of freedom)")
    residual = _tensor(tensors, "lda.residual", (torch.float32,), (1,), MAX_VARIANCE * D)
    if float(residual[0]) < 0:
        raise _fail(f"negative LDA residual variance {float(residual[0]):.3g}")
    return LDAAnchor(_readonly(means), _readonly(counts), _readonly(basis),
                     float(residual[0]))


def describe(data: bytes) -> dict[str, Any]:
    """The manifest and a table of the tensors (name, dtype, shape, bytes) of a bundle,
    after a structural check (``lifelong bundle inspect``)."""
    decode(data)  # refuses anything malformed, with its reason
    _, manifest = _header(data, MAX_BUNDLE_BYTES)
    tensors = st_load(bytes(data))
    table = {n: {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape),
                 "bytes": t.numel() * t.element_size()} for n, t in sorted(tensors.items())}
    return {"bytes": len(data), "manifest": manifest, "tensors": table}
