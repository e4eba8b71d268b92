"""Randomly parametrised classifiers for the randomized tests of Tables 3.1 and 4.2.

The thesis draws "the parameters of the MLPs ... uniformly from this interval" (the "parameter
interval" column). Here every weight and every bias of every Linear layer is drawn i.i.d. from
``U[low, high]`` with an explicit ``torch.Generator``, so a test case is reproducible from its seed
and independent of the global RNG.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .architectures import mlp


@torch.no_grad()
def uniform_parameters_(
    model: nn.Module, low: float, high: float, generator: torch.Generator | None = None
) -> nn.Module:
    """Redraw every parameter of ``model`` i.i.d. from ``U[low, high]`` in place (in registration order)."""
    low, high = float(low), float(high)
    if not low < high:
        raise ValueError(f"parameter interval must have low < high, got [{low}, {high}]")
    for parameter in model.parameters():
        parameter.uniform_(low, high, generator=generator)
    return model


def random_uniform_mlp(
    in_dim: int,
    hidden: Sequence[int],
    n_classes: int,
    low: float,
    high: float,
    *,
    activation: str = "tanh",
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> nn.Sequential:
    """An ``mlp(in_dim, hidden, n_classes, activation)`` (``hidden=[]``: a linear classifier) whose
    weights and biases are drawn uniformly from ``[low, high]``.

    Pass either a ``generator`` (consumed, so successive calls give different models) or a ``seed``
    (a fresh generator). With neither, the global torch RNG is used.
    """
    if generator is not None and seed is not None:
        raise ValueError("pass either generator or seed, not both")
    if seed is not None:
        generator = torch.Generator().manual_seed(int(seed))
    model = mlp(in_dim, list(hidden), n_classes, activation=activation, init="torch")
    return uniform_parameters_(model, low, high, generator)


def random_uniform_linear(
    in_dim: int,
    n_classes: int,
    low: float,
    high: float,
    *,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> nn.Sequential:
    """A linear classifier (layer ``fc1``) with weights and biases drawn uniformly from ``[low, high]``."""
    return random_uniform_mlp(in_dim, [], n_classes, low, high, generator=generator, seed=seed)
