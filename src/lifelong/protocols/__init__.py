"""Benchmark protocols, registered by name in :data:`BENCHMARKS`."""

from __future__ import annotations

# Each module registers its entries where they are defined; importing them here is what
# makes BENCHMARKS complete.
from lifelong.protocols import (  # noqa: F401
    cifar,
    folders,
    mixed,
    planted,
    shipped102,
    split_mnist,
    stl10,
    synthetic,
)
from lifelong.protocols.base import BENCHMARKS, Benchmark, TrainingDefaults

__all__ = ["BENCHMARKS", "Benchmark", "TrainingDefaults"]
