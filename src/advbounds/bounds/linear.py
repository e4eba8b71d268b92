"""Linear classifiers and the softmax output layer (Chapter 3).

* ``binary_linear_bound`` -- Lemma 3.1: for ``f(x) = [w . x + b >= 0]`` the smallest label-changing
  perturbation has norm exactly ``|w . x + b| / ||w||`` (an equality, not only a bound).
* ``linear_output_bound`` -- Lemma 3.5 / Theorem 3.6, the quantity ``delta(x; f)`` of eq. (3.12):

      delta(x; f) = min_{c != f(x)} |(w_c - w_f(x)) . x + b_c - b_f(x)| / ||w_c - w_f(x)||.

  It is the distance from ``x`` to the nearest pairwise boundary ``{z_c = z_f(x)}``; every
  label-changing perturbation has to cross one of these (Lemma 3.3), so it is a lower bound on
  the minimal perturbation. It is also the kappa of the output (softmax) layer of an MLP or CNN:
  the rule that starts Algorithm 5.1.
* ``identity_output_bound`` -- the same for a network without a final Linear layer (CIFAR-NIN ends
  in global average pooling): the output classifier is the identity on the logits, ``W = I,
  b = 0``, so ``||w_c - w_c'|| = ||e_c - e_c'|| = sqrt(2)`` and ``delta = min_c |z_c - z_f| / sqrt 2``.
  This is also the exact value in the tightness example of Theorem 3.7 (see docs/findings.md: the
  thesis's simplification drops the ``sqrt 2``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._common import BOUND_DTYPE, as_bound_tensor


@torch.no_grad()
def binary_linear_bound(w: torch.Tensor, b: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """Lemma 3.1: ``Delta_adv(x; f) = |w . x + b| / ||w||`` for ``f(x) = 1 iff w . x + b >= 0``.

    ``w``: ``[d]``, ``b``: scalar, ``x``: ``[B, d]``; returns ``[B]`` (float64, on ``x``'s device).
    This is exact: the orthogonal projection (3.7) onto the hyperplane attains it.
    """
    w64 = as_bound_tensor(w).reshape(-1)
    x64 = as_bound_tensor(x).reshape(x.shape[0], -1)
    b64 = torch.as_tensor(b, dtype=BOUND_DTYPE, device=x.device).reshape(())
    norm_w = torch.linalg.vector_norm(w64)
    return (x64 @ w64 + b64).abs() / norm_w


def _class_distances(weight64: torch.Tensor) -> torch.Tensor:
    """``[C, C]`` matrix of ``||w_c - w_c'||`` (direct differences, no Gram-matrix cancellation)."""
    return torch.cdist(weight64.unsqueeze(0), weight64.unsqueeze(0), compute_mode="donot_use_mm_for_euclid_dist")[0]


def delta_from_logits(logits64: torch.Tensor, distances: torch.Tensor,
                      logit_error: torch.Tensor | None = None) -> torch.Tensor:
    """``delta`` of eq. (3.12) from float64 logits ``[B, C]`` and the class-distance matrix ``[C, C]``.

    Because the logits are ``z_c = w_c . x + b_c``, the numerator ``|(w_c - w_f) . x + b_c - b_f|``
    equals ``|z_c - z_f|``. A pair of identical class vectors (distance 0) can never be separated
    by a perturbation, so its term is +inf; with a single class delta is +inf.

    ``logit_error`` ``[B, C]`` (optional, the sound mode's rounding guard): a bound on
    ``|computed z_c - exact z_c|``; the numerator is then lowered to
    ``|z_c - z_f| - (err_c + err_f)`` (at least 0), a lower bound on the exact numerator.
    """
    predicted = logits64.argmax(dim=1)  # f(x); argmax of logits = argmax of the softmax
    numerator = (logits64 - logits64.gather(1, predicted[:, None])).abs()
    if logit_error is not None:
        pair_error = logit_error + logit_error.gather(1, predicted[:, None])
        numerator = (numerator * (1.0 - 2.0**-52) - pair_error * (1.0 + 2.0**-52)).clamp_min(0.0)
    denominator = distances[predicted]  # [B, C]: ||w_c - w_f(x)||
    ratio = torch.where(denominator > 0, numerator / denominator.clamp_min(torch.finfo(BOUND_DTYPE).tiny),
                        torch.full_like(numerator, math.inf))
    ratio.scatter_(1, predicted[:, None], math.inf)  # c != f(x)
    return ratio.min(dim=1).values


@torch.no_grad()
def linear_output_bound(weight: torch.Tensor, bias: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """``delta(x; f)`` of eq. (3.12) (Lemma 3.5) at the predicted class, per sample.

    ``weight``: ``[C, d]``, ``bias``: ``[C]`` (or None), ``x``: ``[B, d]``. Returns ``[B]`` in
    ``x``'s floating dtype on ``x``'s device (computed in float64).
    """
    w64 = as_bound_tensor(weight)
    x64 = as_bound_tensor(x).reshape(x.shape[0], -1)
    logits = x64 @ w64.t()
    if bias is not None:
        logits = logits + as_bound_tensor(bias)
    delta = delta_from_logits(logits, _class_distances(w64))
    return delta.to(x.dtype) if x.is_floating_point() else delta


@torch.no_grad()
def identity_output_bound(logits: torch.Tensor) -> torch.Tensor:
    """``delta`` for the identity output classifier (``W = I``, ``b = 0``) on logits ``[B, C]``:
    ``min_{c != f} |z_c - z_f| / sqrt(2)``. Returns float64 ``[B]``."""
    z = as_bound_tensor(logits).reshape(logits.shape[0], -1)
    n_classes = z.shape[1]
    distances = math.sqrt(2.0) * (1.0 - torch.eye(n_classes, dtype=BOUND_DTYPE, device=z.device))
    return delta_from_logits(z, distances)


# ------------------------------------------------------------------------------------------------
# Rule objects used by the composition (Algorithm 5.1)
# ------------------------------------------------------------------------------------------------


class OutputClassifier(nn.Module):
    """The linear (softmax) classifier that ends a network, as one unit for the rule registry.

    ``layer`` is the final ``nn.Linear`` or ``None`` for the identity classifier on the logits.
    It is a (parameter-free) ``nn.Module`` only so that it can be a key type of ``BOUND_RULES``.
    """

    def __init__(self, layer: nn.Linear | None) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - never called by the engine
        return x if self.layer is None else self.layer(x)


@torch.no_grad()
def output_rule(layer: OutputClassifier, x: torch.Tensor, kappa_next=None, **_options) -> torch.Tensor:
    """Kappa of the output classifier's input: ``delta(x; f)`` (Lemma 3.5, eq. 3.12).

    There is no next layer: ``kappa_next`` is ignored. For the identity classifier (network that
    ends without a Linear layer) ``delta = min_c |z_c - z_f| / sqrt 2``.
    """
    if layer.layer is None:
        return identity_output_bound(x.reshape(x.shape[0], -1))
    if x.dim() != 2:
        raise ValueError(f"the output Linear layer needs a flat [B, d] input, got shape {tuple(x.shape)}")
    w64 = as_bound_tensor(layer.layer.weight)
    logits = as_bound_tensor(x) @ w64.t()
    if layer.layer.bias is not None:
        logits = logits + as_bound_tensor(layer.layer.bias)
    return delta_from_logits(logits, _class_distances(w64))
