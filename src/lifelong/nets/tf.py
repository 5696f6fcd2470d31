"""Tensor factorization's network pieces (Bulat et al., as the DF-CNN code builds TF): a shared
core per conv layer and, per task, four factor matrices that mode-multiply it into that task's
filters. The learner that trains them is :mod:`lifelong.learners.tf`."""

from __future__ import annotations

import torch
import torch.nn as nn

from lifelong.nets.init import tf_glorot_uniform_

__all__ = ["Core", "Factors"]


def _glorot(*shape: int) -> nn.Parameter:
    # TF layout of the factors is the same as ours (square matrices, a vector for the bias).
    return nn.Parameter(tf_glorot_uniform_(torch.empty(*shape), shape))


class Core(nn.Module):
    """The shared core of one layer, stored (c_out, c_in, k, k) for ``F.conv2d``."""

    def __init__(self, c_in: int, c_out: int, k: int) -> None:
        super().__init__()
        self.W0 = nn.Parameter(tf_glorot_uniform_(torch.empty(c_out, c_in, k, k),
                                                  (k, k, c_in, c_out)))


class Factors(nn.Module):
    """One task's factor matrices and bias for one layer."""

    def __init__(self, c_in: int, c_out: int, k: int) -> None:
        super().__init__()
        self.U1, self.U2 = _glorot(k, k), _glorot(k, k)
        self.U3, self.U4 = _glorot(c_in, c_in), _glorot(c_out, c_out)
        self.bias = _glorot(c_out)

    def filters(self, W0: torch.Tensor) -> torch.Tensor:
        # W'[o', i', y', x'] = sum W0[o, i, y, x] U1[y, y'] U2[x, x'] U3[i, i'] U4[o, o']
        return torch.einsum("oiyx,yY,xX,iI,oO->OIYX", W0, self.U1, self.U2, self.U3, self.U4)

    def orthogonality(self) -> torch.Tensor:
        return sum(torch.linalg.matrix_norm(U.T @ U - torch.eye(U.shape[0], device=U.device))
                   for U in (self.U1, self.U2, self.U3, self.U4))
