"""Final task-mapper accuracy of GMMC, Mahalanobis (plain and Ledoit-Wolf shrunk) and the
LDA mapper (lifelong.learners.lll.lda) after the last task of a stream, on features
computed once with the LLL learner's backbone (no heads trained: the mapper alone), with
the anchor bytes each ships per task (float32).

    python benchmarks/lll_mapper_final.py --benchmark shipped-102 --features /tmp/f.npz

``--features`` caches the features (computed if the file is missing). Prints, per mapper,
``<mapper>_mapper_accuracy = value`` and ``<mapper>_anchor_bytes_per_task = value`` (mean
over tasks) and ``<mapper>_max_anchor_bytes_ratio = value`` (the largest per-task ratio of
its bytes to the smaller of GMMC's and the plain Mahalanobis anchor's).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from lifelong.experiment import make_experiment
from lifelong.learners.lll.anchors import GMMCMapper, MahaMapper, fit_gmmc, fit_maha
from lifelong.learners.lll.lda import LDAMapper, fit_lda


def featurise(benchmark: str, seed: int, path: Path) -> dict[str, np.ndarray]:
    """Train and test features (N, D) and labels of every task, cached in ``path``."""
    if path.exists():
        return dict(np.load(path))
    exp = make_experiment({"run": {"benchmark": benchmark, "learner": "lll",
                                   "setting": "class-il", "seed": seed}})
    stream = exp.build_stream()
    lll = exp.build_learner(stream, torch.device("cpu"))
    out: dict[str, np.ndarray] = {"T": np.array(len(stream))}
    for t in stream.tasks:
        for s in ("train", "test"):
            split = getattr(t, s)
            out[f"{t.id}_{s}_x"] = lll.extract.raw(split.images()).numpy()
            out[f"{t.id}_{s}_y"] = split.labels.numpy()
    np.savez(path, **out)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--benchmark", default="shipped-102")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--features", type=Path, required=True)
    args = p.parse_args()
    torch.set_num_threads(1)
    z = featurise(args.benchmark, args.seed, args.features)
    T = int(z["T"])
    tr = [(z[f"{t}_train_x"], z[f"{t}_train_y"]) for t in range(T)]
    x = torch.tensor(np.concatenate([z[f"{t}_test_x"] for t in range(T)]), dtype=torch.float64)
    owner = np.concatenate([np.full(len(z[f"{t}_test_y"]), t) for t in range(T)])
    C = [int(y.max()) + 1 for _, y in tr]
    seeds = [args.seed * 1000 + t for t in range(T)]  # as the learner seeds its anchors
    gmmc = {t: fit_gmmc(f, 25, seeds[t]) for t, (f, _) in enumerate(tr)}
    maha = {t: fit_maha(f, y, C[t], 5, seeds[t]) for t, (f, y) in enumerate(tr)}
    lda = {t: fit_lda(f, y, C[t], 4) for t, (f, y) in enumerate(tr)}
    size = {"gmmc": [a.means.nbytes + a.variances.nbytes + a.weights.nbytes
                     for a in gmmc.values()],
            "maha": [a.means.nbytes + a.samples.nbytes + a.sample_labels.nbytes
                     for a in maha.values()],
            "lda": [a.means.nbytes + a.basis.nbytes + a.counts.nbytes + 4 for a in lda.values()]}
    size["maha_lw"] = size["maha"]
    least = np.minimum(size["gmmc"], size["maha"])
    mappers = {"gmmc": GMMCMapper(gmmc), "maha": MahaMapper(maha, 0.0),
               "maha_lw": MahaMapper(maha, "ledoit-wolf"), "lda": LDAMapper(lda, 0.1)}
    for name, m in mappers.items():
        pred = m.map(x).numpy()
        acc = np.mean([np.mean(pred[owner == t] == t) for t in range(T)])  # mean over tasks
        print(f"{name}_mapper_accuracy = {acc:.4f}")
        print(f"{name}_anchor_bytes_per_task = {np.mean(size[name]):.0f}")
        print(f"{name}_max_anchor_bytes_ratio = {np.max(np.array(size[name]) / least):.3f}")


if __name__ == "__main__":
    main()
