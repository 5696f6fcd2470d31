"""Replay memory of the rehearsal baselines (ER, A-GEM, DER, DER++, iCaRL): preallocated rows
of named tensors, reservoir sampling over the stream, and class-balanced selection."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["TensorStore", "ReservoirBuffer", "select_per_class"]


class TensorStore:
    """Rows of named tensors (x, y, task, logits, ...) in preallocated storage.

    Appending doubles the storage when full, so a growing buffer costs amortised O(1) per
    row; sampling draws row indices with replacement (O(n) whatever the buffer size) and
    gathers them, so sampling cost does not grow with the buffer either. A 2-D float field
    whose rows get wider (DER's logits when a task with more classes arrives) is padded
    with zeros; ``width`` records each row's valid columns where needed.
    """

    def __init__(self) -> None:
        self.fields: dict[str, torch.Tensor] = {}
        self.size = 0

    def __len__(self) -> int:
        return self.size

    @property
    def allocated(self) -> int:
        return len(next(iter(self.fields.values()))) if self.fields else 0

    def _fit(self, rows: dict[str, torch.Tensor], need: int) -> None:
        """Make sure storage exists for ``need`` rows and is wide enough for ``rows``."""
        if not self.fields:
            self.fields = {k: torch.zeros((max(need, 16), *v.shape[1:]), dtype=v.dtype,
                                          device=v.device) for k, v in rows.items()}
            return
        for k, v in rows.items():
            cur = self.fields[k]
            if v.dim() == 2 and v.shape[1] > cur.shape[1]:
                self.fields[k] = F.pad(cur, (0, v.shape[1] - cur.shape[1]))
        if need > self.allocated:
            new = max(need, 2 * self.allocated)
            for k, cur in self.fields.items():
                grown = torch.zeros((new, *cur.shape[1:]), dtype=cur.dtype, device=cur.device)
                grown[: self.size] = cur[: self.size]
                self.fields[k] = grown

    def _write(self, index: torch.Tensor, rows: dict[str, torch.Tensor]) -> None:
        for k, v in rows.items():
            dest = self.fields[k]
            if v.dim() == 2 and v.shape[1] < dest.shape[1]:
                v = F.pad(v, (0, dest.shape[1] - v.shape[1]))
            dest[index] = v.to(dest.dtype)

    def append(self, **rows: torch.Tensor) -> None:
        """Add all rows (each field (n, ...)) at the end."""
        n = len(next(iter(rows.values())))
        self._fit(rows, self.size + n)
        self._write(torch.arange(self.size, self.size + n), rows)
        self.size += n

    def sample(self, n: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """``n`` rows drawn uniformly with replacement (empty dict if the store is empty)."""
        if self.size == 0:
            return {}
        idx = torch.randint(self.size, (n,), generator=gen)
        return self.get(idx)

    def get(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        idx = idx.to(next(iter(self.fields.values())).device)
        return {k: v[idx] for k, v in self.fields.items()}

    def all(self) -> dict[str, torch.Tensor]:
        return {k: v[: self.size] for k, v in self.fields.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"size": self.size, "fields": {k: v[: self.size] for k, v in self.fields.items()}}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        self.size = int(state["size"])
        self.fields = {k: v.to(device).clone() for k, v in state["fields"].items()}


class ReservoirBuffer(TensorStore):
    """At most ``capacity`` rows chosen by reservoir sampling (Vitter's algorithm R): the
    n-th example offered (0-based) is stored if n < capacity, else it replaces row j for a
    uniform j in [0, n] when j < capacity. Every example seen so far is in the buffer with
    the same probability capacity / seen."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self.seen = 0

    def add(self, gen: torch.Generator, **rows: torch.Tensor) -> None:
        n = len(next(iter(rows.values())))
        draws = torch.rand(n, generator=gen).tolist()
        dest: dict[int, int] = {}  # slot -> row of this batch (a later row overwrites)
        for i, u in enumerate(draws):
            seen = self.seen + i
            slot = seen if seen < self.capacity else int(u * (seen + 1))
            if slot < self.capacity:
                dest[slot] = i
        self.seen += n
        if not dest:
            return
        self._fit(rows, self.capacity)  # all of it at once: no copies as the buffer fills
        slots = torch.tensor(list(dest.keys()))
        picked = torch.tensor(list(dest.values()), device=next(iter(rows.values())).device)
        self._write(slots, {k: v[picked] for k, v in rows.items()})
        self.size = min(self.capacity, self.seen)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "seen": self.seen}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        super().load_state_dict(state, device)
        self.seen = int(state["seen"])


def select_per_class(labels: torch.Tensor, per_class: int, gen: torch.Generator) -> torch.Tensor:
    """Indices of ``per_class`` examples of each class in ``labels`` (all of a class when it
    has fewer), chosen uniformly at random without replacement; sorted by class."""
    chosen = []
    for c in labels.unique().tolist():
        rows = (labels == c).nonzero().flatten()
        chosen.append(rows[torch.randperm(len(rows), generator=gen)[:per_class]])
    return torch.cat(chosen) if chosen else torch.zeros(0, dtype=torch.long)
