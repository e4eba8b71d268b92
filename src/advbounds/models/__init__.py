"""The thesis's models as flat ``nn.Sequential`` stacks and a name -> builder registry.

``build_model(name, **kwargs)`` builds one; ``MODEL_REGISTRY`` lists them. Architectures and the
choices the thesis leaves open are documented in ``docs/models.md``.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable

import torch
from torch import nn

from .architectures import (
    ACTIVATIONS,
    CAFFE_PIXEL_SCALE,
    NIN_OUTPUT_BIAS_TARGET,
    cifar_nin,
    lenet5,
    lenet_lrn1,
    lenet_lrn2,
    lenet_lrn3,
    linear,
    mlp,
)
from .layers import LRNParams, Scale, lrn_thesis_params, make_lrn
from .random_models import random_uniform_linear, random_uniform_mlp, uniform_parameters_
from .weights import INIT_SCHEMES, initialize_

#: model name -> builder returning a flat ``nn.Sequential`` whose output is the logits
MODEL_REGISTRY: dict[str, Callable[..., nn.Sequential]] = {
    "linear": linear,
    "mlp": mlp,
    "lenet5": lenet5,
    "lenet_lrn1": lenet_lrn1,
    "lenet_lrn2": lenet_lrn2,
    "lenet_lrn3": lenet_lrn3,
    "cifar_nin": cifar_nin,
}


class UnknownModelError(ValueError):
    """A model name that is not in ``MODEL_REGISTRY``."""


def build_model(name: str, *, seed: int | None = None, **kwargs) -> nn.Sequential:
    """Build the registered model ``name`` with the builder's ``kwargs``.

    With ``seed``, the initial weights depend only on it (the global torch RNG is forked, so the
    caller's RNG state is left untouched); without it, the global torch RNG is used.
    """
    try:
        builder = MODEL_REGISTRY[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), MODEL_REGISTRY, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownModelError(
            f"unknown model {name!r}; valid names: {', '.join(MODEL_REGISTRY)}.{hint}"
        ) from None
    signature = inspect.signature(builder)
    try:
        signature.bind(**kwargs)
    except TypeError as error:
        raise TypeError(
            f"bad arguments for model {name!r} ({error}); it accepts: {', '.join(signature.parameters)}"
        ) from None
    if seed is None:
        return builder(**kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return builder(**kwargs)


__all__ = [
    "ACTIVATIONS",
    "CAFFE_PIXEL_SCALE",
    "INIT_SCHEMES",
    "LRNParams",
    "MODEL_REGISTRY",
    "NIN_OUTPUT_BIAS_TARGET",
    "Scale",
    "UnknownModelError",
    "build_model",
    "cifar_nin",
    "initialize_",
    "lenet5",
    "lenet_lrn1",
    "lenet_lrn2",
    "lenet_lrn3",
    "linear",
    "lrn_thesis_params",
    "make_lrn",
    "mlp",
    "random_uniform_linear",
    "random_uniform_mlp",
    "uniform_parameters_",
]
