"""Helpers shared by the sequential-baseline tests: a learner on the synthetic stream and
a few seeded training steps."""

from __future__ import annotations

import torch

from lifelong.experiment import make_experiment
from lifelong.tasks import Batch


def make_learner(name: str, setting: str = "task-il", net: str | None = None, seed: int = 0,
                 **learner):
    run = {"benchmark": "synthetic", "learner": name, "setting": setting, "seed": seed}
    if net is not None:
        run["net"] = net
    exp = make_experiment({"run": run, "learner": learner})
    stream = exp.build_stream()
    return exp, stream, exp.build_learner(stream, torch.device("cpu"))


def train_steps(learner, task, steps: int, seed: int = 0, indexed: bool = False) -> None:
    """``steps`` mini-batches of 10 drawn with a seeded generator; with ``indexed`` each
    batch carries its rows of ``task.train`` as ``Batch.index`` (as the runner's do)."""
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(len(task.train), (10,), generator=gen)
        learner.observe(Batch(task.train.images(idx.numpy()), task.train.labels[idx], task.id,
                              index=idx if indexed else None))
