"""The original (TensorFlow) code's parameter initialisations, in one place.

Two rules are used by the papers' code: plain conv and FC layers are drawn from a truncated
normal (``init_tf_``), and variables made by ``tf.get_variable`` without an initializer (the
DF-CNN knowledge bases and task-specific parameters, TF's cores and factors) are Glorot-uniform
with TensorFlow's fan convention (``tf_glorot_uniform_``).
"""

from __future__ import annotations

import math
from typing import TypeVar

import torch
import torch.nn as nn

__all__ = ["init_tf_", "tf_glorot_uniform_"]

M = TypeVar("M", bound=nn.Module)


def init_tf_(module: M) -> M:
    """The original code's initialisation of plain conv and FC layers (``new_weight`` /
    ``new_bias``): weights from a normal with std 0.05 truncated at two std, biases 0.2."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, std=0.05, a=-0.1, b=0.1)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0.2)
    return module


def tf_glorot_uniform_(t: torch.Tensor, tf_shape: tuple[int, ...]) -> torch.Tensor:
    """Glorot-uniform init with TensorFlow's fans for a variable of TF shape ``tf_shape``.

    ``tf.get_variable`` without an initializer (how the original code creates KB and TS
    parameters) uses glorot_uniform; TF takes fan_in = shape[-2] * prod(shape[:-2]) and
    fan_out = shape[-1] * prod(shape[:-2]), which differs from PyTorch's fan convention.
    """
    receptive = math.prod(tf_shape[:-2]) if len(tf_shape) > 2 else 1
    fan_in = tf_shape[-2] * receptive if len(tf_shape) > 1 else tf_shape[0]
    fan_out = tf_shape[-1] * receptive
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        return t.uniform_(-limit, limit)
