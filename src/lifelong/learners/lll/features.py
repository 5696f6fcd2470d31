"""Features of a frozen backbone for LLL: cached where they do not change, with the
multiply-accumulates actually spent counted.

- Raw features (no beneficial biases) never change: computed once per image and cached by a
  hash of the image's pixels, so the task mapper, no-BB heads and repeated evaluation cost
  one backbone pass per image.
- Whole splits (a task's training and validation images) are featurised by
  :meth:`FeatureExtractor.raw_splits`, reading ``chunk_bytes`` of pixels at a time: memory
  holds the features (N, D), never the split's pixels (20,000 images at 96 px are 2.2 GB as
  float32; their EfficientNet-Lite0 features 0.1 GB). The cache holds views of the rows it
  returns, so the features exist once.
- Partial BB: the activations entering the first stage with biases are cached the same way;
  each step then runs only the top stages, and so do the raw features of those images (the
  task anchor's input).
- Bias-free passes (raw features, the frozen prefix below the first biased stage) run in
  the learner's inference engine (``lifelong.backbones.engine``: ONNX Runtime on CPU by
  default, else PyTorch); passes with biases, and everything back-propagated, run in
  PyTorch.
- MACs per image of each kind of pass are counted once with
  ``torch.utils.flop_counter.FlopCounterMode`` on the backbone itself, then multiplied by the
  number of images actually processed (``on_macs`` receives them).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import numpy as np
import torch

from lifelong.backbones.base import Backbone
from lifelong.backbones.engine import Engine, TorchEngine
from lifelong.data.images import ImageSet
from lifelong.learners.lll.h2t import h2t_features

__all__ = ["FeatureExtractor", "pass_batch", "CHUNK_BYTES"]

#: Pixels read at a time when a whole split is featurised (64 MB: 1,820 images at 96 px, or
#: 57 backbone passes of 32; larger chunks are no faster, the backbone dominates). A SKILL
#: agent lowers it to ``run.cache_mb`` when that is smaller.
CHUNK_BYTES = 64 << 20


def pass_batch(device: torch.device) -> int:
    """Images per backbone pass. On CPU small batches are faster: EfficientNet-Lite0 at
    96 px, 1 thread, 375 images took 2.1-2.6 CPU s in batches of 32, 2.9-3.7 in 64 and
    4.2-5.0 in 128 (the larger batches' activations no longer fit the cache). ONNX Runtime
    on the same task: 327, 332, 322, 287 images/s in batches of 16, 32, 64, 128 (wall,
    512 images). Accelerators want large batches."""
    return 32 if device.type == "cpu" else 256


#: MACs per image of each kind of pass, by (backbone class, fingerprint, kind, start): the
#: count depends on the network and its input size only, so a process counts it once.
_UNITS: dict[tuple[str, str, str, int], int] = {}


class FeatureExtractor:
    """A backbone with per-image caches and MAC counting; ``engine`` computes its
    bias-free passes (default: PyTorch)."""

    def __init__(self, backbone: Backbone, bb_from: int, device: torch.device,
                 engine: Engine | None = None) -> None:
        self.backbone = backbone
        self.bb_from = bb_from
        self.device = device
        self.engine: Engine = engine if engine is not None else TorchEngine(backbone)
        self._raw: dict[bytes, torch.Tensor] = {}
        self._stage_inputs: dict[int, dict[bytes, torch.Tensor]] = {}
        self._unit: dict[tuple[str, int], int] = {}
        self.batch = pass_batch(device)
        self.chunk_bytes = CHUNK_BYTES
        self.on_macs: Callable[[int], None] = lambda macs: None

    @staticmethod
    def keys(x: torch.Tensor) -> list[bytes]:
        """One content hash per image, so caches work in any order, batch or split."""
        flat = x.detach().to("cpu").contiguous().numpy()
        return [hashlib.blake2b(img.tobytes(), digest_size=16).digest() for img in flat]

    def unit_macs(self, kind: str, start: int | None = None) -> int:
        """MACs per image: ``forward`` (features, no BB), ``stage_input`` (up to stage
        ``start``), ``top`` (forward from stage ``start`` on, e.g. a validation pass with
        biases), ``bb_step`` (forward and backward with biases from stage ``start`` on).

        ``top`` and ``bb_step`` exclude the stages below ``start``: with partial BB their
        output is cached and counted once per image as ``stage_input``.
        """
        start = self.bb_from if start is None else start
        if kind not in ("forward", "stage_input", "top", "bb_step"):
            raise ValueError(f"unknown kind of pass: {kind}")
        if (kind, start) not in self._unit:
            from torch.utils.flop_counter import FlopCounterMode

            b = self.backbone
            # drawn even when the count is known, so the global RNG moves as it always did
            x = torch.rand(2, 3, b.image_size, b.image_size, device=self.device)
            key = (type(b).__name__, b.fingerprint(), kind, start)
            if key in _UNITS:  # counted by an earlier learner of this process (0.25 s)
                self._unit[(kind, start)] = _UNITS[key]
                return _UNITS[key]
            bb = torch.zeros(b.bb_size, device=self.device, requires_grad=True)
            with torch.no_grad():  # outside the counter: cached, so not part of a step
                # (2, C, H', W') entering stage ``start`` (what ``top`` and ``bb_step`` run on)
                h = b.stage_input(x, start) if kind in ("top", "bb_step") else x
            with FlopCounterMode(display=False) as fc:
                if kind == "forward":
                    with torch.no_grad():
                        b(x)
                elif kind == "stage_input":
                    with torch.no_grad():
                        b.stage_input(x, start)
                elif kind == "top":
                    with torch.no_grad():
                        b.forward_from(h, start)
                else:
                    b.use_bb(bb, start)
                    try:
                        b.forward_from(h, start).sum().backward()
                    finally:
                        b.use_bb(None)
            self._unit[(kind, start)] = _UNITS[key] = fc.get_total_flops() // 2 // 2  # 2 images
        return self._unit[(kind, start)]

    @torch.no_grad()
    def warm_up(self, stops: Sequence[int], passes: int = 5) -> None:
        """Run the engine ``passes`` times on a full batch of blank images for each prefix
        in ``stops``, outside the caches and the MAC count. ONNX Runtime makes its session
        on the first call and plans its memory over the first runs: in a fresh Ray actor the
        first task's featurisation took 1.8 s of CPU instead of 0.8 (shipped-mix task 2; 5
        warm-up passes, 1 s, brought it to 1.0 s), so an agent pays that at start-up rather
        than inside its first task. Draws no random numbers."""
        b = self.backbone
        x = torch.zeros(self.batch, 3, b.image_size, b.image_size)  # (B, 3, S, S)
        for stop in stops:
            for _ in range(passes):
                self.engine.prefix(x, stop)

    @torch.no_grad()
    def _cached(self, x: torch.Tensor, cache: dict[bytes, torch.Tensor],
                compute: Callable[[torch.Tensor], torch.Tensor], macs: int) -> torch.Tensor:
        keys = self.keys(x)
        missing = [i for i, k in enumerate(keys) if k not in cache]
        for start in range(0, len(missing), self.batch):
            idx = missing[start:start + self.batch]
            for i, f in zip(idx, compute(x[idx].to(self.device)), strict=True):
                cache[keys[i]] = f
        if missing:
            self.on_macs(len(missing) * macs)
        return torch.stack([cache[k] for k in keys])

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """Features without biases, (B, D); cached. With partial BB, images whose input to
        the first biased stage is cached (the task just trained: its anchor needs raw
        features) run only the top stages from there."""
        b = self.backbone
        stage = self._stage_inputs.get(self.bb_from) if self.bb_from > 0 else None
        if stage:
            keys = self.keys(x)
            todo = [i for i, k in enumerate(keys) if k not in self._raw and k in stage]
            if todo:
                b.use_bb(None)
            with torch.no_grad():
                for start in range(0, len(todo), self.batch):
                    idx = todo[start:start + self.batch]
                    h = torch.stack([stage[keys[i]] for i in idx])  # (b, C, H', W')
                    for i, f in zip(idx, b.forward_from(h, self.bb_from), strict=True):
                        self._raw[keys[i]] = f
            if todo:
                self.on_macs(len(todo) * self.unit_macs("top", self.bb_from))

        def compute(xs: torch.Tensor) -> torch.Tensor:
            # (b, D) without biases, from the engine, on the learner's device
            return self.engine.prefix(xs, b.num_stages).to(self.device)

        return self._cached(x, self._raw, compute, self.unit_macs("forward"))

    @torch.no_grad()
    def raw_splits(self, splits: Sequence[ImageSet]) -> torch.Tensor:
        """Raw features of every image of ``splits``, in order: (N_1 + N_2 + ..., D).

        The same values as ``raw(torch.cat([s.images() for s in splits]))`` (the same
        backbone batches: cache misses in order, ``batch`` at a time, judged against the
        cache as it was before the call), but the pixels are read ``chunk_bytes`` at a time
        and dropped once hashed or featurised; at most one chunk and one batch of images are
        held. New features go into the cache as views of the returned rows (one copy)."""
        b = self.backbone
        total = sum(len(s) for s in splits)
        out = torch.empty(total, b.num_features, device=self.device)  # (N, D)
        stage = self._stage_inputs.get(self.bb_from) if self.bb_from > 0 else None
        fresh: dict[bytes, int] = {}  # key -> its row in ``out``, computed in this call
        via_stage: list[tuple[int, bytes]] = []  # partial BB: (row, key), input cached
        via_engine: list[tuple[int, bytes, torch.Tensor]] = []  # (row, key, (C, H, W))
        done = [0, 0]  # images computed from stage inputs, by the engine

        def flush_stage() -> None:
            if not via_stage:
                return
            b.use_bb(None)
            assert stage is not None
            h = torch.stack([stage[k] for _, k in via_stage])  # (b, C', H', W')
            rows = [r for r, _ in via_stage]
            out[rows] = b.forward_from(h, self.bb_from)
            fresh.update({k: r for r, k in via_stage})
            done[0] += len(via_stage)
            via_stage.clear()

        def flush_engine() -> None:
            if not via_engine:
                return
            xs = torch.stack([x for _, _, x in via_engine]).to(self.device)  # (b, C, H, W)
            rows = [r for r, _, _ in via_engine]
            out[rows] = self.engine.prefix(xs, b.num_stages).to(self.device)
            fresh.update({k: r for r, k, _ in via_engine})
            done[1] += len(via_engine)
            via_engine.clear()

        row, shape = 0, None
        for split in splits:
            if split.shape != shape:  # one backbone batch holds images of one size
                flush_engine()
                shape = split.shape
            step = max(self.batch, self.chunk_bytes // (4 * int(np.prod(split.shape))))
            for start in range(0, len(split), step):
                x = split.images(np.arange(start, min(start + step, len(split))))
                for i, k in enumerate(self.keys(x)):
                    hit = self._raw.get(k)
                    if hit is not None:
                        out[row] = hit
                    elif stage and k in stage:
                        via_stage.append((row, k))
                        if len(via_stage) == self.batch:
                            flush_stage()
                    else:
                        via_engine.append((row, k, x[i].clone()))
                        if len(via_engine) == self.batch:
                            flush_engine()
                    row += 1
                del x  # the chunk's pixels
        flush_stage()
        flush_engine()
        for k, r in fresh.items():
            self._raw[k] = out[r]
        if done[0]:
            self.on_macs(done[0] * self.unit_macs("top", self.bb_from))
        if done[1]:
            self.on_macs(done[1] * self.unit_macs("forward"))
        return out

    def with_bb(self, x: torch.Tensor, bb: torch.Tensor | None, start: int) -> torch.Tensor:
        """Features with biases ``bb`` from stage ``start`` on (raw if None): (B, D). Keeps
        the graph to ``bb`` when it requires grad."""
        if bb is None:
            return self.raw(x)
        b = self.backbone
        if start == 0:
            b.use_bb(bb, 0)
            try:
                return b(x.to(self.device))
            finally:
                b.use_bb(None)
        cache = self._stage_inputs.setdefault(start, {})
        # the frozen prefix (no biases below ``start``) in the engine: (B, C, H', W')
        h = self._cached(x, cache, lambda xs: self.engine.prefix(xs, start).to(self.device),
                         self.unit_macs("stage_input", start))
        b.use_bb(bb, start)
        try:
            return b.forward_from(h, start)
        finally:
            b.use_bb(None)

    def head2toe(self, x: torch.Tensor, bb: torch.Tensor, start: int,
                 index: torch.Tensor, pool: int = 1) -> torch.Tensor:
        """Features with biases plus the chosen channels' maps pooled to ``pool x pool``
        and flattened: (B, D + k pool^2)."""
        return h2t_features(self.backbone, x.to(self.device), bb, start, index, pool)
