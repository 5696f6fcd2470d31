"""Memory of an LLL bank of many received bundles: the bytes it holds and what decoding
them adds (the decoded bundles are meant to read the bytes in place, not copy them).

    python benchmarks/lll_bank_memory.py [--tasks 102] [--classes 49] [--components 25]

Makes ``--tasks`` synthetic GMMC bundles of SKILL-102's average size (1280-d features,
``--classes`` classes, ``--components`` mixture components, float16 anchors), holds their
bytes as the learner does, then decodes every one and keeps the results. Prints, in MiB of
resident memory (``/proc/self/statm``), ``bank_bytes_mb`` (the bundles' length),
``rss_bytes_mb`` (what holding the bytes added) and ``rss_decoded_extra_mb`` (what keeping
the decoded bundles added on top). Before the decoded tensors became views of the bytes
(commit b85cb9f and earlier) the last was 1.4x the bytes themselves.
"""

from __future__ import annotations

import argparse
import gc
import os

import numpy as np
import torch

from lifelong.learners.lll.anchors import GMMCAnchor
from lifelong.learners.lll.bundle import Bundle, decode, encode


def rss_mb() -> float:
    """Resident set of this process, in MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--tasks", type=int, default=102)
    p.add_argument("--classes", type=int, default=49)
    p.add_argument("--components", type=int, default=25)
    p.add_argument("--dim", type=int, default=1280)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    D, C, k = args.dim, args.classes, args.components
    blobs = []
    for t in range(args.tasks):
        anchor = GMMCAnchor(rng.random((k, D), dtype=np.float32),
                            0.5 + rng.random((k, D), dtype=np.float32),
                            np.full(k, 1 / k, dtype=np.float32), 2000)
        b = Bundle(key=f"{t}:synthetic", class_names=[str(i) for i in range(C)],
                   fingerprint="f" * 64, head_weight=torch.randn(C, D),
                   head_bias=torch.randn(C), bb=None, anchor=anchor,
                   info={"task_id": t, "class_ids": list(range(t * C, (t + 1) * C))})
        blobs.append(encode(b, torch.float16))
    gc.collect()
    r0 = rss_mb()
    held = {t: bytes(bytearray(d)) for t, d in enumerate(blobs)}  # the bank's own copies
    gc.collect()
    r1 = rss_mb()
    decoded = {t: decode(d) for t, d in held.items()}
    gc.collect()
    r2 = rss_mb()
    assert len(decoded) == args.tasks
    print(f"bank_bytes_mb = {sum(map(len, held.values())) / 2**20:.1f}")
    print(f"rss_bytes_mb = {r1 - r0:.1f}")
    print(f"rss_decoded_extra_mb = {r2 - r1:.1f}")


if __name__ == "__main__":
    main()
