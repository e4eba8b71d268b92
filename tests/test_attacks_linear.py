"""Exact minimal perturbations of linear classifiers, and the ordering
bound (Lemma 3.5) <= exact minimum <= FGS (Algorithm 2.1)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from layer_support import linear_model

from advbounds.attacks import (
    binary_minimal_perturbation,
    exact_minimal_perturbation_linear,
    min_norm_polyhedron,
    minimal_epsilon_search,
)
from advbounds.settings import SearchSettings



def random_linear(seed, C, d, B, param=(-1.0, 1.0), sample=(-1.0, 1.0)):
    """Table 3.1's set-up: parameters and samples uniform on the given intervals (float64)."""
    g = torch.Generator().manual_seed(seed)

    def uniform(*shape, lo_hi):
        lo, hi = lo_hi
        return torch.rand(*shape, generator=g, dtype=torch.float64) * (hi - lo) + lo

    return uniform(C, d, lo_hi=param), uniform(C, lo_hi=param), uniform(B, d, lo_hi=sample)


def lemma_3_5(W, b, x):
    """eq. 3.12 written out here, so the ordering test does not depend on the bounds engine."""
    z = x @ W.T + b
    c = z.argmax(1)
    num = (z - z.gather(1, c[:, None])).abs()
    den = (W[None, :, :] - W[c][:, None, :]).norm(dim=2)
    ratio = num / den
    ratio[torch.arange(len(c)), c] = math.inf
    return ratio.min(1).values


def brute_force_minimum(W, b, x):
    """Enumerate every linearly independent active set of every target: the optimum is the
    projection onto the affine hull of its active face, and every feasible candidate is an upper
    bound, so the smallest feasible candidate is the exact minimum (small C and d only)."""
    C, d = W.shape
    z = W @ x + b
    c = int(z.argmax())
    best = math.inf
    for t in range(C):
        if t == c:
            continue
        others = [j for j in range(C) if j != t]
        A = W[t][None] - W[others]
        beta = -(A @ x + b[t] - b[others])
        for k in range(0, min(len(others), d) + 1):
            for S in itertools.combinations(range(len(others)), k):
                if k == 0:
                    r = torch.zeros(d, dtype=W.dtype)
                else:
                    AS = A[list(S)]
                    G = AS @ AS.T
                    if torch.linalg.matrix_rank(G) < k:
                        continue
                    r = AS.T @ torch.linalg.solve(G, beta[list(S)])
                if (A @ r - beta >= -1e-9).all():
                    best = min(best, float(r.norm()))
    return best


def test_binary_closed_form_is_lemma_3_1():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(5, generator=g, dtype=torch.float64)
    x = torch.randn(30, 5, generator=g, dtype=torch.float64)
    res = binary_minimal_perturbation(w, 0.3, x)
    torch.testing.assert_close(res.norm, (x @ w + 0.3).abs() / w.norm())
    # eq. 3.7 lands on the hyperplane, and (1 + eta) r crosses it.
    on_plane = (x + res.perturbation) @ w + 0.3
    torch.testing.assert_close(on_plane, torch.zeros(30, dtype=torch.float64), atol=1e-12, rtol=0)
    flipped = ((x + 1.000001 * res.perturbation) @ w + 0.3 >= 0).long()
    assert torch.equal(flipped, res.target)


def test_two_class_weight_matrix_uses_the_closed_form():
    W, b, x = random_linear(1, 2, 4, 25)
    res = exact_minimal_perturbation_linear(W, b, x)
    z = x @ W.T + b
    torch.testing.assert_close(res.norm, (z[:, 1] - z[:, 0]).abs() / (W[1] - W[0]).norm())
    assert torch.equal(res.target, 1 - z.argmax(1))


@pytest.mark.parametrize("seed", range(12))
def test_multiclass_matches_brute_force(seed):
    g = torch.Generator().manual_seed(100 + seed)
    C = int(torch.randint(3, 7, (1,), generator=g))
    d = int(torch.randint(1, 5, (1,), generator=g))
    W, b, x = random_linear(seed, C, d, 6, sample=(-2.0, 2.0))
    res = exact_minimal_perturbation_linear(W, b, x)
    for i in range(x.shape[0]):
        expected = brute_force_minimum(W, b, x[i])
        if math.isinf(expected):
            assert math.isinf(res.norm[i].item())
        else:
            assert res.norm[i].item() == pytest.approx(expected, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("C, d", [(5, 2), (5, 20), (50, 2), (10, 784)])
def test_minimiser_is_on_the_boundary_and_pruning_is_exact(C, d):
    W, b, x = random_linear(7, C, d, 40 if d < 100 else 20)
    res = exact_minimal_perturbation_linear(W, b, x)
    full = exact_minimal_perturbation_linear(W, b, x, all_targets=True)
    torch.testing.assert_close(res.norm, full.norm, rtol=1e-12, atol=0)
    torch.testing.assert_close(full.target_norms.min(1).values, full.norm, rtol=1e-12, atol=0)
    assert torch.isfinite(res.norm).all()
    torch.testing.assert_close(res.perturbation.norm(dim=1), res.norm, rtol=1e-12, atol=0)
    predict = lambda v: (v @ W.T + b).argmax(1)  # noqa: E731
    assert torch.equal(predict(x + (1 - 1e-7) * res.perturbation), res.orig_label)
    beyond = predict(x + (1 + 1e-7) * res.perturbation)
    assert (beyond != res.orig_label).all()
    assert torch.equal(beyond, res.target)


def test_theorem_3_7_tight_classifier():
    """W = I, b = 0: the minimum equals the bound, min_c' |x_c - x_c'| / sqrt(2) (the thesis drops
    the sqrt(2) on both sides: its r = (x_c - x_c') e_c' is not minimal, but tightness holds)."""
    x = torch.tensor([[3.0, 1.0, 0.5, -1.0], [0.0, 0.2, 2.0, 1.9]], dtype=torch.float64)
    W = torch.eye(4, dtype=torch.float64)
    res = exact_minimal_perturbation_linear(W, torch.zeros(4, dtype=torch.float64), x)
    expected = torch.tensor([2.0, 0.1], dtype=torch.float64) / math.sqrt(2)
    torch.testing.assert_close(res.norm, expected)
    torch.testing.assert_close(res.norm, lemma_3_5(W, torch.zeros(4, dtype=torch.float64), x))


def test_unreachable_classes():
    # Class 2 is the average of 0 and 1 with a lower bias: it wins nowhere (empty cell).
    W = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    b = torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64)
    x = torch.tensor([[2.0, 5.0], [-0.5, 1.0]], dtype=torch.float64)
    res = exact_minimal_perturbation_linear(W, b, x, all_targets=True)
    assert torch.isinf(res.target_norms[:, 2]).all()
    torch.testing.assert_close(res.norm, torch.tensor([2.0, 0.5], dtype=torch.float64))
    # Identical classes with different biases: the winner can never be changed.
    W2 = torch.tensor([[1.0, 2.0]] * 3, dtype=torch.float64)
    res2 = exact_minimal_perturbation_linear(W2, torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64), x)
    assert torch.isinf(res2.norm).all() and (res2.target == -1).all()
    assert (res2.perturbation == 0).all()


def test_polyhedron_solver_detects_infeasibility_and_matches_projection():
    a = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)  # r_1 >= 1 and -r_1 >= 1
    lam, feasible = min_norm_polyhedron((a @ a.T)[None], torch.tensor([[1.0, 1.0]], dtype=torch.float64))
    assert not feasible.item()
    # Projection of the origin onto {r : r_1 >= 1, r_1 + r_2 >= 3} is (1.5, 1.5).
    A = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    lam, feasible = min_norm_polyhedron((A @ A.T)[None], torch.tensor([[1.0, 3.0]], dtype=torch.float64))
    assert feasible.item()
    torch.testing.assert_close(A.T @ lam[0], torch.tensor([1.5, 1.5], dtype=torch.float64), rtol=0, atol=1e-14)


def fgs_norms(W, b, x):
    """Minimal-epsilon FGS on the float64 linear model, with an eps_max large enough to flip all:
    along s = sign(grad) some logit overtakes z_c, because sum_j q_j (w_c - w_j) . s = -||v||_1 < 0."""
    res = minimal_epsilon_search(linear_model(W, b, torch.float64), x, SearchSettings(eps_max=1e4, tol=1e-10))
    assert res.flipped.all() and res.consistent.all()
    return res.perturbation_norm


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    shape=st.sampled_from([(5, 2), (5, 20), (50, 2), (3, 7)]),
    sample_scale=st.sampled_from([1.0, 10.0]),
    param_scale=st.sampled_from([1.0, 10.0]),
)
def test_bound_le_exact_le_fgs(seed, shape, sample_scale, param_scale):
    """Table 3.1's settings: no bound violation, and FGS never beats the exact minimum."""
    C, d = shape
    W, b, x = random_linear(seed, C, d, 10, param=(-param_scale, param_scale), sample=(-sample_scale, sample_scale))
    exact = exact_minimal_perturbation_linear(W, b, x).norm
    bound = lemma_3_5(W, b, x)
    fgs = fgs_norms(W, b, x)
    assert (bound <= exact * (1 + 1e-12)).all()
    assert (exact <= fgs * (1 + 1e-9)).all()


def test_exact_is_never_below_the_bounds_engine():
    bounds = pytest.importorskip("advbounds.bounds")
    linear_output_bound = getattr(bounds, "linear_output_bound", None)
    if linear_output_bound is None:
        pytest.skip("advbounds.bounds.linear_output_bound is not available yet")
    for seed, (C, d) in enumerate([(5, 2), (5, 20), (50, 2), (10, 784)]):
        W, b, x = random_linear(seed, C, d, 30)
        exact = exact_minimal_perturbation_linear(W, b, x).norm
        bound = linear_output_bound(W, b, x).to(torch.float64)
        torch.testing.assert_close(bound, lemma_3_5(W, b, x), rtol=1e-10, atol=0)
        assert (bound <= exact * (1 + 1e-12)).all()
        if C == 50:  # FGS on the same inputs, for the full chain
            assert (exact <= fgs_norms(W, b, x) * (1 + 1e-9)).all()
