"""Algorithm 5.1: compose the layer rules from the output backwards, and the one rule registry.

Given a flat ``nn.Sequential`` whose output is the logits, ``model_bounds``

1. splits it into *steps* (``plan_model``): the output classifier (the final ``nn.Linear``, or the
   identity classifier on the logits when the network ends without one, e.g. CIFAR-NIN's global
   average pooling), the MLP tail before it (the trailing run ``Linear, act, ..., Linear, act``; Theorem
   4.2 treats it as one unit with ``h_L`` its last hidden output and ``n`` its width), and every other
   layer on its own;
2. runs the forward pass once per chunk of samples (in eval mode), recording each step's input;
3. walks the steps from the output to the input: ``kappa_L = delta(h_L(x); f)`` (Lemma 3.5), then
   ``kappa_l = rule_l(layer_l, input_l, kappa_{l+1})``.

The returned ``BoundResult.kappas`` maps each step's label (the name of its first layer; ``logits``
for an identity output classifier) to its kappa, ordered input -> output; ``bound`` is the first.
For LeNet-5, ``kappas`` holds 5.4's ``kappa_6 ... kappa_1`` (``ip2, ip1, pool2, conv2, pool1, conv1``)
and ``bound = kappas['scale'] = kappa_1 / s`` in raw pixel units.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from advbounds.frames import KAPPA_PREFIX
from advbounds.models.layers import Scale
from advbounds.progress import progress_bar

from ._common import BOUND_DTYPE, UnsupportedLayerError
from . import layers as thesis_rules  # Section 5.2's per-layer rules, as the thesis prints them
from .linear import OutputClassifier, output_rule
from .mlp import (
    ACTIVATION_MODULES,
    IDENTITY_AT_EVAL,
    RELU_SECOND_DERIVATIVE_PRACTICAL,
    MLPTail,
    mlp_tail_rule,
    second_derivative_bound,
    tail_jacobian_norm,
)
from .sound import SOUND_RULES, tail_second_derivative_bound, weight_constants
from .spectral import JACOBIAN_NORM_METHODS

Rule = Callable[..., torch.Tensor]

#: The one registry: layer type -> rule ``(layer, input, kappa_next, **options) -> kappa``.
#: ``OutputClassifier`` and ``MLPTail`` are the composite units built by ``plan_model``.
BOUND_RULES: dict[type[nn.Module], Rule] = {
    OutputClassifier: output_rule,  # Lemma 3.5 / Theorem 3.6, eq. (3.12)
    MLPTail: mlp_tail_rule,  # Theorem 4.2 with Algorithm 4.1
    nn.Conv2d: thesis_rules.conv_rule,  # Theorem 5.1
    nn.MaxPool2d: thesis_rules.max_pool_rule,  # Theorem 5.3
    nn.AvgPool2d: thesis_rules.avg_pool_rule,  # Theorem 5.3
    nn.LPPool2d: thesis_rules.lp_pool_rule,  # Theorem 5.3
    nn.BatchNorm2d: thesis_rules.batch_norm_rule,  # Theorem 5.6
    nn.LocalResponseNorm: thesis_rules.lrn_rule,  # Theorem 5.9, Lemma 5.11
    nn.Flatten: thesis_rules.identity_rule,  # 5.2.5
    nn.Dropout: thesis_rules.identity_rule,  # identity at eval
    nn.Identity: thesis_rules.identity_rule,
    Scale: thesis_rules.scale_rule,  # fixed input scaling
    nn.ReLU: thesis_rules.relu_rule,  # ReLU after a convolution (Theorem 5.1's setting)
    nn.Tanh: thesis_rules.smooth_activation_rule,  # outside a tail: extension (Lipschitz)
    nn.Sigmoid: thesis_rules.smooth_activation_rule,
    nn.Softplus: thesis_rules.smooth_activation_rule,
    nn.Linear: thesis_rules.dense_rule,  # a Linear outside the tail/output: extension
}

#: label of the identity output classifier's entry in ``BoundResult.kappas``
LOGITS_LABEL = "logits"

#: ``model_bounds(mode=...)`` -> its rule registry: the thesis's rules as printed (several are false,
#: docs/findings.md), or the sound rules of ``advbounds.bounds.sound`` (``SOUND_RULES``)
BOUND_MODES: dict[str, dict[type[nn.Module], Rule]] = {"thesis": BOUND_RULES, "corrected": SOUND_RULES}


def rule_registry(mode: str) -> dict[type[nn.Module], Rule]:
    """The registry of ``mode`` (``thesis`` or ``corrected``); ``ValueError`` naming the valid modes."""
    try:
        return BOUND_MODES[mode]
    except (KeyError, TypeError):
        raise ValueError(f"unknown bound mode {mode!r}; valid modes: {', '.join(BOUND_MODES)}") from None


def find_rule(layer: nn.Module, registry: dict[type[nn.Module], Rule] | None = None) -> Rule:
    """The registered rule for ``layer``'s type (or its nearest registered base class) in ``registry``
    (default: the thesis's ``BOUND_RULES``)."""
    registry = BOUND_RULES if registry is None else registry
    for cls in type(layer).__mro__:
        if cls in registry:
            return registry[cls]
        if cls is nn.Module:
            break
    raise KeyError(type(layer).__name__)


@dataclass(frozen=True)
class Step:
    """One unit of the backward composition: ``module`` gets its input from child ``start``
    (``start == len(children)`` means the model output, the logits). For the MLP tail, ``m`` is
    Algorithm 4.1's ``M`` as the mode's tail rule uses it (None where it uses none), computed from
    the weights when the model is planned."""

    label: str
    module: nn.Module
    start: int
    members: tuple[str, ...]
    rule: Rule
    m: float | None = None


#: ``mode`` -> Algorithm 4.1's ``M`` of an MLP tail as that mode's tail rule uses it
TAIL_SECOND_DERIVATIVE_BOUNDS: dict[str, Callable[[MLPTail, float], float | None]] = {
    "thesis": lambda tail, relu_second_derivative: second_derivative_bound(tail.linears, tail.activations,
                                                                           relu_second_derivative),
    "corrected": lambda tail, relu_second_derivative: tail_second_derivative_bound(tail),
}
#: ``mode`` -> the weight-only constants of a step's rule, once per ``model_bounds`` call
WEIGHT_CONSTANTS: dict[str, Callable[[nn.Module, torch.Tensor], dict[str, Any]]] = {
    "thesis": lambda layer, x: {},  # the thesis's rules read their weights directly
    "corrected": weight_constants,
}


def _unsupported(name: str, layer: nn.Module, registry: dict[type[nn.Module], Rule]) -> UnsupportedLayerError:
    supported = sorted({cls.__name__ for cls in registry} - {"OutputClassifier", "MLPTail"})
    return UnsupportedLayerError(
        f"layer {name!r} ({type(layer).__name__}) has no bound rule; supported layer types: {', '.join(supported)}")


def plan_model(model: nn.Sequential, *, mode: str = "thesis",
               relu_second_derivative: float = RELU_SECOND_DERIVATIVE_PRACTICAL) -> list[Step]:
    """Split ``model`` into the steps of Algorithm 5.1 (input -> output order), with the rules of
    ``mode``'s registry (the steps are the same in both modes) and the MLP tail's ``M`` (Algorithm 4.1
    with ``relu_second_derivative``, as ``mode`` uses it). Raises ``UnsupportedLayerError`` naming the
    first unsupported layer."""
    registry = rule_registry(mode)
    if not isinstance(model, nn.Sequential):
        raise UnsupportedLayerError(f"model_bounds needs a flat nn.Sequential, got {type(model).__name__}")
    children = list(model.named_children())
    if not children:
        raise UnsupportedLayerError("empty model")
    for name, layer in children:
        nested = len(list(layer.children())) > 0 and not isinstance(layer, IDENTITY_AT_EVAL)
        if isinstance(layer, nn.Sequential) or nested:
            raise UnsupportedLayerError(f"layer {name!r} ({type(layer).__name__}) is a container; flatten the model")
        try:
            find_rule(layer, registry)
        except KeyError:
            raise _unsupported(name, layer, registry) from None
    names = [name for name, _ in children]

    # -- output classifier: the last non-identity layer if it is Linear, else the identity on logits
    last = len(children) - 1
    while last >= 0 and isinstance(children[last][1], IDENTITY_AT_EVAL):
        last -= 1
    steps_tail: list[Step] = []
    if last >= 0 and isinstance(children[last][1], nn.Linear):
        out_start = last
        output = OutputClassifier(children[last][1])
        steps_tail.append(Step(names[last], output, last, tuple(names[last:]), registry[OutputClassifier]))
    else:
        out_start = len(children)
        label = LOGITS_LABEL
        while label in names:
            label = "_" + label
        steps_tail.append(Step(label, OutputClassifier(None), out_start, (), registry[OutputClassifier]))

    # -- MLP tail: trailing (Linear, activation) pairs, skipping eval-identity layers
    pairs: list[tuple[int, int]] = []
    i = out_start - 1
    while True:
        j = i
        while j >= 0 and isinstance(children[j][1], IDENTITY_AT_EVAL):
            j -= 1
        if j < 1 or not isinstance(children[j][1], ACTIVATION_MODULES):
            break
        k = j - 1
        while k >= 0 and isinstance(children[k][1], IDENTITY_AT_EVAL):
            k -= 1
        if k < 0 or not isinstance(children[k][1], nn.Linear):
            break
        pairs.insert(0, (k, j))
        i = k - 1
    tail_start = pairs[0][0] if pairs else out_start
    if pairs:
        tail = MLPTail([children[k][1] for k, _ in pairs], [children[j][1] for _, j in pairs],
                       labels=tuple(names[tail_start:out_start]))
        members = tuple(names[tail_start:out_start])
        m = TAIL_SECOND_DERIVATIVE_BOUNDS[mode](tail, relu_second_derivative)
        steps_tail.insert(0, Step(names[tail_start], tail, tail_start, members, registry[MLPTail], m))

    steps = [Step(name, layer, idx, (name,), find_rule(layer, registry))
             for idx, (name, layer) in enumerate(children[:tail_start])]
    return steps + steps_tail


@dataclass
class BoundResult:
    """Per-sample results of ``model_bounds``.

    ``bound``: the input-level lower bound ``[B]``; ``kappas``: step label -> kappa ``[B]`` at that
    step's input, ordered input -> output; ``predicted``: the label at ``x``; ``members``: step label
    -> the layer names the step covers (the MLP tail covers ``Linear, act, ...``); ``rules``: step label
    -> rule name; ``second_derivative_bound``: Algorithm 4.1's ``M`` of the tail (None without one);
    ``jacobian_norm``: ``||J(x)||`` of the tail ``[B]`` (None without one); ``mode``: the bound mode
    (``thesis`` or ``corrected``). In ``corrected`` mode ``second_derivative_bound`` is set only when the
    tail's bound used it (smooth activations), and ``jacobian_norm`` is reported as in ``thesis`` mode.
    """

    bound: torch.Tensor
    kappas: "OrderedDict[str, torch.Tensor]"
    predicted: torch.Tensor
    members: dict[str, tuple[str, ...]] = field(default_factory=dict)
    rules: dict[str, str] = field(default_factory=dict)
    second_derivative_bound: float | None = None
    jacobian_norm: torch.Tensor | None = None
    mode: str = "thesis"

    def to_frame(self, first_sample: int = 0) -> pd.DataFrame:
        """One row per sample: ``sample`` (numbered from ``first_sample``), ``pred_label``,
        ``bound``, ``kappa_<label>...`` (ordered input -> output) and ``jacobian_norm`` when there is
        an MLP tail; the numbers in float64. The column contract of every bounds frame (the
        Chapter 5 bounds CSV adds its own columns to it)."""
        data = {"sample": np.arange(first_sample, first_sample + len(self.bound)),
                "pred_label": self.predicted.cpu().numpy().astype(np.int64),
                "bound": self.bound.detach().double().cpu().numpy()}
        for label, kappa in self.kappas.items():
            data[f"{KAPPA_PREFIX}{label}"] = kappa.detach().double().cpu().numpy()
        if self.jacobian_norm is not None:
            data["jacobian_norm"] = self.jacobian_norm.detach().double().cpu().numpy()
        return pd.DataFrame(data)


_RECORD_BUDGET_BYTES = 1 << 29


def _auto_batch_size(model: nn.Sequential, x: torch.Tensor, starts: set[int]) -> int:
    """Chunk size that keeps the recorded activations (and their float64 copies) near 512 MiB."""
    with torch.no_grad():
        h = x[:1]
        per_sample = 0
        for idx, layer in enumerate(model):
            if idx in starts:
                per_sample += h.numel()
            h = layer(h.clone() if getattr(layer, "inplace", False) else h)
        per_sample += h.numel()
    per_sample_bytes = max(1, per_sample) * 8 * 3
    return int(max(1, min(4096, _RECORD_BUDGET_BYTES // per_sample_bytes)))


@torch.no_grad()
def model_bounds(model: nn.Sequential, x: torch.Tensor,
                 relu_second_derivative: float = RELU_SECOND_DERIVATIVE_PRACTICAL,
                 *, mode: str = "thesis", batch_size: int | None = None, jacobian_norm: str = "auto",
                 progress: bool = False) -> BoundResult:
    """Algorithm 5.1: per-sample lower bound on ``||R||`` for every ``R`` with ``f(x + R) != f(x)``.

    ``x``: a batch ``[B, ...]`` on the model's device. ``relu_second_derivative``: ReLU'' used by
    Algorithm 4.1 (Section 4.3.1; default 1). ``batch_size``: samples per chunk (default: sized from
    the activations, about 512 MiB). ``jacobian_norm``: ``auto|exact|certified|frobenius`` for the
    tail's ``||J(x)||`` -- all exact or guaranteed over-estimates. The model is evaluated in eval mode
    (dropout off, batch-norm running statistics) and its training flags are restored afterwards.
    Results are in ``x``'s floating dtype on ``x``'s device.

    ``mode``: ``"thesis"`` (default) composes the thesis's rules as printed (``BOUND_RULES``; several are
    false, docs/findings.md); ``"corrected"`` composes the sound rules (``SOUND_RULES``,
    ``advbounds.bounds.sound``), each valid in the composing sense, so ``bound`` is a true lower bound on
    every label-changing perturbation; its results are rounded down (also in the cast to ``x``'s dtype).
    Weight-only constants (operator norms) are computed once per call, not per chunk.
    """
    if jacobian_norm not in JACOBIAN_NORM_METHODS:
        raise ValueError(f"jacobian_norm must be one of {JACOBIAN_NORM_METHODS}, got {jacobian_norm!r}")
    rule_registry(mode)  # ValueError for an unknown mode, before any work
    steps = plan_model(model, mode=mode, relu_second_derivative=relu_second_derivative)
    children = list(model)
    starts = {step.start for step in steps}
    if x.shape[0] == 0:
        raise ValueError("empty batch")
    training_flags = {module: module.training for module in model.modules()}
    model.eval()
    try:
        if batch_size is None:
            batch_size = _auto_batch_size(model, x, starts)
        batch_size = max(1, int(batch_size))
        chunks = range(0, x.shape[0], batch_size)
        if progress:
            chunks = progress_bar(chunks, desc="bounds", unit="chunk")
        collected: dict[str, list[torch.Tensor]] = OrderedDict((step.label, []) for step in steps)
        predicted, jac_norms = [], []
        constants: dict[str, dict[str, Any]] | None = None  # per step, from the first chunk's input sizes
        for lo in chunks:
            xb = x[lo:lo + batch_size]
            recorded: dict[int, torch.Tensor] = {}
            h = xb
            for idx, layer in enumerate(children):
                if idx in starts:
                    recorded[idx] = h
                h = layer(h.clone() if getattr(layer, "inplace", False) else h)
            recorded[len(children)] = h
            predicted.append(h.reshape(h.shape[0], -1).argmax(dim=1))
            if constants is None:
                constants = {step.label: WEIGHT_CONSTANTS[mode](step.module, recorded[step.start]) for step in steps}
            kappa = None
            for step in reversed(steps):
                extras: dict[str, Any] = {}
                if isinstance(step.module, MLPTail):  # ||J(x)|| is reported beside the bound
                    extras = {"m": step.m, "jacobian": tail_jacobian_norm(step.module, recorded[step.start],
                                                                           jacobian_norm)}
                    jac_norms.append(extras["jacobian"])
                kappa = step.rule(step.module, recorded[step.start], kappa,
                                  relu_second_derivative=relu_second_derivative, jacobian_norm=jacobian_norm,
                                  **constants[step.label], **extras)
                collected[step.label].append(kappa)
    finally:
        for module, flag in training_flags.items():
            module.train(flag)

    out_dtype = x.dtype if x.is_floating_point() else BOUND_DTYPE
    cast = _cast_down if mode == "corrected" else (lambda t, dtype: t.to(dtype))
    kappas = OrderedDict((label, cast(torch.cat(parts), out_dtype)) for label, parts in collected.items())
    first = next(iter(kappas))
    return BoundResult(
        bound=kappas[first].clone(),
        kappas=kappas,
        predicted=torch.cat(predicted),
        members={step.label: step.members for step in steps},
        rules={step.label: step.rule.__name__ for step in steps},
        second_derivative_bound=next((step.m for step in steps if isinstance(step.module, MLPTail)), None),
        jacobian_norm=torch.cat(jac_norms).to(out_dtype) if jac_norms else None,
        mode=mode,
    )


def _cast_down(values64: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Cast non-negative float64 bounds to ``dtype`` rounding *down* (a plain cast rounds to nearest,
    which can round up)."""
    cast = values64.to(dtype)
    if dtype == values64.dtype:
        return cast
    above = cast.to(values64.dtype) > values64
    return torch.where(above, torch.nextafter(cast, torch.zeros_like(cast)), cast)
