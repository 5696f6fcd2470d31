"""A small frozen random-feature CNN: fast tests of the backbone machinery (beneficial
biases, partial BB, caching, bundles) without the 4.65M-weight EfficientNet."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from lifelong.backbones.base import BACKBONES, Backbone, pooled, wrap_convs

__all__ = ["TinyCNN"]


@BACKBONES.register("tiny-cnn")
class TinyCNN(Backbone):
    """Three frozen random conv stages (seeded): 3 -> 16 -> 32 -> 64 features."""

    preprocessing = "rgb|bilinear-antialias|(x-0.5)/0.5"

    def __init__(self, image_size: int = 32, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.image_size = image_size
        self.num_features = 64
        layers = [nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.Conv2d(16, 32, 3, stride=2,
                                                                      padding=1),
                  nn.Conv2d(32, 64, 3, padding=1)]
        for conv in layers:
            with torch.no_grad():
                fan_in = conv.weight[0].numel()
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) / fan_in ** 0.5)
                assert conv.bias is not None
                conv.bias.copy_(torch.randn(conv.bias.shape, generator=gen) * 0.1)
        self.body = nn.ModuleList(layers)
        stages = [wrap_convs(nn.ModuleList([c])) for c in self.body]
        for i, (wrapped,) in enumerate(stages):
            self.body[i] = wrapped
        self._freeze(stages)

    def stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.body[i](x))
        return pooled(x) if i == len(self.body) - 1 else x
