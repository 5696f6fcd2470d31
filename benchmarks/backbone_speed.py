"""Frozen-backbone inference speed: ONNX Runtime against eager PyTorch, side by side.

EfficientNet-Lite0 (the shipped weights), one batch of 64 images (seeded crops of
scikit-learn's two sample photos, 64x64, resized by the backbone to the image size), the
pooled 1280-d features. For each setting (96 px on 1 and 2 threads, 224 px on 1 thread) the
two engines run in one process, alternately, after a warm-up call each; a setting's ratio
is the median eager wall time per batch over the median ONNX Runtime time. The engine's
graph comes from the user cache (exported from the weights on first use, ~1-6 s, outside
the timings). Prints, each on its own line::

    onnx_over_eager_96px_1thread = X
    onnx_over_eager_96px_2threads = X
    onnx_over_eager_224px_1thread = X
    max_abs_feature_diff = X      (over every setting's batch)

    python benchmarks/backbone_speed.py [--repeat 5] [--batch 64] [--default-malloc]
        [--json FILE]

Both engines run with the allocator setting the command line uses
(``lifelong._allocator.keep_freed_memory``: freed memory is kept, not returned to the OS
after every large tensor). Without it eager PyTorch pays page faults on every activation of
a large batch and runs about 2x slower at batch 64 (ONNX Runtime has its own arena and does
not change), which made the ratios this script printed before 2026-12-04 (4.96 / 4.95 /
11.22) larger than what a ``lifelong`` run sees; ``--default-malloc`` measures that setting.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from lifelong._allocator import keep_freed_memory
from lifelong.backbones import BACKBONES
from lifelong.backbones.engine import OnnxEngine, TorchEngine

SETTINGS = (("96px_1thread", 96, 1), ("96px_2threads", 96, 2), ("224px_1thread", 224, 1))


def photo_crops(n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    """``n`` seeded crops (n, 3, size, size) in [0, 1] of scikit-learn's sample photos."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images  # two (427, 640, 3) uint8 images
    rng = np.random.default_rng(seed)
    out = np.empty((n, 3, size, size), np.float32)
    for i in range(n):
        img = photos[i % len(photos)]
        r, c = rng.integers(0, img.shape[0] - size), rng.integers(0, img.shape[1] - size)
        out[i] = img[r:r + size, c:c + size].transpose(2, 0, 1) / 255.0
    return torch.from_numpy(out)


def wall(fn: Callable[[], torch.Tensor]) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--repeat", type=int, default=5, help="timed batches per engine and setting")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--json", help="also write the measurements to this file")
    p.add_argument("--default-malloc", action="store_true",
                   help="glibc's default allocator, not the command line's setting")
    args = p.parse_args()
    if not args.default_malloc:
        keep_freed_memory()  # as the command line does (lifelong/_allocator.py)
    x = photo_crops(args.batch)  # (B, 3, 64, 64)
    results: dict[str, Any] = {"batch": args.batch, "repeat": args.repeat, "settings": {}}
    worst = 0.0
    for name, size, threads in SETTINGS:
        torch.set_num_threads(threads)
        backbone = BACKBONES.get("efficientnet-lite0")(image_size=size)
        eager, onnx = TorchEngine(backbone), OnnxEngine(backbone, [backbone.num_stages])
        stop = backbone.num_stages
        times: dict[str, list[float]] = {"eager": [], "onnx": []}
        run_eager = functools.partial(eager.prefix, x, stop)
        run_onnx = functools.partial(onnx.prefix, x, stop)
        _, ref = wall(run_eager)  # warm-up calls, not timed
        _, got = wall(run_onnx)
        diff = float((ref - got).abs().max())
        for _ in range(args.repeat):  # alternate, so drift on a shared machine hits both
            times["eager"].append(wall(run_eager)[0])
            times["onnx"].append(wall(run_onnx)[0])
        e, o = statistics.median(times["eager"]), statistics.median(times["onnx"])
        worst = max(worst, diff)
        results["settings"][name] = {"eager_s": times["eager"], "onnx_s": times["onnx"],
                                     "eager_img_s": args.batch / e, "onnx_img_s": args.batch / o,
                                     "ratio": e / o, "max_abs_feature_diff": diff}
        print(f"# {name}: eager {args.batch / e:.1f} img/s, onnxruntime {args.batch / o:.1f} "
              f"img/s (median of {args.repeat} batches of {args.batch}); max |diff| {diff:.2e}",
              flush=True)
    for name, _, _ in SETTINGS:
        print(f"onnx_over_eager_{name} = {results['settings'][name]['ratio']:.2f}")
    print(f"max_abs_feature_diff = {worst:.2e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
