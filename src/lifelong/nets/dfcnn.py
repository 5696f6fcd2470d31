"""Deconvolutional factorized convolution (DF-CNN, Lee, Stokes & Eaton, IJCAI 2019, sec. 2.2).

Each conv layer l has a shared knowledge base ``L`` (a small spatial tensor) and, per task,
a filter generator that turns ``L`` into the layer's filters:

    D_t = act(deconv(L; V_t) + b_t)                 # (ts_c, k, k), k = (kb - 1) * 2 + 1
    W_t = D_t . U_t = sum_c D_t[c] U_t[c, :, :]       # (c_in, c_out, k, k)

(Eqs. 1-2). The two ablations of the paper's online appendix are also here: ``direct``
deconvolves straight to c_in * c_out channels (no contraction) and ``tc2`` deconvolves a
stack of d knowledge maps and contracts twice (over d into c_in, over ts_c into c_out), as in
the original code (``utils/utils_df_nn.py``).

Tensors use PyTorch layouts: L is (depth, c_kb, kb, kb); a transposed-convolution weight is
(c_kb, ts_c, p, p); generated filters are (c_out, c_in, k, k) for ``F.conv2d``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from lifelong.errors import ConfigError
from lifelong.nets.convnet import NetSpec
from lifelong.nets.init import tf_glorot_uniform_

__all__ = ["DFCNNSizes", "dfcnn_sizes", "KnowledgeBase", "FilterGenerator", "DeconvContraction",
           "DirectDeconv", "TwoContractions", "make_generator"]

DECONV_STRIDE = 2  # the original code's TS stride; k = (kb - 1) * 2 + 1
DECONV_SIZE = 3  # spatial size p of the deconvolution filters V_t


@dataclass(frozen=True)
class DFCNNSizes:
    """Per conv layer: knowledge-base (spatial size, channels) and task-specific deconvolution
    output channels ``ts``; ``depth`` is the number of stacked KB maps (1 except for tc2)."""

    kb_size: tuple[int, ...]
    kb_channels: tuple[int, ...]
    ts_channels: tuple[int, ...]
    depth: tuple[int, ...]


# The original code's sizes (utils/utils_env_cl.py::model_setup), per conv layer:
# KB (spatial size, channels), tc2 also the number d of stacked KB maps, and the number of
# deconvolution output channels (ts). The direct variant deconvolves to c_in * c_out.
_PAPER: dict[str, dict[str, dict[str, tuple[int, ...]]]] = {
    "dfcnn": {
        "mnist": {"size": (3, 3), "kb": (12, 24), "ts": (24, 48)},
        "cifar": {"size": (2, 2, 2, 2), "kb": (16, 24, 32, 36), "ts": (24, 48, 64, 72)},
        "office-home": {"size": (6, 3, 2, 2), "kb": (24, 64, 64, 64), "ts": (48, 128, 128, 128)},
        # STL-10 (the LASEM code has these only for STL-10, for its hybrid / LASEM / DARTS /
        # brute-force DF-CNN): Lifelong-ML/LASEM c4ec052, utils/utils_env_cl.py lines
        # 751-752 (6 layers, our `stl10` net) and 755-756 (9 layers, our `dfcnn-9` net).
        "stl10": {"size": (2,) * 6, "kb": (12, 24, 32, 48, 64, 96),
                  "ts": (24, 48, 64, 96, 128, 192)},
        "dfcnn-9": {"size": (2,) * 9, "kb": (12, 24, 24, 32, 48, 48, 64, 96, 96),
                    "ts": (24, 48, 48, 64, 96, 96, 128, 192, 192)},
    },
    "direct": {
        "mnist": {"size": (3, 3), "kb": (24, 48)},
        "cifar": {"size": (2, 2, 2, 2), "kb": (24, 48, 64, 72)},
    },
    "tc2": {
        "mnist": {"size": (3, 3), "depth": (1, 16), "kb": (12, 24), "ts": (24, 48)},
        "cifar": {"size": (2, 2, 2, 2), "depth": (2, 12, 12, 24), "kb": (12, 12, 24, 24),
                  "ts": (24, 24, 48, 48)},
    },
}


def dfcnn_sizes(net_name: str, spec: NetSpec, in_channels: int, variant: str = "dfcnn", *,
                reduced: bool = False) -> DFCNNSizes:
    """Sizes of a variant on a network: the original code's where it has them, else a rule.

    The rule (DF-CNN paper, restated in LASEM appendix A): KB spatial size half the filter
    size, (k + 1) / 2, so that the stride-2 deconvolution gives k; KB channels (c_in + c_out) / 3;
    deconvolution channels 2 (c_in + c_out) / 3. For ``direct`` the code's KB has the channels
    that ``dfcnn`` gives its deconvolution, so the rule does the same; for ``tc2`` it stacks
    d = c_in / 2 KB maps (our reading of the code's MNIST sizes, d = 1 and 16). ``reduced``
    halves the KB channels and keeps 2 deconvolution channels per layer: about 2.8M
    parameters for 10 CIFAR-100 tasks, the size of the paper's reduced DF-CNN, whose exact
    sizes are not published.
    """
    if variant not in _PAPER:
        raise ConfigError(f"unknown DF-CNN variant {variant!r}")
    if any(k % 2 == 0 for k in spec.kernels):
        raise ConfigError("DF-CNN needs odd kernel sizes (k = (kb - 1) * 2 + 1)")
    chans = [in_channels, *spec.channels]
    pairs = list(zip(chans[:-1], chans[1:], strict=True))
    rule = {"size": tuple((k + 1) // 2 for k in spec.kernels),
            "kb": tuple(max(1, (a + b) // 3) for a, b in pairs),
            "ts": tuple(max(1, 2 * (a + b) // 3) for a, b in pairs),
            "depth": tuple(max(1, a // 2) for a, _ in pairs)}
    if variant == "direct":
        rule["kb"] = rule["ts"]
    paper = _PAPER[variant].get(net_name, {})
    if paper and paper["size"] != rule["size"]:
        paper = {}  # the named net was changed (other kernels): sizes from the rule
    sizes = {**rule, **paper}
    kb_ch, ts_ch = sizes["kb"], sizes["ts"]
    if reduced:
        kb_ch = tuple(max(1, c // 2) for c in kb_ch)
        ts_ch = tuple(2 for _ in ts_ch)
    depth = sizes["depth"] if variant == "tc2" else tuple(1 for _ in kb_ch)
    return DFCNNSizes(tuple(sizes["size"]), tuple(kb_ch), tuple(ts_ch), tuple(depth))




class KnowledgeBase(nn.Module):
    """The shared knowledge base of one conv layer: L, (depth, c_kb, kb, kb)."""

    def __init__(self, depth: int, channels: int, size: int) -> None:
        super().__init__()
        self.L = nn.Parameter(torch.empty(depth, channels, size, size))
        tf_glorot_uniform_(self.L, (depth, size, size, channels))  # TF layout d x h x w x c

    def forward(self) -> torch.Tensor:
        return self.L


class FilterGenerator(nn.Module):
    """Task-specific parameters of one layer that generate its filters from the KB."""

    def __init__(self, c_in: int, c_out: int, kb_channels: int, ts_channels: int,
                 activation: bool) -> None:
        super().__init__()
        self.c_in, self.c_out = c_in, c_out
        self.activation = activation
        self.bias = nn.Parameter(torch.empty(c_out))  # conv bias, (c_out,)
        tf_glorot_uniform_(self.bias, (1, 1, 1, c_out))

    def _deconv(self, L: torch.Tensor, V: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Stride-2 transposed convolution with TF 'SAME' output size: (d, c, kb, kb) ->
        (d, ts_c, k, k), k = (kb - 1) * 2 + 1 (padding 1 crops what TF crops)."""
        D = F.conv_transpose2d(L, V, b, stride=DECONV_STRIDE, padding=DECONV_SIZE // 2)
        return F.relu(D) if self.activation else D

    def forward(self, L: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Filters (c_out, c_in, k, k) and bias (c_out,) of this task's layer."""
        raise NotImplementedError


class DeconvContraction(FilterGenerator):
    """DF-CNN: W = act(deconv(L; V) + b) . U (Eqs. 1-2)."""

    def __init__(self, c_in: int, c_out: int, kb_channels: int, ts_channels: int,
                 activation: bool) -> None:
        super().__init__(c_in, c_out, kb_channels, ts_channels, activation)
        p = DECONV_SIZE
        self.V = nn.Parameter(tf_glorot_uniform_(torch.empty(kb_channels, ts_channels, p, p),
                                                 (p, p, ts_channels, kb_channels)))
        self.V_bias = nn.Parameter(tf_glorot_uniform_(torch.empty(ts_channels),
                                                      (1, 1, 1, ts_channels)))
        # U is the paper's (ts_c, c_in, c_out) tensor, stored (c_out, c_in, ts_c) so that the
        # contraction is one matrix product with a contiguous (c_out, c_in, k, k) result:
        # no permute or copy on the hot path, forward or backward.
        U = tf_glorot_uniform_(torch.empty(ts_channels, c_in, c_out), (ts_channels, c_in, c_out))
        self.U = nn.Parameter(U.permute(2, 1, 0).contiguous())

    def forward(self, L: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        D = self._deconv(L, self.V, self.V_bias)[0]  # (ts_c, k, k)
        t, k = D.shape[0], D.shape[-1]
        # W[o, i] = sum_t U[t, i, o] D[t]  (Eq. 2)
        W = (self.U.reshape(-1, t) @ D.reshape(t, k * k)).view(self.c_out, self.c_in, k, k)
        return W, self.bias


class DirectDeconv(FilterGenerator):
    """DF-CNN.direct: the deconvolution outputs the c_in * c_out filter channels directly."""

    def __init__(self, c_in: int, c_out: int, kb_channels: int, ts_channels: int,
                 activation: bool) -> None:
        super().__init__(c_in, c_out, kb_channels, ts_channels, activation)
        p, n = DECONV_SIZE, c_in * c_out
        self.V = nn.Parameter(tf_glorot_uniform_(torch.empty(kb_channels, n, p, p),
                                                 (p, p, n, kb_channels)))
        self.V_bias = nn.Parameter(tf_glorot_uniform_(torch.empty(n), (1, 1, 1, n)))

    def forward(self, L: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # (c_out * c_in, k, k): channel o * c_in + i is filter (o, i). The TF code orders them
        # i * c_out + o; with V's output channels drawn i.i.d. the two are the same model, and
        # this order is already F.conv2d's layout (no copy).
        D = self._deconv(L, self.V, self.V_bias)[0]
        k = D.shape[-1]
        return D.view(self.c_out, self.c_in, k, k), self.bias


class TwoContractions(FilterGenerator):
    """DF-CNN.tc2: deconvolve each of d stacked KB maps, contract d -> c_in, ts_c -> c_out."""

    def __init__(self, c_in: int, c_out: int, kb_channels: int, ts_channels: int,
                 activation: bool, depth: int) -> None:
        super().__init__(c_in, c_out, kb_channels, ts_channels, activation)
        p = DECONV_SIZE
        self.V = nn.Parameter(tf_glorot_uniform_(torch.empty(kb_channels, ts_channels, p, p),
                                                 (p, p, ts_channels, kb_channels)))
        self.V_bias = nn.Parameter(tf_glorot_uniform_(torch.empty(ts_channels),
                                                      (1, 1, 1, ts_channels)))
        self.U_in = nn.Parameter(tf_glorot_uniform_(torch.empty(depth, c_in), (depth, c_in)))
        self.U_out = nn.Parameter(tf_glorot_uniform_(torch.empty(ts_channels, c_out),
                                                     (ts_channels, c_out)))

    def forward(self, L: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        D = self._deconv(L, self.V, self.V_bias)  # (d, ts_c, k, k)
        W = torch.einsum("dtyx,di,to->oiyx", D, self.U_in, self.U_out)
        return W, self.bias


def make_generator(variant: str, c_in: int, c_out: int, kb_channels: int, ts_channels: int,
                   depth: int, activation: bool) -> FilterGenerator:
    if variant == "dfcnn":
        return DeconvContraction(c_in, c_out, kb_channels, ts_channels, activation)
    if variant == "direct":
        return DirectDeconv(c_in, c_out, kb_channels, ts_channels, activation)
    if variant == "tc2":
        return TwoContractions(c_in, c_out, kb_channels, ts_channels, activation, depth)
    raise ConfigError(f"unknown DF-CNN variant {variant!r}")
