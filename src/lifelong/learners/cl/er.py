"""ER: experience replay (Robins 1995; Chaudhry et al. 2019, "tiny episodic memories").

Each step trains on the current mini-batch concatenated with a mini-batch drawn from a
memory of earlier examples; every example's loss uses its own task's head (task-il) or the
columns of all classes seen so far (class-il), averaged over the concatenated batch.

Memory policies:
  class-balanced (default, the SKILL paper's ER): after each task, ``per_class`` random
      training images of each of its classes are added; the memory grows with the tasks.
  reservoir: a fixed ``buffer_size`` memory filled by reservoir sampling over every
      training example seen (Mammoth's ER).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from lifelong.config import check
from lifelong.learners.base import LEARNERS
from lifelong.learners.cl.base import CLConfig, CLLearner
from lifelong.learners.cl.memory import ReservoirBuffer, TensorStore
from lifelong.tasks import Batch, Task

__all__ = ["ER", "ERConfig"]


@dataclass
class ERConfig(CLConfig):
    buffer: Literal["class-balanced", "reservoir"] = "class-balanced"
    per_class: int = 10  # SKILL paper section 6: 10 images per class, the buffer grows
    buffer_size: int = 200  # reservoir only (Mammoth's smallest seq-mnist buffer)
    replay_batch: int | None = None  # None: the current batch's size (Mammoth seq-mnist: 10)

    @classmethod
    def with_memory(cls, n: int) -> dict[str, Any]:
        """Settings that keep at most ``n`` stored examples (``compare --memory``)."""
        return {"buffer": "reservoir", "buffer_size": n}

    def validate(self) -> None:
        super().validate()
        check(self.per_class >= 1 and self.buffer_size >= 1,
              "per_class and buffer_size must be >= 1")
        check(self.replay_batch is None or self.replay_batch >= 1, "replay_batch must be >= 1")


@LEARNERS.register("er")
class ER(CLLearner[ERConfig]):
    """ER: replay a memory of past examples (10 per class, growing, as in SKILL)."""

    Config = ERConfig

    def __init__(self, cfg: ERConfig, ctx) -> None:
        super().__init__(cfg, ctx)
        self.memory: TensorStore = (ReservoirBuffer(cfg.buffer_size)
                                    if cfg.buffer == "reservoir" else TensorStore())

    def observe(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.check_batch(batch)
        self.net.train()
        n = len(batch.y)
        replay = self.memory.sample(self.cfg.replay_batch or n, self.gen)  # O(r) gather
        self.note_replay(len(replay["y"]) if replay else 0)
        # one forward pass over current (rows :n) + replayed (rows n:) examples: (n + r, D)
        h = self.net.features(torch.cat([batch.x, replay["x"]]) if replay else batch.x)
        if not replay:
            ce = self.ce_per_example(h, batch.y, batch.task_id)  # (n,)
        elif self.class_il:  # one group over all rows: every row uses all seen columns
            tasks = torch.cat([torch.full_like(batch.y, batch.task_id), replay["task"]])
            ce = self.ce_per_example(h, torch.cat([batch.y, replay["y"]]), tasks)
        else:
            # Task-il: the current rows are one task, a slice through its head; only the
            # replayed rows are grouped by task. The same per-example losses (same order)
            # as grouping all n + r rows, without gathering and scattering the current ones.
            ce = torch.cat([self.ce_per_example(h[:n], batch.y, batch.task_id),
                            self._replay_ce(h[n:], replay["y"], replay["task"])])  # (n + r,)
        loss = self.reduce(ce)
        self.step(loss)
        if isinstance(self.memory, ReservoirBuffer):
            self.memory.add(self.gen, x=batch.x, y=batch.y,
                            task=torch.full_like(batch.y, batch.task_id))
        # "loss" is the current batch's cross-entropy, comparable across learners
        return {"loss": self.logged(self.reduce(ce[:n].detach()), n), "replay_loss": loss.detach()}

    def _replay_ce(self, h: torch.Tensor, y: torch.Tensor, tasks: torch.Tensor) -> torch.Tensor:
        """Task-il cross-entropy (r,) of replayed features ``h`` (r, D), each row through its
        own task's head. Replay from a single task (all of it while the second task trains,
        or a draw that hit one task) goes through that head directly, without per-row
        gathers."""
        present = tasks.unique().tolist()  # host sync, needed to pick the heads anyway
        if len(present) == 1:
            return self.ce_per_example(h, y, int(present[0]))
        return self.ce_per_example(h, y, tasks)

    def end_task(self, task: Task) -> None:
        if self.cfg.buffer == "class-balanced":
            self.remember_per_class(self.memory, task, self.cfg.per_class)
        super().end_task(task)

    def stored_examples(self) -> int:
        return len(self.memory)

    def method_state(self) -> dict[str, Any]:
        return {"memory": self.memory.state_dict()}

    def load_method_state(self, state: dict[str, Any]) -> None:
        self.memory.load_state_dict(state["memory"], self.device)
