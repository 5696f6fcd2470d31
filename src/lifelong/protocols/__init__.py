"""Benchmark protocols, registered by name in :data:`BENCHMARKS`."""

from __future__ import annotations

from lifelong.protocols.base import Benchmark, TrainingDefaults
from lifelong.protocols.cifar import SplitCIFAR10, SplitCIFAR100
from lifelong.protocols.folders import Folder, OfficeHome
from lifelong.protocols.mixed import ShippedMix
from lifelong.protocols.planted import Planted
from lifelong.protocols.split_mnist import SplitDigits, SplitMNIST
from lifelong.protocols.stl10 import STL10Lifelong
from lifelong.protocols.synthetic import Synthetic
from lifelong.registry import Registry

__all__ = ["BENCHMARKS", "Benchmark", "TrainingDefaults"]

BENCHMARKS: Registry[type[Benchmark]] = Registry("benchmark")
BENCHMARKS.register("split-mnist")(SplitMNIST)
BENCHMARKS.register("split-digits")(SplitDigits)
BENCHMARKS.register("split-cifar100")(SplitCIFAR100)
BENCHMARKS.register("split-cifar10")(SplitCIFAR10)
BENCHMARKS.register("stl10-lifelong")(STL10Lifelong)
BENCHMARKS.register("office-home")(OfficeHome)
BENCHMARKS.register("folder")(Folder)
BENCHMARKS.register("synthetic")(Synthetic)
BENCHMARKS.register("shipped-mix")(ShippedMix)
BENCHMARKS.register("planted")(Planted)
