"""GDumb: Greedy sampler and Dumb learner (Prabhu, Torr & Dokania, ECCV 2020).

Two parts, neither of which learns from the stream itself:

* **Greedy class-balanced sampler** (the paper's Algorithm 1): a memory of at most k
  examples. An incoming example (x, y) is stored if the memory has room; otherwise, if its
  class holds fewer than k / |classes seen| examples, a random example of the largest class
  (the lowest class id among equals) is removed to make room; otherwise it is dropped. The
  stream is offered once: only during a task's first epoch (later epochs would offer the
  same images again).
* **Dumb learner**: whenever the memory has changed, the network is re-initialised and
  trained from scratch on the memory alone, with the learner's optimiser and learning-rate
  schedule, for ``retrain_epochs`` epochs of ``retrain_batch`` examples. Each example uses
  its own task's head (task-il) or the columns of every seen class (class-il: the paper's
  masking of unseen classes at inference).

When the retraining happens: at the start of a task's second epoch (the first has offered
the stream) and, if the memory changed since, at the task's end (1-epoch runs). Both are
inside the runner's timed training work, so ``train_seconds`` counts the retraining. An
evaluation after a task's first epoch therefore still sees the model trained on the memory
as the previous task left it. ``observe`` stores and does not train; its ``loss`` is the
current model's cross-entropy on the incoming batch (eval mode, no gradient).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, cast

import torch

from lifelong.config import check
from lifelong.learners.base import LEARNERS
from lifelong.learners.cl.base import CLConfig, CLLearner, MultiHeadNet
from lifelong.learners.cl.memory import TensorStore
from lifelong.learners.optim import make_optimizer
from lifelong.tasks import Batch, Task

__all__ = ["GDumb", "GDumbConfig", "GreedyClassBalancedMemory"]


@dataclass
class GDumbConfig(CLConfig):
    # k = 200: Mammoth's smallest seq-mnist buffer, the memory of the other rehearsal
    # baselines here (the paper's MNIST formulations use other k; `compare --memory N` sets
    # it). Retraining: None epochs = the run's epochs per task (the protocol's budget; the
    # paper trains much longer, with SGD and cosine restarts); batch 16 as the paper's.
    memory: int = 200
    retrain_epochs: int | None = None
    retrain_batch: int = 16

    @classmethod
    def with_memory(cls, n: int) -> dict[str, Any]:
        """Settings that keep at most ``n`` stored examples (``compare --memory``)."""
        return {"memory": n}

    def validate(self) -> None:
        super().validate()
        check(self.memory >= 1 and self.retrain_batch >= 1,
              "memory and retrain_batch must be >= 1")
        check(self.retrain_epochs is None or self.retrain_epochs >= 1,
              "retrain_epochs must be >= 1")


class GreedyClassBalancedMemory(TensorStore):
    """GDumb's memory: rows of named tensors with a ``cls`` field (the global class id) kept
    class-balanced by the greedy rule above, at most ``capacity`` rows."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self.seen: list[int] = []  # classes offered so far, in arrival order

    def counts(self) -> dict[int, int]:
        """Stored examples per class (classes seen but not stored count 0)."""
        out = dict.fromkeys(self.seen, 0)
        if self.size:
            for c in self.fields["cls"][: self.size].tolist():
                out[int(c)] += 1
        return out

    def offer(self, gen: torch.Generator, **rows: torch.Tensor) -> int:
        """Offer every row (each field (n, ...), ``cls`` among them) in order; returns how
        many were stored."""
        stored = 0
        for i, c in enumerate(rows["cls"].tolist()):
            if c not in self.seen:
                self.seen.append(c)
            row = {k: v[i:i + 1] for k, v in rows.items()}
            if self.size < self.capacity:  # room left: store
                self._fit(row, self.size + 1)
                self._write(torch.tensor([self.size]), row)
                self.size += 1
                stored += 1
                continue
            counts = self.counts()
            if counts[c] >= self.capacity / len(self.seen):  # its class has its share
                continue
            largest = max(counts.values())
            j = min(k for k, v in counts.items() if v == largest)
            rows_j = (self.fields["cls"][: self.size] == j).nonzero().flatten()
            slot = rows_j[int(torch.randint(len(rows_j), (1,), generator=gen))]
            self._write(slot.view(1).cpu(), row)  # remove one of class j, add (x, y)
            stored += 1
        return stored

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "seen": list(self.seen)}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        super().load_state_dict(state, device)
        self.seen = [int(c) for c in state["seen"]]


@LEARNERS.register("gdumb")
class GDumb(CLLearner[GDumbConfig]):
    """GDumb: a greedy class-balanced memory; a network trained from scratch on it."""

    Config = GDumbConfig

    def __init__(self, cfg: GDumbConfig, ctx) -> None:
        super().__init__(cfg, ctx)
        self.memory = GreedyClassBalancedMemory(cfg.memory)
        self.dirty = False  # the memory changed since the network was last trained on it
        self.first_epoch: int | None = None  # global epoch of the current task's first epoch
        self.retrains = 0

    def begin_task(self, task: Task) -> None:
        if not self.resuming(task):
            self.first_epoch = None
        super().begin_task(task)

    def begin_epoch(self, epoch: int) -> None:
        super().begin_epoch(epoch)
        if self.first_epoch is None:
            self.first_epoch = epoch
        elif self.dirty:  # the stream has been offered: train on the memory now
            self.retrain()

    def sampling(self) -> bool:
        """Whether the stream is being offered to the memory (the task's first epoch)."""
        return self.first_epoch is None or self.epoch == self.first_epoch

    def observe(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.check_batch(batch)
        if self.sampling():
            cls = torch.tensor(self.class_ids[batch.task_id], device=batch.y.device)[batch.y]
            if self.memory.offer(self.gen, x=batch.x, y=batch.y, cls=cls,
                                 task=torch.full_like(batch.y, batch.task_id)):
                self.dirty = True
        self.net.eval()
        with torch.no_grad():
            h = self.net.features(batch.x)
            loss = self.reduce(self.ce_per_example(h, batch.y, batch.task_id))
        return {"loss": self.logged(loss, len(batch.y))}

    def end_task(self, task: Task) -> None:
        if self.dirty:
            self.retrain()
        super().end_task(task)

    # -- the dumb learner ----------------------------------------------------------------------
    def fresh_net(self) -> MultiHeadNet:
        """A newly initialised network with a head for every task seen, drawn from a seed
        taken from the learner's stream (so a resumed run re-draws the same weights)."""
        seed = int(torch.randint(2**62, (1,), generator=self.gen))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = cast(MultiHeadNet, self.build_net())
            for t in self.net.order:
                net.add_head(t, self.num_classes[t])
        return cast(MultiHeadNet, net.to(self.device))

    def retrain(self) -> None:
        """Re-initialise the network and train it on the memory only."""
        self.net = self.fresh_net()
        epochs = self.cfg.retrain_epochs or self.ctx.epochs
        opt = make_optimizer(self.cfg.optimizer, self.trainable(), self.cfg.epoch_lr(0))
        mem = self.memory.all()
        n, b = len(self.memory), self.cfg.retrain_batch
        self.net.train()
        for e in range(epochs):
            for group in opt.param_groups:
                group["lr"] = self.cfg.epoch_lr(e)
            order = torch.randperm(n, generator=self.gen)
            for k in range(math.ceil(n / b)):
                idx = order[k * b:(k + 1) * b].to(self.device)
                h = self.net.features(mem["x"][idx])
                loss = self.reduce(self.ce_per_example(h, mem["y"][idx], mem["task"][idx]))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        # the optimiser of the contract, over the new parameters (observe does not step it)
        if self.optimizer is not None:
            self.optimizer = self._make_optimizer()
        self.dirty = False
        self.retrains += 1

    def stored_examples(self) -> int:
        return len(self.memory)

    def report(self) -> dict[str, Any]:
        return {**super().report(), "retrains": self.retrains}

    def method_state(self) -> dict[str, Any]:
        return {"memory": self.memory.state_dict(), "dirty": self.dirty,
                "first_epoch": self.first_epoch, "retrains": self.retrains}

    def load_method_state(self, state: dict[str, Any]) -> None:
        self.memory = GreedyClassBalancedMemory(self.cfg.memory)
        if int(state["memory"]["size"]):
            self.memory.load_state_dict(state["memory"], self.device)
        else:
            self.memory.seen = [int(c) for c in state["memory"]["seen"]]
        self.dirty = bool(state["dirty"])
        self.first_epoch = None if state["first_epoch"] is None else int(state["first_epoch"])
        self.retrains = int(state["retrains"])
