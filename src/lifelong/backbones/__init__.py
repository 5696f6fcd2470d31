"""Frozen pretrained backbones, registered by name in :data:`BACKBONES` (a callable taking
``image_size`` returns a :class:`Backbone`). Plug in another network by subclassing
:class:`Backbone` and registering it."""

from __future__ import annotations

# Each module registers its backbone where it is defined; importing them here is what makes
# BACKBONES complete.
from lifelong.backbones import efficientnet, tiny  # noqa: F401
from lifelong.backbones.base import (
    BACKBONES,
    Backbone,
    BiasedConv,
    BiasedLayer,
    BiasedLinear,
    wrap_convs,
)

__all__ = ["BACKBONES", "Backbone", "BiasedConv", "BiasedLayer", "BiasedLinear", "wrap_convs"]
