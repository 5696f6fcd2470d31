"""ER-ACE: experience replay with the asymmetric cross-entropy (Caccia, Aljundi, Asadi,
Tuytelaars, Pineau & Belilovsky, ICLR 2022, "New insights on reducing abrupt representation
change in online continual learning").

Each step minimises

    L = CE_present(f(x_in), y_in) + CE(f(x_buf), y_buf),

two batch means. The incoming batch's cross-entropy is a softmax over the classes *present
in that batch* only: the columns of every other class are masked out (-inf), so the new
data cannot push down the logits of classes it does not contain (the old classes, in
class-il), the abrupt change of the old classes' representation the paper measures. The
replayed batch, drawn from a reservoir buffer over the whole stream, uses the ordinary
cross-entropy over every seen class (class-il) or over its own task's head (task-il).

In class-il the seen classes are the concatenated heads' columns; the incoming batch is
masked to the columns of its labels. In task-il the incoming head holds only the current
task's classes, so the mask only matters when a batch misses one of them; the method then
is ER with a reservoir buffer and the two losses summed rather than averaged together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from lifelong.config import check
from lifelong.learners.base import LEARNERS
from lifelong.learners.cl.base import CLConfig, CLLearner
from lifelong.learners.cl.memory import ReservoirBuffer
from lifelong.tasks import Batch

__all__ = ["ERACE", "ERACEConfig", "present_class_ce"]


@dataclass
class ERACEConfig(CLConfig):
    # Reservoir buffer of 200 (Mammoth's smallest seq-mnist buffer, the other rehearsal
    # methods' memory here); replay batch None = the incoming batch's size (the paper's
    # online setting draws as many replayed examples as incoming ones: 10 and 10).
    buffer_size: int = 200
    replay_batch: int | None = None

    @classmethod
    def with_memory(cls, n: int) -> dict[str, Any]:
        """Settings that keep at most ``n`` stored examples (``compare --memory``)."""
        return {"buffer_size": n}

    def validate(self) -> None:
        super().validate()
        check(self.buffer_size >= 1, "buffer_size must be >= 1")
        check(self.replay_batch is None or self.replay_batch >= 1, "replay_batch must be >= 1")


def present_class_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-example (B,) cross-entropy of ``logits`` (B, C) over the columns of the classes
    present in ``target`` (B,) only; the other columns get no gradient and do not change it."""
    present = torch.zeros(logits.shape[1], dtype=torch.bool, device=logits.device)
    present[target] = True
    masked = logits.masked_fill(~present[None, :], float("-inf"))
    return F.cross_entropy(masked, target, reduction="none")


@LEARNERS.register("er-ace")
class ERACE(CLLearner[ERACEConfig]):
    """ER-ACE: replay with the incoming batch's loss restricted to its present classes."""

    Config = ERACEConfig

    def __init__(self, cfg: ERACEConfig, ctx) -> None:
        super().__init__(cfg, ctx)
        self.buffer = ReservoirBuffer(cfg.buffer_size)

    def incoming_logits(self, h: torch.Tensor, y: torch.Tensor, task_id: int
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (n, C) and targets (n,) of the incoming features ``h`` (n, D) with
        task-local labels ``y``: all seen columns (class-il) or the task's head (task-il)."""
        ((_, logits, target),) = self.logits_and_targets(h, y, task_id)
        return logits, target

    def observe(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.check_batch(batch)
        self.net.train()
        n = len(batch.y)
        replay = self.buffer.sample(self.cfg.replay_batch or n, self.gen)
        self.note_replay(len(replay["y"]) if replay else 0)
        # one forward pass over incoming (rows :n) and replayed (rows n:) examples
        h = self.net.features(torch.cat([batch.x, replay["x"]]) if replay else batch.x)
        logits, target = self.incoming_logits(h[:n], batch.y, batch.task_id)
        ace = present_class_ce(logits, target)  # (n,) the asymmetric loss
        loss = self.reduce(ace)
        replay_loss = torch.zeros(())
        if replay:
            replay_loss = self.reduce(self.ce_per_example(h[n:], replay["y"], replay["task"]))
            loss = loss + replay_loss
        self.step(loss)
        self.buffer.add(self.gen, x=batch.x, y=batch.y,
                        task=torch.full_like(batch.y, batch.task_id))
        # "loss": the incoming batch's plain cross-entropy over the same columns, comparable
        # across learners; "ace": the masked loss it trained on
        ce = F.cross_entropy(logits.detach(), target, reduction="none")
        return {"loss": self.logged(self.reduce(ce), n),
                "ace": self.logged(self.reduce(ace.detach()), n),
                "replay_loss": replay_loss.detach()}

    def stored_examples(self) -> int:
        return len(self.buffer)

    def method_state(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict()}

    def load_method_state(self, state: dict[str, Any]) -> None:
        self.buffer.load_state_dict(state["buffer"], self.device)
