"""CONTRIBUTING.md's "add a learner" recipe, followed literally with a tiny learner defined
here: it is listed, trained and round-tripped by the contract tests, and an interrupted run
resumes to an uninterrupted run's results."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lifelong.config import Config, check
from lifelong.learners import LEARNERS
from lifelong.learners.base import Learner, LearnerContext
from lifelong.tasks import Batch, Task


# Step 1: the config, defaults with their source.
@dataclass
class TinyConfig(Config):
    lr: float = 0.05  # chosen for the synthetic stream (this test's "paper")

    def validate(self) -> None:
        check(self.lr > 0, "lr must be > 0")


# Step 2: the class.
class TinyLinear(Learner):
    """One linear classifier per task on the flattened pixels (a contract example)."""

    Config = TinyConfig
    settings = frozenset({"task-il"})

    def __init__(self, cfg: TinyConfig, ctx: LearnerContext) -> None:
        super().__init__(cfg, ctx)
        c, h, w = ctx.input_shape
        self.dim = c * h * w
        self.heads = nn.ModuleDict()
        self.optimizer: torch.optim.Optimizer | None = None

    def begin_task(self, task: Task) -> None:
        key = str(task.id)
        if key not in self.heads:  # a resumed run re-attaches instead of starting over
            self.heads[key] = nn.Linear(self.dim, task.num_classes)
        self.optimizer = torch.optim.SGD(self.heads[key].parameters(), lr=self.cfg.lr)

    def observe(self, batch: Batch) -> dict[str, torch.Tensor]:
        assert self.optimizer is not None
        logits = self.heads[str(batch.task_id)](batch.x.flatten(1))  # (B, C)
        loss = F.cross_entropy(logits, batch.y)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.detach()}

    @torch.no_grad()
    def predict(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        assert task_id is not None
        return self.heads[str(task_id)](x.flatten(1))

    def state_dict(self) -> dict[str, Any]:
        return {"heads": {k: dict(h.state_dict()) for k, h in self.heads.items()},
                "sizes": {k: h.out_features for k, h in self.heads.items()},
                "optimizer": self.optimizer.state_dict() if self.optimizer else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, n in state["sizes"].items():
            self.heads[k] = nn.Linear(self.dim, int(n))
            self.heads[k].load_state_dict(state["heads"][k])

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.heads.parameters())


@pytest.fixture()
def registered(monkeypatch):
    """Step 3, the recipe's one line, undone after the test (the registry is global)."""
    monkeypatch.setattr(LEARNERS, "_entries", dict(LEARNERS._entries))
    LEARNERS.register("tiny-linear")(TinyLinear)
    return "tiny-linear"


def test_the_recipes_learner_is_listed_trained_round_tripped_and_resumed(
        registered, tmp_path, capsys, monkeypatch):
    from lifelong.api import RunInterrupted, run_experiment
    from lifelong.cli import main
    from test_learners import (
        test_every_learner_state_round_trips,
        test_every_learner_trains_on_a_tiny_stream,
    )

    assert main(["list"]) == 0
    assert "tiny-linear" in capsys.readouterr().out
    # Step 4: the contract tests, unchanged, on the new name.
    test_every_learner_trains_on_a_tiny_stream(registered, tmp_path / "contract")
    test_every_learner_state_round_trips(registered, tmp_path / "roundtrip")
    # Interrupted inside task 1, then resumed: the results of an uninterrupted run.
    raw = {"run": {"benchmark": "synthetic", "learner": registered, "epochs": 2,
                   "checkpoint_every": 1}}
    original, calls = TinyLinear.observe, {"n": 0}

    def interrupt(self, batch):
        calls["n"] += 1
        if calls["n"] == 70:  # task 1's second epoch (24 steps an epoch)
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(TinyLinear, "observe", interrupt)
    with pytest.raises(RunInterrupted):
        run_experiment(raw, out=tmp_path / "run", progress=False)
    monkeypatch.setattr(TinyLinear, "observe", original)
    resumed = run_experiment({}, resume=tmp_path / "run", progress=False)
    full = run_experiment(raw, out=tmp_path / "full", progress=False)
    assert resumed["accuracy_matrix"] == full["accuracy_matrix"]
