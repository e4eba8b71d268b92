"""Certified L2 radii (advbounds.verify): soundness against attacks and exact references."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from advbounds.attacks import exact_minimal_perturbation_linear
from advbounds.models import build_model
from advbounds.models.layers import Scale
from advbounds.verify import (
    OPERATOR_NAMES,
    OPERATORS,
    UnsupportedLayerError,
    certified_radius,
    exact_minimal_perturbation_relu,
    margin_lower_bounds,
)

TOL = 1e-3


def _randomize(model, seed, std=1.0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * std)
    return model.double().eval()


def _mlp(hidden, act, seed, in_dim=4, n_classes=3, std=1.0):
    model = build_model("mlp", in_dim=in_dim, hidden=hidden, n_classes=n_classes, activation=act, seed=seed)
    return _randomize(model, seed, std)


def _x(n, d, seed, scale=1.0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale


def _margins(model, x, labels):
    z = model(x)
    return z.gather(-1, labels[..., None]) - z  # [..., C]; column `label` is 0


def _pgd_min_margin(model, x, labels, radius, steps=60, restarts=2, seed=0):
    """Smallest margin z_y - max_{j != y} z_j found by L2 PGD inside the balls of ``radius``."""
    gen = torch.Generator().manual_seed(seed)
    best = torch.full((x.shape[0],), float("inf"), dtype=x.dtype)
    shape = (-1,) + (1,) * (x.dim() - 1)
    r = radius.reshape(shape)
    for _ in range(restarts):
        d = torch.randn(x.shape, generator=gen, dtype=x.dtype)
        d = d / torch.linalg.vector_norm(d.flatten(1), dim=1).reshape(shape) * r * torch.rand(
            x.shape[0], generator=gen, dtype=x.dtype).reshape(shape)
        for _ in range(steps):
            d.requires_grad_(True)
            z = model(x + d)
            others = z.scatter(1, labels[:, None], float("-inf"))
            margin = z.gather(1, labels[:, None])[:, 0] - others.max(dim=1).values
            best = torch.minimum(best, margin.detach())
            (g,) = torch.autograd.grad(margin.sum(), d)
            gn = torch.linalg.vector_norm(g.flatten(1), dim=1).clamp_min(1e-30).reshape(shape)
            d = d.detach() - 0.25 * r * g / gn
            n = torch.linalg.vector_norm(d.flatten(1), dim=1).clamp_min(1e-30).reshape(shape)
            d = d * torch.clamp(r / n, max=1.0)
        with torch.no_grad():
            z = model(x + d)
            others = z.scatter(1, labels[:, None], float("-inf"))
            best = torch.minimum(best, z.gather(1, labels[:, None])[:, 0] - others.max(dim=1).values)
    return best


def _ball_samples(x, radius, n, seed, surface=False):
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn((n, *x.shape), generator=gen, dtype=x.dtype)
    norms = torch.linalg.vector_norm(u.reshape(n, x.shape[0], -1), dim=2)
    scale = radius[None] / norms
    if not surface:
        scale = scale * torch.rand(n, x.shape[0], generator=gen, dtype=x.dtype) ** (1 / x[0].numel())
    return x[None] + u * scale.reshape(n, x.shape[0], *([1] * (x.dim() - 1)))


def test_registry_maps_types_and_names():
    assert OPERATORS[nn.ReLU] is OPERATOR_NAMES["relu"]
    assert OPERATORS[Scale] is OPERATOR_NAMES["scale"]
    assert set(OPERATOR_NAMES) >= {"linear", "conv2d", "maxpool2d", "avgpool2d", "flatten", "tanh", "sigmoid",
                                   "softplus", "batchnorm2d", "identity"}


def test_linear_classifier_radius_is_lemma_3_5():
    model = _randomize(build_model("linear", in_dim=6, n_classes=5, seed=0), 0)
    x = _x(50, 6, 1)
    exact = exact_minimal_perturbation_linear(model.fc1.weight, model.fc1.bias, x).norm.double()
    for method in ("crown", "ibp"):
        res = certified_radius(model, x, method=method, tol=TOL)
        assert (res.radius <= exact).all()
        assert (res.radius >= exact * (1 - TOL)).all()


def test_relu_radius_below_exact_minimum():
    checked = 0
    for seed, hidden in enumerate([[5], [4, 4], [3, 3, 3], [8]]):
        model = _mlp(hidden, "relu", seed, in_dim=2)
        x = _x(30, 2, 100 + seed)
        exact = exact_minimal_perturbation_relu(model, x).norm
        for method in ("crown", "ibp"):
            res = certified_radius(model, x, method=method, tol=TOL)
            assert (res.radius <= exact).all(), (seed, method)
        checked += 1
        # CROWN is not vacuous on these tiny nets
        assert (res.radius > 0).float().mean() > 0.5
    assert checked == 4


def test_no_flip_inside_certified_relu_ball():
    model = _mlp([16, 16], "relu", 7, in_dim=5, n_classes=4)
    x = _x(40, 5, 8)
    res = certified_radius(model, x, tol=TOL)
    radius = res.radius * (1 - 1e-6)
    assert (radius > 0).all()
    pts = _ball_samples(x, radius, 200, seed=1)
    with torch.no_grad():
        assert (model(pts.reshape(-1, 5)).reshape(200, 40, -1).argmax(dim=2) == res.predicted[None]).all()
    assert (_pgd_min_margin(model, x, res.predicted, radius) > 0).all()
    # the bound is not far from the truth: PGD flips some points in a ball a few times larger
    assert (_pgd_min_margin(model, x, res.predicted, 4 * res.radius) < 0).any()


def test_crown_at_least_as_tight_as_ibp():
    for seed in range(4):
        model = _mlp([12, 12], "relu", 20 + seed, in_dim=4)
        x = _x(25, 4, 30 + seed)
        r_ibp = certified_radius(model, x, method="ibp", tol=TOL).radius
        r_crown = certified_radius(model, x, method="crown", tol=TOL, ibp_screen=False).radius
        assert (r_crown >= r_ibp * (1 - 2 * TOL)).all(), seed
        assert (r_crown > r_ibp * 1.05).float().mean() > 0.5  # and strictly tighter on most samples


@pytest.mark.parametrize("act", ["tanh", "sigmoid", "softplus"])
def test_smooth_activations_sound(act):
    model = _mlp([10, 10], act, 40, in_dim=4, n_classes=3, std=1.5)
    x = _x(30, 4, 41)
    res = certified_radius(model, x, tol=TOL, eps_max=50.0)
    radius = res.radius * (1 - 1e-6)
    assert (radius > 0).all()
    assert (_pgd_min_margin(model, x, res.predicted, radius) > 0).all()
    for eps_factor in (0.5, 2.0):
        eps = res.radius * eps_factor
        lb = margin_lower_bounds(model, x, eps)
        pts = _ball_samples(x, eps, 100, seed=2)
        with torch.no_grad():
            true = _margins(model, pts, res.predicted[None].expand(100, -1))
        assert (lb[None] <= true + 1e-12).all()
        lb_ibp = margin_lower_bounds(model, x, eps, method="ibp")
        assert (lb_ibp[None] <= true + 1e-12).all()


def _small_convnet(seed):
    torch.manual_seed(seed)
    layers = OrderedDict(
        scale=Scale(1 / 8),
        conv1=nn.Conv2d(1, 4, 3, padding=1),
        relu1=nn.ReLU(),
        pool1=nn.MaxPool2d(2, 2),
        bn=nn.BatchNorm2d(4),
        conv2=nn.Conv2d(4, 6, 3, stride=1),
        pool2=nn.AvgPool2d(2, ceil_mode=True),
        flatten=nn.Flatten(),
        drop=nn.Dropout(0.3),
        fc1=nn.Linear(6 * 2 * 2, 10),
        relu2=nn.ReLU(),
        fc2=nn.Linear(10, 3),
    )
    model = nn.Sequential(layers)
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.2, 0.2)
        model.bn.running_var.uniform_(0.5, 2.0)
        model.bn.weight.uniform_(0.5, 1.5)
    return model.double().eval()


def test_convnet_sound():
    model = _small_convnet(0)
    x = torch.rand(12, 1, 10, 10, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 8
    res = certified_radius(model, x, tol=TOL)
    radius = res.radius * (1 - 1e-6)
    assert (radius > 0).all()
    pts = _ball_samples(x, radius, 100, seed=3, surface=True)
    with torch.no_grad():
        assert (model(pts.reshape(-1, 1, 10, 10)).reshape(100, 12, -1).argmax(dim=2) == res.predicted[None]).all()
    assert (_pgd_min_margin(model, x, res.predicted, radius) > 0).all()
    eps = res.radius * 1.5
    for method in ("crown", "ibp"):
        lb = margin_lower_bounds(model, x, eps, method=method)
        pts = _ball_samples(x, eps, 100, seed=4)
        with torch.no_grad():
            z = model(pts.reshape(-1, 1, 10, 10)).reshape(100, 12, -1)
        true = z.gather(2, res.predicted[None, :, None].expand(100, -1, 1)) - z
        assert (lb[None] <= true + 1e-12).all()
    r_ibp = certified_radius(model, x, method="ibp", tol=TOL).radius
    assert (res.radius >= r_ibp * (1 - 2 * TOL)).all()


def test_lenet5_smoke():
    model = build_model("lenet5", seed=0).eval()
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 255
    res = certified_radius(model, x, method="crown", intermediate="ibp", dtype=torch.float32, tol=0.05)
    assert (res.radius > 0).all()
    assert (_pgd_min_margin(model.double(), x.double(), res.predicted, res.radius * (1 - 1e-6), steps=20,
                            restarts=1) > 0).all()
    frame = res.to_frame()
    assert list(frame["radius"]) == pytest.approx(res.radius.tolist())


def test_labels_misclassified_get_zero():
    model = _mlp([8], "relu", 50)
    x = _x(10, 4, 51)
    pred = model(x).argmax(dim=1)
    wrong = (pred + 1) % 3
    labels = torch.where(torch.arange(10) % 2 == 0, pred, wrong)
    res = certified_radius(model, x, labels=labels)
    assert (res.radius[~res.correct] == 0).all()
    assert (res.radius[res.correct] > 0).all()
    assert (res.correct == (torch.arange(10) % 2 == 0)).all()


def test_eps_max_caps_the_search():
    model = _mlp([8], "relu", 52)
    x = _x(10, 4, 53)
    full = certified_radius(model, x).radius
    cap = float(full.median())
    res = certified_radius(model, x, eps_max=cap)
    assert (res.radius <= cap).all()
    assert res.at_eps_max[full >= cap].all()


def test_unsupported_layer_raises():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.LocalResponseNorm(2), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    with pytest.raises(UnsupportedLayerError, match="LocalResponseNorm"):
        certified_radius(model, torch.rand(2, 1, 6, 6))


def test_bad_inputs():
    model = _mlp([4], "relu", 0)
    x = _x(3, 4, 0)
    with pytest.raises(ValueError, match="eps"):
        margin_lower_bounds(model, x, -1.0)
    with pytest.raises(ValueError, match="non-finite"):
        certified_radius(model, torch.full((2, 4), float("nan"), dtype=torch.float64))
    with pytest.raises(ValueError):
        certified_radius(model, _x(3, 5, 0))
    with pytest.raises(ValueError, match="method"):
        certified_radius(model, x, method="exact")
    with pytest.raises(ValueError, match="tol"):
        certified_radius(model, x, tol=0.0)
