"""Chapter 4: Table 4.1, Algorithm 4.1, Theorem 4.2 and the Jacobian spectral norm."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar
from torch import nn

from advbounds.bounds import (
    ACTIVATION_DERIVATIVE_BOUNDS,
    TABLE_4_1_PRINTED_TANH_SECOND,
    UnsupportedLayerError,
    jacobian_spectral_norm,
    linear_output_bound,
    mlp_bound,
    model_bounds,
    second_derivative_bound,
    theorem_4_2,
)
from advbounds.bounds.spectral import exact_jacobian_norm_reference

PAPER_VALUES = Path("/work/shared/reference/paper_values.yaml")
ACTS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "softplus": nn.Softplus, "relu": nn.ReLU}
SQRT3 = math.sqrt(3)




def make_mlp(in_dim, hidden, n_classes, activation, generator, low=-1.0, high=1.0, dtype=torch.float64):
    layers = []
    prev = in_dim
    acts = activation if isinstance(activation, (list, tuple)) else [activation] * len(hidden)
    for width, act in zip(hidden, acts):
        layers += [nn.Linear(prev, width), ACTS[act]()]
        prev = width
    layers.append(nn.Linear(prev, n_classes))
    model = nn.Sequential(*layers).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(low, high, generator=generator)
    return model.eval()


# ------------------------------------------------------------------------------------------------
# Table 4.1
# ------------------------------------------------------------------------------------------------


def _numeric_sup(fn, lo=-30.0, hi=30.0):
    """sup |fn| on [lo, hi]: dense grid, then a bounded scalar refinement around the best point."""
    grid = torch.linspace(lo, hi, 600_001, dtype=torch.float64)
    values = fn(grid).abs()
    i = int(values.argmax())
    a, b = float(grid[max(i - 1, 0)]), float(grid[min(i + 1, len(grid) - 1)])
    res = minimize_scalar(lambda t: -float(fn(torch.tensor([t], dtype=torch.float64)).abs()), bounds=(a, b),
                          method="bounded", options={"xatol": 1e-12})
    return max(float(values.max()), -res.fun)


def _derivatives(name):
    act = ACTS[name]()

    def first(z):
        z = z.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(act(z).sum(), z)
        return g

    def second(z):
        z = z.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(act(z).sum(), z, create_graph=True)
        (h,) = torch.autograd.grad(g.sum(), z, allow_unused=True)
        return torch.zeros_like(z) if h is None else h

    return first, second


def test_table_4_1_closed_forms_and_reference_values():
    values = yaml.safe_load(PAPER_VALUES.read_text())["table_4_1"] if PAPER_VALUES.exists() else None
    assert ACTIVATION_DERIVATIVE_BOUNDS["sigmoid"] == pytest.approx((0.25, 1 / (6 * SQRT3)), rel=1e-12)
    assert ACTIVATION_DERIVATIVE_BOUNDS["tanh"] == pytest.approx((1.0, 4 / (3 * SQRT3)), rel=1e-12)
    assert ACTIVATION_DERIVATIVE_BOUNDS["softplus"] == (1.0, 0.25)
    assert ACTIVATION_DERIVATIVE_BOUNDS["relu"] == (1.0, 0.0)
    if values is not None:
        for name, (first, second) in ACTIVATION_DERIVATIVE_BOUNDS.items():
            assert first == pytest.approx(values[name]["first"], rel=1e-9)
            assert second == pytest.approx(values[name]["second"], rel=1e-9)


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "softplus", "relu"])
def test_table_4_1_against_numerical_maxima(name):
    first, second = _derivatives(name)
    a_num, b_num = _numeric_sup(first), _numeric_sup(second)
    a_tab, b_tab = ACTIVATION_DERIVATIVE_BOUNDS[name]
    if name == "softplus":  # sup g' = 1 is approached, not attained
        assert a_num <= a_tab and a_num > 1 - 1e-9
    else:
        assert a_num == pytest.approx(a_tab, rel=1e-9)
    if name == "relu":  # ReLU'' = 0 almost everywhere (Table 4.1); 4.3.1 uses 1 in practice
        assert b_num == 0.0
    else:
        assert b_num == pytest.approx(b_tab, rel=1e-9)


def test_table_4_1_printed_tanh_entry_is_not_a_bound():
    """The table prints sinh(a)/cosh(a)^3 = 0.385 for tanh; |tanh''(a)| = 2 sinh(a)/cosh(a)^3 = 0.770
    (docs/findings.md F3). The printed value is violated at the thesis's own argmax a."""
    _, second = _derivatives("tanh")
    a = 0.5 * math.log(2 + SQRT3)
    at_a = abs(float(second(torch.tensor([a], dtype=torch.float64))))
    assert TABLE_4_1_PRINTED_TANH_SECOND == pytest.approx(2 / (3 * SQRT3), rel=1e-12)
    assert at_a == pytest.approx(2 * TABLE_4_1_PRINTED_TANH_SECOND, rel=1e-12)
    assert at_a > TABLE_4_1_PRINTED_TANH_SECOND


# ------------------------------------------------------------------------------------------------
# Algorithm 4.1
# ------------------------------------------------------------------------------------------------


def test_algorithm_4_1_hand_computed():
    l1, l2 = nn.Linear(2, 2), nn.Linear(2, 1)
    with torch.no_grad():
        l1.weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 0.5]]))  # s1 = 3
        l2.weight.copy_(torch.tensor([[1.0, 1.0]]))  # s2 = 2
    b_tanh, b_sig = 4 / (3 * SQRT3), 1 / (6 * SQRT3)
    m1, n1 = b_tanh * 1 * 9, 1 * 3
    m2 = b_sig * n1**2 * 4 + 0.25 * m1 * 2
    assert second_derivative_bound([l1], ["tanh"]) == pytest.approx(m1, rel=1e-12)
    assert second_derivative_bound([l1, l2], [nn.Tanh(), nn.Sigmoid()]) == pytest.approx(m2, rel=1e-12)
    # ReLU: Table 4.1 says 0, Section 4.3.1 uses 1 (the default)
    assert second_derivative_bound([l1], [nn.ReLU()]) == pytest.approx(9.0)
    assert second_derivative_bound([l1], [nn.ReLU()], relu_second_derivative=0.0) == 0.0
    assert second_derivative_bound([l1, l2], ["relu", "relu"], relu_second_derivative=0.5) == pytest.approx(
        0.5 * 9 * 4 + 1 * (0.5 * 9) * 2)
    with pytest.raises(UnsupportedLayerError, match="GELU"):
        second_derivative_bound([l1], [nn.GELU()])


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("acts", [["tanh"], ["sigmoid"], ["softplus"], ["tanh", "sigmoid"],
                                  ["softplus", "tanh", "sigmoid"]])
def test_algorithm_4_1_bounds_every_second_derivative(acts):
    """Hessians of every component of h_L (autograd) at random points of several scales, and at the
    best of a random local search: every entry, and also the spectral norm (which Theorem 4.2's
    proof really needs, see the mlp module docstring), stays below M."""
    gen = torch.Generator().manual_seed(len(acts))
    widths = [4, 3, 3][: len(acts)]
    model = make_mlp(3, widths, 2, acts, gen, -2.0, 2.0)
    tail = nn.Sequential(*list(model)[:-1])
    m = second_derivative_bound([l for l in tail if isinstance(l, nn.Linear)],
                                [l for l in tail if not isinstance(l, nn.Linear)])
    hess = torch.func.vmap(torch.func.hessian(tail))
    points = torch.cat([torch.rand(300, 3, generator=gen, dtype=torch.float64) * 2 - 1,
                        (torch.rand(300, 3, generator=gen, dtype=torch.float64) * 2 - 1) * 5,
                        torch.randn(200, 3, generator=gen, dtype=torch.float64) * 0.3])
    worst_entry = worst_spec = 0.0
    for _ in range(4):  # random local search towards the largest curvature
        h = hess(points)  # [P, n, d, d]
        spec = torch.linalg.matrix_norm(h, ord=2).amax(dim=1)
        h = h.detach()
        spec = spec.detach()
        worst_entry = max(worst_entry, float(h.abs().max()))
        worst_spec = max(worst_spec, float(spec.max()))
        best = points[spec.argsort(descending=True)[:50]]
        points = best.repeat(10, 1) + torch.randn(500, 3, generator=gen, dtype=torch.float64) * 0.05
    assert worst_entry <= m
    assert worst_spec <= m
    assert worst_spec > 0


def test_theorem_a_1_with_an_entrywise_bound_is_false():
    """Theorem A.1 assumes only |d^2 f_i / dx_j dx_k| <= M. For f(x) = softplus(x1 + x2) every Hessian
    entry is sigma'(x1 + x2) <= 1/4, yet the remainder along r = t (1,1)/sqrt2 is ~ t^2/4 > (M/2) t^2 =
    t^2/8 (docs/findings.md F4). Algorithm 4.1's M (here 1/4 * s^2 = 1) bounds the spectral norm and
    keeps Theorem 4.2 valid."""
    f = lambda x: nn.functional.softplus(x.sum())  # noqa: E731
    entry_bound = 0.25
    x = torch.zeros(2, dtype=torch.float64)
    h = torch.autograd.functional.hessian(f, x)
    assert float(h.abs().max()) == pytest.approx(entry_bound)
    for t in (1e-1, 1e-2):
        r = t * torch.tensor([1.0, 1.0], dtype=torch.float64) / math.sqrt(2)
        remainder = abs(float(f(x + r) - f(x) - torch.autograd.functional.jacobian(f, x) @ r))
        assert remainder > entry_bound / 2 * t**2 * 1.9  # the claimed bound fails by ~2x
        lin = nn.Linear(2, 1).double()
        with torch.no_grad():
            lin.weight.fill_(1.0)
        m_alg = second_derivative_bound([lin], ["softplus"])
        assert m_alg == pytest.approx(1.0)
        assert remainder <= m_alg / 2 * t**2


# ------------------------------------------------------------------------------------------------
# Theorem 4.2
# ------------------------------------------------------------------------------------------------


def test_theorem_4_2_hand_computed_one_unit():
    """h = tanh(v x + c), logits (h, -h): delta = |2h| / 2 = |h|, J = v (1 - h^2), M = B_tanh v^2, n = 1.
    The label flips where h changes sign, at x* = -c/v: the exact minimum is |x - x*|."""
    v, c = 1.5, -0.3
    model = nn.Sequential(nn.Linear(1, 1), nn.Tanh(), nn.Linear(1, 2)).double()
    with torch.no_grad():
        model[0].weight.fill_(v)
        model[0].bias.fill_(c)
        model[2].weight.copy_(torch.tensor([[1.0], [-1.0]]))
        model[2].bias.zero_()
    x = torch.tensor([[-1.0], [0.1], [0.4], [2.0]], dtype=torch.float64)
    h = torch.tanh(v * x[:, 0] + c)
    j, delta, m = v * (1 - h**2), h.abs(), (4 / (3 * SQRT3)) * v**2
    expected = (torch.sqrt(j**2 + 2 * m * delta) - j) / m
    got = mlp_bound(model, x)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)
    assert torch.all(got <= (x[:, 0] + c / v).abs())


def test_theorem_4_2_formula_limits():
    j = torch.tensor([2.0, 0.0, 3.0], dtype=torch.float64)
    delta = torch.tensor([1.0, 1.0, math.inf], dtype=torch.float64)
    got = theorem_4_2(j, delta, 0.0, 10)  # M = 0: the linear limit delta / ||J||
    assert got[0] == pytest.approx(0.5) and math.isinf(got[1]) and math.isinf(got[2])
    raw = (math.sqrt(4 + 2 * 3 * math.sqrt(7) * 1.0) - 2) / (3 * math.sqrt(7))
    assert float(theorem_4_2(j[:1], delta[:1], 3.0, 7)) == pytest.approx(raw, rel=1e-12)


def test_theorem_4_2_fails_for_relu_with_the_practical_second_derivative():
    """Counterexample (docs/findings.md F5). h = ReLU(x), logits z = (0.01, h). At x = -0.001: h = 0,
    f(x) = 0, delta = 0.01, J = 0, M = B (Algorithm 4.1, s = 1), n = 1, so the bound is sqrt(2 delta / B):
    0.141 for the thesis's B = 1. But x + 0.0111 already has h = 0.0101 > 0.01: label 1. No finite
    ReLU'' fixes this: for any B, a small enough delta and offset give sqrt(2 delta / B) > delta + offset."""
    model = nn.Sequential(nn.Linear(1, 1), nn.ReLU(), nn.Linear(1, 2)).double()
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].bias.zero_()
        model[2].weight.copy_(torch.tensor([[0.0], [1.0]]))
        model[2].bias.copy_(torch.tensor([0.01, 0.0], dtype=torch.float64))
    x = torch.tensor([[-0.001]], dtype=torch.float64)
    exact_minimum = 0.011
    assert int(model(x).argmax()) == 0 and int(model(x + exact_minimum * 1.01).argmax()) == 1
    for relu_b, expected in ((1.0, math.sqrt(0.02)), (10.0, math.sqrt(0.002))):
        bound = float(mlp_bound(model, x, relu_second_derivative=relu_b))
        assert bound == pytest.approx(expected, rel=1e-9)
        assert bound > exact_minimum * 1.01  # the "lower bound" exceeds an actual adversarial perturbation


# ------------------------------------------------------------------------------------------------
# ||J(x)||: exact or a guaranteed over-estimate
# ------------------------------------------------------------------------------------------------


def _tail(d, widths, acts, seed, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    linears, prev = [], d
    for w in widths:
        lin = nn.Linear(prev, w)
        with torch.no_grad():
            lin.weight.normal_(0, scale / math.sqrt(prev), generator=gen)
            lin.bias.normal_(0, 0.5, generator=gen)
        linears.append(lin)
        prev = w
    return linears, [ACTS[a]() for a in acts], gen


@pytest.mark.parametrize("case", [
    dict(d=800, widths=[500], acts=["relu"], method="auto", batch=3),  # LeNet's tail: certified, compressed
    dict(d=200, widths=[150], acts=["tanh"], method="auto"),  # no zero rows
    dict(d=90, widths=[150], acts=["sigmoid"], method="certified"),  # d < n: J^T J side
    dict(d=70, widths=[80, 90], acts=["tanh", "relu"], method="certified"),  # deeper tail
    dict(d=30, widths=[20, 10], acts=["softplus", "tanh"], method="auto"),  # small: exact
    dict(d=30, widths=[40], acts=["tanh"], method="exact"),
])
def test_jacobian_norm_is_exact_or_a_small_overestimate(case):
    linears, acts, gen = _tail(case["d"], case["widths"], case["acts"], seed=case["d"])
    x = torch.randn(case.get("batch", 8), case["d"], generator=gen)
    exact = exact_jacobian_norm_reference(linears, acts, x).detach()
    got = jacobian_spectral_norm(linears, acts, x, method=case["method"])
    assert got.dtype == torch.float64
    assert torch.all(got >= exact)
    assert torch.all(got <= exact * (1 + 1e-4))
    frob = jacobian_spectral_norm(linears, acts, x, method="frobenius")
    assert torch.all(frob >= exact)


def test_jacobian_norm_of_an_all_inactive_relu_layer_is_zero():
    linears, acts, _ = _tail(100, [80], ["relu"], seed=3)
    with torch.no_grad():
        linears[0].bias.fill_(-1e6)
    x = torch.randn(4, 100)
    assert torch.all(jacobian_spectral_norm(linears, acts, x, method="certified") == 0)


# ------------------------------------------------------------------------------------------------
# property: the MLP bound never exceeds a label-changing perturbation found by a strong search
# ------------------------------------------------------------------------------------------------


def _directions(d, n, gen):
    if d == 2:
        angles = torch.arange(n, dtype=torch.float64) * (2 * math.pi / n)
        return torch.stack([angles.cos(), angles.sin()], 1)
    u = torch.randn(n, d, generator=gen, dtype=torch.float64)
    return u / u.norm(dim=1, keepdim=True)


def _first_flip_along(model, x, dirs, t_max):
    """Smallest t in (0, t_max] with label(x + t u) != label(x) per direction u (inf if none):
    a geometric+linear grid, then 30 bisection steps between the last safe and first flipped t."""
    label = int(model(x[None]).argmax())
    grid = torch.unique(torch.cat([torch.logspace(-6, 0, 40, dtype=torch.float64) * t_max,
                                   torch.linspace(0, t_max, 160, dtype=torch.float64)[1:]]))
    pts = x[None, None] + grid[None, :, None] * dirs[:, None, :]
    labels = model(pts.reshape(-1, x.numel())).argmax(1).reshape(len(dirs), len(grid))
    flipped = labels != label
    has = flipped.any(1)
    first = flipped.float().argmax(1)
    hi = torch.where(has, grid[first], torch.full_like(grid[first], math.inf))
    lo = torch.where(first > 0, grid[(first - 1).clamp_min(0)], torch.zeros_like(hi))
    idx = has.nonzero().squeeze(1)
    lo_i, hi_i = lo[idx].clone(), hi[idx].clone()
    for _ in range(30):
        mid = (lo_i + hi_i) / 2
        lab = model(x[None] + mid[:, None] * dirs[idx]).argmax(1)
        flip = lab != label
        hi_i = torch.where(flip, mid, hi_i)
        lo_i = torch.where(flip, lo_i, mid)
    hi[idx] = hi_i
    return hi


def strong_minimal_perturbation(model, x, gen, t_max=20.0):
    """Upper bound on Delta_adv(x; f) from a dense direction line search plus local refinement
    (each value returned is the norm of a perturbation that really changes the label)."""
    d = x.numel()
    dirs = _directions(d, 720 if d == 2 else 1500, gen)
    best = _first_flip_along(model, x, dirs, t_max)
    for sigma in (0.1, 0.02, 0.004):
        top = dirs[best.argsort()[:10]]
        cand = top.repeat(20, 1) + sigma * torch.randn(200, d, generator=gen, dtype=torch.float64)
        cand = cand / cand.norm(dim=1, keepdim=True)
        t = _first_flip_along(model, x, cand, t_max)
        dirs, best = torch.cat([dirs, cand]), torch.cat([best, t])
    return float(best.min())


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), d=st.sampled_from([2, 2, 3]),
       act=st.sampled_from(["tanh", "sigmoid", "softplus"]),
       widths=st.sampled_from([[10], [10, 10], [5, 4, 3]]), n_classes=st.sampled_from([2, 5]),
       scale=st.sampled_from([1.0, 10.0]))
def test_mlp_bound_never_exceeds_a_found_adversarial_perturbation(seed, d, act, widths, n_classes, scale):
    gen = torch.Generator().manual_seed(seed)
    model = make_mlp(d, widths, n_classes, act, gen, -scale, scale)
    x = torch.rand(2, d, generator=gen, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        bound = mlp_bound(model, x)
        assert torch.all(bound >= 0)
        for i in range(len(x)):
            found = strong_minimal_perturbation(model, x[i], gen)
            if math.isfinite(found):
                assert float(bound[i]) <= found * (1 + 1e-7)


# ------------------------------------------------------------------------------------------------
# mlp_bound / model_bounds agree; structure errors
# ------------------------------------------------------------------------------------------------


def test_mlp_bound_matches_model_bounds_and_linear_case():
    gen = torch.Generator().manual_seed(5)
    model = make_mlp(4, [7, 5], 3, "tanh", gen, dtype=torch.float32)
    x = torch.randn(9, 4, generator=gen)
    torch.testing.assert_close(mlp_bound(model, x), model_bounds(model, x).bound)
    linear = nn.Sequential(nn.Linear(4, 3))
    torch.testing.assert_close(mlp_bound(linear, x), linear_output_bound(linear[0].weight, linear[0].bias, x))


def test_mlp_bound_rejects_non_mlps():
    with pytest.raises(UnsupportedLayerError):
        mlp_bound(nn.Sequential(nn.Linear(2, 2), nn.GELU(), nn.Linear(2, 2)), torch.zeros(1, 2))
    with pytest.raises(UnsupportedLayerError):
        mlp_bound(nn.Sequential(nn.Linear(2, 2), nn.Tanh()), torch.zeros(1, 2))
