"""Benchmark protocols, registered by name in :data:`BENCHMARKS`."""

from __future__ import annotations

from lifelong.benchmarks.base import Benchmark, TrainingDefaults
from lifelong.benchmarks.cifar import SplitCIFAR10, SplitCIFAR100
from lifelong.benchmarks.folders import Folder, OfficeHome
from lifelong.benchmarks.mixed import ShippedMix
from lifelong.benchmarks.planted import Planted
from lifelong.benchmarks.split_mnist import SplitDigits, SplitMNIST
from lifelong.benchmarks.stl10 import STL10Lifelong
from lifelong.benchmarks.synthetic import Synthetic
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
