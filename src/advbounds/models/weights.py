"""Weight initialisation schemes for the thesis's models.

``xavier`` is Caffe's ``xavier`` filler (the one in Caffe's ``lenet_train_test.prototxt``): weights
uniform in ``[-sqrt(3 / fan_in), sqrt(3 / fan_in)]`` (variance ``1 / fan_in``; Caffe's default
``variance_norm: FAN_IN``, unlike torch's ``xavier_uniform_`` which averages fan-in and fan-out),
biases zero. ``kaiming`` is He et al.'s normal initialisation for ReLU networks
(std ``sqrt(2 / fan_in)``), biases zero. ``torch`` keeps torch's defaults
(``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` for weights and biases).
"""

from __future__ import annotations

import math

import torch
from torch import nn

INIT_SCHEMES = ("xavier", "kaiming", "torch")


def _fan_in(weight: torch.Tensor) -> int:
    # Linear: [out, in]; Conv2d: [out, in, kh, kw]
    return int(weight[0].numel())


@torch.no_grad()
def initialize_(model: nn.Module, scheme: str) -> nn.Module:
    """Re-initialise every ``nn.Linear`` and ``nn.Conv2d`` of ``model`` in place (global torch RNG)."""
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; valid: {', '.join(INIT_SCHEMES)}")
    for module in model.modules():
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            continue
        if scheme == "torch":
            module.reset_parameters()
            continue
        fan_in = _fan_in(module.weight)
        if scheme == "xavier":
            bound = math.sqrt(3.0 / fan_in)
            module.weight.uniform_(-bound, bound)
        else:  # kaiming
            module.weight.normal_(0.0, math.sqrt(2.0 / fan_in))
        if module.bias is not None:
            module.bias.zero_()
    return model
