"""The corrected (sound) bound mode: every rule against a strong attack that tries to beat it.

A sound rule claims: every change ``R`` of the step's input whose output change has norm ``>= kappa_next``
has ``||R|| >= kappa_in``. ``sphere_attack`` maximises ``||f(X + R) - f(X)||`` over the sphere
``||R|| = kappa_in (1 - 1e-6)`` (projected gradient ascent, random restarts, batched); the rule survives if
that maximum stays below ``kappa_next``. Where a rule is tight the attack must also come close to
``kappa_next`` -- the check that the attack has teeth. Composed models are checked against label flips
found by a minimal-norm attack (``minimal_flip_norm``), and the thesis rules that docs/findings.md proves
false are shown beaten where the sound ones are not.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from layer_support import batch_norm
from torch import nn

import advbounds.bounds.sound as sound_module
from advbounds.attacks import exact_minimal_perturbation_linear
from advbounds.bounds import (
    BOUND_MODES,
    BOUND_RULES,
    SOUND_RULES,
    MLPTail,
    UnsupportedLayerError,
    batch_norm_deltas,
    batch_norm_rule,
    conv2d_operator_norm,
    conv_rule,
    dense_conv_matrix,
    find_rule,
    jacobian_spectral_norm,
    lrn_lipschitz_constant,
    lrn_rule,
    matrix_operator_norm,
    model_bounds,
    plan_model,
    pool_lipschitz_constant,
    round_down,
    round_up,
    smooth_activation_rule,
    softplus_switch,
    sound_batch_norm_rule,
    sound_conv_rule,
    sound_lrn_rule,
    sound_mlp_tail_rule,
    sound_output_rule,
    sound_pool_rule,
    sound_softplus_rule,
)
from advbounds.bounds.compose import _cast_down
from advbounds.bounds.linear import OutputClassifier
from advbounds.bounds.spectral import exact_jacobian_norm_reference
from advbounds.models import build_model
from advbounds.models.layers import Scale, make_lrn

F64 = torch.float64


def per_sample_norm(t):
    return torch.linalg.vector_norm(t.reshape(t.shape[0], -1), dim=1)


def sphere_attack(fn, x, radius, *, restarts=12, steps=60, seed=0):
    """Largest ``||fn(X + R) - fn(X)||`` found per sample over ``||R|| = radius[b]``: normalised gradient
    ascent projected back to the sphere, from ``restarts`` random starts (all batched)."""
    gen = torch.Generator().manual_seed(seed)
    batch = x.shape[0]
    xs = x.repeat(restarts, *([1] * (x.dim() - 1)))
    rad = radius.repeat(restarts).reshape(-1, *([1] * (x.dim() - 1)))
    with torch.no_grad():
        base = fn(xs)

    def project(r):
        return r * (rad / per_sample_norm(r).clamp_min(1e-300).reshape(rad.shape))

    r = project(torch.randn(xs.shape, generator=gen, dtype=F64))
    best = torch.zeros(xs.shape[0], dtype=F64)
    for step in range(steps):
        r.requires_grad_(True)
        change = per_sample_norm(fn(xs + r) - base)
        (grad,) = torch.autograd.grad(change.sum(), r)
        with torch.no_grad():
            best = torch.maximum(best, change.detach())
            lr = 0.5 * (1 - step / steps) + 0.02
            direction = grad / per_sample_norm(grad).clamp_min(1e-300).reshape(rad.shape)
            r = project(r.detach() + lr * rad * direction)
    with torch.no_grad():
        best = torch.maximum(best, per_sample_norm(fn(xs + r) - base))
    return best.reshape(restarts, batch).max(dim=0).values


def attack_ratio(rule, layer, x, kappa_next, fn=None, **attack):
    """(max found output change at ||R|| = kappa_in (1 - 1e-6)) / kappa_next, per sample, and kappa_in."""
    kappa_next = torch.as_tensor(kappa_next, dtype=F64).expand(x.shape[0]).clone()
    kappa_in = rule(layer, x, kappa_next)
    assert torch.all(kappa_in > 0) and torch.all(torch.isfinite(kappa_in))
    change = sphere_attack(fn or layer, x, kappa_in * (1 - 1e-6), **attack)
    return change / kappa_next, kappa_in


def _seeded(module, seed):
    torch.manual_seed(seed)
    return module.double().requires_grad_(False)


def _rand(*shape, seed=0, scale=1.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64) * scale


# ------------------------------------------------------------------------------------------------
# the mode argument, the registry, the result
# ------------------------------------------------------------------------------------------------


def test_mode_argument_registry_and_result():
    assert set(SOUND_RULES) == set(BOUND_RULES)
    assert BOUND_MODES == {"thesis": BOUND_RULES, "corrected": SOUND_RULES}
    model = build_model("lenet5", seed=0)
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 255
    with pytest.raises(ValueError, match="thesis, corrected"):
        model_bounds(model, x, mode="sound")
    default, thesis, corrected = model_bounds(model, x), model_bounds(model, x, mode="thesis"), \
        model_bounds(model, x, mode="corrected")
    torch.testing.assert_close(default.bound, thesis.bound, rtol=0, atol=0)
    assert (default.mode, thesis.mode, corrected.mode) == ("thesis", "thesis", "corrected")
    assert list(corrected.kappas) == list(thesis.kappas)
    assert list(corrected.to_frame().columns) == list(thesis.to_frame().columns)
    assert corrected.rules["conv1"] == "sound_conv_rule" and thesis.rules["conv1"] == "conv_rule"
    assert [s.label for s in plan_model(model, mode="corrected")] == [s.label for s in plan_model(model)]
    assert corrected.bound.dtype == x.dtype and torch.all(torch.isfinite(corrected.bound))


def test_weight_constants_are_computed_once_per_call(monkeypatch):
    """The operator norms depend only on the weights (and input size): once per model_bounds call, not
    per chunk, and not carried over to the next call (no global cache)."""
    calls = []
    real = sound_module.conv2d_operator_norm

    def counting(layer, size):
        calls.append(layer)
        return real(layer, size)

    monkeypatch.setattr(sound_module, "conv2d_operator_norm", counting)
    model = build_model("lenet5", seed=0)
    x = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(2)) * 255
    first = model_bounds(model, x, mode="corrected", batch_size=2)
    assert len(calls) == 2  # conv1, conv2 once each over three chunks
    with torch.no_grad():
        model.conv1.weight.mul_(2.0)
    second = model_bounds(model, x, mode="corrected", batch_size=2)
    assert len(calls) == 4
    # kappa_conv1 / kappa_pool1 = 1 / ||conv1||: recomputed for the new weights, not reused
    ratio_first = first.kappas["conv1"].double() / first.kappas["pool1"].double()
    ratio_second = second.kappas["conv1"].double() / second.kappas["pool1"].double()
    torch.testing.assert_close(ratio_second, ratio_first / 2, rtol=1e-6, atol=0)


def test_rounding_helpers_round_the_right_way():
    t = torch.tensor([1.0, 3.0, 1e-300, 0.0, math.inf], dtype=F64)
    assert torch.all(round_down(t)[:3] < t[:3]) and torch.all(round_up(t)[:3] > t[:3])
    assert round_down(t)[3] == 0 and round_up(t)[3] == 0  # a computed 0 (relative error model) is exact
    assert math.isinf(round_down(t)[4]) and math.isinf(round_up(t)[4])
    values = torch.tensor([1.0 / 3.0, 0.1, 2.0 / 3.0, 1e-50, 5.0, math.inf], dtype=F64)
    cast = _cast_down(values, torch.float32)
    assert cast.dtype == torch.float32 and torch.all(cast.double() <= values)
    assert bool((values.to(torch.float32).double() > values).any())  # a plain cast would round some up
    assert cast[4] == 5.0 and math.isinf(cast[5])


# ------------------------------------------------------------------------------------------------
# certified operator norms
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, hw", [
    (dict(in_channels=3, out_channels=4, kernel_size=3, padding=1), 8),
    (dict(in_channels=2, out_channels=2, kernel_size=5, stride=2), 9),
    (dict(in_channels=1, out_channels=3, kernel_size=4, stride=4), 8),  # non-overlapping: exact
    (dict(in_channels=2, out_channels=5, kernel_size=3, stride=2, padding=1), 8),
    (dict(in_channels=4, out_channels=6, kernel_size=3, padding=2, dilation=2, groups=2), 7),
    (dict(in_channels=2, out_channels=3, kernel_size=3, padding="same", dilation=2), 8),
    (dict(in_channels=2, out_channels=3, kernel_size=(3, 2), stride=(1, 2), padding=(1, 0)), 6),
    (dict(in_channels=5, out_channels=4, kernel_size=1), 6),  # 1x1 (NIN's cccp layers): exact
    (dict(in_channels=2, out_channels=3, kernel_size=(1, 3), padding=(0, 1)), 6),
    (dict(in_channels=3, out_channels=3, kernel_size=3, padding=1, padding_mode="circular"), 8),  # exact
    (dict(in_channels=2, out_channels=3, kernel_size=3, padding=1, padding_mode="circular"), 7),  # exact
    (dict(in_channels=2, out_channels=3, kernel_size=3, stride=2, padding=1, padding_mode="circular"), 8),
])
def test_conv_operator_norm_against_dense_svd(kwargs, hw):
    conv = _seeded(nn.Conv2d(**kwargs), hw)
    dense = dense_conv_matrix(conv, (conv.in_channels, hw, hw))
    x = _rand(1, conv.in_channels, hw, hw)
    torch.testing.assert_close(dense @ x.reshape(-1), (conv(x) - conv(torch.zeros_like(x))).reshape(-1))
    sigma = float(torch.linalg.svdvals(dense)[0])
    bound = conv2d_operator_norm(conv, (hw, hw))
    assert bound >= sigma
    exact = (kwargs.get("padding_mode") == "circular" and kwargs.get("stride", 1) == 1
             or kwargs.get("stride") == 4 or kwargs["kernel_size"] == 1)
    assert bound <= sigma * (1 + 1e-9) if exact else bound <= 1.6 * sigma


def test_conv_operator_norm_of_lenet_and_extreme_weights():
    """LeNet-5's conv1 on 28x28 (dense Gram of the 784 inputs) and the same kernel scaled by 2^+-500."""
    conv = build_model("lenet5", seed=0).conv1.double().requires_grad_(False)
    dense = dense_conv_matrix(conv, (1, 28, 28))
    sigma = float(torch.linalg.eigvalsh(dense.t() @ dense)[-1].sqrt())
    bound = conv2d_operator_norm(conv, (28, 28))
    assert sigma <= bound <= 1.05 * sigma  # zero padding: the torus bound is slightly above
    assert bound < float(conv.weight.norm()) * 5  # and far below the F6 constant sqrt(25) ||W||_F
    for exponent in (500, -500):
        with torch.no_grad():
            scaled = nn.Conv2d(1, 20, 5).double()
            scaled.weight.copy_(torch.ldexp(conv.weight, torch.tensor(float(exponent), dtype=F64)))
        assert conv2d_operator_norm(scaled, (28, 28)) == pytest.approx(bound * 2.0**exponent, rel=1e-12)


@pytest.mark.parametrize("scale", [1e150, 1e-150, 1.0])
def test_matrix_operator_norm_is_a_tight_upper_bound(scale):
    w = _rand(60, 90, seed=3) * scale
    sigma = float(torch.linalg.svdvals(w / scale)[0]) * scale
    bound = matrix_operator_norm(w)
    assert sigma <= bound <= sigma * (1 + 1e-9)


@pytest.mark.parametrize("layer, hw, expected", [
    (nn.MaxPool2d(2, 2, ceil_mode=True), (24, 24), 1.0),  # LeNet: each pixel in one window
    (nn.MaxPool2d(3, 2, ceil_mode=True), (32, 32), 2.0),  # NIN pool1: sqrt(ceil(3/2)^2)
    (nn.MaxPool2d(3, 1, padding=1), (8, 8), 3.0),
    (nn.MaxPool2d(3, 2, dilation=2), (11, 11), 3.0),  # dilation: a pixel is tap k of three windows
    (nn.AvgPool2d(2, 2), (8, 8), 0.5),  # 1 window of 4 pixels: 1/2
    (nn.AvgPool2d(8, 1), (8, 8), 1 / 8),  # global average pooling: 1/t
    (nn.AvgPool2d(3, 2, ceil_mode=True), (16, 16), 5 / 6),  # 1/3 + the partial border window's 1/2
    (nn.AvgPool2d(3, 1, padding=1, count_include_pad=False), (6, 6), 7 / 6),
    (nn.LPPool2d(2, 2), (8, 8), 1.0),
    (nn.LPPool2d(2, 3, stride=2, ceil_mode=True), (8, 8), 2.5),  # partial windows are scaled up by torch
    (nn.LPPool2d(float("inf"), 3, stride=1), (5, 5), 3.0),
])
def test_pool_lipschitz_constants_hand_computed(layer, hw, expected):
    lipschitz = pool_lipschitz_constant(layer, hw)
    assert expected <= lipschitz <= expected * (1 + 1e-12)
    q_h, q_w = (layer.kernel_size,) * 2 if isinstance(layer.kernel_size, int) else layer.kernel_size
    s = layer.stride if layer.stride is not None else layer.kernel_size
    s_h, s_w = (s,) * 2 if isinstance(s, int) else s
    if isinstance(layer, nn.MaxPool2d) and layer.dilation == 1:
        assert lipschitz <= math.sqrt(math.ceil(q_h / s_h) * math.ceil(q_w / s_w)) * (1 + 1e-12)


def _jacobian_norms(layer, points):
    """Spectral norm of the per-position LRN Jacobian at each point ``[N, C]``."""
    channels = points.shape[1]
    jac = torch.func.vmap(torch.func.jacrev(lambda a: layer(a.reshape(1, channels, 1, 1)).reshape(channels)))(points)
    return torch.linalg.matrix_norm(jac, ord=2)


@pytest.mark.parametrize("layer, channels", [
    (make_lrn(), 8),  # LeNet-LRN's AlexNet values
    (make_lrn(n=1, alpha=0.1, beta=0.75, k=1.0), 3),
    (make_lrn(n=3, alpha=0.5, beta=0.75, k=2.0), 5),
    (nn.LocalResponseNorm(4, alpha=1.0, beta=0.5, k=1.0), 6),  # even window
    (nn.LocalResponseNorm(2, alpha=3.0, beta=1.5, k=0.5), 4),  # beta > 1
])
def test_lrn_lipschitz_constant_bounds_every_jacobian(layer, channels):
    """The global constant is >= the Jacobian norm at random points of every scale and at points found by
    gradient ascent on the Jacobian norm; the local constant (window sums <= Q) too, on its set."""
    layer = layer.double()
    global_bound = float(lrn_lipschitz_constant(layer, channels))
    assert global_bound >= float(layer.k) ** (-float(layer.beta))  # Jacobian at 0 is k^-beta I
    scales = torch.logspace(-2, 3, 48, dtype=F64)[:, None]
    points = (_rand(48, channels, seed=4) * scales).requires_grad_(True)
    found = _jacobian_norms(layer, points.detach()).max()
    opt = torch.optim.Adam([points], lr=0.05)
    for _ in range(40):
        norms = _jacobian_norms(layer, points)
        found = torch.maximum(found, norms.detach().max())
        opt.zero_grad()
        (-norms.sum()).backward()
        opt.step()
    assert float(found) <= global_bound
    # local: rescale the points so that every window sum of squares is <= Q
    q = torch.tensor(4.0, dtype=F64)
    pts = points.detach()
    window_sq = F.avg_pool1d(F.pad((pts * pts)[:, None], (layer.size // 2, (layer.size - 1) // 2)), layer.size,
                             stride=1)[:, 0] * layer.size
    pts = pts * torch.sqrt(q / window_sq.amax(dim=1, keepdim=True)).clamp_max(1.0)
    local = float(lrn_lipschitz_constant(layer, channels, q))
    assert float(_jacobian_norms(layer, pts).max()) <= local <= global_bound


# ------------------------------------------------------------------------------------------------
# per-layer rules under attack
# ------------------------------------------------------------------------------------------------

_X_IMG = _rand(2, 3, 8, 8, seed=5)
_LAYER_CASES = [
    # id, the registry's rule, layer, x, kappa_next, tight (the attack must get within 10% of kappa_next)
    ("conv-circular", "sound_conv_rule", _seeded(nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular"), 0), _X_IMG,
     1.0, True),
    ("conv-stride2", "sound_conv_rule", _seeded(nn.Conv2d(3, 5, 3, stride=2, padding=1), 1), _X_IMG, 1.0, False),
    ("conv-stride1", "sound_conv_rule", _seeded(nn.Conv2d(3, 4, 5), 2), _X_IMG, 1.0, False),
    ("dense", "sound_dense_rule", _seeded(nn.Linear(12, 7), 3), _rand(3, 12, seed=6), 2.0, True),
    ("batch-norm", "sound_batch_norm_rule",
     batch_norm([0.5, -3.0, 0.0], [1.0, 2.0, 3.0], [0.1, 0.2, 0.3], [1.0, 4.0, 0.5], eps=1e-5), _X_IMG, 0.5, True),
    ("max-pool-2x2", "sound_pool_rule", nn.MaxPool2d(2, 2), _X_IMG, 1.0, True),
    ("max-pool-3x3/2-ceil", "sound_pool_rule", nn.MaxPool2d(3, 2, ceil_mode=True), _X_IMG, 1.0, False),
    ("avg-pool-2x2", "sound_pool_rule", nn.AvgPool2d(2, 2), _X_IMG, 1.0, True),
    ("avg-pool-global", "sound_pool_rule", nn.AvgPool2d(8), _X_IMG, 1.0, True),
    ("avg-pool-3x3/2-pad", "sound_pool_rule", nn.AvgPool2d(3, 2, padding=1, ceil_mode=True), _X_IMG, 1.0, False),
    ("lp-pool-2", "sound_pool_rule", nn.LPPool2d(2, 2), _X_IMG, 1.0, True),
    ("lrn-lenet", "sound_lrn_rule", make_lrn().double(), torch.relu(_rand(2, 20, 4, 4, seed=7)) * 2, 0.1, True),
    ("lrn-strong", "sound_lrn_rule", make_lrn(n=3, alpha=0.5, beta=0.75, k=1.0).double(), _rand(2, 6, 3, 3, seed=8) * 2,
     0.3, False),
    ("lrn-f9", "sound_lrn_rule", make_lrn(n=1, alpha=0.1, beta=0.75, k=1.0).double(),
     torch.tensor([3.0, 0.0], dtype=F64).reshape(1, 1, 2, 1), 0.01, False),
    ("relu", "sound_relu_rule", nn.ReLU(), _X_IMG, 0.5, True),
    ("tanh", "sound_lipschitz_activation_rule", nn.Tanh(), _X_IMG * 1e-3, 1e-3, True),
    ("sigmoid", "sound_lipschitz_activation_rule", nn.Sigmoid(), _X_IMG * 1e-3, 1e-3, True),
    ("softplus", "sound_softplus_rule", nn.Softplus(), _X_IMG * 5, 0.5, False),
    ("scale", "sound_scale_rule", Scale(1 / 256), _X_IMG, 1e-2, True),
    ("flatten", "sound_identity_rule", nn.Flatten(), _X_IMG, 1.0, True),
    ("dropout", "sound_identity_rule", nn.Dropout(0.5).eval(), _X_IMG, 1.0, True),
    ("identity", "sound_identity_rule", nn.Identity(), _X_IMG, 1.0, True),
]


@pytest.mark.parametrize("case", _LAYER_CASES, ids=[c[0] for c in _LAYER_CASES])
def test_sound_layer_rules_survive_a_strong_attack(case):
    _, rule_name, layer, x, kappa_next, tight = case
    rule = find_rule(layer, SOUND_RULES)  # the rule model_bounds(mode="corrected") applies
    assert rule.__name__ == rule_name
    ratio, _ = attack_ratio(rule, layer, x, kappa_next)
    assert torch.all(ratio < 1), ratio
    if tight:
        assert torch.all(ratio > 0.9), ratio


def _mlp_tail(widths, activation, seed, scale=1.0):
    torch.manual_seed(seed)
    linears = [nn.Linear(a, b).double().requires_grad_(False) for a, b in zip(widths[:-1], widths[1:])]
    with torch.no_grad():
        for lin in linears:
            lin.weight.mul_(scale)
    activations = [activation() for _ in linears]
    tail = MLPTail(linears, activations)
    return tail, nn.Sequential(*[m for pair in zip(linears, activations) for m in pair])


@pytest.mark.parametrize("activation, kappa", [(nn.ReLU, 0.3), (nn.Tanh, 0.3), (nn.Sigmoid, 0.05),
                                               (nn.Softplus, 0.3), (nn.Tanh, 1e-3)])
def test_sound_mlp_tail_rule_survives_a_strong_attack(activation, kappa):
    tail, fn = _mlp_tail([5, 8, 6], activation, seed=11, scale=2.0)
    x = _rand(3, 5, seed=9)
    ratio, kappa_in = attack_ratio(sound_mlp_tail_rule, tail, x, kappa, fn=fn, steps=80)
    assert torch.all(ratio < 1), ratio
    # the product of norms is always a valid lower value; Theorem 4.2 may only raise it
    product = torch.full((3,), kappa, dtype=F64)
    for lin in tail.linears[::-1]:
        product = product / matrix_operator_norm(lin.weight) / (0.25 if activation is nn.Sigmoid else 1.0)
    assert torch.all(kappa_in >= product * (1 - 1e-6) - (2.1e-9 if activation is nn.Softplus else 0.0))


# ------------------------------------------------------------------------------------------------
# the thesis's false rules against the sound ones (docs/findings.md)
# ------------------------------------------------------------------------------------------------


def test_f6_conv_counterexample_beats_the_thesis_rule_not_the_sound_one():
    """All-ones 3x3 kernel, 10x10 input, R = all ones: ||W * R|| = 72, Theorem 5.1 demands 24 > ||R|| = 10."""
    conv = nn.Conv2d(1, 1, 3, bias=False).double().requires_grad_(False)
    conv.weight.fill_(1.0)
    x = torch.zeros(1, 1, 10, 10, dtype=F64)
    r = torch.ones_like(x)
    kappa = per_sample_norm(conv(x + r) - conv(x))
    assert float(kappa) == pytest.approx(72.0)
    assert float(conv_rule(conv, x, kappa)) > 10.0
    assert float(sound_conv_rule(conv, x, kappa)) <= 10.0
    assert float(sound_conv_rule(conv, x, kappa)) == pytest.approx(72.0 / 9.0, rel=0.3)  # ||conv|| <= 9


def test_f8_batch_norm_counterexample_also_beats_the_min_formula():
    """gamma = (0.01, 1), beta = (100, 0), x = 0, sigma = 1, kappa = 1e-3: the min over coordinates of the
    thesis's delta_j (the fix docs/findings.md used to propose) is 0.05, the thesis's max 0.32, yet
    R = (0, 0.001) moves the output by exactly 1e-3. The sound rule gives 1e-3 (rounded down): tight."""
    bn = batch_norm([0.01, 1.0], [100.0, 0.0], [0.0, 0.0], [1.0, 1.0])
    x = torch.zeros(1, 2, 1, 1, dtype=F64)
    r = torch.tensor([0.0, 1e-3], dtype=F64).reshape(1, 2, 1, 1)
    kappa = torch.tensor([1e-3], dtype=F64)
    assert float(per_sample_norm(bn(x + r) - bn(x))) == pytest.approx(1e-3, rel=1e-12)
    deltas = batch_norm_deltas(bn, x, kappa)
    assert float(deltas.min()) == pytest.approx(0.05, rel=1e-3) and float(deltas.min()) > 10 * float(r.norm())
    assert float(batch_norm_rule(bn, x, kappa)) > float(r.norm())
    sound = float(sound_batch_norm_rule(bn, x, kappa))
    assert sound <= float(r.norm()) and sound == pytest.approx(1e-3, rel=1e-12)
    # gamma_j = 0 channels cannot change: excluded; all zero: nothing can change the output
    one_live_channel = batch_norm([0.0, 2.0], [0.0, 0.0], [0.0, 0.0], [1.0, 1.0])
    assert float(sound_batch_norm_rule(one_live_channel, x, kappa)) == pytest.approx(5e-4, rel=1e-12)
    constant = batch_norm([0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [1.0, 1.0])
    assert math.isinf(float(sound_batch_norm_rule(constant, x, kappa)))
    assert float(sound_batch_norm_rule(constant, x, 0.0)) == 0.0


def test_f9_lrn_counterexample_beats_the_thesis_rule_not_the_sound_one():
    layer = make_lrn(n=1, alpha=0.1, beta=0.75, k=1.0).double()
    x = torch.tensor([3.0, 0.0], dtype=F64).reshape(1, 1, 2, 1)
    r = torch.tensor([0.0, 0.01], dtype=F64).reshape(1, 1, 2, 1)
    kappa = per_sample_norm(layer(x + r) - layer(x))
    assert float(lrn_rule(layer, x, kappa)) > 60 * float(r.norm())
    assert float(sound_lrn_rule(layer, x, kappa)) <= float(r.norm())


def test_f7_lp_pool_without_a_lipschitz_constant_raises():
    x = torch.rand(1, 1, 4, 4, dtype=F64)
    for p in (0.5, 1.0, 3.0):
        with pytest.raises(UnsupportedLayerError, match="LPPool2d"):
            sound_pool_rule(nn.LPPool2d(p, 2), x, 1.0)


def test_f5_relu_tail_counterexample_beats_the_thesis_not_the_sound_mode():
    """h = ReLU(x), logits (0.01, h), x = -0.001: the thesis's Theorem 4.2 (ReLU'' := 1) gives 0.141, yet
    x + 0.0111 changes the label. The sound tail rule gives delta / ||W|| = 0.01."""
    model = nn.Sequential(OrderedDict(fc1=nn.Linear(1, 1), relu1=nn.ReLU(), fc2=nn.Linear(1, 2))).double()
    with torch.no_grad():
        model.fc1.weight.fill_(1.0)
        model.fc1.bias.zero_()
        model.fc2.weight.copy_(torch.tensor([[0.0], [1.0]], dtype=F64))
        model.fc2.bias.copy_(torch.tensor([0.01, 0.0], dtype=F64))
    x = torch.tensor([[-0.001]], dtype=F64)
    assert int(model(x).argmax()) == 0 and int(model(x + 0.0111).argmax()) == 1
    assert float(model_bounds(model, x).bound) > 0.1
    corrected = float(model_bounds(model, x, mode="corrected").bound)
    assert corrected <= 0.0111 and corrected == pytest.approx(0.01, rel=1e-12)


def test_softplus_jump_beats_a_bound_below_its_size():
    """torch's Softplus switches to the identity at beta z > 20, a jump of ~2.06e-9: at z = 20 - 1e-12 a
    change of 2e-12 moves the output by ~2.06e-9, so the Lipschitz rule's 1e-9 is false; the sound rule
    gives 0 there, and kappa - J sqrt(#units near the switch) for larger kappa."""
    layer = nn.Softplus()
    switch, jump = softplus_switch(layer)
    assert switch == 20.0 and jump == pytest.approx(math.log1p(math.exp(-20.0)), rel=1e-12)
    x = torch.tensor([[20.0 - 1e-12, 0.0, -5.0]], dtype=F64)
    r = torch.tensor([[2e-12, 0.0, 0.0]], dtype=F64)
    change = float(per_sample_norm(layer(x + r) - layer(x)))
    assert change > 2e-9
    kappa = torch.tensor([1e-9], dtype=F64)
    thesis = float(smooth_activation_rule(layer, x, kappa))
    assert thesis == pytest.approx(1e-9) and thesis > float(r.norm())
    assert float(sound_softplus_rule(layer, x, kappa)) == 0.0
    big = torch.tensor([1e-3], dtype=F64)
    assert float(sound_softplus_rule(layer, x, big)) == pytest.approx(1e-3 - jump, rel=1e-12)
    far = torch.tensor([[0.0, 3.0, -5.0]], dtype=F64)  # no unit within kappa of the switch: plain 1-Lipschitz
    assert float(sound_softplus_rule(layer, far, big)) == pytest.approx(1e-3, rel=1e-12)


def test_softplus_tail_near_the_switch_disables_theorem_4_2():
    """A one-unit softplus tail at z = 20 - 1e-12 whose output classifier flips when h drops by 1e-9: the
    thesis's bound (Theorem 4.2, valid only for smooth activations) is ~7e-10, yet R = 2e-12 flips the
    label; the corrected bound is 0."""
    model = nn.Sequential(OrderedDict(fc1=nn.Linear(1, 1), sp1=nn.Softplus(), fc2=nn.Linear(1, 2))).double()
    z0 = 20.0 - 1e-12
    h0 = float(nn.Softplus()(torch.tensor(z0, dtype=F64)))
    with torch.no_grad():
        model.fc1.weight.fill_(1.0)
        model.fc1.bias.zero_()
        model.fc2.weight.copy_(torch.tensor([[1.0], [0.0]], dtype=F64))
        model.fc2.bias.copy_(torch.tensor([0.0, h0 - 1e-9], dtype=F64))
    x = torch.tensor([[z0]], dtype=F64)
    assert int(model(x).argmax()) == 0 and int(model(x + 2e-12).argmax()) == 1
    assert float(model_bounds(model, x).bound) > 1e-10
    assert float(model_bounds(model, x, mode="corrected").bound) == 0.0
    # far from the switch, Theorem 4.2 is used again (it is at least the product-of-norms bound)
    far = torch.tensor([[0.5]], dtype=F64)
    assert float(model_bounds(model, far, mode="corrected").bound) > 0.0


# ------------------------------------------------------------------------------------------------
# composed models against a minimal-norm attack
# ------------------------------------------------------------------------------------------------


def minimal_flip_norm(model, x, *, starts=3, steps=40, seed=0):
    """Smallest norm of a verified label-changing perturbation per sample (inf if none found): batched
    DeepFool-style steps towards the nearest linearised boundary from ``starts`` jittered starts, then a
    bisection of the scale of each flipping perturbation."""
    gen = torch.Generator().manual_seed(seed)
    batch = x.shape[0]
    with torch.no_grad():
        logits = model(x)
    orig = logits.argmax(1).repeat(starts)
    xs = x.repeat(starts, *([1] * (x.dim() - 1)))
    shape = (-1,) + (1,) * (x.dim() - 1)
    jitter = torch.randn(xs.shape, generator=gen, dtype=x.dtype)
    r = jitter * (1e-3 * per_sample_norm(xs).clamp_min(1.0) / per_sample_norm(jitter)).reshape(shape)
    r[:batch] = 0
    best = torch.full((xs.shape[0],), math.inf, dtype=F64)
    best_r = torch.zeros_like(xs)
    for _ in range(steps):
        xr = (xs + r).requires_grad_(True)
        out = model(xr)
        top = out.gather(1, orig[:, None])[:, 0]
        gaps = top[:, None] - out
        gaps = gaps.scatter(1, orig[:, None], math.inf)
        margin, _ = gaps.min(dim=1)  # to the nearest class in the logits' own units
        (grad,) = torch.autograd.grad(margin.sum(), xr)
        with torch.no_grad():
            flipped = margin <= 0
            norm = per_sample_norm(r).to(F64)
            better = flipped & (norm < best)
            best = torch.where(better, norm, best)
            best_r[better] = r[better]
            overshoot = 1e-6 * top.abs().clamp_min(1e-6)  # land just past the linearised boundary
            step = (margin.clamp_min(0) + overshoot) / per_sample_norm(grad).pow(2).clamp_min(1e-30)
            r = r - 1.05 * step.reshape(shape) * grad
    # shrink each flipping perturbation to the first flip along its ray
    with torch.no_grad():
        found = torch.isfinite(best)
        lo, hi = torch.zeros_like(best), torch.ones_like(best)
        for _ in range(30):
            mid = (lo + hi) / 2
            flips = model(xs + mid.reshape(shape).to(x.dtype) * best_r).argmax(1) != orig
            hi = torch.where(flips & found, mid, hi)
            lo = torch.where(flips & found, lo, mid)
        final = xs + hi.reshape(shape).to(x.dtype) * best_r
        verified = found & (model(final).argmax(1) != orig)
        norms = torch.where(verified, per_sample_norm(final - xs).to(F64), torch.full_like(best, math.inf))
    return norms.reshape(starts, batch).min(dim=0).values


@pytest.mark.parametrize("name", ["lenet5", "lenet_lrn1"])
def test_corrected_bound_below_adversarial_perturbations_of_lenets(name):
    model = build_model(name, seed=0).eval()
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(3)) * 255
    bound = model_bounds(model, x, mode="corrected").bound.double()
    attack = minimal_flip_norm(model, x, starts=1, steps=25)
    assert torch.all(torch.isfinite(attack))
    assert torch.all(torch.isfinite(bound)) and torch.all(bound > 0)
    assert torch.all(bound <= attack), (bound, attack)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "softplus"])
def test_corrected_bound_below_adversarial_perturbations_of_mlps(activation):
    model = build_model("mlp", seed=1, in_dim=3, hidden=[16, 12], n_classes=4, activation=activation).double()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)
    x = _rand(32, 3, seed=12)
    result = model_bounds(model, x, mode="corrected")
    attack = minimal_flip_norm(model, x)
    assert torch.all(torch.isfinite(result.bound)) and torch.all(result.bound >= 0)
    found = torch.isfinite(attack)
    assert found.float().mean() > 0.5  # saturated sigmoid units defeat some linearised steps
    assert torch.all(result.bound[found] <= attack[found]), (result.bound, attack)
    assert (result.second_derivative_bound is None) == (activation == "relu")


def test_linear_classifier_bound_is_the_exact_minimum():
    """On a linear classifier the sound output rule is Lemma 3.5's delta, which is the exact minimal
    perturbation: equal to within rounding, and never above it (float64 and float32 models)."""
    gen = torch.Generator().manual_seed(4)
    for dtype in (F64, torch.float32):
        model = build_model("linear", seed=2, in_dim=6, n_classes=5).to(dtype)
        x = (torch.randn(64, 6, generator=gen, dtype=F64) * 3).to(dtype)
        bound = model_bounds(model, x, mode="corrected").bound.double()
        exact = exact_minimal_perturbation_linear(model.fc1.weight, model.fc1.bias, x).norm
        assert torch.all(bound <= exact)
        torch.testing.assert_close(bound, exact, rtol=1e-5 if dtype == torch.float32 else 1e-10, atol=0)
    identity = OutputClassifier(None)
    logits = torch.tensor([[1.0, 3.0, 2.5]], dtype=F64)
    assert float(sound_output_rule(identity, logits)) == pytest.approx(0.5 / math.sqrt(2), rel=1e-12)
    assert float(sound_output_rule(identity, logits)) < 0.5 / math.sqrt(2)


# ------------------------------------------------------------------------------------------------
# the Jacobian norm at extreme weights (overflow fix)
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1e150, 1e-150])
@pytest.mark.parametrize("widths", [[100], [30, 40]])
@pytest.mark.parametrize("method", ["auto", "exact", "certified", "frobenius"])
def test_jacobian_norm_at_extreme_weights_is_a_finite_valid_overestimate(scale, widths, method):
    """ReLU tails are positively homogeneous: scaling every weight by c (layer l's bias by c^l) scales J by c^L. At
    c = 1e150 the Gram matrix used to overflow (LinAlgError), at 1e-150 (two layers) to underflow to 0."""
    gen = torch.Generator().manual_seed(len(widths))
    linears, previous = [], 90
    for width in widths:
        lin = nn.Linear(previous, width).double()
        with torch.no_grad():
            lin.weight.copy_(torch.randn(width, previous, generator=gen, dtype=F64))
            lin.bias.copy_(torch.randn(width, generator=gen, dtype=F64) * 0.1)
        linears.append(lin)
        previous = width
    acts = [nn.ReLU() for _ in linears]
    x = torch.randn(5, 90, generator=gen, dtype=F64)
    reference = exact_jacobian_norm_reference(linears, acts, x) * scale ** len(linears)
    with torch.no_grad():
        for depth, lin in enumerate(linears, start=1):
            lin.weight.mul_(scale)
            lin.bias.mul_(scale**depth)  # layer l's bias scales like its pre-activation, c^l
    got = jacobian_spectral_norm(linears, acts, x, method=method)
    assert torch.all(torch.isfinite(got)) and torch.all(got > 0)
    assert torch.all(got >= reference * (1 - 1e-12))
    assert torch.all(got <= reference * (5.0 if method == "frobenius" else 1.001))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_corrected_mode_on_cuda_matches_cpu():
    model = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, 4, 3, padding=1), bn1=nn.BatchNorm2d(4), relu1=nn.ReLU(), pool1=nn.AvgPool2d(2),
        norm1=make_lrn(), conv2=nn.Conv2d(4, 6, 3, stride=2), pool2=nn.MaxPool2d(2, ceil_mode=True),
        flatten=nn.Flatten(), fc1=nn.Linear(24, 10), tanh1=nn.Tanh(), fc2=nn.Linear(10, 3))).eval()
    x = torch.rand(5, 1, 16, 16, generator=torch.Generator().manual_seed(5))
    cpu = model_bounds(model, x, mode="corrected")
    gpu = model_bounds(model.cuda(), x.cuda(), mode="corrected")
    assert gpu.bound.device.type == "cuda" and all(k.device.type == "cuda" for k in gpu.kappas.values())
    torch.testing.assert_close(gpu.bound.cpu(), cpu.bound, rtol=1e-4, atol=0)
