"""The papers' task networks: conv layers (zero padding, ReLU, max-pool) then FC layers.

Sizes follow the DF-CNN/LASEM papers and original code (``../shared/reference``):
a network is a :class:`NetSpec`; :class:`ConvTrunk` is its conv part and :class:`FCHead`
its fully connected part ending in a task's output layer. Learners compose them: STL owns a
trunk and a head per task, HPS shares one trunk between task heads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from lifelong.errors import ConfigError
from lifelong.nets.init import init_tf_

__all__ = ["NetSpec", "ConvTrunk", "FCHead", "SamePool", "pooled_size", "same_max_pool",
           "conv_block"]


@dataclass(frozen=True)
class NetSpec:
    """Architecture of one task network.

    Attributes:
        channels: output channels of each conv layer (empty for an MLP).
        kernels: square kernel size of each conv layer.
        pools: max-pool size (and stride) after each conv layer; 1 means no pooling.
        fc: hidden fully connected sizes; a task's output layer is added on top.
        dropout: dropout probability on the FC layers during training (the papers use 0.5).
        description: where the sizes come from.
    """

    channels: tuple[int, ...]
    kernels: tuple[int, ...]
    pools: tuple[int, ...]
    fc: tuple[int, ...]
    dropout: float = 0.5
    description: str = ""

    def __post_init__(self) -> None:
        if not len(self.channels) == len(self.kernels) == len(self.pools):
            raise ValueError("channels, kernels and pools need one entry per conv layer")

    @property
    def num_conv(self) -> int:
        return len(self.channels)

    def feature_size(self, input_shape: tuple[int, int, int]) -> int:
        """Length of the flattened trunk output for inputs of shape (C, H, W)."""
        c, h, w = input_shape
        for ch, p in zip(self.channels, self.pools, strict=True):
            h, w, c = pooled_size(h, p), pooled_size(w, p), ch
        if h < 1 or w < 1:
            raise ConfigError(f"input {input_shape} is too small for the network's pooling")
        return c * h * w


def pooled_size(n: int, pool: int) -> int:
    """Spatial size after a ``pool`` x ``pool`` max-pool with stride ``pool`` and TF 'SAME'
    padding (ceil), which is what gives the papers' 43x43 / 15x15 / 11x11 / 4x4 maps."""
    return math.ceil(n / pool) if pool > 1 else n


def same_max_pool(x: torch.Tensor, pool: int) -> torch.Tensor:
    """Max-pool with kernel = stride = ``pool`` and TensorFlow 'SAME' padding: the output is
    ceil(n / pool) and the padding is split floor(pad / 2) before, the rest after (so 43 -> 15
    pads one pixel on each side, where PyTorch's ceil_mode would pad two at the end)."""
    if pool <= 1:
        return x
    h, w = x.shape[-2:]
    ph = pooled_size(h, pool) * pool - h
    pw = pooled_size(w, pool) * pool - w
    if ph or pw:
        x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=float("-inf"))
    return F.max_pool2d(x, pool, stride=pool)


class SamePool(nn.Module):
    """:func:`same_max_pool` as a module."""

    def __init__(self, pool: int) -> None:
        super().__init__()
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return same_max_pool(x, self.pool)


def conv_block(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
               pool: int) -> torch.Tensor:
    """Conv with the given filters (stride 1, zero 'same' padding) -> ReLU -> 'SAME' max-pool,
    for learners whose filters are generated or assembled rather than stored in a Conv2d."""
    return same_max_pool(F.relu(F.conv2d(x, weight, bias, padding=weight.shape[-1] // 2)), pool)




class ConvTrunk(nn.Module):
    """Conv layers of a :class:`NetSpec`: conv (zero 'same' padding) -> ReLU -> max-pool.

    Input (B, C, H, W); output flattened features (B, feature_size).
    """

    def __init__(self, spec: NetSpec, input_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.spec = spec
        self.input_shape = cast("tuple[int, int, int]", tuple(input_shape))
        layers: list[nn.Module] = []
        c_in = input_shape[0]
        for c_out, k, p in zip(spec.channels, spec.kernels, spec.pools, strict=True):
            layers += [nn.Conv2d(c_in, c_out, k, padding=k // 2), nn.ReLU(inplace=True)]
            if p > 1:
                layers.append(SamePool(p))
            c_in = c_out
        self.layers = nn.Sequential(*layers)
        self.out_features = spec.feature_size(self.input_shape)
        init_tf_(self)

    def conv_layers(self) -> list[nn.Conv2d]:
        return [m for m in self.layers if isinstance(m, nn.Conv2d)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).flatten(1)  # (B, C*H*W)


class FCHead(nn.Module):
    """Dropout on the flattened features, hidden FC layers (ReLU) and an output layer:
    (B, in_features) -> (B, classes). One dropout before the FC stack and none between FC
    layers, as in the original code (``new_dfcnn_net`` / ``new_cnn_net``)."""

    def __init__(self, in_features: int, hidden: tuple[int, ...], num_classes: int,
                 dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Dropout(dropout)] if dropout > 0 else []
        for h in hidden:
            layers += [nn.Linear(in_features, h), nn.ReLU(inplace=True)]
            in_features = h
        layers.append(nn.Linear(in_features, num_classes))
        self.layers = nn.Sequential(*layers)
        init_tf_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
