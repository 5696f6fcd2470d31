"""DER and DER++: Dark Experience Replay (Buzzega et al., NeurIPS 2020).

A reservoir buffer keeps past inputs with the logits the network gave them when they were
seen (and, for DER++, their labels). Each step minimises

    DER:    CE(current) + alpha * MSE(f(x'), z')                 (x', z') ~ buffer
    DER++:  CE(current) + alpha * MSE(f(x'), z') + beta * CE(f(x''), y'')

with two independent buffer draws. In task-il a stored example keeps its own head's logits
and is replayed through that head; in class-il it keeps the columns of all classes seen when
it was stored, and the MSE covers those columns only (later classes did not exist then).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F

from lifelong.config import check
from lifelong.learners.base import LEARNERS
from lifelong.learners.cl.base import CLConfig, CLLearner
from lifelong.learners.cl.memory import ReservoirBuffer
from lifelong.tasks import Batch

__all__ = ["DER", "DERPP", "DERConfig", "DERPPConfig"]


@dataclass
class DERConfig(CLConfig):
    # Buffer 200, replay batch 10: Mammoth's seq-mnist der (utils/best_args.py). alpha tuned
    # with `lifelong tune` on validation (seed 0, buffer 200) for split-mnist task-il, net
    # mlp, RMSProp-TF lr 1e-3, batch 10, 10 epochs per task, mean loss: 0.1 of (0.1, 0.2,
    # 0.5, 1) (0.984 / 0.982 / 0.982 / 0.978: within one image of each other). Class-il
    # chose 1.0 of (0.1, 0.5, 1). Mammoth's seq-mnist buffer-200 alpha: 0.2.
    buffer_size: int = 200
    alpha: float = 0.1
    SEARCH: ClassVar[dict[str, tuple[Any, ...]]] = {"alpha": (0.1, 0.2, 0.5, 1.0)}
    SEARCH_SOURCE: ClassVar[str] = "Buzzega et al. 2020's alpha grid (0.1-1)"
    replay_batch: int = 10

    def validate(self) -> None:
        super().validate()
        check(self.buffer_size >= 1 and self.replay_batch >= 1,
              "buffer_size and replay_batch must be >= 1")
        check(self.alpha >= 0, "alpha must be >= 0")

    @classmethod
    def with_memory(cls, n: int) -> dict[str, Any]:
        """Settings that keep at most ``n`` stored examples (``compare --memory``)."""
        return {"buffer_size": n}


@dataclass
class DERPPConfig(DERConfig):
    # Buffer 500, replay batch 10: Mammoth's seq-mnist derpp (its buffer-200 setting replays
    # 128 examples a step). alpha, beta tuned with `lifelong tune` on validation (seed 0,
    # buffer 200) for split-mnist task-il, net mlp, RMSProp-TF lr 1e-3, batch 10, 10 epochs
    # per task, mean loss: (1.0, 0.1) of {0.1, 1} x {0.1, 1} (0.986; the others 0.982-0.984).
    # Class-il chose (0.1, 1.0) (0.870; 0.744-0.860). Mammoth's seq-mnist buffer 500: 1.0, 0.5.
    buffer_size: int = 500
    alpha: float = 1.0
    beta: float = 0.1
    SEARCH: ClassVar[dict[str, tuple[Any, ...]]] = {"alpha": (0.1, 0.5, 1.0),
                                                   "beta": (0.1, 0.5, 1.0)}
    SEARCH_SOURCE: ClassVar[str] = "Buzzega et al. 2020's alpha and beta grids (0.1-1)"

    def validate(self) -> None:
        super().validate()
        check(self.beta >= 0, "beta must be >= 0")


@LEARNERS.register("der")
class DER(CLLearner[DERConfig]):
    """DER: replay past examples with the logits they had (logit matching)."""

    Config = DERConfig
    plus = False

    def __init__(self, cfg: DERConfig, ctx) -> None:
        super().__init__(cfg, ctx)
        self.buffer = ReservoirBuffer(cfg.buffer_size)

    def _replay_logits(
        self, h: torch.Tensor, tasks: torch.Tensor
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(rows, logits) groups of replayed features ``h``: own head (task-il) or all seen
        columns (class-il)."""
        if self.class_il:
            return [(torch.arange(len(h), device=h.device), self.net.all_heads(h))]
        out = []
        for t in tasks.unique().tolist():
            rows = (tasks == t).nonzero().flatten()
            out.append((rows, self.net.head(h[rows], t)))
        return out

    def observe(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.check_batch(batch)
        self.net.train()
        n = len(batch.y)
        r = self.cfg.replay_batch
        first = self.buffer.sample(r, self.gen)
        second = self.buffer.sample(r, self.gen) if (self.plus and first) else {}
        self.note_replay(sum(len(s["y"]) for s in (first, second) if s))
        parts = [batch.x] + ([first["x"]] if first else []) + ([second["x"]] if second else [])
        h = self.net.features(torch.cat(parts))  # one forward pass over all of them
        h_cur = h[:n]
        if self.class_il:
            cur_logits = self.net.all_heads(h_cur)
            target = batch.y + self.offsets[batch.task_id]
        else:
            cur_logits = self.net.head(h_cur, batch.task_id)
            target = batch.y
        ce = F.cross_entropy(cur_logits, target, reduction="none")
        loss = self.reduce(ce)
        mse = torch.zeros(())
        if first:
            h1 = h[n : n + r]
            sq = torch.zeros(r, device=h.device)
            for rows, logits in self._replay_logits(h1, first["task"]):
                stored = first["logits"][rows]
                width = first["width"][rows]  # valid columns of each stored row
                cols = torch.arange(stored.shape[1], device=h.device)
                valid = (cols[None, :] < width[:, None]).to(logits.dtype)
                k = min(logits.shape[1], stored.shape[1])
                d = (logits[:, :k] - stored[:, :k]) * valid[:, :k]
                # mean over each row's valid columns (MSE as F.mse_loss would take it)
                sq = sq.index_put((rows,), (d * d).sum(1) / width.to(d.dtype))
            mse = self.reduce(sq)
            loss = loss + self.cfg.alpha * mse
        if second:
            h2 = h[n + r :]
            ce2 = self.reduce(self.ce_per_example(h2, second["y"], second["task"]))
            loss = loss + cast("DERPPConfig", self.cfg).beta * ce2
        self.step(loss)
        # reservoir update with the logits the network gave the current inputs
        stored = cur_logits.detach()
        self.buffer.add(
            self.gen,
            x=batch.x,
            y=batch.y,
            task=torch.full_like(batch.y, batch.task_id),
            logits=stored,
            width=torch.full_like(batch.y, stored.shape[1]),
        )
        # "loss" is the current batch's cross-entropy, comparable across learners
        return {"loss": self.logged(self.reduce(ce), n), "mse": mse.detach()}

    def stored_examples(self) -> int:
        return len(self.buffer)

    def method_state(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict()}

    def load_method_state(self, state: dict[str, Any]) -> None:
        self.buffer.load_state_dict(state["buffer"], self.device)


@LEARNERS.register("derpp")
class DERPP(DER):
    """DER++: DER plus cross-entropy on a second draw of buffered labels."""

    Config = DERPPConfig
    cfg: DERPPConfig
    plus = True
