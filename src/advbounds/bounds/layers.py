"""Per-layer rules for convolutional networks (Section 5.2) and the thesis's other layers.

Every rule has the signature ``rule(layer, x, kappa_next, **options) -> kappa`` where ``x`` is the
layer's (batched) input activation, ``kappa_next`` the lower bound ``[B]`` at the next layer's input
and the result the lower bound ``[B]`` (float64) at this layer's input.

The formulas are the thesis's, as printed (or re-derived where the extraction damaged them, as
each docstring says). Several of the thesis's inequalities are false; the formulas are kept because
this is a replication, and the counterexamples are in ``tests/test_bounds_layers.py`` and
``docs/findings.md``. Each docstring says whether the rule is valid.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from advbounds.models.layers import Scale, lrn_thesis_params

from ._common import BOUND_DTYPE, UnsupportedLayerError, as_bound_tensor, kappa_like, per_sample_norm
from .mlp import activation_derivative_bounds


def _pair(v) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


# ------------------------------------------------------------------------------------------------
# 5.2.1 Convolution
# ------------------------------------------------------------------------------------------------


def conv_rule(layer: nn.Conv2d, x: torch.Tensor, kappa_next, **_options) -> torch.Tensor:
    """Theorem 5.1: ``||R||_F >= kappa / ||W||_F`` with ``W`` the whole ``k x c x q x q`` kernel tensor.

    The thesis states it for ``ReLU(W * X + b)``; here the convolution is one layer and a following
    ReLU is its own (kappa-preserving) rule, which composes to the same number. LeNet-5 (Caffe) has
    no ReLU after its convolutions; 5.4 uses the same formula there (``kappa_3 = kappa_4 / ||W_2||_F``).

    NOT VALID IN GENERAL: the proof rests on Lemma A.4, ``||W * R||_F <= ||W||_F ||R||_F``, which is
    false when the stride is smaller than the kernel (every input pixel is used by up to
    ``ceil(q/s)^2`` output positions); the correct constant is
    ``sqrt(ceil(q_h/s_h) ceil(q_w/s_w)) ||W||_F`` (docs/findings.md F6).
    """
    kappa = kappa_like(kappa_next, x.shape[0], x.device)
    norm_w = torch.linalg.vector_norm(layer.weight.detach().to(BOUND_DTYPE))
    return kappa / norm_w


def dense_rule(layer: nn.Linear, x: torch.Tensor, kappa_next, **_options) -> torch.Tensor:
    """A Linear layer that is neither in the MLP tail nor the output layer (not in the thesis's
    models): Theorem 5.1's form ``kappa / ||W||_F``, treating it as a convolution whose kernel covers
    the whole input. Valid, since ``||W r|| <= ||W||_2 ||r|| <= ||W||_F ||r||`` (extension)."""
    kappa = kappa_like(kappa_next, x.shape[0], x.device)
    return kappa / torch.linalg.vector_norm(layer.weight.detach().to(BOUND_DTYPE))


# ------------------------------------------------------------------------------------------------
# 5.2.2 Pooling
# ------------------------------------------------------------------------------------------------


def _pool_output_side(layer: nn.Module, x: torch.Tensor) -> float:
    """``t`` of Theorem 5.3: the side of the (square) output map. For a non-square ``t_h x t_w``
    output ``sqrt(t_h t_w)`` is used (the geometric mean; equal to ``t`` for square maps)."""
    with torch.no_grad():
        probe = layer(x[:1])
    t_h, t_w = probe.shape[-2], probe.shape[-1]
    return math.sqrt(t_h * t_w)


def max_pool_rule(layer: nn.MaxPool2d, x: torch.Tensor, kappa_next, **_options) -> torch.Tensor:
    """Theorem 5.3 (MAX pooling): ``||R||_F >= kappa / t``, ``t`` the output side.

    Valid (as a final inequality), though eq. (5.4)'s "one element >= kappa/t" omits the channel
    count (``||Z||_F <= t sqrt(c) max |z|``): a max-pooled change satisfies
    ``||Delta Z||_F^2 <= (number of windows per pixel) ||R||_F^2 <= t^2 ||R||_F^2``.
    """
    kappa = kappa_like(kappa_next, x.shape[0], x.device)
    return kappa / _pool_output_side(layer, x)


def avg_pool_rule(layer: nn.AvgPool2d, x: torch.Tensor, kappa_next, **_options) -> torch.Tensor:
    """Theorem 5.3 (average pooling): ``||R||_F >= kappa / t``. Valid (see ``max_pool_rule``). Global
    average pooling has ``t = 1``, so the kappa passes unchanged."""
    if getattr(layer, "divisor_override", None):
        raise UnsupportedLayerError("AvgPool2d with divisor_override is not an average; no thesis rule")
    kappa = kappa_like(kappa_next, x.shape[0], x.device)
    return kappa / _pool_output_side(layer, x)


def lp_pool_rule(layer: nn.LPPool2d, x: torch.Tensor, kappa_next, **_options) -> torch.Tensor:
    """Theorem 5.3 (L_p pooling): ``||R||_F >= kappa / (t q^(2/p))`` with ``q x q`` windows
    (``q^2 = q_h q_w`` for rectangular windows).

    Valid for ``p >= 1``. NOT VALID for ``0 < p < 1`` (allowed by the thesis): Lemma A.6's Minkowski
    step needs ``p >= 1`` and the pooled value is not Lipschitz at windows with zeros (docs/findings.md
    F7). Also note torch's ``LPPool2d`` computes ``(sum x^p)^(1/p)`` without absolute values, which is
    the thesis's L_p norm only for non-negative inputs or even ``p``.
    """
    kappa = kappa_like(kappa_next, x.shape[0], x.device)
    p = float(layer.norm_type)
    q_h, q_w = _pair(layer.kernel_size)
    return kappa / (_pool_output_side(layer, x) * (q_h * q_w) ** (1.0 / p))


# ------------------------------------------------------------------------------------------------
# 5.2.3 Batch normalization
# ------------------------------------------------------------------------------------------------


def batch_norm_deltas(layer: nn.BatchNorm2d, x: torch.Tensor, kappa_next) -> torch.Tensor:
    """``delta_j = min(|rho_1j|, |rho_2j|)`` of Theorem 5.6 for every input coordinate ``j``, ``[B, D]``.

    With ``sigma^2 = Var + eps``, ``phi = gamma / sigma^2``, ``chi = 2 gamma (x - E) + 2 beta sigma`` and
    ``psi = (2 kappa ||BN(x)|| + kappa^2) / D`` (D = number of coordinates), the roots of (5.10)
    ``phi gamma r^2 + phi chi r - psi = 0`` are ``{(S - chi)/(2 gamma), -(S + chi)/(2 gamma)}`` with
    ``S = sqrt(chi^2 + 4 sigma^2 psi)`` (divide the printed roots by ``phi``), so
    ``delta_j = (S - |chi|) / (2 |gamma|) = 2 sigma^2 psi / (|gamma| (S + |chi|))`` -- the same number
    as the printed formula, in a form without cancellation. ``gamma_j = 0`` makes (5.10) degenerate;
    the thesis calls the bound "trivial" there, so ``delta_j = 0`` for those coordinates.
    """
    if not (layer.track_running_stats and layer.running_mean is not None and layer.running_var is not None):
        raise UnsupportedLayerError("BatchNorm2d without running statistics has no fixed eval-mode map")
    x64 = as_bound_tensor(x)
    batch = x64.shape[0]
    kappa = kappa_like(kappa_next, batch, x.device)
    shape = (1, -1) + (1,) * (x64.dim() - 2)
    mean = layer.running_mean.to(BOUND_DTYPE).reshape(shape)
    var = layer.running_var.to(BOUND_DTYPE).reshape(shape)
    sigma2 = var + float(layer.eps)
    sigma = sigma2.sqrt()
    channels = x64.shape[1]
    gamma = (layer.weight.detach().to(BOUND_DTYPE) if layer.weight is not None
             else torch.ones(channels, dtype=BOUND_DTYPE, device=x.device)).reshape(shape)
    beta = (layer.bias.detach().to(BOUND_DTYPE) if layer.bias is not None
            else torch.zeros(channels, dtype=BOUND_DTYPE, device=x.device)).reshape(shape)
    y = gamma * (x64 - mean) / sigma + beta
    dim = x64[0].numel()
    psi = ((2.0 * kappa * per_sample_norm(y) + kappa**2) / dim).reshape((batch,) + (1,) * (x64.dim() - 1))
    chi = 2.0 * gamma * (x64 - mean) + 2.0 * beta * sigma
    root = torch.sqrt(chi * chi + 4.0 * sigma2 * psi)
    abs_gamma = gamma.abs().expand_as(x64)
    delta = torch.where(abs_gamma > 0, 2.0 * sigma2 * psi / (abs_gamma * (root + chi.abs())).clamp_min(1e-300),
                        torch.zeros_like(x64))
    return delta.reshape(batch, -1)


def batch_norm_rule(layer: nn.BatchNorm2d, x: torch.Tensor, kappa_next, **_options) -> torch.Tensor:
    """Theorem 5.6: ``||r|| >= max_j delta_j`` (see ``batch_norm_deltas``).

    NOT VALID: Lemma 5.4 shows ``|r_j| >= delta_j`` only for a coordinate ``j`` whose term in (5.9)
    reaches ``psi`` -- at least one such ``j`` exists, but not every ``j``. The argument supports
    ``min_j delta_j``, not ``max_j``; a two-channel counterexample is in the tests (docs/findings.md F8).
    """
    return batch_norm_deltas(layer, x, kappa_next).max(dim=1).values


# ------------------------------------------------------------------------------------------------
# 5.2.4 Local response normalization
# ------------------------------------------------------------------------------------------------


def lrn_second_derivative_bound(x_max: torch.Tensor, alpha: float, beta: float, k: float) -> torch.Tensor:
    """Lemma 5.11: ``M_a <= 4 x_max alpha beta (x_max^2 alpha (beta+1) k^(-beta-2) + k^(-beta-1))
    + 2 x_max alpha beta k^(-beta-1)`` (thesis alpha: multiplies the plain window sum of squares)."""
    xm = as_bound_tensor(x_max)
    return (4.0 * xm * alpha * beta * (xm**2 * alpha * (beta + 1.0) * k ** (-beta - 2.0) + k ** (-beta - 1.0))
            + 2.0 * xm * alpha * beta * k ** (-beta - 1.0))


def _channel_window_sum(values: torch.Tensor, size: int) -> torch.Tensor:
    """Sum over the LRN channel window of torch/Caffe, ``[i - size//2, i + (size-1)//2]`` clipped to the
    channels (zero padding), for ``[B, C, ...]``."""
    batch, channels = values.shape[:2]
    flat = values.reshape(batch, 1, channels, -1)
    padded = F.pad(flat, (0, 0, size // 2, (size - 1) // 2))
    summed = F.avg_pool2d(padded, (size, 1), stride=1) * size
    return summed.reshape(values.shape)


def lrn_terms(layer: nn.LocalResponseNorm, x: torch.Tensor):
    """``(LRN(X), ||grad_x LRN(X)_a||, S_a)`` for every component ``a``, float64.

    ``S_a = k + alpha sum_{l in window(a)} x_l^2``; the gradient of ``LRN_a = x_a S_a^(-beta)`` (5.2.4) is
    ``S_a^(-beta) - 2 alpha beta x_a^2 S_a^(-beta-1)`` for ``j = a`` and ``-2 alpha beta x_j x_a S_a^(-beta-1)``
    for the other channels ``j`` of the window at the same position (zero elsewhere), so
    ``||grad_a||^2 = (S^-b - 2ab x_a^2 S^(-b-1))^2 + (2ab x_a S^(-b-1))^2 (sum_window x_j^2 - x_a^2)``.
    """
    params = lrn_thesis_params(layer)
    alpha, beta, k = params.alpha, params.beta, params.k
    x64 = as_bound_tensor(x)
    window_sq = _channel_window_sum(x64 * x64, params.n)
    s = k + alpha * window_sq
    s_beta = s.pow(-beta)
    s_beta1 = s_beta / s
    out = x64 * s_beta
    grad_self = s_beta - 2.0 * alpha * beta * x64 * x64 * s_beta1
    others_sq = (window_sq - x64 * x64).clamp_min(0.0)
    grad_norm = torch.sqrt(grad_self**2 + (2.0 * alpha * beta * x64 * s_beta1) ** 2 * others_sq)
    return out, grad_norm, s


def lrn_rule(layer: nn.LocalResponseNorm, x: torch.Tensor, kappa_next, **_options) -> torch.Tensor:
    """Theorem 5.9: ``||R||_F >= max_{a in Delta} lambda_a``,
    ``lambda_a = (sqrt(||grad_a||^2 - 2 M_a delta_a) - ||grad_a||) / M_a``, with
    ``delta_a = |LRN(X)_a| - (||LRN(X)||_F + kappa) / (d sqrt c)``, ``Delta = {a : delta_a < 0}`` (never
    empty, Lemma 5.7) and ``M_a`` of Lemma 5.11 (``x_max`` = largest ``|x|`` of this sample's input).
    ``d sqrt c`` is ``sqrt`` of the number of components (``d x d`` maps, ``c`` channels). ``lambda_a``
    is evaluated as the identical ``-2 delta_a / (sqrt(||grad_a||^2 - 2 M_a delta_a) + ||grad_a||)``.
    The thesis's ``alpha`` multiplies the plain window sum; torch's is ``size`` times larger
    (``advbounds.models.layers.lrn_thesis_params``).

    NOT VALID: Lemma 5.8 ("(5.12) must hold for *all* a in Delta") does not follow -- (5.12) must hold
    for at least one component, which need not be in Delta -- so the max over Delta is unjustified
    and is violated by small perturbations (docs/findings.md F9). Lemma 5.11 also mis-states one case
    (the mixed derivative over two other channels is not 0), which does not change ``M_a`` (F10).
    """
    params = lrn_thesis_params(layer)
    x64 = as_bound_tensor(x)
    batch = x64.shape[0]
    kappa = kappa_like(kappa_next, batch, x.device)
    out, grad_norm, _ = lrn_terms(layer, x64)
    count = x64[0].numel()
    threshold = (per_sample_norm(out) + kappa) / math.sqrt(count)
    delta = out.reshape(batch, -1).abs() - threshold[:, None]
    x_max = x64.reshape(batch, -1).abs().max(dim=1).values
    m_a = lrn_second_derivative_bound(x_max, params.alpha, params.beta, params.k)[:, None]
    g = grad_norm.reshape(batch, -1)
    lam = -2.0 * delta / (torch.sqrt(g * g - 2.0 * m_a * delta) + g)
    lam = torch.where(delta < 0, lam, torch.full_like(lam, -math.inf))
    return lam.max(dim=1).values


# ------------------------------------------------------------------------------------------------
# 5.2.5 Flattening, and the thesis's other layers
# ------------------------------------------------------------------------------------------------


def identity_rule(layer: nn.Module, x: torch.Tensor, kappa_next, **_options) -> torch.Tensor:
    """Flattening (5.2.5, Lemma A.2.3: ``||flat(Q)|| = ||Q||_F``) and Dropout in evaluation mode (the
    identity): the kappa passes unchanged. Exact."""
    return kappa_like(kappa_next, x.shape[0], x.device).clone()


def scale_rule(layer: Scale, x: torch.Tensor, kappa_next, **_options) -> torch.Tensor:
    """Fixed input scaling ``y = s x`` (Caffe's ``scale: 1/256`` on LeNet): ``kappa / s``.

    Derivation: ``||Scale(X + R) - Scale(X)||_F = s ||R||_F``, so a change of at least ``kappa`` at the
    output needs ``||R||_F >= kappa / s`` -- exact and tight. With ``s = 1/256`` the bound in raw pixel
    units is 256 times the bound in scaled units.
    """
    kappa = kappa_like(kappa_next, x.shape[0], x.device)
    return kappa / float(layer.factor)


def relu_rule(layer: nn.ReLU, x: torch.Tensor, kappa_next, **_options) -> torch.Tensor:
    """A ReLU after a convolution (the thesis's Theorem 5.1 setting, CIFAR-NIN's mlpconv layers):
    kappa passes unchanged. ReLU is 1-Lipschitz (``|ReLU(a + b) - ReLU(a)| <= |b|``, cf. Lemma A.2),
    so ``||Delta out||_F <= ||R||_F``; together with ``conv_rule`` this gives Theorem 5.1's
    ``kappa / ||W||_F`` for ``ReLU(W * X + b)``. Valid."""
    return kappa_like(kappa_next, x.shape[0], x.device).clone()


def smooth_activation_rule(layer: nn.Module, x: torch.Tensor, kappa_next, **_options) -> torch.Tensor:
    """Tanh / Sigmoid / Softplus outside an MLP tail (not in the thesis's models): ``kappa / A`` with
    ``A = sup |g'|`` of Table 4.1 (mean value theorem: the map is A-Lipschitz). Extension; valid."""
    first, _ = activation_derivative_bounds(layer)
    return kappa_like(kappa_next, x.shape[0], x.device) / first


__all__ = [
    "avg_pool_rule",
    "batch_norm_deltas",
    "batch_norm_rule",
    "conv_rule",
    "dense_rule",
    "identity_rule",
    "lp_pool_rule",
    "lrn_rule",
    "lrn_second_derivative_bound",
    "lrn_terms",
    "max_pool_rule",
    "relu_rule",
    "scale_rule",
    "smooth_activation_rule",
]
