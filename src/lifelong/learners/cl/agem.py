"""A-GEM: Averaged Gradient Episodic Memory (Chaudhry et al., ICLR 2019).

An episodic memory keeps examples of every past task. Each step computes the reference
gradient g_ref of the loss on a batch drawn from the memory (each example through its own
task's head in task-il) and the gradient g of the current batch's loss; if they conflict
(g . g_ref < 0), g is projected so that it no longer increases the memory loss:

    g~ = g - (g . g_ref) / (g_ref . g_ref) * g_ref,

and the optimizer steps with g~. The vectors cover every trainable parameter (trunk and
all heads).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from lifelong.config import check
from lifelong.learners.base import LEARNERS
from lifelong.learners.cl.base import CLConfig, CLLearner
from lifelong.learners.cl.memory import ReservoirBuffer, TensorStore
from lifelong.tasks import Batch, Task

__all__ = ["AGEM", "AGEMConfig", "agem_project"]


@dataclass
class AGEMConfig(CLConfig):
    # Our choice, not Mammoth's: 40 = Mammoth's seq-mnist buffer 200 shared equally by the 5
    # tasks, chosen per class at each task's end. Mammoth's agem computes that share but
    # stores one training batch per task (10 examples at its seq-mnist batch size 10).
    mem_per_task: int = 40
    ref_batch: int = 128  # Mammoth seq-mnist agem minibatch_size 128 (utils/best_args.py)
    # Equal-memory comparisons (compare --memory N): a reservoir of N examples over every
    # training example seen, as ER's and DER's buffers, instead of a share per task; None
    # keeps the per-task memory above.
    mem_total: int | None = None

    @classmethod
    def with_memory(cls, n: int) -> dict[str, Any]:
        """Settings that keep at most ``n`` stored examples (``compare --memory``)."""
        return {"mem_total": n}

    def validate(self) -> None:
        super().validate()
        check(self.mem_per_task >= 1 and self.ref_batch >= 1,
              "mem_per_task and ref_batch must be >= 1")
        check(self.mem_total is None or self.mem_total >= 1, "mem_total must be >= 1")


def agem_project(g: torch.Tensor, g_ref: torch.Tensor) -> torch.Tensor:
    """A-GEM's update direction for flat gradients ``g`` and ``g_ref`` (P,)."""
    dot = torch.dot(g, g_ref)
    if dot >= 0:
        return g
    return g - (dot / torch.dot(g_ref, g_ref).clamp_min(1e-30)) * g_ref


@LEARNERS.register("agem")
class AGEM(CLLearner[AGEMConfig]):
    """A-GEM: project the gradient so the episodic memory's loss does not increase."""

    Config = AGEMConfig

    def __init__(self, cfg: AGEMConfig, ctx) -> None:
        super().__init__(cfg, ctx)
        self.memory: TensorStore = (ReservoirBuffer(cfg.mem_total) if cfg.mem_total
                                    else TensorStore())

    def _flat_grad(self, params: list[torch.nn.Parameter]) -> torch.Tensor:
        return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten()
                          for p in params])

    def observe(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.check_batch(batch)
        assert self.optimizer is not None
        self.net.train()
        params = self.trainable()
        g_ref = None
        mem = self.memory.sample(self.cfg.ref_batch, self.gen)
        self.note_replay(len(mem["y"]) if mem else 0)
        if mem:
            self.optimizer.zero_grad(set_to_none=True)
            h = self.net.features(mem["x"])
            self.reduce(self.ce_per_example(h, mem["y"], mem["task"])).backward()
            g_ref = self._flat_grad(params)
        self.optimizer.zero_grad(set_to_none=True)
        h = self.net.features(batch.x)
        loss = self.reduce(self.ce_per_example(h, batch.y, batch.task_id))
        loss.backward()
        projected = torch.zeros(())
        if g_ref is not None:
            g = self._flat_grad(params)
            new = agem_project(g, g_ref)
            if new is not g:
                projected = torch.ones(())
                offset = 0
                for p in params:
                    k = p.numel()
                    p.grad = new[offset:offset + k].view_as(p).clone()
                    offset += k
        self.optimizer.step()
        if isinstance(self.memory, ReservoirBuffer):
            self.memory.add(self.gen, x=batch.x, y=batch.y,
                            task=torch.full_like(batch.y, batch.task_id))
        return {"loss": self.logged(loss, len(batch.y)), "projected": projected}

    def end_task(self, task: Task) -> None:
        # An equal share per class of the task's memory slots, chosen at random.
        if not isinstance(self.memory, ReservoirBuffer):
            per_class = max(1, self.cfg.mem_per_task // task.num_classes)
            self.remember_per_class(self.memory, task, per_class)
        super().end_task(task)

    def stored_examples(self) -> int:
        return len(self.memory)

    def method_state(self) -> dict[str, Any]:
        return {"memory": self.memory.state_dict()}

    def load_method_state(self, state: dict[str, Any]) -> None:
        self.memory.load_state_dict(state["memory"], self.device)
