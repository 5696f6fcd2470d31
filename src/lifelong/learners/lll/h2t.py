"""BB + Head2Toe (SKILL section 7.3): let a task's head also read the backbone's inner
feature maps, choosing them with the beneficial biases instead of Head2Toe's costly search.

After a task's beneficial biases are trained, the channels whose biases have the largest
magnitude (the top ``fraction``, 1% in the paper) are taken as the most useful inner
features; their feature maps are average-pooled and concatenated with the pooled features,
and the head is trained on that (Adam, lr 1e-3, early stopping on validation accuracy).
"""

from __future__ import annotations

from typing import cast

import torch

from lifelong.backbones.base import Backbone

__all__ = ["select_channels", "h2t_features"]


def select_channels(bb: torch.Tensor, fraction: float, start: int) -> torch.Tensor:
    """Indices (into the BB vector, i.e. conv output channels in forward order) of the
    ``fraction`` largest |BB| among the trained biases (positions ``start`` on)."""
    trained = bb.detach()[start:].abs()
    k = max(1, int(round(fraction * bb.numel())))
    k = min(k, trained.numel())
    return torch.topk(trained, k).indices + start


def h2t_features(backbone: Backbone, x: torch.Tensor, bb: torch.Tensor, bb_from: int,
                 index: torch.Tensor) -> torch.Tensor:
    """Pooled features with the task's BB, followed by the average-pooled maps of the
    selected channels: (B, D + len(index))."""
    convs = backbone.convs
    for c in convs:
        c.record = True
    backbone.use_bb(bb, bb_from)
    try:
        feats = backbone(x)
        # (B, bb_size); each conv recorded its output
        pooled = torch.cat([cast(torch.Tensor, c.last).mean((2, 3)) for c in convs], 1)
    finally:
        backbone.use_bb(None)
        for c in convs:
            c.record, c.last = False, None
    return torch.cat([feats, pooled[:, index]], 1)
