"""Layers the thesis's models use that torch does not ship."""

from __future__ import annotations

import torch
from torch import nn


class Scale(nn.Module):
    """Fixed input scaling ``y = factor * x`` (Caffe's ``scale: 0.00390625`` on LeNet).

    Inputs stay in raw pixel units [0, 255] as in the thesis; the scaling lives inside the
    model so that bounds and FGS epsilons are expressed in the same (pixel) unit.
    """

    def __init__(self, factor: float) -> None:
        super().__init__()
        if factor <= 0:
            raise ValueError(f"Scale factor must be positive, got {factor}")
        self.factor = float(factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor}"
