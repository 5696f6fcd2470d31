"""Task networks of the papers, registered by name in :data:`NETS`."""

from __future__ import annotations

from lifelong.nets.convnet import ConvTrunk, FCHead, NetSpec, conv_block, pooled_size, same_max_pool
from lifelong.registry import Registry

__all__ = ["NETS", "NetSpec", "ConvTrunk", "FCHead", "pooled_size", "same_max_pool", "conv_block",
           "get_net"]

#: Network presets. Sizes from the DF-CNN/LASEM papers (Figure 6 of LASEM) and original code.
NETS: Registry[NetSpec] = Registry("network")

NETS.register("mnist")(NetSpec(
    channels=(32, 64), kernels=(5, 5), pools=(2, 2), fc=(32,),
    description="DF-CNN code, MNIST: conv 5x5 [32, 64], max-pool 2 after each, FC [32]"))
NETS.register("cifar")(NetSpec(
    channels=(32, 32, 64, 64), kernels=(3, 3, 3, 3), pools=(1, 2, 1, 2), fc=(64,),
    description="DF-CNN/LASEM, CIFAR: conv 3x3 [32, 32, 64, 64], pool after conv 2 and 4, FC [64]"))
NETS.register("office-home")(NetSpec(
    channels=(64, 256, 256, 256), kernels=(11, 5, 3, 3), pools=(3, 3, 2, 2), fc=(256, 64),
    description="DF-CNN/LASEM, Office-Home: conv [11, 5, 3, 3] x [64, 256, 256, 256], "
                "pools [3, 3, 2, 2], FC [256, 64]"))
NETS.register("stl10")(NetSpec(
    channels=(32, 32, 64, 64, 128, 128), kernels=(3,) * 6, pools=(1, 3, 1, 3, 1, 3),
    fc=(128, 16),
    description="LASEM, STL-10: conv 3x3 [32, 32, 64, 64, 128, 128], pool 3 after every "
                "second conv, FC [128, 16]"))
NETS.register("dfcnn-9")(NetSpec(
    channels=(32, 32, 32, 64, 64, 64, 128, 128, 128), kernels=(3,) * 9,
    pools=(1, 1, 3, 1, 1, 3, 1, 1, 3), fc=(128, 16),
    description="9 conv 3x3 layers in three blocks of three [32, 64, 128], pool 3 after each "
                "block, FC [128, 16]: the LASEM code's 9-layer STL-10 network "
                "(utils/utils_env_cl.py, num_clayers == 9)"))
NETS.register("mlp")(NetSpec(
    channels=(), kernels=(), pools=(), fc=(256, 256), dropout=0.0,
    description="MLP [256, 256] without dropout (Avalanche's Split-MNIST reference network)"))
NETS.register("tiny")(NetSpec(
    channels=(8,), kernels=(3,), pools=(2,), fc=(16,), dropout=0.0,
    description="one conv layer and one small FC layer, for tests on tiny synthetic images"))


def get_net(name: str) -> NetSpec:
    """The preset called ``name`` (a ConfigError names the known ones)."""
    return NETS.get(name)
