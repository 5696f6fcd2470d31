"""Frozen pretrained backbones with beneficial biases (SKILL, section 5, Eqs. 1-2).

A :class:`Backbone` turns images into pooled features and never changes its weights: every
parameter has ``requires_grad=False``, the module is kept in eval mode (BatchNorm uses its
stored statistics, as the original code's ``model.eval()``), and :meth:`fingerprint` hashes
the weights and the preprocessing so that anything learned on it can be checked against it.

Beneficial biases (BB): every conv layer of the backbone is wrapped so that a per-output-
channel bias can be added to its output, ``y = Conv(x) + b + B`` (Eq. 1), and every fully
connected layer likewise, one bias per hidden unit, ``y = FC(x) + b + B`` (Eq. 2); ``B``
comes from a flat vector with one entry per output channel or unit of every such layer
(:attr:`bb_size`), set with :meth:`use_bb` for the task whose head is in use. The backbone
is a sequence of stages (stem, blocks, head); partial BB trains biases only in the last
stages and starts from the cached activations entering them (:meth:`stage_input`,
:meth:`forward_from`).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from lifelong.registry import Registry

__all__ = ["BACKBONES", "Backbone", "BiasedConv", "BiasedLinear", "BiasedLayer", "wrap_convs"]


class _Biased(nn.Module):
    """What both wrappers share: the active bias slice and Head2Toe's recording."""

    channels: int

    def __init__(self) -> None:
        super().__init__()
        self.bb: torch.Tensor | None = None  # (C,) slice of the active BB vector
        self.record = False  # keep the output in ``last`` (BB + Head2Toe reads inner maps)
        self.last: torch.Tensor | None = None

    def _biased(self, y: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        y = y if self.bb is None else y + self.bb.view(shape)
        if self.record:
            self.last = y
        return y


class BiasedConv(_Biased):
    """A frozen conv layer plus an optional beneficial bias on its output channels (Eq. 1):
    (B, C_in, H, W) -> (B, C, H', W')."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv  # the attribute's name is part of the backbone's fingerprint
        self.channels = conv.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._biased(self.conv(x), (1, -1, 1, 1))


class BiasedLinear(_Biased):
    """A frozen fully connected layer plus an optional beneficial bias on its hidden units
    (Eq. 2): (..., l) -> (..., l')."""

    def __init__(self, fc: nn.Linear) -> None:
        super().__init__()
        self.fc = fc
        self.channels = fc.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._biased(self.fc(x), (-1,))  # the units are the last dimension


#: A layer that takes beneficial biases: conv (Eq. 1) or fully connected (Eq. 2).
BiasedLayer = BiasedConv | BiasedLinear


def wrap_convs(module: nn.Module) -> list[BiasedLayer]:
    """Replace every ``nn.Conv2d`` inside ``module`` by a :class:`BiasedConv` and every
    ``nn.Linear`` by a :class:`BiasedLinear`, in forward order (module registration order);
    returns the wrappers. (The name is older than Eq. 2: fully connected layers of a custom
    backbone get their biases too.)"""
    wrapped: list[BiasedLayer] = []

    def visit(parent: nn.Module) -> None:
        for name, child in list(parent.named_children()):
            if isinstance(child, (nn.Conv2d, nn.Linear)):
                w: BiasedLayer = BiasedConv(child) if isinstance(child, nn.Conv2d) \
                    else BiasedLinear(child)
                setattr(parent, name, w)
                wrapped.append(w)
            else:
                visit(child)

    visit(module)
    return wrapped


class Backbone(nn.Module, ABC):
    """A frozen feature extractor: images in [0, 1] (B, C, H, W) -> features (B, D).

    Subclasses build ``self.stages`` (a list of modules applied in order, the last ending in
    pooled features) and call :meth:`_freeze` at the end of ``__init__``.
    """

    num_features: int
    image_size: int
    #: Text that identifies the preprocessing (part of the fingerprint).
    preprocessing: str = ""

    def _freeze(self, stage_convs: list[list[BiasedLayer]]) -> None:
        self.stage_convs = stage_convs
        self.convs = [c for stage in stage_convs for c in stage]
        self.bb_size = sum(c.channels for c in self.convs)
        self.requires_grad_(False)
        self.eval()
        self._fingerprint: str | None = None

    def train(self, mode: bool = True) -> Backbone:
        """Always eval: the backbone's BatchNorm statistics never update."""
        return super().train(False)

    @property
    def num_stages(self) -> int:
        return len(self.stage_convs)

    @abstractmethod
    def stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Apply stage ``i``; the last stage returns pooled features (B, D)."""

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], any size, 1 or 3 channels -> the backbone's input."""
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                              antialias=True, align_corners=False)
        return (x - 0.5) / 0.5

    # -- beneficial biases -------------------------------------------------------------------
    def use_bb(self, bb: torch.Tensor | None, from_stage: int = 0) -> None:
        """Add ``bb`` (a flat vector of :attr:`bb_size`) to the conv outputs of stages
        ``from_stage`` on; None removes every bias."""
        offset = 0
        for i, stage in enumerate(self.stage_convs):
            for conv in stage:
                n = conv.channels
                conv.bb = bb[offset:offset + n] if bb is not None and i >= from_stage else None
                offset += n

    def bb_offset(self, stage: int) -> int:
        """Position in the BB vector of the first bias of ``stage``."""
        return sum(c.channels for s in self.stage_convs[:stage] for c in s)

    # -- forward -----------------------------------------------------------------------------
    def stage_input(self, x: torch.Tensor, stage: int) -> torch.Tensor:
        """Activations entering ``stage`` (after preprocessing and the earlier stages)."""
        x = self.preprocess(x)
        for i in range(stage):
            x = self.stage(i, x)
        return x

    def forward_from(self, h: torch.Tensor, stage: int) -> torch.Tensor:
        """Features (B, D) from the activations ``h`` entering ``stage``."""
        for i in range(stage, self.num_stages):
            h = self.stage(i, h)
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_from(self.preprocess(x), 0)

    # -- identity ----------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """SHA-256 of every weight and buffer and of the preprocessing."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            h.update(f"{type(self).__name__}|{self.image_size}|{self.preprocessing}".encode())
            for name, t in sorted({**dict(self.named_parameters()),
                                   **dict(self.named_buffers())}.items()):
                h.update(name.encode())
                h.update(t.detach().to("cpu").contiguous().numpy().tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint


def pooled(x: torch.Tensor) -> torch.Tensor:
    """Global average pooling (B, C, H, W) -> (B, C)."""
    return x.mean((2, 3))


Act = Callable[[torch.Tensor], torch.Tensor]


#: Every backbone, by name; each registers itself where it is defined.
BACKBONES: Registry[type[Backbone]] = Registry("backbone")
