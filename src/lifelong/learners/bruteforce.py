"""Task-wise brute-force search over transfer configurations (LASEM appendix C): for each
new task, train one candidate per configuration from the same starting point (its own copy
of the shared parameters and its own task parameters), then keep the candidate with the best
validation accuracy. It costs 2^d times the base learner, which is what LASEM avoids.

After every epoch of the task the candidates are scored on the task's validation split; a
candidate's score is its best validation accuracy over the task's epochs, as in the LASEM
code (``lifelong_model_frame.py`` train_a_task keeps each configuration's
``best_valid_error``, postprocess_config_search takes the argmax). At the end of the task the
best-scoring candidate's shared and task parameters (as trained to the last epoch, as the
code saves them) replace the model's, and the shared parameters of the layers it does not
transfer are restored to their pre-task values. Predictions during the task use the
candidate with the best score so far; the code instead reports the chosen configuration's
whole history once the search is over, which a runner that evaluates as it goes cannot.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from lifelong.learners.base import LEARNERS, LearnerContext
from lifelong.learners.optim import make_optimizer
from lifelong.learners.selective import (
    DFCNNFields,
    HPSFields,
    SelectiveConfig,
    SelectiveLearner,
    TFFields,
)
from lifelong.learners.transfer import Bits, all_configs, check_groups, config_name
from lifelong.tasks import Batch, Task

__all__ = ["BruteForceHPS", "BruteForceTF", "BruteForceDFCNN", "BruteForce", "BruteForceFields"]

_VAL_BATCH = 256


@dataclass
class BruteForceFields(SelectiveConfig):
    groups: tuple[tuple[int, ...], ...] = ()  # search over groups of layers; () = per layer


class BruteForce(SelectiveLearner):
    """Brute-force search: train every transfer configuration, keep the best on validation."""

    def __init__(self, cfg: BruteForceFields, ctx: LearnerContext) -> None:
        super().__init__(cfg, ctx)
        self.configs: list[Bits] = all_configs(self.num_layers,
                                               check_groups(cfg.groups, self.num_layers))
        self.candidates: list[nn.ModuleDict] = []  # each {"shared": ..., "task": ...}
        self.optimizers: list[torch.optim.Optimizer] = []
        self.best = 0
        self.val_accuracy: list[float] = []  # the latest epoch's, per candidate
        self.best_val: list[float] = []  # best over the task's epochs so far, per candidate
        self.task_epochs = 0  # epochs trained on the current task since the last scoring
        self._task: Task | None = None
        #: finished searches: task id -> configuration name -> its best validation accuracy
        self.search_scores: dict[int, dict[str, float]] = {}

    def _use(self, k: int) -> None:
        """Point the model at candidate k (its shared copy, its task module, its config)."""
        t = self.current_task
        assert t is not None
        cand = self.candidates[k]
        self.model["shared"] = cand["shared"]
        self.tasks[str(t)] = cand["task"]
        self.task_configs[t] = self.configs[k]

    def _make_candidates(self, task: Task | _TaskShape) -> None:
        start = copy.deepcopy(self.model["shared"].state_dict())
        self.candidates, self.optimizers = [], []
        lr = self.cfg.epoch_lr(self.epoch)
        for cfg in self.configs:
            self.task_configs[task.id] = cfg  # build only the parameters cfg uses
            shared = self.build_shared().to(self.device)
            shared.load_state_dict(start)
            module = self.build_task(task.id, task.num_classes).to(self.device)
            cand = nn.ModuleDict({"shared": shared, "task": module})
            self.candidates.append(cand)
            self.optimizers.append(make_optimizer(self.cfg.optimizer, list(cand.parameters()), lr))

    def begin_task(self, task: Task) -> None:
        if self.candidates and self.current_task == task.id:  # resumed mid-search
            self._task = task
            return
        if task.id in self.num_classes:  # revisiting a fixed task: train it as it is
            return super().begin_task(task)
        self.snapshot_shared()  # for the roll-back of the layers the winner does not transfer
        self.num_classes[task.id] = task.num_classes
        self.current_task = task.id
        self._task = task
        self._make_candidates(task)
        self.best, self.val_accuracy, self.best_val, self.task_epochs = 0, [], [], 0
        self._use(0)
        self.optimizer = self.optimizers[0]

    def begin_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = self.cfg.epoch_lr(epoch)
        if self.candidates and self.task_epochs > 0:  # score the epoch just trained
            self._score()

    @torch.no_grad()
    def candidate_accuracy(self, k: int) -> float:
        """Validation accuracy of candidate ``k`` on the current task."""
        assert self._task is not None and self.current_task is not None
        val = self._task.val
        self._use(k)
        self.model.eval()
        correct = 0
        for i in range(0, len(val), _VAL_BATCH):
            idx = list(range(i, min(i + _VAL_BATCH, len(val))))
            x, y = val.images(np.asarray(idx)).to(self.device), val.labels[idx].to(self.device)
            correct += int((self.forward(x, self.current_task).argmax(1) == y).sum())
        return correct / max(len(val), 1)

    def _score(self) -> None:
        """Validation accuracy of every candidate; the one with the best score (best
        validation accuracy over the task's epochs, ties to the first) answers predictions."""
        accs = [self.candidate_accuracy(k) for k in range(len(self.candidates))]
        self.val_accuracy = accs
        self.best_val = (
            [max(a, b) for a, b in zip(accs, self.best_val, strict=True)]
            if self.best_val
            else list(accs)
        )
        self.best = max(range(len(accs)), key=lambda k: (self.best_val[k], -k))
        self.task_epochs = 0
        self._use(self.best)

    def observe(self, batch: Batch) -> dict[str, torch.Tensor]:
        if not self.candidates:
            return super().observe(batch)
        if not self.task_epochs:  # the first batch of an epoch
            self.task_epochs = 1
        losses = []
        for k, opt in enumerate(self.optimizers):
            self._use(k)
            self.model.train()
            opt.zero_grad(set_to_none=True)
            loss = self.loss(self.forward(batch.x, batch.task_id), batch)
            loss.backward()
            opt.step()
            losses.append(loss.detach())
        self._use(self.best)
        scale = len(batch.y) if self.cfg.loss_reduction == "sum" else 1
        return {"loss": torch.stack(losses).mean() / scale}

    def end_task(self, task: Task) -> None:
        if self.candidates:
            if self.task_epochs:
                self._score()
            self._use(self.best)  # the winner's shared copy and task module stay in the model
            self.search_scores[task.id] = {config_name(c): v for c, v in
                                           zip(self.configs, self.best_val, strict=True)}
            self.fix_config(task.id, self.configs[self.best])
            self.candidates, self.optimizers = [], []
        super().end_task(task)

    def report(self) -> dict[str, Any]:
        """Each finished search's scores (task -> configuration -> best validation accuracy),
        so how clearly the winner won can be read from results.json."""
        return {"search_scores": {str(t): dict(s) for t, s in sorted(self.search_scores.items())}}

    # -- checkpoints: the candidates are part of the state while a task searches ---------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["bruteforce"] = {
            "search_scores": {str(t): dict(s) for t, s in self.search_scores.items()},
            "best": self.best,
            "val_accuracy": list(self.val_accuracy),
            "best_val": list(self.best_val),
            "task_epochs": self.task_epochs,
            "candidates": [
                {"model": c.state_dict(), "optimizer": o.state_dict()}
                for c, o in zip(self.candidates, self.optimizers, strict=True)
            ],
        }
        state["optimizer"] = None  # the candidates' optimizers hold the state
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        bf = state["bruteforce"]
        self.search_scores = {int(t): {str(c): float(v) for c, v in s.items()}
                              for t, s in bf.get("search_scores", {}).items()}
        searching = state["current_task"] is not None and bf["candidates"]
        if searching:  # the searching task has no fixed configuration yet
            t = int(state["current_task"])
            state = dict(
                state,
                task_configs=[p for p in state["task_configs"] if int(p[0]) != t],
                current_task=None,
            )
        super().load_state_dict(state)
        if searching:
            self.current_task = t
            self._make_candidates(_TaskShape(t, self.num_classes[t]))
            for cand, opt, saved in zip(
                self.candidates, self.optimizers, bf["candidates"], strict=True
            ):
                cand.load_state_dict(saved["model"])
                opt.load_state_dict(saved["optimizer"])
            self.best, self.val_accuracy = int(bf["best"]), list(bf["val_accuracy"])
            self.best_val, self.task_epochs = list(bf["best_val"]), int(bf["task_epochs"])
            self._use(self.best)
            self.optimizer = self.optimizers[self.best]


@dataclass
class _TaskShape:
    """What ``_make_candidates`` needs of a task when rebuilding a checkpointed search."""

    id: int
    num_classes: int


# -- BruteForce on each base learner of the LASEM paper: named, registered classes --
@dataclass
class BruteForceHPSConfig(BruteForceFields, HPSFields):
    """Settings of BruteForce on hps: the method's fields and the base's."""


@LEARNERS.register("bruteforce-hps")
class BruteForceHPS(BruteForce):
    """Brute-force configuration search on HPS.

    The method is :class:`BruteForce`; the layers of base ``hps`` are built by
    :class:`~lifelong.learners.selective.SelectiveLearner`."""

    kind = "hps"
    Config = BruteForceHPSConfig
    cfg: BruteForceHPSConfig


@dataclass
class BruteForceTFConfig(BruteForceFields, TFFields):
    """Settings of BruteForce on tf: the method's fields and the base's."""


@LEARNERS.register("bruteforce-tf")
class BruteForceTF(BruteForce):
    """Brute-force configuration search on TF.

    The method is :class:`BruteForce`; the layers of base ``tf`` are built by
    :class:`~lifelong.learners.selective.SelectiveLearner`."""

    kind = "tf"
    Config = BruteForceTFConfig
    cfg: BruteForceTFConfig


@dataclass
class BruteForceDFCNNConfig(BruteForceFields, DFCNNFields):
    """Settings of BruteForce on dfcnn: the method's fields and the base's."""


@LEARNERS.register("bruteforce-dfcnn")
class BruteForceDFCNN(BruteForce):
    """Brute-force configuration search on DF-CNN.

    The method is :class:`BruteForce`; the layers of base ``dfcnn`` are built by
    :class:`~lifelong.learners.selective.SelectiveLearner`."""

    kind = "dfcnn"
    Config = BruteForceDFCNNConfig
    cfg: BruteForceDFCNNConfig
