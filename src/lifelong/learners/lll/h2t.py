"""BB + Head2Toe (SKILL section 7.3): let a task's head also read the backbone's inner
feature maps, choosing them with the beneficial biases instead of Head2Toe's costly search.

After a task's beneficial biases are trained, the channels whose biases have the largest
magnitude (the top ``fraction``, 1% in the paper) are taken as the most useful inner
features. As the paper describes, their feature maps are average-pooled and *flattened*
(8,192 values per image there) and concatenated with the pooled features; the head is
trained on that (Adam, lr 1e-3, 100 epochs).

Pooling: each chosen map (C channels of a (B, C, H, W) output) is average-pooled to
``s x s`` with ``s = floor(sqrt(budget / k))`` for k chosen channels, so the k maps give
``k s^2 <= budget`` values (budget 8,192: the paper's size; EfficientNet-Lite0's 1% is 210
channels, s = 6, 7,560 values). A map smaller than ``s x s`` (the last stages at small image
sizes) or a fully connected unit (Eq. 2, one value) is repeated by the adaptive pooling:
every channel gives ``s^2`` values, so a bundle's head width follows from ``k`` and ``s``
alone (``Bundle.h2t_pool``), whatever the backbone.
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F

from lifelong.backbones.base import Backbone

__all__ = ["select_channels", "pool_size", "h2t_features"]


def select_channels(bb: torch.Tensor, fraction: float, start: int) -> torch.Tensor:
    """Indices (into the BB vector, i.e. conv output channels in forward order) of the
    ``fraction`` largest |BB| among the trained biases (positions ``start`` on)."""
    trained = bb.detach()[start:].abs()
    k = max(1, int(round(fraction * bb.numel())))
    k = min(k, trained.numel())
    return torch.topk(trained, k).indices + start


def pool_size(num_channels: int, budget: int) -> int:
    """Side ``s`` of the pooled maps: the largest with ``num_channels * s^2 <= budget``
    (at least 1)."""
    return max(1, math.isqrt(max(budget, 1) // max(num_channels, 1)))


def h2t_features(backbone: Backbone, x: torch.Tensor, bb: torch.Tensor, bb_from: int,
                 index: torch.Tensor, pool: int) -> torch.Tensor:
    """Pooled features with the task's BB, followed by the selected channels' maps, each
    average-pooled to ``pool x pool`` and flattened: (B, D + len(index) * pool^2), the
    channels in the order of ``index``."""
    # Only the layers holding a chosen channel record their output (the others' maps are
    # not kept): layer -> positions of its chosen channels, and where they go in the output.
    wanted: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    offset = 0
    idx = index.to("cpu")
    for i, layer in enumerate(backbone.convs):
        inside = ((idx >= offset) & (idx < offset + layer.channels)).nonzero().flatten()
        if len(inside):
            wanted[i] = (idx[inside] - offset, inside)
        offset += layer.channels
    for i in wanted:
        backbone.convs[i].record = True
    backbone.use_bb(bb, bb_from)
    try:
        feats = backbone(x)  # (B, D)
        out = feats.new_empty(len(x), len(index), pool * pool)  # (B, k, s^2)
        for i, (channels, slots) in wanted.items():
            maps = cast(torch.Tensor, backbone.convs[i].last)  # (B, C, H, W) or (B, l')
            chosen = maps[:, channels.to(maps.device)]
            if chosen.dim() == 2:  # a fully connected layer's units: 1 x 1 "maps"
                chosen = chosen[:, :, None, None]
            out[:, slots.to(out.device)] = F.adaptive_avg_pool2d(chosen, pool).flatten(2)
    finally:
        backbone.use_bb(None)
        for i in wanted:
            backbone.convs[i].record, backbone.convs[i].last = False, None
    return torch.cat([feats, out.flatten(1)], 1)
