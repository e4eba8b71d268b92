"""Sound bound rules: the ``corrected`` mode of ``model_bounds`` (beside the thesis's rules).

Every rule here is *valid in the composing sense* of docs/findings.md: with ``X`` the step's input,

    every change ``R`` of ``X`` whose output change has norm ``>= kappa_next`` has ``||R|| >= kappa_in``,

so composing the rules backwards from the output classifier (Algorithm 5.1, ``compose.py``) gives a
true lower bound on the norm of every label-changing input perturbation. Most rules are
``kappa_in = kappa_next / L`` with ``L`` a certified Lipschitz constant of the step: if
``||R|| < kappa_next / L`` then ``||step(X + R) - step(X)|| <= L ||R|| < kappa_next``. The exceptions
are the output classifier (exact distance to the decision boundary), Theorem 4.2 for smooth MLP tails
(a second-order argument) and torch's Softplus, whose switch to the identity is a jump.

Rounding. A rule's claim is about the exact-arithmetic map the layer defines with its stored
parameters (float32 parameters are read exactly; Python-float hyper-parameters such as ``eps`` are the
doubles they are). All arithmetic is float64; Lipschitz constants are certified upper bounds
(``operator_norms``) and every computed kappa is rounded *down* (``round_down``: multiply by
``1 - c u`` with ``c`` covering the rule's rounding steps, then one float towards 0), so rounding can
only make a bound smaller. ``model_bounds`` also rounds down when it casts to the input's dtype.
The rounding error of the *network's own* float32 evaluation is outside the claim, except at
Softplus's switch, where a float32 branch decision could differ from the exact one: units within a
relative ``2^-20`` of the switch count as able to cross it.

The rules keep the thesis rules' signature ``rule(layer, x_in, kappa_next, **options) -> Tensor[B]``
(float64). Constants that depend only on the weights (and the input size) are computed once per
``model_bounds`` call: by :func:`weight_constants` for the layers' operator norms, when the model is
planned for the tail's ``M`` (:func:`tail_second_derivative_bound`); they reach the rules as explicit
keyword arguments (``lipschitz``, ``norms``, ``m``), and a rule called without them computes its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from advbounds.models.layers import Scale

from ._common import BOUND_DTYPE, UNIT_ROUNDOFF_F64, UnsupportedLayerError, as_bound_tensor, kappa_like
from .layers import _channel_window_sum
from .linear import OutputClassifier, _class_distances, delta_from_logits
from .mlp import MLPTail, activation_derivative_bounds, second_derivative_bound, tail_jacobian_norm, theorem_4_2
from .operator_norms import (
    conv2d_operator_norm,
    gamma,
    lrn_lipschitz_constant,
    matrix_operator_norm,
    pool_lipschitz_constant,
    round_down,
    round_up,
)

_U = UNIT_ROUNDOFF_F64

#: relative width of the band around Softplus's switch point whose units count as able to cross it
#: (covers the float32 evaluation of torch's branch condition ``beta * z > threshold``)
SOFTPLUS_SWITCH_TOLERANCE = 2.0**-20

#: Lipschitz constants ``sup |g'|`` of the activations that are Lipschitz on their own (Table 4.1's A)
LIPSCHITZ_ACTIVATIONS: dict[type[nn.Module], float] = {
    nn.ReLU: 1.0,
    nn.Tanh: 1.0,
    nn.Sigmoid: 0.25,
    nn.Softplus: 1.0,  # sigmoid(beta z) <= 1 on both branches; the jump is handled separately
}


def _input_size(x: torch.Tensor) -> tuple[int, int]:
    return int(x.shape[-2]), int(x.shape[-1])


def weight_constants(layer: nn.Module, x: torch.Tensor) -> dict[str, Any]:
    """The constants of ``layer``'s sound rule that depend only on its weights and on the size of its
    input ``x``, as the keyword arguments the rule takes: ``lipschitz`` for convolutions, Linear
    layers, batch norm and pooling, ``norms`` (each Linear's ``||W||_2``) for an MLP tail, none for
    the other layers. ``model_bounds`` computes them once per call, on its first chunk."""
    if isinstance(layer, nn.Conv2d):
        return {"lipschitz": conv2d_operator_norm(layer, _input_size(x))}
    if isinstance(layer, nn.Linear):
        return {"lipschitz": matrix_operator_norm(layer.weight)}
    if isinstance(layer, nn.BatchNorm2d):
        return {"lipschitz": batch_norm_lipschitz_constant(layer)}
    if isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d, nn.LPPool2d)):
        return {"lipschitz": pool_lipschitz_constant(layer, _input_size(x))}
    if isinstance(layer, MLPTail):
        return {"norms": tuple(matrix_operator_norm(linear.weight) for linear in layer.linears)}
    return {}


def _divide_down(kappa: torch.Tensor, lipschitz: float | torch.Tensor, ulps: float = 4.0) -> torch.Tensor:
    """``kappa / L`` rounded down. ``L = 0`` (a constant map) gives ``inf`` (nothing can change the output),
    and ``kappa = 0`` gives 0 whatever ``L`` (the zero change already "reaches" a zero threshold)."""
    lip = torch.as_tensor(lipschitz, dtype=BOUND_DTYPE, device=kappa.device)
    ratio = torch.where(lip > 0, kappa / lip.clamp_min(torch.finfo(BOUND_DTYPE).tiny),
                        torch.full_like(kappa, math.inf))
    return round_down(torch.where(kappa == 0, torch.zeros_like(kappa), ratio), ulps)


# ------------------------------------------------------------------------------------------------
# Output classifier (Lemma 3.5)
# ------------------------------------------------------------------------------------------------


@torch.no_grad()
def sound_output_rule(layer: OutputClassifier, x: torch.Tensor, kappa_next=None, **_options) -> torch.Tensor:
    """``delta(x; f)`` of eq. (3.12), rounded down: a label-changing ``R`` has ``||R|| >= delta``.

    Proof (Lemma 3.5, and exact). The label changes only if some ``c != f`` gets ``z_c >= z_f``. The map
    ``h -> z_c(h) - z_f(h)`` is affine with gradient ``w_c - w_f``, so reaching 0 from ``z_c - z_f < 0``
    needs ``||R|| >= |z_c - z_f| / ||w_c - w_f||``; the minimum over ``c`` is ``delta``. It is attained (the
    projection onto the nearest pairwise boundary changes the label), so it equals the exact minimal
    perturbation of a linear classifier. Rounding: each computed logit is within
    ``gamma_{d+2} (|W| |x| + |b|)`` of the exact one, which is subtracted from the numerators; the class
    distances are rounded up. (The thesis rule ``output_rule`` computes the same ``delta`` unguarded.)
    """
    if layer.layer is None:  # identity classifier on the logits: W = I, b = 0, ||e_c - e_f|| = sqrt 2
        z = as_bound_tensor(x).reshape(x.shape[0], -1)
        n_classes = z.shape[1]
        distances = round_up(torch.tensor(math.sqrt(2.0), dtype=BOUND_DTYPE, device=z.device), 2) * (
            1.0 - torch.eye(n_classes, dtype=BOUND_DTYPE, device=z.device))
        return round_down(delta_from_logits(z, distances), 8)
    if x.dim() != 2:
        raise ValueError(f"the output Linear layer needs a flat [B, d] input, got shape {tuple(x.shape)}")
    w64 = as_bound_tensor(layer.layer.weight.detach())
    x64 = as_bound_tensor(x)
    logits = x64 @ w64.t()
    magnitude = x64.abs() @ w64.abs().t()
    if layer.layer.bias is not None:
        b64 = as_bound_tensor(layer.layer.bias.detach())
        logits = logits + b64
        magnitude = magnitude + b64.abs()
    logit_error = gamma(w64.shape[1] + 2) * magnitude
    distances = round_up(_class_distances(w64), w64.shape[1] + 4)
    return round_down(delta_from_logits(logits, distances, logit_error), 8)


# ------------------------------------------------------------------------------------------------
# Linear maps: convolution, dense, batch norm, scale
# ------------------------------------------------------------------------------------------------


@torch.no_grad()
def sound_conv_rule(layer: nn.Conv2d, x: torch.Tensor, kappa_next, *, lipschitz: float | None = None,
                    **_options) -> torch.Tensor:
    """``kappa / L`` with ``L >= ||conv||_2`` certified on this input size (``conv2d_operator_norm``).

    Proof. ``conv(X + R) - conv(X)`` is the linear part applied to ``R`` (the bias cancels), so its norm
    is at most ``L ||R||``; an output change ``>= kappa`` needs ``||R|| >= kappa / L``. ``L`` comes from the
    kernel's Fourier transform on a torus that holds the padded input (polyphase form for strides),
    which bounds the zero-padded, strided, dilated, grouped convolution as torch computes it.
    Replaces Theorem 5.1's ``kappa / ||W||_F`` (false for stride < kernel, docs/findings.md F6).
    """
    kappa = kappa_like(kappa_next, x.shape[0], x.device)
    if lipschitz is None:
        lipschitz = conv2d_operator_norm(layer, _input_size(x))
    return _divide_down(kappa, lipschitz)


@torch.no_grad()
def sound_dense_rule(layer: nn.Linear, x: torch.Tensor, kappa_next, *, lipschitz: float | None = None,
                     **_options) -> torch.Tensor:
    """A Linear layer outside the output classifier: ``kappa / ||W||_2`` (certified, float64).

    Proof. ``||W (X + R) + b - (W X + b)|| = ||W R|| <= ||W||_2 ||R||``.
    """
    kappa = kappa_like(kappa_next, x.shape[0], x.device)
    if lipschitz is None:
        lipschitz = matrix_operator_norm(layer.weight)
    return _divide_down(kappa, lipschitz)


def batch_norm_lipschitz_constant(layer: nn.BatchNorm2d) -> float:
    """``max_j |gamma_j| / sqrt(Var_j + eps)`` over the channels, rounded up (0 if every ``gamma_j = 0``)."""
    if not (layer.track_running_stats and layer.running_mean is not None and layer.running_var is not None):
        raise UnsupportedLayerError("BatchNorm2d without running statistics has no fixed eval-mode map")
    var = layer.running_var.detach().to(BOUND_DTYPE)
    sigma = round_down(torch.sqrt(var + float(layer.eps)), 4)  # a lower bound on sqrt(Var + eps)
    gain = (layer.weight.detach().to(BOUND_DTYPE).abs() if layer.weight is not None else torch.ones_like(var))
    if bool(((sigma <= 0) & (gain > 0)).any()):
        raise UnsupportedLayerError("BatchNorm2d with Var + eps = 0 on a channel with gamma != 0 is not Lipschitz")
    ratio = torch.where(gain > 0, gain / sigma.clamp_min(torch.finfo(BOUND_DTYPE).tiny), torch.zeros_like(gain))
    return float(round_up(ratio.max(), 2))


@torch.no_grad()
def sound_batch_norm_rule(layer: nn.BatchNorm2d, x: torch.Tensor, kappa_next, *, lipschitz: float | None = None,
                          **_options) -> torch.Tensor:
    """Eval-mode batch norm: ``kappa * min_{j: gamma_j != 0} sqrt(Var_j + eps) / |gamma_j|`` (``inf`` if all
    ``gamma_j = 0``).

    Proof. Eval mode is the per-channel affine map ``y = gamma_j (x - E_j) / sigma_j + beta_j``, so a change
    ``R`` moves the output by ``(gamma_j / sigma_j) R`` channelwise and ``||Delta y|| <= max_j (|gamma_j| /
    sigma_j) ||R||`` (tight: put ``R`` on the maximising channel). A channel with ``gamma_j = 0`` cannot
    change at all, so it does not enter the max; if all do not, no ``R`` reaches a positive ``kappa``.
    Replaces Theorem 5.6 (false, docs/findings.md F8) and also the min-over-coordinates variant proposed
    there before (also false: the F8 counterexample with ``gamma = (0.01, 1)``, ``beta = (100, 0)``).
    """
    kappa = kappa_like(kappa_next, x.shape[0], x.device)
    if lipschitz is None:
        lipschitz = batch_norm_lipschitz_constant(layer)
    return _divide_down(kappa, lipschitz)


@torch.no_grad()
def sound_scale_rule(layer: Scale, x: torch.Tensor, kappa_next, **_options) -> torch.Tensor:
    """Fixed scaling ``y = s x``: ``kappa / |s|``. Proof: ``||s R|| = |s| ||R||`` (exact, tight)."""
    kappa = kappa_like(kappa_next, x.shape[0], x.device)
    return _divide_down(kappa, abs(float(layer.factor)), 2)


@torch.no_grad()
def sound_identity_rule(layer: nn.Module, x: torch.Tensor, kappa_next, **_options) -> torch.Tensor:
    """Flatten, Dropout (eval), Identity: ``kappa`` unchanged. Proof: the map is the identity on
    coordinates (flatten reorders them), so ``||Delta|| = ||R||``. Exact; no arithmetic to round."""
    return kappa_like(kappa_next, x.shape[0], x.device).clone()


# ------------------------------------------------------------------------------------------------
# Pooling and local response normalisation
# ------------------------------------------------------------------------------------------------


@torch.no_grad()
def sound_pool_rule(layer: nn.Module, x: torch.Tensor, kappa_next, *, lipschitz: float | None = None,
                    **_options) -> torch.Tensor:
    """Max / average / L_p pooling: ``kappa / L`` with ``L`` of ``pool_lipschitz_constant``.

    Proof (details there). Each window's output moves by at most ``sqrt(n_w) ||r_w|| / D_w`` (average),
    ``||r_w||`` (max, L_p for even ``p`` or ``p = inf``), so summing over windows,
    ``||Delta||^2 <= max_p (sum over the windows containing pixel p of the squared window constants)
    ||R||^2`` -- at most ``ceil(q_h/s_h) ceil(q_w/s_w)`` for max pooling, 1 for LeNet's 2x2/2 (and 1/4
    for 2x2/2 average pooling, whose ``L = 1/2``). L_p pooling with other ``p`` raises
    ``UnsupportedLayerError`` (not Lipschitz, docs/findings.md F7).
    """
    kappa = kappa_like(kappa_next, x.shape[0], x.device)
    if lipschitz is None:
        lipschitz = pool_lipschitz_constant(layer, _input_size(x))
    return _divide_down(kappa, lipschitz)


@torch.no_grad()
def sound_lrn_rule(layer: nn.LocalResponseNorm, x: torch.Tensor, kappa_next, **_options) -> torch.Tensor:
    """Local response normalisation: ``kappa / L(X)`` with ``L(X)`` the Lipschitz constant of
    ``lrn_lipschitz_constant`` on the ball ``||A - X|| <= rho``, ``rho = kappa k^beta``.

    Proof. On the ball every channel window has ``||A_win|| <= ||X_win|| + rho``, so the window sums of
    squares are at most ``Q_max = (max_win ||X_win|| + rho)^2`` and ``||J(A)|| <= L(X)`` there (the Jacobian
    bound in ``lrn_lipschitz_constant``; it never exceeds the global constant). ``L(X) >= k^(-beta)``, so
    ``kappa / L(X) <= rho``: any ``R`` with ``||R|| < kappa / L(X)`` keeps the segment ``X + tR`` in the ball,
    and the mean value inequality gives ``||Delta|| <= L(X) ||R|| < kappa``. With ``k = 1`` (our networks)
    ``L >= 1``: LRN can never raise a sound bound. Replaces Theorem 5.9 (false, docs/findings.md F9).
    """
    x64 = as_bound_tensor(x)
    batch = x64.shape[0]
    kappa = kappa_like(kappa_next, batch, x.device)
    size, beta, k = int(layer.size), float(layer.beta), float(layer.k)
    window_sq = _channel_window_sum(x64 * x64, size).reshape(batch, -1).amax(dim=1)
    window_norm = round_up(window_sq.sqrt(), size + 8)
    radius = round_up(kappa * k**beta, 4)
    q_max = round_up((window_norm + radius) ** 2, 4)
    lipschitz = lrn_lipschitz_constant(layer, x64.shape[1], q_max)
    return _divide_down(kappa, lipschitz)


# ------------------------------------------------------------------------------------------------
# Activations
# ------------------------------------------------------------------------------------------------


def activation_lipschitz_constant(activation: nn.Module) -> float:
    """``sup |g'|`` of a supported activation (ReLU, Tanh: 1; Sigmoid: 1/4; Softplus: 1 on each branch)."""
    for cls, lipschitz in LIPSCHITZ_ACTIVATIONS.items():
        if isinstance(activation, cls):
            return lipschitz
    raise UnsupportedLayerError(f"no Lipschitz constant for activation {type(activation).__name__}")


@torch.no_grad()
def sound_relu_rule(layer: nn.ReLU, x: torch.Tensor, kappa_next, **_options) -> torch.Tensor:
    """ReLU: ``kappa`` unchanged. Proof: ``|relu(a + b) - relu(a)| <= |b|`` elementwise, so
    ``||Delta|| <= ||R||``. Exact (no arithmetic)."""
    return kappa_like(kappa_next, x.shape[0], x.device).clone()


@torch.no_grad()
def sound_lipschitz_activation_rule(layer: nn.Module, x: torch.Tensor, kappa_next, **_options) -> torch.Tensor:
    """Tanh (``kappa / 1``) and Sigmoid (``kappa / (1/4) = 4 kappa``). Proof: mean value theorem per
    element, ``|g(a + b) - g(a)| <= sup|g'| |b|``, so ``||Delta|| <= sup|g'| ||R||``."""
    kappa = kappa_like(kappa_next, x.shape[0], x.device)
    return _divide_down(kappa, activation_lipschitz_constant(layer), 2)


def softplus_switch(layer: nn.Softplus) -> tuple[float, float]:
    """``(t*, J)``: torch's Softplus is ``log(1 + exp(beta z)) / beta`` for ``beta z <= threshold`` and ``z``
    above, so it switches at ``t* = threshold / beta`` with a jump of ``J = softplus(t*) - t* =
    log1p(exp(-threshold)) / beta`` (about 2.1e-9 for the default threshold 20); ``J`` is rounded up."""
    beta, threshold = float(layer.beta), float(layer.threshold)
    if not beta > 0:
        raise UnsupportedLayerError(f"Softplus with beta = {beta} <= 0 is not supported")
    jump = float(round_up(torch.tensor(math.log1p(math.exp(-threshold)) / beta, dtype=BOUND_DTYPE), 8))
    return threshold / beta, jump


def softplus_crossing_units(layer: nn.Softplus, z: torch.Tensor, radius: torch.Tensor,
                            z_error: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Mask ``[B, units]`` of the units whose input ``z`` (computed to within ``z_error``) can reach the other
    side of the switch point under a change of size ``<= radius[b]`` (with the band
    ``SOFTPLUS_SWITCH_TOLERANCE``)."""
    switch, _ = softplus_switch(layer)
    z64 = as_bound_tensor(z).reshape(z.shape[0], -1)
    band = SOFTPLUS_SWITCH_TOLERANCE * (z64.abs() + abs(switch)) + z_error
    return (z64 - switch).abs() <= radius[:, None] + band


@torch.no_grad()
def sound_softplus_rule(layer: nn.Softplus, x: torch.Tensor, kappa_next, *, z_error=0.0,
                        **_options) -> torch.Tensor:
    """torch's Softplus, discontinuous at its switch: ``kappa_in = (kappa - J sqrt(N)) / 1`` if positive,
    else 0, with ``N`` the number of units that a change of size ``kappa`` can move across the switch.

    Proof. Write ``softplus_torch = sp + e`` with ``sp`` the smooth softplus (1-Lipschitz) and ``e`` zero
    below the switch ``t*`` and ``z - sp(z) in [-J, 0)`` above it (``sp(z) - z`` decreases). A unit that stays on
    one side moves by at most ``|r_i|`` (both branches are 1-Lipschitz); one that crosses moves by
    ``|sp(z + r_i) - sp(z)| + |e| <= |r_i| + J``. If ``||R|| = t <= t0 := kappa``, only units with
    ``|z_i - t*| <= t0`` can cross (the set ``S``), so ``||Delta|| <= ||R|| + J sqrt(|S|)``. Then ``||R|| <
    kappa - J sqrt(|S|) (<= t0)`` forces ``||Delta|| < kappa``. When ``kappa <= J sqrt(|S|)`` no positive bound
    holds: a unit just below ``t*`` jumps by ``J`` under an arbitrarily small ``R`` (a bound of 1e-9 is beaten
    by a change of 2e-12 that crosses ``t* = 20``). Units are counted within a band around ``t*`` (module
    docstring) and ``z_error`` (a bound on the error of a recomputed ``z``).
    """
    z = as_bound_tensor(x).reshape(x.shape[0], -1)
    kappa = kappa_like(kappa_next, z.shape[0], x.device)
    _, jump = softplus_switch(layer)
    if jump == 0.0:
        return _divide_down(kappa, 1.0, 2)
    crossing = softplus_crossing_units(layer, z, kappa, z_error)
    budget = round_up(jump * crossing.sum(dim=1).to(BOUND_DTYPE).sqrt(), 4)
    remaining = torch.where(kappa > budget, kappa - budget, torch.zeros_like(kappa))
    return round_down(torch.where(torch.isinf(kappa), kappa, remaining), 4)


#: activation type -> its standalone sound rule
ACTIVATION_SOUND_RULES: dict[type[nn.Module], Callable[..., torch.Tensor]] = {
    nn.ReLU: sound_relu_rule,
    nn.Tanh: sound_lipschitz_activation_rule,
    nn.Sigmoid: sound_lipschitz_activation_rule,
    nn.Softplus: sound_softplus_rule,
}


def _activation_rule(activation: nn.Module) -> Callable[..., torch.Tensor]:
    for cls, rule in ACTIVATION_SOUND_RULES.items():
        if isinstance(activation, cls):
            return rule
    raise UnsupportedLayerError(f"no sound rule for activation {type(activation).__name__} in an MLP tail")


# ------------------------------------------------------------------------------------------------
# MLP tail
# ------------------------------------------------------------------------------------------------


def _tail_forward_with_errors(tail: MLPTail, x64: torch.Tensor):
    """Float64 pre-activations ``z_l`` ``[B, n_l]`` of the tail and bounds ``[B, n_l]`` on ``|computed - exact|``.

    ``|fl(W h + b) - (W h + b)| <= gamma_{d+2} (|W||h| + |b|)``, plus ``|W| e_h`` for the error ``e_h`` already
    in ``h``; an activation adds ``A e_z`` (``A = sup|g'|``, mean value theorem) and a few ulps of its value
    (away from Softplus's switch, whose units the Softplus handling widens by this error anyway)."""
    h = x64
    h_error = torch.zeros(x64.shape[0], dtype=BOUND_DTYPE, device=x64.device)
    zs, z_errors = [], []
    for linear, activation in zip(tail.linears, tail.activations):
        w = linear.weight.detach().to(BOUND_DTYPE)
        z = h @ w.t()
        magnitude = h.abs() @ w.abs().t()
        if linear.bias is not None:
            b = linear.bias.detach().to(BOUND_DTYPE)
            z = z + b
            magnitude = magnitude + b.abs()
        z_error = gamma(w.shape[1] + 2) * magnitude + h_error[:, None] * w.abs().sum(dim=1)[None, :]
        zs.append(z)
        z_errors.append(z_error)
        h = activation(z)
        h_error = activation_lipschitz_constant(activation) * z_error.amax(dim=1) + 8 * _U * h.abs().amax(dim=1)
    return zs, z_errors


def _smooth_tail(tail: MLPTail) -> bool:
    return not any(isinstance(act, nn.ReLU) for act in tail.activations)


def tail_second_derivative_bound(tail: MLPTail) -> float | None:
    """Algorithm 4.1's ``M`` of the tail, grown by its own float64 rounding, for the Theorem 4.2 half
    of :func:`sound_mlp_tail_rule`; ``None`` for a tail with a ReLU, whose sound bound does not use
    it. Depends only on the weights: ``model_bounds`` computes it once, when it plans the model."""
    if not _smooth_tail(tail):
        return None
    widest = max(linear.in_features for linear in tail.linears)
    return float(round_up(torch.tensor(second_derivative_bound(tail.linears, tail.activations), dtype=BOUND_DTYPE),
                          8 * len(tail.linears) * (widest + 8)))


@torch.no_grad()
def sound_mlp_tail_rule(tail: MLPTail, x: torch.Tensor, kappa_next, *, jacobian_norm: str = "auto",
                        norms: Sequence[float] | None = None, m: float | None = None,
                        jacobian: torch.Tensor | None = None, **_options) -> torch.Tensor:
    """The MLP tail ``h_L = act_L(W_L ... act_1(W_1 x))``: the larger of two valid bounds.

    (1) *Product of norms* (every tail, the only one with a ReLU): the backward composition of the sound
    per-layer rules, ``kappa / ||W_l||_2`` for each Linear and the activation rules in between, i.e.
    ``kappa / prod_l (A_l ||W_l||_2)`` (Softplus subtracts its jump budget). Proof: each step is valid,
    hence so is their composition. Theorem 4.2 with ``ReLU'' := 1`` (the thesis's) is false (F5).

    (2) *Theorem 4.2 with Algorithm 4.1* for tails of twice-differentiable activations (Tanh, Sigmoid;
    Softplus where it is smooth). Proof: Taylor's theorem along the segment from ``x`` to ``x + r`` with
    ``||H_i||_2 <= M`` for every component Hessian (Algorithm 4.1's ``M`` is such a spectral bound,
    docs/findings.md F4) gives ``||h_L(x + r) - h_L(x)|| <= ||J(x)|| ||r|| + (M/2) sqrt(n) ||r||^2``, so an output
    change ``>= kappa`` needs ``||r|| >= 2 kappa / (sqrt(J^2 + 2 M sqrt(n) kappa) + J)`` (monotone in ``J``, ``M``:
    upper bounds on them give a lower bound). ``J`` is certified (``jacobian_spectral_norm``) and grown by
    the effect of float64 error in the activation derivatives; ``M`` is grown by the rounding of
    Algorithm 4.1. torch's Softplus is not smooth at its switch, so for a tail with Softplus the bound
    ``t`` of (2) is used only when no unit of any layer can reach the switch within ``||r|| < t``: layer
    ``l``'s pre-activation moves by at most ``||W_l[i]|| prod_{k<l} (A_k ||W_k||) t`` there, and if no unit
    crosses, the tail is smooth on the ball and (2)'s argument applies; otherwise (1) alone.

    ``norms`` (each Linear's ``||W||_2``, :func:`weight_constants`), ``m`` (the rounded-up ``M``,
    :func:`tail_second_derivative_bound`) and ``jacobian`` (``||J(x)||``, ``tail_jacobian_norm``)
    are computed here when not given.
    """
    jac = tail_jacobian_norm(tail, x, jacobian_norm) if jacobian is None else jacobian
    x64 = as_bound_tensor(x)
    kappa = kappa_like(kappa_next, x.shape[0], x.device)
    if norms is None:
        norms = weight_constants(tail, x)["norms"]
    lipschitz = [activation_lipschitz_constant(act) for act in tail.activations]
    zs, z_errors = _tail_forward_with_errors(tail, x64)

    # (1) backward composition of the per-layer sound rules
    product_bound = kappa
    for z, z_error, norm, activation in reversed(list(zip(zs, z_errors, norms, tail.activations))):
        product_bound = _activation_rule(activation)(activation, z, product_bound, z_error=z_error)
        product_bound = _divide_down(product_bound, norm)

    if not _smooth_tail(tail):
        return product_bound

    # (2) Theorem 4.2
    m_up = tail_second_derivative_bound(tail) if m is None else m
    # derivative error: |g'(z~) - g'(z)| <= B e_z plus a few ulps; its effect on J is at most
    # sum_l eps_l prod_{k != l} (A_k + eps_k) prod_k ||W_k||
    eps = [8 * _U + activation_derivative_bounds(act)[1] * z_error.amax(dim=1)
           for act, z_error in zip(tail.activations, z_errors)]
    weight_product = math.prod(norms)
    jac_slack = torch.zeros_like(kappa)
    for l_index in range(len(eps)):
        term = eps[l_index] * weight_product
        for k_index in range(len(eps)):
            if k_index != l_index:
                term = term * (lipschitz[k_index] + eps[k_index])
        jac_slack = jac_slack + term
    jac_up = round_up(jac + jac_slack, 4)
    taylor_bound = round_down(theorem_4_2(jac_up, kappa, m_up, tail.width), 16)

    softplus_layers = [i for i, act in enumerate(tail.activations) if isinstance(act, nn.Softplus)]
    if softplus_layers:
        smooth_on_ball = torch.ones_like(kappa, dtype=torch.bool)
        prefix = 1.0  # Lipschitz constant of h_{l-1} on the ball (all earlier units on one branch)
        for index, (linear, activation) in enumerate(zip(tail.linears, tail.activations)):
            if isinstance(activation, nn.Softplus):
                rows = round_up(torch.linalg.vector_norm(linear.weight.detach().to(BOUND_DTYPE), dim=1), 8)
                reach = round_up(taylor_bound[:, None] * prefix * rows[None, :], 4)  # [B, n_l]
                switch, _ = softplus_switch(activation)
                band = SOFTPLUS_SWITCH_TOLERANCE * (zs[index].abs() + abs(switch)) + z_errors[index]
                crossing = (zs[index] - switch).abs() <= reach + band
                smooth_on_ball &= ~crossing.any(dim=1)
            prefix = float(round_up(torch.tensor(prefix * lipschitz[index] * norms[index], dtype=BOUND_DTYPE), 4))
        taylor_bound = torch.where(smooth_on_ball, taylor_bound, torch.zeros_like(taylor_bound))
    return torch.maximum(product_bound, taylor_bound)


# ------------------------------------------------------------------------------------------------
# The registry
# ------------------------------------------------------------------------------------------------

#: The sound registry, same shape as ``BOUND_RULES``: layer type -> rule ``(layer, x_in, kappa_next,
#: **options) -> kappa``, each valid in the composing sense (module docstring).
SOUND_RULES: dict[type[nn.Module], Callable[..., torch.Tensor]] = {
    OutputClassifier: sound_output_rule,  # Lemma 3.5 (exact), rounded down
    MLPTail: sound_mlp_tail_rule,  # max(product of norms, Theorem 4.2 where smooth)
    nn.Conv2d: sound_conv_rule,  # certified Fourier bound on ||conv||_2
    nn.MaxPool2d: sound_pool_rule,
    nn.AvgPool2d: sound_pool_rule,
    nn.LPPool2d: sound_pool_rule,  # even p or p = inf only
    nn.BatchNorm2d: sound_batch_norm_rule,
    nn.LocalResponseNorm: sound_lrn_rule,
    nn.Flatten: sound_identity_rule,
    nn.Dropout: sound_identity_rule,
    nn.Identity: sound_identity_rule,
    Scale: sound_scale_rule,
    nn.ReLU: sound_relu_rule,
    nn.Tanh: sound_lipschitz_activation_rule,
    nn.Sigmoid: sound_lipschitz_activation_rule,
    nn.Softplus: sound_softplus_rule,
    nn.Linear: sound_dense_rule,
}


__all__ = [
    "ACTIVATION_SOUND_RULES",
    "LIPSCHITZ_ACTIVATIONS",
    "SOFTPLUS_SWITCH_TOLERANCE",
    "SOUND_RULES",
    "activation_lipschitz_constant",
    "batch_norm_lipschitz_constant",
    "softplus_crossing_units",
    "softplus_switch",
    "sound_batch_norm_rule",
    "sound_conv_rule",
    "sound_dense_rule",
    "sound_identity_rule",
    "sound_lipschitz_activation_rule",
    "sound_lrn_rule",
    "sound_mlp_tail_rule",
    "sound_output_rule",
    "sound_pool_rule",
    "sound_relu_rule",
    "sound_scale_rule",
    "sound_softplus_rule",
    "tail_second_derivative_bound",
    "weight_constants",
]
