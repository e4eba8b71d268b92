"""Section 5.2 rules: hand-computed cases, and attempts to break every per-layer inequality.

A per-layer rule ``kappa_in = rule(layer, X, kappa)`` claims: every perturbation R of the layer's input
that changes its output by ``||layer(X + R) - layer(X)||_F >= kappa`` has ``||R||_F >= kappa_in``.
(That is what the composition of Algorithm 5.1 needs: the next layer is fooled only by output changes
of norm at least its kappa.) For any R, setting ``kappa := ||layer(X + R) - layer(X)||`` makes R an
admissible perturbation, so ``rule(layer, X, kappa) / ||R|| > 1`` is a counterexample. The attacks
below maximise that ratio. The thesis phrases its derivations as "the output norm grows by kappa",
``||layer(X + R)|| = ||layer(X)|| + kappa``; the counterexamples are checked in that reading as well.
Counterexamples are recorded in docs/findings.md; the thesis formulas are kept.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from layer_support import batch_norm
from torch import nn

from advbounds.bounds import (
    BOUND_RULES,
    batch_norm_deltas,
    batch_norm_rule,
    conv_rule,
    dense_rule,
    lp_pool_rule,
    lrn_rule,
    lrn_second_derivative_bound,
    lrn_terms,
    max_pool_rule,
)
from advbounds.models import build_model
from advbounds.models.layers import Scale, lrn_thesis_params, make_lrn

F64 = torch.float64




def change(layer, x, r):
    return torch.linalg.vector_norm((layer(x + r) - layer(x)).reshape(len(x), -1), dim=1)


def rule_ratio(rule, layer, x, r):
    """rule(layer, X, ||layer(X+R) - layer(X)||) / ||R||: > 1 means the rule is violated by R."""
    kappa = change(layer, x, r)
    return rule(layer, x, kappa) / torch.linalg.vector_norm(r.reshape(len(r), -1), dim=1)


def thesis_ratio(rule, layer, x, r):
    """The same in the thesis's reading: kappa := ||layer(X+R)||_F - ||layer(X)||_F (must be > 0)."""
    norm = lambda t: torch.linalg.vector_norm(t.reshape(len(t), -1), dim=1)  # noqa: E731
    kappa = norm(layer(x + r)) - norm(layer(x))
    assert torch.all(kappa > 0)
    return rule(layer, x, kappa) / norm(r)


def lipschitz_attack(layer, x, *, starts=8, steps=50, radius=0.1, seed=0):
    """Gradient ascent on ||layer(X + R) - layer(X)|| over the sphere ||R|| = radius, from random starts."""
    gen = torch.Generator().manual_seed(seed)
    xs = x.expand(starts, *x.shape[1:])
    r = torch.randn(xs.shape, generator=gen, dtype=F64)
    r = (r / torch.linalg.vector_norm(r.reshape(starts, -1), dim=1).reshape(-1, *[1] * (x.dim() - 1)) * radius)
    r.requires_grad_(True)
    opt = torch.optim.Adam([r], lr=radius * 0.05)
    for _ in range(steps):
        opt.zero_grad()
        (-change(layer, xs, r).sum()).backward()
        opt.step()
        with torch.no_grad():
            r.mul_(radius / torch.linalg.vector_norm(r.reshape(starts, -1), dim=1).reshape(-1, *[1] * (x.dim() - 1)))
    return xs, r.detach()


# ------------------------------------------------------------------------------------------------
# hand-computed cases
# ------------------------------------------------------------------------------------------------


def test_conv_rule_hand_computed():
    conv = nn.Conv2d(1, 2, 2, bias=True).double().requires_grad_(False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, 2, 2, 0, 0, 0, 4, 0], dtype=F64).reshape(2, 1, 2, 2))  # ||W||_F = 5
    x = torch.zeros(2, 1, 4, 4, dtype=F64)
    torch.testing.assert_close(conv_rule(conv, x, torch.tensor([5.0, 10.0], dtype=F64)),
                               torch.tensor([1.0, 2.0], dtype=F64))
    dense = nn.Linear(2, 2).double()
    with torch.no_grad():
        dense.weight.copy_(torch.tensor([[3.0, 0], [0, 4]], dtype=F64))
    torch.testing.assert_close(dense_rule(dense, torch.zeros(1, 2, dtype=F64), 10.0), torch.tensor([2.0], dtype=F64))


@pytest.mark.parametrize("layer, shape, divisor", [
    (nn.MaxPool2d(2, 2), (2, 3, 8, 8), 4.0),  # t = 4
    (nn.MaxPool2d(3, 2, ceil_mode=True), (1, 2, 32, 32), 16.0),  # NIN pool1: t = 16
    (nn.AvgPool2d(3, 2, ceil_mode=True), (1, 2, 16, 16), 8.0),  # NIN pool2: t = 8
    (nn.AvgPool2d(8, 1), (1, 10, 8, 8), 1.0),  # global average pooling: t = 1
    (nn.MaxPool2d(2, 2), (1, 1, 8, 12), math.sqrt(4 * 6)),  # non-square output: sqrt(t_h t_w)
    (nn.LPPool2d(2, 2), (1, 2, 8, 8), 4.0 * 2.0 ** (2 / 2)),  # t q^(2/p) = 4 * 2
    (nn.LPPool2d(3, 3, stride=1), (1, 1, 7, 7), 5.0 * 3.0 ** (2 / 3)),  # t = 5, q = 3
])
def test_pool_rules_hand_computed(layer, shape, divisor):
    rule = BOUND_RULES[type(layer)]
    x = torch.rand(shape, dtype=F64)
    kappa = torch.full((shape[0],), 3.0, dtype=F64)
    torch.testing.assert_close(rule(layer, x, kappa), kappa / divisor)


def test_simple_rules_hand_computed():
    x = torch.randn(3, 2, 4, 4, dtype=F64)
    kappa = torch.tensor([1.0, 2.0, 3.0], dtype=F64)
    expected = [(nn.Flatten(), "identity_rule", kappa), (nn.Dropout(0.5), "identity_rule", kappa),
                (nn.Identity(), "identity_rule", kappa), (nn.ReLU(), "relu_rule", kappa),
                (Scale(1 / 256), "scale_rule", kappa * 256), (nn.Sigmoid(), "smooth_activation_rule", kappa * 4),
                (nn.Tanh(), "smooth_activation_rule", kappa)]
    for layer, rule_name, kappa_in in expected:
        rule = BOUND_RULES[type(layer)]
        assert rule.__name__ == rule_name
        torch.testing.assert_close(rule(layer, x, kappa), kappa_in)


@torch.no_grad()
def test_batch_norm_rule_matches_the_printed_formulas():
    """Theorem 5.6 evaluated literally: phi, chi, psi, rho_1, rho_2, delta_j = min |rho|, max over j."""
    bn = batch_norm([2.0, -0.5, 1.5], [0.3, 1.0, -2.0], [1.0, 0.0, -1.0], [4.0, 0.25, 1.0], eps=1e-3)
    x = torch.tensor([0.5, 2.0, -3.0, 1.0, 0.0, 0.7], dtype=F64).reshape(1, 3, 2, 1)
    kappa = 0.7
    y = bn(x)
    d = x.numel()
    psi = float((2 * kappa * y.norm() + kappa**2) / d)
    expected = []
    for c in range(3):
        for i in range(2):
            g, b = bn.weight[c].item(), bn.bias[c].item()
            var = bn.running_var[c].item() + bn.eps
            phi = g / var
            chi = 2 * g * (x[0, c, i, 0].item() - bn.running_mean[c].item()) + 2 * b * math.sqrt(var)
            disc = math.sqrt(phi**2 * chi**2 + 4 * phi * g * psi)
            rho1 = -(disc + phi * chi) / (2 * phi * g)
            rho2 = (disc - phi * chi) / (2 * phi * g)
            expected.append(min(abs(rho1), abs(rho2)))
    deltas = batch_norm_deltas(bn, x, torch.tensor([kappa], dtype=F64))
    torch.testing.assert_close(deltas[0], torch.tensor(expected, dtype=F64).detach())
    torch.testing.assert_close(batch_norm_rule(bn, x, kappa), torch.tensor([max(expected)], dtype=F64))


def _lrn_reference(layer, x, kappa):
    """Theorem 5.9 with explicit loops, from the thesis's formulas (thesis alpha = torch alpha / n)."""
    p = lrn_thesis_params(layer)
    _, c, h, w = x.shape
    lo, hi = p.n // 2, (p.n - 1) // 2
    out = torch.zeros_like(x[0])
    grad_norm = torch.zeros_like(x[0])
    for i in range(c):
        window = range(max(0, i - lo), min(c - 1, i + hi) + 1)
        for u in range(h):
            for v in range(w):
                s = p.k + p.alpha * sum(x[0, l, u, v] ** 2 for l in window)
                xa = x[0, i, u, v]
                out[i, u, v] = xa * s ** (-p.beta)
                grads = [(-2 * xa**2 * p.alpha * p.beta * s ** (-p.beta - 1) + s ** (-p.beta)) if j == i
                         else -2 * x[0, j, u, v] * xa * p.alpha * p.beta * s ** (-p.beta - 1) for j in window]
                grad_norm[i, u, v] = torch.stack([torch.as_tensor(g) for g in grads]).norm()
    xm = x.abs().max()
    m_a = (4 * xm * p.alpha * p.beta * (xm**2 * p.alpha * (p.beta + 1) * p.k ** (-p.beta - 2) + p.k ** (-p.beta - 1))
           + 2 * xm * p.alpha * p.beta * p.k ** (-p.beta - 1))
    delta = out.abs() - (out.norm() + kappa) / (h * math.sqrt(c))  # d sqrt(c), d x d maps
    lam = (torch.sqrt(grad_norm**2 - 2 * m_a * delta) - grad_norm) / m_a
    return out, grad_norm, float(lam[delta < 0].max())


def test_lrn_rule_matches_the_printed_formulas():
    layer = make_lrn(n=3, alpha=0.1, beta=0.75, k=2.0)
    x = torch.tensor([[[[1.0, -0.5], [0.2, 2.0]], [[0.0, 1.5], [-1.0, 0.3]], [[0.7, 0.7], [2.5, -2.0]]]], dtype=F64)
    out_ref, grad_ref, lam_ref = _lrn_reference(layer, x, 0.3)
    out, grad_norm, _ = lrn_terms(layer, x)
    torch.testing.assert_close(out[0], out_ref)
    torch.testing.assert_close(out, layer(x))  # thesis alpha convention == torch's layer
    torch.testing.assert_close(grad_norm[0], grad_ref)
    assert float(lrn_rule(layer, x, torch.tensor([0.3], dtype=F64))) == pytest.approx(lam_ref, rel=1e-10)


def test_lrn_gradient_formula_against_autograd():
    layer = make_lrn(n=5, alpha=0.05, beta=0.6, k=1.5)
    x = torch.randn(1, 7, 2, 3, dtype=F64, generator=torch.Generator().manual_seed(0)) * 2
    jac = torch.autograd.functional.jacobian(layer, x).reshape(x.numel(), x.numel())
    _, grad_norm, _ = lrn_terms(layer, x)
    torch.testing.assert_close(grad_norm.reshape(-1), jac.norm(dim=1))


def test_lemma_5_11_bounds_the_hessian_entries_and_finding_f10():
    """M_a of Lemma 5.11 bounds every second derivative of LRN_a at X. The proof's first case claims
    d^2 LRN_a / dx_j1 dx_j2 = 0 for j1 != j2, both != a; it is 4 alpha^2 beta (beta+1) x_a x_j1 x_j2 S^(-beta-2)
    (docs/findings.md F10) -- smaller than M_a, so the lemma's final bound survives."""
    layer = make_lrn(n=5, alpha=0.1, beta=0.75, k=1.0)
    p = lrn_thesis_params(layer)
    x = torch.tensor([1.0, -2.0, 1.5, 0.5, 2.0], dtype=F64).reshape(1, 5, 1, 1)
    m_a = float(lrn_second_derivative_bound(x.abs().max(), p.alpha, p.beta, p.k))
    a = 2  # the middle channel sees all five
    hess = torch.autograd.functional.hessian(lambda t: layer(t.reshape(1, 5, 1, 1))[0, a, 0, 0], x.reshape(5))
    assert float(hess.abs().max()) <= m_a
    s = p.k + p.alpha * float((x**2).sum())
    j1, j2 = 0, 4
    expected = 4 * p.alpha**2 * p.beta * (p.beta + 1) * float(x[0, a] * x[0, j1] * x[0, j2]) * s ** (-p.beta - 2)
    assert float(hess[j1, j2]) == pytest.approx(expected, rel=1e-10)
    assert abs(float(hess[j1, j2])) > 1e-4  # not 0 as the proof says


# ------------------------------------------------------------------------------------------------
# valid rules: attacks do not break them (and sometimes meet them with equality)
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layer, shape", [
    (nn.MaxPool2d(2, 2), (1, 2, 6, 6)),
    (nn.MaxPool2d(3, 1), (1, 1, 5, 5)),  # overlapping: t = 3, each centre pixel in 9 windows
    (nn.MaxPool2d(3, 2, padding=1, ceil_mode=True), (1, 2, 7, 7)),
    (nn.AvgPool2d(3, 1), (1, 1, 5, 5)),
    (nn.AvgPool2d(3, 2, ceil_mode=True), (1, 2, 8, 8)),
    (nn.LPPool2d(2, 2), (1, 2, 6, 6)),
    (nn.LPPool2d(1, 3, stride=1), (1, 1, 5, 5)),
])
def test_pooling_rule_survives_attacks(layer, shape):
    rule = BOUND_RULES[type(layer)]
    x = torch.rand(shape, dtype=F64, generator=torch.Generator().manual_seed(1)) + 0.1  # >= 0 (after a ReLU)
    worst = 0.0
    for radius in (1e-3, 0.3):
        xs, r = lipschitz_attack(layer, x, radius=radius)
        worst = max(worst, float(rule_ratio(rule, layer, xs, r).max()))
    assert worst <= 1 + 1e-9


def test_max_pool_rule_is_tight_for_a_pixel_in_every_window():
    """5x5 input, 3x3 windows, stride 1: t = 3 and the centre pixel lies in all 9 windows. If it is the
    maximum everywhere, raising it by e changes all 9 outputs: ||dZ|| = 3 e = t e, ratio exactly 1."""
    layer = nn.MaxPool2d(3, 1)
    x = torch.zeros(1, 1, 5, 5, dtype=F64)
    x[0, 0, 2, 2] = 1.0
    r = torch.zeros_like(x)
    r[0, 0, 2, 2] = 0.01
    assert float(rule_ratio(max_pool_rule, layer, x, r)) == pytest.approx(1.0, rel=1e-12)


@pytest.mark.parametrize("layer", [nn.ReLU(), Scale(1 / 256), nn.Flatten(), nn.Dropout(0.3).eval(), nn.Tanh(),
                                   nn.Sigmoid(), nn.Softplus()])
def test_elementwise_rules_survive_attacks(layer):
    rule = BOUND_RULES[type(layer)]
    x = torch.randn(1, 2, 4, 4, dtype=F64, generator=torch.Generator().manual_seed(2))
    xs, r = lipschitz_attack(layer, x, radius=0.05)
    assert float(rule_ratio(rule, layer, xs, r).max()) <= 1 + 1e-9


# ------------------------------------------------------------------------------------------------
# counterexamples (docs/findings.md)
# ------------------------------------------------------------------------------------------------


def test_conv_rule_counterexample_lemma_a_4():
    """F6: all-ones 3x3 kernel, stride 1, 10x10 input, R = all ones: W * R = 9 on an 8x8 map, so
    ||W * R||_F = 72 > ||W||_F ||R||_F = 3 * 10 (Lemma A.4 false); Theorem 5.1 asks ||R|| >= 72 / 3 = 24,
    yet ||R|| = 10."""
    conv = nn.Conv2d(1, 1, 3, bias=False).double().requires_grad_(False)
    conv.weight.fill_(1.0)
    x = torch.zeros(1, 1, 10, 10, dtype=F64)
    r = torch.ones_like(x)
    assert float(change(conv, x, r)) == pytest.approx(72.0)
    assert float(rule_ratio(conv_rule, conv, x, r)) == pytest.approx(2.4)
    assert float(thesis_ratio(conv_rule, conv, x, r)) == pytest.approx(2.4)  # conv(X) = 0: same reading
    relu_conv = nn.Sequential(conv, nn.ReLU())  # the thesis's ReLU(W * X + b) setting: same numbers
    assert float(change(relu_conv, x, r)) == pytest.approx(72.0)


def _conv_operator_norm(conv, shape, iterations=60):
    v = torch.randn(shape, dtype=F64, generator=torch.Generator().manual_seed(0))
    kw = dict(stride=conv.stride, padding=conv.padding)
    for _ in range(iterations):
        out = F.conv2d(v, conv.weight, **kw)
        v = F.conv_transpose2d(out, conv.weight, output_padding=0, **kw)
        if v.shape[-1] >= shape[-1]:
            v = v[..., : shape[-2], : shape[-1]]
        else:  # strided: input rows/columns no window reaches get zero
            v = F.pad(v, (0, shape[-1] - v.shape[-1], 0, shape[-2] - v.shape[-2]))
        v = v / v.norm()
    return float(F.conv2d(v, conv.weight, **kw).norm())


def test_conv_rule_fails_for_lenets_first_convolution():
    """F6 on a real layer: at LeNet-5's (seeded Xavier) initialisation, conv1's operator norm exceeds
    ||W||_F, so its top singular vector is a perturbation that beats Theorem 5.1."""
    conv = build_model("lenet5", seed=0).double().conv1.requires_grad_(False)
    op = _conv_operator_norm(conv, (1, 1, 28, 28))
    assert op > 1.1 * float(conv.weight.norm())


@pytest.mark.parametrize("k, c, q, s, pad", [(4, 3, 3, 1, 1), (2, 2, 5, 2, 0), (3, 1, 4, 4, 0), (5, 2, 3, 2, 1)])
def test_corrected_lemma_a_4_holds(k, c, q, s, pad):
    """The re-derived constant: ||W * R||_F <= sqrt(ceil(q/s)^2) ||W||_F ||R||_F (each input pixel is in at
    most ceil(q/s) windows per axis; Cauchy-Schwarz per window)."""
    gen = torch.Generator().manual_seed(k * 100 + q)
    conv = nn.Conv2d(c, k, q, stride=s, padding=pad, bias=False).double().requires_grad_(False)
    with torch.no_grad():
        conv.weight.copy_(torch.rand(conv.weight.shape, generator=gen, dtype=F64))  # positive: worst case
    op = _conv_operator_norm(conv, (1, c, 12, 12))
    assert op <= math.ceil(q / s) * float(conv.weight.norm()) * (1 + 1e-9)


def test_lp_pool_rule_counterexamples_p_below_one_and_signed_inputs():
    """F7. p = 0.5 (allowed by the thesis, p > 0): window (1, 0, 0, 0) -> (1, e, 0, 0) moves the pooled value by
    (1 + sqrt e)^2 - 1 ~ 2 sqrt e, not Lipschitz. torch's LPPool2d with odd p on signed inputs computes the
    signed root of sum x^p, also not Lipschitz: (1, -1, 0, 0) -> (1 + e, -1, 0, 0) moves it by (3e)^(1/3)."""
    e = 1e-4
    pool = nn.LPPool2d(0.5, 2)
    x = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]], dtype=F64)
    r = torch.tensor([[[[0.0, e], [0.0, 0.0]]]], dtype=F64)
    assert float(change(pool, x, r)) == pytest.approx(2 * math.sqrt(e) + e, rel=1e-9)
    assert float(rule_ratio(lp_pool_rule, pool, x, r)) > 10  # kappa / (t q^(2/p)) = 0.0201 / 16 >> 1e-4
    assert float(thesis_ratio(lp_pool_rule, pool, x, r)) > 10
    pool3 = nn.LPPool2d(3, 2)
    x3 = torch.tensor([[[[1.0, -1.0], [0.0, 0.0]]]], dtype=F64)
    r3 = torch.tensor([[[[e, 0.0], [0.0, 0.0]]]], dtype=F64)
    assert float(rule_ratio(lp_pool_rule, pool3, x3, r3)) > 1


def test_batch_norm_rule_counterexample_max_over_coordinates():
    """F8. Two channels with gamma = (10, 1), beta = 0, E = 0, Var = 1, X = 0 and kappa = 1: psi = 1/2,
    delta = (1/(10 sqrt2), 1/sqrt2) and the rule takes the max, 0.707. R = (0.1, 0) changes the output by
    exactly (1, 0) (norm 1 = kappa, and ||BN(X+R)|| = ||BN(X)|| + kappa in the thesis's reading): ||R|| = 0.1.
    The thesis's own argument supports min_j delta_j = 0.0707 <= 0.1."""
    bn = batch_norm([10.0, 1.0], [0.0, 0.0], [0.0, 0.0], [1.0, 1.0])
    x = torch.zeros(1, 2, 1, 1, dtype=F64)
    r = torch.tensor([0.1, 0.0], dtype=F64).reshape(1, 2, 1, 1)
    assert float(change(bn, x, r)) == pytest.approx(1.0)
    assert float(batch_norm_rule(bn, x, 1.0)) == pytest.approx(1 / math.sqrt(2))
    assert float(rule_ratio(batch_norm_rule, bn, x, r)) == pytest.approx(math.sqrt(2) / 0.2)
    assert float(thesis_ratio(batch_norm_rule, bn, x, r)) > 7
    assert float(batch_norm_deltas(bn, x, torch.tensor([1.0], dtype=F64)).min()) <= 0.1


def test_lrn_rule_counterexample():
    """F9. One channel (n = 1), alpha = 0.1, beta = 0.75, k = 1, X = (3, 0) over two positions, kappa = 0.01:
    Delta = {the zero position}, the rule returns 0.679, yet R = (0, 0.01) changes the output by 0.01, and
    R = (0, 0.193) raises ||LRN(X)|| by 0.01 (the thesis's reading)."""
    layer = make_lrn(n=1, alpha=0.1, beta=0.75, k=1.0)
    x = torch.tensor([3.0, 0.0], dtype=F64).reshape(1, 1, 2, 1)
    kappa = torch.tensor([0.01], dtype=F64)
    bound = float(lrn_rule(layer, x, kappa))
    assert bound == pytest.approx(0.679, abs=1e-3)
    r = torch.tensor([0.0, 0.01], dtype=F64).reshape(1, 1, 2, 1)
    assert float(change(layer, x, r)) == pytest.approx(0.01, rel=1e-3)
    assert float(rule_ratio(lrn_rule, layer, x, r)) > 60
    out_norm = float(layer(x).norm())
    eps = math.sqrt((out_norm + 0.01) ** 2 - out_norm**2)  # LRN(X+R)_2 ~ eps (k = 1, alpha eps^2 tiny)
    r2 = torch.tensor([0.0, eps], dtype=F64).reshape(1, 1, 2, 1)
    assert float(thesis_ratio(lrn_rule, layer, x, r2)) > 3


def test_lrn_rule_fails_on_lenet_lrn_activations():
    """F9 at the thesis's own hyper-parameters (AlexNet values, LeNet-LRN): LRN is almost the identity there,
    so the output changes by about ||R||; the rule instead returns about RMS(X) regardless of a small kappa."""
    layer = make_lrn()  # n = 5, thesis alpha = 1e-4 / 5, beta = 0.75, k = 1
    x = torch.relu(torch.randn(1, 20, 12, 12, dtype=F64, generator=torch.Generator().manual_seed(0))) * 5
    xs, r = lipschitz_attack(layer, x, radius=0.01, starts=2, steps=5)
    assert float(rule_ratio(lrn_rule, layer, xs, r).min()) > 100
