"""Activation functions: Figure 2.1 and Table 4.1 (bounds on |g'| and |g''|, Section 4.3.1).

:func:`numeric_derivative_bounds` finds ``sup |g'|`` and ``sup |g''|`` numerically: autograd
derivatives on a dense grid, then a bounded scalar optimisation (scipy) around the best grid point.
:func:`table_4_1` sets them beside the thesis's closed forms (:data:`THESIS_CLOSED_FORMS`, the formulas
of Table 4.1 as printed), the suprema derived by hand (:data:`ANALYTIC_BOUNDS`) and the values the
bounds engine uses (``advbounds.bounds.ACTIVATION_DERIVATIVE_BOUNDS``, with ReLU'' =
``relu_second_derivative``). The printed tanh entry is half the true supremum (docs/findings.md, F3).

For softplus, ``|g'| = sigmoid < 1`` approaches its supremum 1 only as x -> infinity; the numeric
value is the grid's largest and falls short of 1 by ``sigmoid(-high)``. ReLU is not differentiable
at 0; autograd uses ReLU'(0) = 0 and ReLU'' = 0 everywhere, as in practice (Section 4.2).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F

#: activation name -> elementwise torch function (names as in ACTIVATION_DERIVATIVE_BOUNDS)
FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "softplus": F.softplus,
    "relu": torch.relu,
}

#: display names as in Table 4.1
DISPLAY = {"sigmoid": "sigm", "tanh": "tanh", "softplus": "softplus", "relu": "ReLU"}

_A = 0.5 * math.log(2.0 + math.sqrt(3.0))  # where |tanh''| peaks: tanh(a)^2 = 1/3
#: Table 4.1's closed forms exactly as printed, (first-order, second-order)
THESIS_CLOSED_FORMS: dict[str, tuple[float, float]] = {
    "sigmoid": (1.0 / 4.0, (5.0 - 3.0 * math.sqrt(3.0)) / (30.0 * math.sqrt(3.0) - 54.0)),
    "tanh": (1.0, math.sinh(_A) / math.cosh(_A) ** 3),
    "softplus": (1.0, 1.0 / 4.0),
    "relu": (1.0, 0.0),
}
#: the suprema derived by hand: sigm'' = s(1-s)(1-2s) peaks at 1/(6 sqrt 3); tanh'' = -2 sinh/cosh^3
#: peaks at 2 sinh(a)/cosh(a)^3 = 4/(3 sqrt 3) (the printed tanh entry lacks the factor 2);
#: softplus'' = sigm' peaks at 1/4; ReLU'' = 0 away from the kink
ANALYTIC_BOUNDS: dict[str, tuple[float, float]] = {
    "sigmoid": (1.0 / 4.0, 1.0 / (6.0 * math.sqrt(3.0))),
    "tanh": (1.0, 4.0 / (3.0 * math.sqrt(3.0))),
    "softplus": (1.0, 1.0 / 4.0),
    "relu": (1.0, 0.0),
}

TABLE_4_1_COLUMNS = (
    "Activation", "First-order (numeric)", "First-order (thesis)", "First-order (used)",
    "Second-order (numeric)", "Second-order (thesis)", "Second-order (analytic)", "Second-order (used)",
    "argmax |g''|", "Thesis - numeric", "Used - numeric",
)


def derivatives(name: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``g(x), g'(x), g''(x)`` by autograd (float64), elementwise."""
    fn = FUNCTIONS[name]
    x = x.detach().to(torch.float64).requires_grad_(True)
    with torch.enable_grad():
        y = fn(x)
        (d1,) = torch.autograd.grad(y.sum(), x, create_graph=True)
        if d1.requires_grad:
            (d2,) = torch.autograd.grad(d1.sum(), x, allow_unused=True)
            d2 = torch.zeros_like(x) if d2 is None else d2
        else:  # piecewise linear (ReLU): the first derivative is constant on each piece
            d2 = torch.zeros_like(x)
    return y.detach(), d1.detach(), d2.detach()


def _refine(name: str, order: int, center: float, step: float) -> tuple[float, float]:
    """Maximise ``|g^(order)|`` on ``[center - step, center + step]`` (bounded Brent)."""
    from scipy.optimize import minimize_scalar

    def negative(value: float) -> float:
        d = derivatives(name, torch.tensor([value]))[order]
        return -abs(float(d[0]))

    result = minimize_scalar(negative, bounds=(center - step, center + step), method="bounded",
                             options={"xatol": 1e-12})
    return -float(result.fun), float(result.x)


def numeric_derivative_bounds(name: str, low: float, high: float, points: int) -> dict[str, float]:
    """``sup |g'|`` and ``sup |g''|`` on ``[low, high]``, with the points where they are attained."""
    grid = torch.linspace(float(low), float(high), int(points), dtype=torch.float64)
    step = float(grid[1] - grid[0])
    _, d1, d2 = derivatives(name, grid)
    out: dict[str, float] = {}
    for order, values, key in ((1, d1, "first"), (2, d2, "second")):
        index = int(values.abs().argmax())
        best, at = float(values.abs()[index]), float(grid[index])
        if best > 0:
            refined, refined_at = _refine(name, order, at, step)
            if refined >= best:
                best, at = refined, refined_at
        out[key], out[f"{key}_at"] = best, at
    return out


def table_4_1(settings: Mapping[str, Any], used: Mapping[str, Sequence[float]],
              relu_second_derivative: float) -> pd.DataFrame:
    """Table 4.1, one row per activation of ``settings['names']``.

    ``used`` is ``ACTIVATION_DERIVATIVE_BOUNDS`` (name -> (A_i, B_i)); the ReLU row's "used"
    second-order value is ``relu_second_derivative`` (Section 4.3.1, option 3). "Thesis - numeric"
    and "Used - numeric" are the largest signed differences over both orders with the larger
    magnitude: a negative "Used - numeric" means the bounds engine under-estimates a derivative bound
    (Algorithm 4.1 then under-estimates M and the bound of Theorem 4.2 may fail).
    """
    grid = settings["grid"]
    rows = []
    for name in settings["names"]:
        numeric = numeric_derivative_bounds(name, grid["low"], grid["high"], grid["points"])
        thesis = THESIS_CLOSED_FORMS[name]
        a_used, b_used = (float(v) for v in used[name])
        if name == "relu":
            b_used = float(relu_second_derivative)
        numeric_pair = (numeric["first"], numeric["second"])
        rows.append({
            "Activation": DISPLAY[name],
            "First-order (numeric)": numeric["first"],
            "First-order (thesis)": thesis[0],
            "First-order (used)": a_used,
            "Second-order (numeric)": numeric["second"],
            "Second-order (thesis)": thesis[1],
            "Second-order (analytic)": ANALYTIC_BOUNDS[name][1],
            "Second-order (used)": b_used,
            "argmax |g''|": numeric["second_at"] if numeric["second"] > 0 else math.nan,
            "Thesis - numeric": _largest_difference(thesis, numeric_pair),
            "Used - numeric": _largest_difference((a_used, b_used), numeric_pair),
        })
    return pd.DataFrame(rows, columns=list(TABLE_4_1_COLUMNS))


def _largest_difference(values: Sequence[float], reference: Sequence[float]) -> float:
    differences = [float(v) - float(r) for v, r in zip(values, reference)]
    return max(differences, key=abs)


def activation_curves(names: Sequence[str], low: float, high: float, points: int) -> pd.DataFrame:
    """Long frame ``activation, x, order, value`` (order 0, 1, 2) for Figure 2.1."""
    x = torch.linspace(float(low), float(high), int(points), dtype=torch.float64)
    parts = []
    for name in names:
        for order, values in enumerate(derivatives(name, x)):
            parts.append(pd.DataFrame({"activation": DISPLAY[name], "x": x.numpy(), "order": order,
                                       "value": values.numpy()}))
    return pd.concat(parts, ignore_index=True)


def mismatches(table: pd.DataFrame, column: str, atol: float) -> list[str]:
    """Activations whose ``column`` ("Thesis - numeric" / "Used - numeric") exceeds ``atol`` in size."""
    return [str(row["Activation"]) for _, row in table.iterrows() if not abs(row[column]) <= atol]


__all__ = [
    "ANALYTIC_BOUNDS",
    "FUNCTIONS",
    "THESIS_CLOSED_FORMS",
    "activation_curves",
    "mismatches",
    "derivatives",
    "numeric_derivative_bounds",
    "table_4_1",
]
