"""The exact minimal-L2-perturbation reference for tiny ReLU MLPs (advbounds.verify.exact)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advbounds.attacks import exact_minimal_perturbation_linear
from advbounds.models import build_model
from advbounds.verify import ExactReluResult, exact_minimal_perturbation_relu


def _relu_mlp(hidden, seed, in_dim=2, n_classes=3):
    model = build_model("mlp", in_dim=in_dim, hidden=hidden, n_classes=n_classes, activation="relu", seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return model.double().eval()


def test_no_hidden_layer_matches_lemma_3_5():
    model = _relu_mlp([], seed=3, in_dim=3, n_classes=4)
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    res = exact_minimal_perturbation_relu(model, x)
    ref = exact_minimal_perturbation_linear(model.fc1.weight, model.fc1.bias, x)
    assert isinstance(res, ExactReluResult)
    assert res.norm.shape == (40,) and res.perturbation.shape == (40, 3) and res.target.shape == (40,)
    torch.testing.assert_close(res.norm, ref.norm.to(res.norm), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("hidden,seed", [([5], 0), ([4, 4], 1), ([3, 3, 3], 2)])
def test_exact_against_dense_grid(hidden, seed):
    model = _relu_mlp(hidden, seed)
    x = torch.randn(12, 2, generator=torch.Generator().manual_seed(seed + 10), dtype=torch.float64)
    res = exact_minimal_perturbation_relu(model, x)
    assert torch.isfinite(res.norm).all()
    step = 0.01
    g = torch.arange(-5, 5 + step / 2, step, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    with torch.no_grad():
        z = model(grid)
    pred = res.predicted
    top = z.max(dim=1).values
    dist = torch.cdist(x, grid)
    for c in pred.unique().tolist():
        rows = (pred == c).nonzero().flatten()
        adv = (top[None, :] - z[:, c][None, :]) >= 0  # some class >= class c (ties count)
        adv &= z.argmax(dim=1)[None, :] != c
        d = torch.where(adv, dist[rows], torch.full_like(dist[rows], float("inf"))).min(dim=1).values
        inside = res.norm[rows] + 1 < 5 - x[rows].abs().max(dim=1).values  # nearest boundary inside grid
        # no sampled adversarial point is closer than the exact minimum ...
        assert (d >= res.norm[rows] * (1 - 1e-9) - 1e-12).all()
        # ... and the minimum is attained up to the grid resolution
        assert (d[inside] <= res.norm[rows][inside] + 2 * step).all()


def test_perturbation_flips_or_ties():
    model = _relu_mlp([6, 5], seed=4)
    x = torch.randn(25, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    res = exact_minimal_perturbation_relu(model, x)
    torch.testing.assert_close(torch.linalg.vector_norm(res.perturbation, dim=1), res.norm)
    with torch.no_grad():
        z = model(x + res.perturbation * (1 + 1e-9))
    zc = z.gather(1, res.predicted[:, None])[:, 0]
    zt = z.gather(1, res.target[:, None])[:, 0]
    assert ((zt - zc) >= -1e-9 * (1 + z.abs().amax(dim=1))).all()
    with torch.no_grad():  # the unperturbed points are classified as predicted, strictly inside
        assert (model(x).argmax(dim=1) == res.predicted).all()


def test_bad_inputs():
    model = _relu_mlp([3], seed=0)
    with pytest.raises(ValueError):
        exact_minimal_perturbation_relu(model, torch.zeros(3, 5, dtype=torch.float64))
    with pytest.raises(ValueError):
        exact_minimal_perturbation_relu(model, torch.tensor([[float("nan"), 0.0]]))
    with pytest.raises(ValueError):
        exact_minimal_perturbation_relu(nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 2)),
                                        torch.zeros(1, 2))
