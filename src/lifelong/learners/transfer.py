"""Transfer configurations (LASEM section 3): which conv layers use transfer-based
parameters (1) and which task-specific ones (0).

A configuration is a tuple of bits in layer order, layer 1 first: the paper's Alternating
{2, 4} on four layers is ``(0, 1, 0, 1)``. Names: ``all``, ``none``, ``top-K``,
``bottom-K``, ``alternating`` (= ``alternating-even``: layers 2, 4, ... transfer, the paper's
{2, 4}), ``alternating-odd`` (layers 1, 3, ...), or a bit string such as ``0101``.

Layer groups (LASEM appendix E) partition the layers; a group configuration sets the same
bit for every layer of a group, so a 9-layer network with groups {1,2,3},{4,5,6},{7,8,9} has
2^3 = 8 configurations instead of 2^9.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

from lifelong.errors import ConfigError

__all__ = ["Bits", "parse_config", "all_configs", "config_name", "check_groups"]

Bits = tuple[int, ...]


def parse_config(name: str, num_layers: int) -> Bits:
    """The configuration called ``name`` for a network of ``num_layers`` conv layers."""
    d = num_layers
    if re.fullmatch(r"[01]+", name):
        if len(name) != d:
            raise ConfigError(f"transfer configuration {name!r} has {len(name)} bits; the "
                              f"network has {d} conv layers")
        return tuple(int(b) for b in name)
    if name == "all":
        return (1,) * d
    if name == "none":
        return (0,) * d
    if name in ("alternating", "alternating-even"):
        return tuple(int(i % 2 == 1) for i in range(d))
    if name == "alternating-odd":
        return tuple(int(i % 2 == 0) for i in range(d))
    m = re.fullmatch(r"(top|bottom)-(\d+)", name)
    if m:
        k = int(m.group(2))
        if not 0 <= k <= d:
            raise ConfigError(f"transfer configuration {name!r}: k must be 0..{d}")
        bits = [0] * d
        for i in (range(d - k, d) if m.group(1) == "top" else range(k)):
            bits[i] = 1
        return tuple(bits)
    raise ConfigError(f"unknown transfer configuration {name!r}; use all, none, top-K, "
                      "bottom-K, alternating, alternating-odd or a bit string like 0101")


def check_groups(groups: Sequence[Sequence[int]], num_layers: int) -> list[list[int]]:
    """Validate a partition of layers 1..num_layers (1-based, as in the paper); returns it
    0-based. Empty means one group per layer."""
    if not groups:
        return [[i] for i in range(num_layers)]
    flat = sorted(i for g in groups for i in g)
    if flat != list(range(1, num_layers + 1)) or any(len(g) == 0 for g in groups):
        raise ConfigError(f"layer groups {[list(g) for g in groups]} must partition the conv "
                          f"layers 1..{num_layers}, each layer in exactly one group")
    return [[i - 1 for i in g] for g in groups]


def all_configs(num_layers: int, groups: Sequence[Sequence[int]] = ()) -> list[Bits]:
    """Every configuration, or every group configuration (0-based groups from
    :func:`check_groups`), in a fixed order."""
    groups = list(groups) or [[i] for i in range(num_layers)]
    out = []
    for bits in itertools.product((0, 1), repeat=len(groups)):
        cfg = [0] * num_layers
        for bit, group in zip(bits, groups, strict=True):
            for layer in group:
                cfg[layer] = bit
        out.append(tuple(cfg))
    return out


def config_name(cfg: Bits) -> str:
    """``(0, 1, 0, 1)`` -> ``"0101"``."""
    return "".join(str(b) for b in cfg)
