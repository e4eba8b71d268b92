"""Layers the thesis's models use that torch does not ship."""

from __future__ import annotations

from dataclasses import dataclass

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


# --------------------------------------------------------------------------------------------
# Local Response Normalization in the thesis's parametrisation (Section 5.2.4)
# --------------------------------------------------------------------------------------------
#
# The thesis (following Krizhevsky et al. 2012) defines, for channel i of N at one position,
#
#     b_i = a_i * (k + alpha * sum_{l = max(0, i - n/2)}^{min(N - 1, i + n/2)} a_l^2) ** (-beta)
#
# with NO division of alpha by the window size n, and Theorem 5.9 / Lemma 5.11 use that alpha.
# torch.nn.LocalResponseNorm(size, alpha, beta, k) and Caffe's across-channel LRN layer both compute
#
#     b_i = a_i * (k + (alpha_torch / size) * sum_{window} a_l^2) ** (-beta)
#
# (torch averages the zero-padded squares over the window; Caffe multiplies by alpha / local_size),
# over the same window [i - (n-1)/2, i + (n-1)/2] clipped to the channels when n is odd.
# Hence  alpha_thesis = alpha_torch / size = alpha_caffe / local_size.
# The models store a plain nn.LocalResponseNorm; use `lrn_thesis_params` to read the thesis's
# (n, alpha, beta, k) from it and `make_lrn` to build one from thesis values.


@dataclass(frozen=True)
class LRNParams:
    """LRN hyperparameters in the thesis's notation (Section 5.2.4)."""

    n: int
    alpha: float
    beta: float
    k: float


def make_lrn(n: int = 5, alpha: float = 1e-4 / 5, beta: float = 0.75, k: float = 1.0) -> nn.LocalResponseNorm:
    """Build an ``nn.LocalResponseNorm`` computing the thesis's LRN with hyperparameters
    ``(n, alpha, beta, k)`` (alpha multiplies the plain sum of squares, Section 5.2.4).

    The default ``alpha = 1e-4 / 5`` is Caffe's/torch's ``alpha: 0.0001`` with ``local_size: 5``
    (the AlexNet values the thesis quotes), expressed in the thesis's convention.
    Assumption 5.10 (``alpha > 0``, ``0 < beta < 1``, ``k > 0``) is enforced, because the LRN bound
    of Lemma 5.11 relies on it; ``n`` must be odd so that the window is centred, as in Caffe.
    """
    if int(n) != n or n < 1 or n % 2 == 0:
        raise ValueError(f"LRN window size n must be a positive odd integer, got {n}")
    if not alpha > 0:
        raise ValueError(f"LRN alpha must be > 0 (Assumption 5.10), got {alpha}")
    if not 0 < beta < 1:
        raise ValueError(f"LRN beta must lie in (0, 1) (Assumption 5.10), got {beta}")
    if not k > 0:
        raise ValueError(f"LRN k must be > 0 (Assumption 5.10), got {k}")
    return nn.LocalResponseNorm(size=int(n), alpha=float(alpha) * int(n), beta=float(beta), k=float(k))


def lrn_thesis_params(layer: nn.LocalResponseNorm) -> LRNParams:
    """The thesis's ``(n, alpha, beta, k)`` of a torch LRN layer: ``alpha = layer.alpha / layer.size``."""
    if not isinstance(layer, nn.LocalResponseNorm):
        raise TypeError(f"expected nn.LocalResponseNorm, got {type(layer).__name__}")
    return LRNParams(n=int(layer.size), alpha=float(layer.alpha) / int(layer.size),
                     beta=float(layer.beta), k=float(layer.k))
