"""GEM: Gradient Episodic Memory (Lopez-Paz & Ranzato, NeurIPS 2017).

Every past task k keeps its own episodic memory M_k. Each step computes the gradient g_k of
the loss on all of M_k (each memory through its own task's head in task-il, over every seen
class in class-il) and the gradient g of the current batch's loss. If some g . g_k < 0 the
step would increase task k's memory loss, so g is replaced by the closest vector that does
not, the primal QP

    min_z 1/2 ||z - g||^2   subject to   G z >= 0,        G = (g_1; ...; g_{t-1})  (t-1, P),

solved through its small dual (t-1 variables, the paper's eq. 13):

    min_v 1/2 v' G G' v + g' G' v   subject to   v >= margin,     z = G' v + g.

``margin`` is the GEM code's ``memory_strength`` (a lower bound on v that pushes the update
further into the feasible cone); ``eps`` I added to the diagonal of G G' as that code does.
The dual is solved exactly: with G G' + eps I = L L' (Cholesky), it is the non-negative least
squares problem min_{u >= 0} ||L' u + L^{-1} c||, u = v - margin, c = (G G' + eps I) margin + G g,
handed to ``scipy.optimize.nnls`` (scipy is a dependency of the project).

Memory: at the end of each task, ``mem_per_task`` of its training images, the same number of
each class, chosen at random (the GEM code keeps the last ``n_memories`` examples of the
task's stream, which for a shuffled stream is a random sample too). With ``mem_total`` (what
``compare --memory N`` sets) the memory holds at most N examples in all: after t tasks each
keeps N // t, old tasks cut to that share class by class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg
import scipy.optimize
import torch

from lifelong.config import check
from lifelong.learners.base import LEARNERS
from lifelong.learners.cl.base import CLConfig, CLLearner
from lifelong.learners.cl.memory import TensorStore, select_per_class
from lifelong.tasks import Batch, Task

__all__ = ["GEM", "GEMConfig", "gem_project", "flat_grad", "set_flat_grad"]


@dataclass
class GEMConfig(CLConfig):
    # The GEM code's run script (MNIST and CIFAR-100 runs): --n_memories 256 per task,
    # --memory_strength 0.5; eps 1e-3 is the ridge its project2cone2 adds to G G'.
    mem_per_task: int = 256
    margin: float = 0.5
    eps: float = 1e-3
    # Equal-memory comparisons (compare --memory N): N examples in all, an equal share per
    # task seen; None keeps mem_per_task for every task.
    mem_total: int | None = None

    @classmethod
    def with_memory(cls, n: int) -> dict[str, Any]:
        """Settings that keep at most ``n`` stored examples (``compare --memory``)."""
        return {"mem_total": n}

    def validate(self) -> None:
        super().validate()
        check(self.mem_per_task >= 1, "mem_per_task must be >= 1")
        check(self.margin >= 0 and self.eps >= 0, "margin and eps must be >= 0")
        check(self.mem_total is None or self.mem_total >= 1, "mem_total must be >= 1")


def gem_project(g: torch.Tensor, memories: torch.Tensor, margin: float = 0.5,
                eps: float = 1e-3) -> torch.Tensor:
    """GEM's update direction z (P,) for the current gradient ``g`` (P,) and the past tasks'
    gradients ``memories`` (K, P): z = G' v + g with v the solution of the dual QP above.

    With ``eps`` 0, G z >= 0 holds exactly (up to rounding) whatever ``margin``: the dual's
    optimality conditions are G z = G G' v + G g >= 0. Needs G G' + eps I positive definite
    (eps > 0, or linearly independent memory gradients)."""
    G = memories.detach().double().cpu().numpy()  # (K, P)
    gv = g.detach().double().cpu().numpy()  # (P,)
    gram = G @ G.T + eps * np.eye(len(G))  # (K, K)
    gram = 0.5 * (gram + gram.T)
    L = scipy.linalg.cholesky(gram, lower=True)
    c = gram @ np.full(len(G), margin) + G @ gv  # linear term in u = v - margin
    rhs = -scipy.linalg.solve_triangular(L, c, lower=True)  # -L^{-1} c
    u, _ = scipy.optimize.nnls(L.T, rhs)
    v = u + margin
    z = G.T @ v + gv
    return torch.from_numpy(z).to(g.dtype).to(g.device)


def flat_grad(params: list[torch.nn.Parameter]) -> torch.Tensor:
    """Every parameter's gradient (zeros where there is none) as one vector (P,)."""
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten()
                      for p in params])


def set_flat_grad(params: list[torch.nn.Parameter], vec: torch.Tensor) -> None:
    """Write the vector ``vec`` (P,) back into the parameters' ``.grad``."""
    offset = 0
    for p in params:
        k = p.numel()
        p.grad = vec[offset:offset + k].view_as(p).clone()
        offset += k


@LEARNERS.register("gem")
class GEM(CLLearner[GEMConfig]):
    """GEM: project the gradient with a QP so no past task's memory loss increases."""

    Config = GEMConfig

    def __init__(self, cfg: GEMConfig, ctx) -> None:
        super().__init__(cfg, ctx)
        self.memories: dict[int, TensorStore] = {}  # past task id -> its episodic memory
        self._projected = [0, 0]  # steps projected, steps with a constraint (for report)

    def observe(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.check_batch(batch)
        assert self.optimizer is not None
        self.net.train()
        params = self.trainable()
        grads = []
        for t, store in self.memories.items():  # one gradient per past task, on all of M_t
            mem = store.all()
            self.optimizer.zero_grad(set_to_none=True)
            h = self.net.features(mem["x"])
            self.reduce(self.ce_per_example(h, mem["y"], t)).backward()
            grads.append(flat_grad(params))
        self.note_replay(self.stored_examples())  # every stored example, every step
        self.optimizer.zero_grad(set_to_none=True)
        h = self.net.features(batch.x)
        loss = self.reduce(self.ce_per_example(h, batch.y, batch.task_id))
        loss.backward()
        projected = torch.zeros(())
        if grads:
            g = flat_grad(params)
            G = torch.stack(grads)  # (K, P)
            self._projected[1] += 1
            if bool((G @ g < 0).any()):  # a constraint is violated: project (GEM code)
                set_flat_grad(params, gem_project(g, G, self.cfg.margin, self.cfg.eps))
                projected = torch.ones(())
                self._projected[0] += 1
        self.optimizer.step()
        return {"loss": self.logged(loss, len(batch.y)), "projected": projected}

    def end_task(self, task: Task) -> None:
        if self.cfg.mem_total is None:
            share = self.cfg.mem_per_task
        else:  # an equal share of mem_total per task seen; old tasks shrink to it
            share = self.cfg.mem_total // (len(self.memories) + 1)
            for t, store in self.memories.items():
                self.memories[t] = self._cut(store, share // self.num_classes[t])
        store = TensorStore()
        self.remember_per_class(store, task, max(1, share // task.num_classes))
        self.memories[task.id] = store
        super().end_task(task)

    def _cut(self, store: TensorStore, per_class: int) -> TensorStore:
        """``store`` reduced to ``per_class`` examples of each of its classes (at random)."""
        old = store.all()
        idx = select_per_class(old["y"].cpu(), max(1, per_class), self.gen)
        kept = TensorStore()
        kept.append(**{k: v[idx.to(v.device)] for k, v in old.items()})
        return kept

    def stored_examples(self) -> int:
        return sum(len(s) for s in self.memories.values())

    def report(self) -> dict[str, Any]:
        done, steps = self._projected
        return {**super().report(), "projected_fraction": done / steps if steps else 0.0}

    def method_state(self) -> dict[str, Any]:
        return {"memories": {str(t): s.state_dict() for t, s in self.memories.items()},
                "projected": list(self._projected)}

    def load_method_state(self, state: dict[str, Any]) -> None:
        self.memories = {}
        for t, s in state["memories"].items():
            store = TensorStore()
            store.load_state_dict(s, self.device)
            self.memories[int(t)] = store
        self._projected = [int(v) for v in state["projected"]]
