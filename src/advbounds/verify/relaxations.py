"""Sound elementwise linear relaxations of scalar activations on an interval ``[l, u]``.

Every function returns ``(a_low, b_low, a_up, b_up)`` (tensors shaped like ``l``) such that

    a_low * x + b_low  <=  f(x)  <=  a_up * x + b_up      for every x in [l, u].

They are the only place where the verifier meets a nonlinearity, so each carries its proof.
The proofs are for exact arithmetic; the floating-point rounding of the returned lines is of the
order of the dtype's unit roundoff times the values involved and is absorbed by the rounding slack
of :mod:`advbounds.verify.crown` (see ``docs/certify.md``).

Degenerate intervals (``u - l`` below ``sqrt(eps_dtype) * (1 + |l| + |u|)``, where a chord's slope
would be mostly rounding error) get the *constant* bounds ``f(l) <= f(x) <= f(u)``, valid for
every non-decreasing ``f`` (all activations here are non-decreasing).
"""

from __future__ import annotations

import math

import torch

#: bisection steps for the tangent point of the S-shaped upper bound (halves [0, u] each time)
TANGENT_BISECTION_STEPS = 60


def _narrow(l: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    tiny = math.sqrt(torch.finfo(l.dtype).eps)
    return (u - l) <= tiny * (1 + l.abs() + u.abs())


def _chord(f, l, u):
    """Slope and intercept of the line through ``(l, f(l))`` and ``(u, f(u))`` (safe for u == l)."""
    fl, fu = f(l), f(u)
    width = (u - l)
    safe = torch.where(width > 0, width, torch.ones_like(width))
    slope = torch.where(width > 0, (fu - fl) / safe, torch.zeros_like(width))
    return slope, fl - slope * l


def _tangent(f, df, d):
    s = df(d)
    return s, f(d) - s * d


def relu_relaxation(l: torch.Tensor, u: torch.Tensor):
    """CROWN's ReLU relaxation (Zhang et al. 2018).

    * ``l >= 0``: ``relu(x) = x`` on ``[l, u]``: both lines are the identity (exact).
    * ``u <= 0``: ``relu(x) = 0``: both lines are 0 (exact).
    * ``l < 0 < u``: upper = the chord ``u (x - l) / (u - l)``. relu is convex, so on ``[l, u]`` it
      lies below its chord between the endpoints (which are on the graph: chord(l) = 0 = relu(l),
      chord(u) = u = relu(u)). Lower = ``alpha x`` with ``alpha = 1`` if ``u >= -l`` else 0: for any
      ``alpha in [0, 1]``, ``alpha x <= max(0, x)`` for all real x (if x >= 0, alpha x <= x; if
      x < 0, alpha x <= 0). The choice of alpha minimises the area between line and function.
    """
    zero, one = torch.zeros_like(l), torch.ones_like(l)
    active = l >= 0
    unstable = (l < 0) & (u > 0)
    denom = torch.where(unstable, u - l, one)
    a_up = torch.where(active, one, torch.where(unstable, u / denom, zero))
    b_up = torch.where(unstable, -l * u / denom, zero)
    a_low = torch.where(active, one, torch.where(unstable & (u >= -l), one, zero))
    return a_low, zero, a_up, b_up


def _s_shaped_upper(f, df, l, u):
    """Upper line of an increasing f that is convex on (-inf, 0] and concave on [0, inf).

    * ``u <= 0`` (f convex on [l, u]): the chord through the endpoints lies above a convex function.
    * ``l >= 0`` (f concave on [l, u]): the tangent at the midpoint lies above a concave function
      everywhere on its domain of concavity.
    * ``l < 0 < u``: let ``g(d) = f(d) + f'(d) (l - d) - f(l)``, the height above ``(l, f(l))`` of
      the tangent at d, evaluated at l.

      (a) If ``g(u) <= 0`` take the chord ``C`` through the endpoints (slope k). ``g(u) <= 0`` reads
      ``f'(u) >= k``. Let ``h = C - f``; ``h(l) = h(u) = 0``. On [0, u], f' is non-increasing
      (concavity), so ``h' = k - f' <= k - f'(u) <= 0``: h decreases to h(u) = 0, hence ``h >= 0``.
      On [l, 0], f is convex so h is concave, and ``h(l) = 0``, ``h(0) >= 0`` (just shown): a concave
      function lies above the chord between its endpoint values, so ``h >= 0``.

      (b) Otherwise ``g(u) > 0``; also ``g(0) <= 0`` because the tangent at 0 of f, convex on [l, 0],
      lies below f at l. Bisection on [0, u] keeps an upper end ``d`` with ``g(d) >= 0`` and takes the
      tangent ``T`` at d. On [0, u] (and beyond), T >= f since f is concave on [0, inf) and
      ``d >= 0``. In particular ``T(0) >= f(0)``; and ``T(l) >= f(l)`` is ``g(d) >= 0``. On [l, 0]
      f is convex, so it lies below its chord between ``(l, f(l))`` and ``(0, f(0))``, and that
      chord lies below the line T, which is above it at both ends. Hence ``T >= f`` on [l, u].
    """
    slope_c, icpt_c = _chord(f, l, u)
    m = 0.5 * (l + u)
    slope_t, icpt_t = _tangent(f, df, m)
    mixed = (l < 0) & (u > 0)

    def g(d):
        return f(d) + df(d) * (l - d) - f(l)

    use_chord_mixed = g(u) <= 0
    lo_d = torch.zeros_like(u)
    hi_d = torch.where(mixed, u, torch.zeros_like(u))
    for _ in range(TANGENT_BISECTION_STEPS):
        mid = 0.5 * (lo_d + hi_d)
        ok = g(mid) >= 0
        hi_d = torch.where(ok, mid, hi_d)
        lo_d = torch.where(ok, lo_d, mid)
    slope_m, icpt_m = _tangent(f, df, hi_d)

    slope = torch.where(u <= 0, slope_c, torch.where(l >= 0, slope_t, torch.where(use_chord_mixed, slope_c, slope_m)))
    icpt = torch.where(u <= 0, icpt_c, torch.where(l >= 0, icpt_t, torch.where(use_chord_mixed, icpt_c, icpt_m)))
    return slope, icpt


def s_shaped_relaxation(f, df, f0: float, l: torch.Tensor, u: torch.Tensor):
    """Relaxation of an increasing f, convex on (-inf, 0], concave on [0, inf), point-symmetric
    about ``(0, f0)``: ``f(-x) = 2 f0 - f(x)`` (tanh with f0 = 0, the logistic sigmoid with f0 = 1/2).

    Upper line: :func:`_s_shaped_upper` (proof there). Lower line by symmetry: if ``a y + b >= f(y)``
    for y in ``[-u, -l]``, then for x in [l, u], ``f(x) = 2 f0 - f(-x) >= 2 f0 - (a (-x) + b) =
    a x + (2 f0 - b)``.
    """
    a_up, b_up = _s_shaped_upper(f, df, l, u)
    a_r, b_r = _s_shaped_upper(f, df, -u, -l)
    a_low, b_low = a_r, 2 * f0 - b_r
    return _with_narrow_fallback(f, l, u, a_low, b_low, a_up, b_up)


def _with_narrow_fallback(f, l, u, a_low, b_low, a_up, b_up):
    narrow = _narrow(l, u)
    zero = torch.zeros_like(l)
    return (
        torch.where(narrow, zero, a_low),
        torch.where(narrow, f(l), b_low),
        torch.where(narrow, zero, a_up),
        torch.where(narrow, f(u), b_up),
    )


def tanh_relaxation(l: torch.Tensor, u: torch.Tensor):
    """tanh: increasing, ``tanh'' = -2 tanh (1 - tanh^2)`` is >= 0 on x <= 0 and <= 0 on x >= 0
    (convex then concave), and odd (f0 = 0). See :func:`s_shaped_relaxation`."""
    return s_shaped_relaxation(torch.tanh, lambda x: 1 - torch.tanh(x) ** 2, 0.0, l, u)


def sigmoid_relaxation(l: torch.Tensor, u: torch.Tensor):
    """Logistic sigmoid: increasing, ``s'' = s (1 - s) (1 - 2 s)`` is >= 0 for x <= 0 (s <= 1/2)
    and <= 0 for x >= 0, and ``s(-x) = 1 - s(x)`` (f0 = 1/2). See :func:`s_shaped_relaxation`."""

    def ds(x):
        s = torch.sigmoid(x)
        return s * (1 - s)

    return s_shaped_relaxation(torch.sigmoid, ds, 0.5, l, u)


def softplus_relaxation(l: torch.Tensor, u: torch.Tensor, beta: float = 1.0, threshold: float = 20.0):
    """torch's ``Softplus(beta, threshold)``: ``sp(x) = log(1 + exp(beta x)) / beta`` if
    ``beta x <= threshold``, else ``x``.

    The true softplus ``sp*`` is convex (``sp*'' = beta s (1 - s) >= 0`` with s = sigmoid(beta x))
    and increasing. Upper: the chord of sp* through the endpoints lies above sp* (convexity).
    Lower: the tangent of sp* at the midpoint lies below sp* (convexity).
    torch's thresholded version satisfies ``sp* - gap <= sp <= sp*`` with
    ``gap = log1p(exp(-threshold)) / beta`` (for beta x > threshold it returns x, and
    ``sp*(x) - x = log1p(exp(-beta x)) / beta < gap``). The chord is built from torch's endpoint
    values, which are at most ``gap`` below sp*'s, so ``chord_torch + gap >= chord* >= sp* >= sp``;
    the tangent is built from sp* and shifted down by ``gap``: ``tangent* - gap <= sp* - gap <= sp``.
    Both shifts are applied, so the lines bound torch's function exactly as computed.
    """
    gap = math.log1p(math.exp(-threshold)) / beta

    def f(x):
        return torch.nn.functional.softplus(x, beta=beta, threshold=threshold)

    def f_true(x):
        return torch.logaddexp(torch.zeros_like(x), beta * x) / beta

    a_up, b_up = _chord(f, l, u)
    b_up = b_up + gap
    m = 0.5 * (l + u)
    a_low = torch.sigmoid(beta * m)
    b_low = f_true(m) - a_low * m - gap
    return _with_narrow_fallback(f, l, u, a_low, b_low, a_up, b_up)
