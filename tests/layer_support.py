"""Layers with given parameters, shared by the bounds and attack tests."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

F64 = torch.float64


def batch_norm(gamma: Sequence[float], beta: Sequence[float], mean: Sequence[float], var: Sequence[float],
               eps: float = 0.0) -> nn.BatchNorm2d:
    """A float64 ``BatchNorm2d`` in eval mode with these per-channel statistics and affine parameters."""
    bn = nn.BatchNorm2d(len(gamma), eps=eps).double().eval().requires_grad_(False)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(gamma, dtype=F64))
        bn.bias.copy_(torch.tensor(beta, dtype=F64))
        bn.running_mean.copy_(torch.tensor(mean, dtype=F64))
        bn.running_var.copy_(torch.tensor(var, dtype=F64))
    return bn


def linear_model(weight: torch.Tensor, bias: torch.Tensor, dtype: torch.dtype | None = None) -> nn.Sequential:
    """``Sequential(Linear)`` with this weight and bias, in ``dtype`` (default: the weight's)."""
    layer = nn.Linear(weight.shape[1], weight.shape[0]).to(dtype or weight.dtype)
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    return nn.Sequential(layer)
