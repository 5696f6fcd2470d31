"""Fine-tuning: the tasks one after another with no method against forgetting (the lower
bound every baseline must beat)."""

from __future__ import annotations

import torch

from lifelong.learners.base import LEARNERS
from lifelong.learners.cl.base import CLConfig, CLLearner
from lifelong.tasks import Batch

__all__ = ["Finetune"]


@LEARNERS.register("finetune")
class Finetune(CLLearner[CLConfig]):
    """Fine-tuning: shared trunk and per-task heads, no protection against forgetting."""

    def observe(self, batch: Batch) -> dict[str, torch.Tensor]:
        loss = self.current_loss(batch)
        self.step(loss)
        return {"loss": self.logged(loss, len(batch.y))}
