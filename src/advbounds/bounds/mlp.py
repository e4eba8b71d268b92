"""Multi-layer perceptrons (Chapter 4): Table 4.1, Algorithm 4.1 and Theorem 4.2.

Theorem 4.2. Let ``h_L : R^d -> R^n`` be the last hidden layer of an MLP whose output layer is the
linear (softmax) classifier ``f``. Then for every ``x``

    Delta_adv(x; f) >= ( sqrt(||J(x)||^2 + 2 M sqrt(n) delta(h_L(x); f)) - ||J(x)|| ) / (M sqrt(n)),

with ``J`` the Jacobian of ``h_L`` at ``x`` (spectral norm), ``delta`` of eq. (3.12) and ``M`` a bound
on the second derivatives of ``h_L`` (Algorithm 4.1).

Why it holds, and what ``M`` must bound. The proof writes ``h_L(x + r) = h_L(x) + J r + eps`` and
uses ``||eps|| <= (M/2) sqrt(n) ||r||^2`` (Theorem A.1). Theorem A.1 as printed assumes only that
every *entry* ``|d^2 h_i / dx_j dx_k|`` is at most ``M``; that is not enough (the Lagrange remainder
of component i is ``r^T H_i(xi) r / 2``, which for an entrywise bound can reach ``(M/2) ||r||_1^2 =
(M/2) d ||r||^2``; see docs/findings.md and the test that breaks it). The *spectral* norm
``||H_i(xi)||_2 <= M`` is what the proof needs. The ``M`` of Algorithm 4.1 is such a spectral bound:
by induction with ``||grad h_l^{(j)}||_2 <= N_l`` and ``||H_l^{(j)}||_2 <= M_l``,
``H_{l}^{(j)} = g'' u u^T + g' sum_k v_jk H_{l-1}^{(k)}`` with ``||u||_2 <= sum_k |v_jk| N_{l-1}``
gives ``||H_l^{(j)}||_2 <= B_l s^2 N_{l-1}^2 + A_l s M_{l-1}`` -- exactly Algorithm 4.1's update.
So Theorem 4.2 is valid with Algorithm 4.1's ``M`` for twice-differentiable activations.

ReLU is not twice differentiable; Section 4.3.1's practical choice ``ReLU'' <= 1`` (used by the thesis
and here by default) makes ``M > 0`` but does not make the theorem true: near a kink the remainder is
first-order in ``||r||``. ``tests/test_bounds_mlp.py`` builds a counterexample (docs/findings.md).
The formula is kept as the thesis states it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._common import BOUND_DTYPE, UnsupportedLayerError, as_bound_tensor, kappa_like
from .linear import OutputClassifier, output_rule
from .spectral import jacobian_spectral_norm, tail_forward

# ------------------------------------------------------------------------------------------------
# Table 4.1
# ------------------------------------------------------------------------------------------------

_SQRT3 = math.sqrt(3.0)
_TANH_ARGMAX = 0.5 * math.log(2.0 + _SQRT3)  # where |tanh''| is maximal: tanh(a)^2 = 1/3

#: Table 4.1's tanh second-order entry *as printed*: sinh(a) / cosh(a)^3 = 2 / (3 sqrt 3) ~ 0.385.
#: It is half of sup |tanh''| (tanh'' = -2 sinh / cosh^3), so it is NOT a bound -- see
#: ``ACTIVATION_DERIVATIVE_BOUNDS`` and docs/findings.md.
TABLE_4_1_PRINTED_TANH_SECOND = math.sinh(_TANH_ARGMAX) / math.cosh(_TANH_ARGMAX) ** 3

#: Section 4.3.1, option 3: the bound on ReLU'' used in the thesis's experiments (Table 4.1 says 0).
RELU_SECOND_DERIVATIVE_PRACTICAL = 1.0

#: Table 4.1: (A, B) with ``|g'| <= A`` and ``|g''| <= B`` for every real input.
#:
#: * ``sigmoid``: (1/4, (5 - 3 sqrt 3) / (30 sqrt 3 - 54) = 1 / (6 sqrt 3))   -- as printed.
#: * ``tanh``: (1, 2 sinh(a) / cosh(a)^3 = 4 / (3 sqrt 3)), ``a = ln(2 + sqrt 3) / 2``. RE-DERIVED:
#:   the table prints ``sinh(a)/cosh(a)^3``, which evaluates to half of ``max |tanh''|`` (the argmax
#:   ``a`` is right, the factor 2 of ``tanh'' = -2 sinh/cosh^3`` is missing). The table's defining
#:   property is ``|g''| <= B``; the printed value violates it, so the true supremum is used
#:   (it is also the value in shared/reference/paper_values.yaml). The printed value is kept as
#:   ``TABLE_4_1_PRINTED_TANH_SECOND``.
#: * ``softplus``: (1, 1/4)   -- as printed (for torch's ``beta``: (1, beta/4)).
#: * ``relu``: (1, 0)   -- as printed; Algorithm 4.1 uses ``relu_second_derivative`` instead
#:   (default ``RELU_SECOND_DERIVATIVE_PRACTICAL = 1``, Section 4.3.1).
ACTIVATION_DERIVATIVE_BOUNDS: dict[str, tuple[float, float]] = {
    "sigmoid": (0.25, (5.0 - 3.0 * _SQRT3) / (30.0 * _SQRT3 - 54.0)),
    "tanh": (1.0, 2.0 * math.sinh(_TANH_ARGMAX) / math.cosh(_TANH_ARGMAX) ** 3),
    "softplus": (1.0, 0.25),
    "relu": (1.0, 0.0),
}

_ACTIVATION_TYPES: dict[type[nn.Module], str] = {
    nn.Sigmoid: "sigmoid",
    nn.Tanh: "tanh",
    nn.Softplus: "softplus",
    nn.ReLU: "relu",
}

#: module types that count as the activation of a hidden MLP layer
ACTIVATION_MODULES = tuple(_ACTIVATION_TYPES)

#: layers that are the identity in evaluation mode (they may sit anywhere, also inside a tail)
IDENTITY_AT_EVAL = (nn.Dropout, nn.Identity)


def activation_name(activation: nn.Module | str) -> str:
    """Table 4.1 name of an activation module (or a name, validated)."""
    if isinstance(activation, str):
        if activation not in ACTIVATION_DERIVATIVE_BOUNDS:
            raise UnsupportedLayerError(
                f"activation {activation!r} is not in Table 4.1; supported: {', '.join(ACTIVATION_DERIVATIVE_BOUNDS)}")
        return activation
    for cls, name in _ACTIVATION_TYPES.items():
        if isinstance(activation, cls):
            return name
    raise UnsupportedLayerError(
        f"activation {type(activation).__name__} has no derivative bounds in Table 4.1; "
        f"supported: {', '.join(cls.__name__ for cls in _ACTIVATION_TYPES)}")


def activation_derivative_bounds(
    activation: nn.Module | str, relu_second_derivative: float = RELU_SECOND_DERIVATIVE_PRACTICAL
) -> tuple[float, float]:
    """(A, B) of Table 4.1 for one activation, with ReLU'' replaced by ``relu_second_derivative``
    (Section 4.3.1) and torch's ``Softplus(beta)`` scaled: ``softplus_beta'' <= beta / 4``."""
    name = activation_name(activation)
    first, second = ACTIVATION_DERIVATIVE_BOUNDS[name]
    if name == "relu":
        second = float(relu_second_derivative)
    if name == "softplus" and isinstance(activation, nn.Softplus):
        second = second * float(activation.beta)
    return first, second


# ------------------------------------------------------------------------------------------------
# Algorithm 4.1
# ------------------------------------------------------------------------------------------------


def second_derivative_bound(linears, activations,
                            relu_second_derivative: float = RELU_SECOND_DERIVATIVE_PRACTICAL) -> float:
    """Algorithm 4.1: ``M`` with ``|d^2 h_L^{(i)} / dx_j dx_k| <= M`` for all ``x, i, j, k``.

    ``M_0 = 0, N_0 = 1``; for each hidden layer ``i``: ``s = max_j sum_k |v_ijk|`` (largest absolute
    row sum of ``W_i``), ``M_i = B_i N_{i-1}^2 s^2 + A_i M_{i-1} s``, ``N_i = A_i N_{i-1} s``;
    return ``M_L``. It bounds the spectral norm of every component Hessian too (module docstring),
    which is what Theorem 4.2 needs. ``activations`` are modules or Table 4.1 names.
    """
    linears, activations = list(linears), list(activations)
    if len(linears) != len(activations):
        raise ValueError(f"need one activation per hidden Linear layer, got {len(linears)} and {len(activations)}")
    m_prev, n_prev = 0.0, 1.0
    for linear, activation in zip(linears, activations):
        weight = linear.weight if isinstance(linear, nn.Linear) else torch.as_tensor(linear)
        a_i, b_i = activation_derivative_bounds(activation, relu_second_derivative)
        s = float(weight.detach().to(BOUND_DTYPE).abs().sum(dim=1).max())
        m_prev, n_prev = b_i * n_prev**2 * s**2 + a_i * m_prev * s, a_i * n_prev * s
    return m_prev


# ------------------------------------------------------------------------------------------------
# Theorem 4.2
# ------------------------------------------------------------------------------------------------


def theorem_4_2(jacobian_norm: torch.Tensor, delta: torch.Tensor, m: float, n: int) -> torch.Tensor:
    """``(sqrt(J^2 + 2 M sqrt(n) delta) - J) / (M sqrt(n))``, evaluated as the algebraically identical
    ``2 delta / (sqrt(J^2 + 2 M sqrt(n) delta) + J)`` (multiply by the conjugate). That form has no
    cancellation when ``J^2 >> M sqrt(n) delta`` and gives the ``M -> 0`` limit ``delta / J``
    (the linear case) instead of 0/0; ``delta = inf`` gives ``inf``."""
    j = as_bound_tensor(jacobian_norm)
    dl = as_bound_tensor(delta)
    c = float(m) * math.sqrt(float(n))
    root = torch.sqrt(j * j + 2.0 * c * dl)
    kappa = 2.0 * dl / (root + j)
    return torch.where(torch.isinf(dl), dl, kappa)


class MLPTail(nn.Module):
    """The trailing hidden layers ``Linear, act, ..., Linear, act`` before the output classifier,
    as one unit for the rule registry (Theorem 4.2 needs them together). Dropout layers inside the
    tail are the identity in evaluation mode and are left out of ``linears``/``activations``."""

    def __init__(self, linears, activations, labels=()) -> None:
        super().__init__()
        self.linears = list(linears)
        self.activations = list(activations)
        self.labels = tuple(labels)
        if not self.linears or len(self.linears) != len(self.activations):
            raise ValueError("an MLP tail needs one activation per Linear layer and at least one layer")

    @property
    def width(self) -> int:
        """``n``, the width of ``h_L``."""
        return self.linears[-1].out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - convenience only
        return tail_forward(self.linears, self.activations, x)[0]


def tail_jacobian_norm(tail: MLPTail, x: torch.Tensor, method: str = "auto") -> torch.Tensor:
    """``||J(x)||`` of the tail at its input ``x[B, d]``: exact or a certified over-estimate
    (``advbounds.bounds.spectral``). Theorem 4.2's input in both bound modes, and what
    ``BoundResult.jacobian_norm`` reports."""
    if x.dim() != 2:
        raise UnsupportedLayerError(
            f"MLP tail {'/'.join(tail.labels) or ''} needs a flat [B, d] input (add nn.Flatten), got {tuple(x.shape)}")
    return jacobian_spectral_norm(tail.linears, tail.activations, x, method=method)


def mlp_tail_rule(tail: MLPTail, x: torch.Tensor, kappa_next, *,
                  relu_second_derivative: float = RELU_SECOND_DERIVATIVE_PRACTICAL, jacobian_norm: str = "auto",
                  m: float | None = None, jacobian: torch.Tensor | None = None, **_options) -> torch.Tensor:
    """Theorem 4.2 for the tail: ``kappa_next`` is ``delta(h_L(x); f)`` (the output layer's kappa),
    ``x`` the tail's input ``[B, d]``; returns the kappa at the tail's input.

    ``m``: ``M`` of Algorithm 4.1 (``model_bounds`` computes it once, when it plans the model;
    computed here when not given); ``jacobian``: ``||J(x)||``
    (:func:`tail_jacobian_norm` with ``jacobian_norm``, computed here when not given); ``n`` is the
    width of ``h_L``. Note the thesis's proof display drops the biases from ``delta``
    (``|(w_c - w_c') . h_L(x)|``); the theorem is stated with ``delta`` of eq. 3.12, which includes
    them, and that is used.
    """
    j = tail_jacobian_norm(tail, x, jacobian_norm) if jacobian is None else jacobian
    if m is None:
        m = second_derivative_bound(tail.linears, tail.activations, relu_second_derivative)
    delta = kappa_like(kappa_next, x.shape[0], x.device)
    return theorem_4_2(j, delta, m, tail.width)


# ------------------------------------------------------------------------------------------------
# Whole MLPs
# ------------------------------------------------------------------------------------------------


def split_mlp(model: nn.Sequential) -> tuple[list[nn.Linear], list[nn.Module], nn.Linear]:
    """``Sequential(Linear, act, ..., Linear, act, Linear)`` -> (hidden linears, activations, output).
    Dropout/Identity layers are skipped. Raises ``UnsupportedLayerError`` for anything else."""
    layers = [(name, layer) for name, layer in model.named_children() if not isinstance(layer, IDENTITY_AT_EVAL)]
    if not layers or not isinstance(layers[-1][1], nn.Linear):
        raise UnsupportedLayerError("an MLP must end in an nn.Linear output layer")
    linears, activations = [], []
    body = layers[:-1]
    if len(body) % 2:
        raise UnsupportedLayerError(f"an MLP alternates Linear and activation layers; got {[n for n, _ in layers]}")
    for (lname, lin), (aname, act) in zip(body[0::2], body[1::2]):
        if not isinstance(lin, nn.Linear):
            raise UnsupportedLayerError(f"layer {lname!r} ({type(lin).__name__}) should be nn.Linear in an MLP")
        activation_name(act)  # raises for unsupported activations, naming the type
        if not isinstance(act, ACTIVATION_MODULES):  # pragma: no cover - activation_name already raised
            raise UnsupportedLayerError(f"layer {aname!r} is not an activation")
        linears.append(lin)
        activations.append(act)
    return linears, activations, layers[-1][1]


@torch.no_grad()
def mlp_bound(model: nn.Sequential, x: torch.Tensor, relu_second_derivative: float = RELU_SECOND_DERIVATIVE_PRACTICAL,
              *, jacobian_norm: str = "auto") -> torch.Tensor:
    """Theorem 4.2 for an MLP ``Sequential(Linear, act, ..., Linear, act, Linear)``: ``[B]`` in
    ``x``'s dtype. With no hidden layer it is ``delta`` of the linear classifier (Lemma 3.5)."""
    linears, activations, output = split_mlp(model)
    x2 = x.reshape(x.shape[0], -1)
    if not linears:
        kappa = output_rule(OutputClassifier(output), x2)
    else:
        h, _ = tail_forward(linears, activations, x2)
        delta = output_rule(OutputClassifier(output), h)
        kappa = mlp_tail_rule(MLPTail(linears, activations), x2, delta,
                              relu_second_derivative=relu_second_derivative, jacobian_norm=jacobian_norm)
    return kappa.to(x.dtype) if x.is_floating_point() else kappa
