"""Iterative perturbation (Section 2.7): each round is a minimal-epsilon FGS step from the last image."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advbounds.attacks import iterative_perturbation
from advbounds.models.layers import Scale
from advbounds.settings import SearchSettings



def test_rounds_chain_and_flip():
    torch.manual_seed(0)
    model = nn.Sequential(
        Scale(1 / 256), nn.Conv2d(1, 4, 3), nn.MaxPool2d(2, 2), nn.Conv2d(4, 6, 3), nn.ReLU(),
        nn.Flatten(), nn.Linear(24, 16), nn.Tanh(), nn.Linear(16, 5),
    )
    x = torch.rand(1, 1, 10, 10, generator=torch.Generator().manual_seed(1)) * 255
    res = iterative_perturbation(model, x, 4, SearchSettings(eps_max=100.0, tol=1e-3))
    assert res.images.shape == (5, 1, 1, 10, 10) and res.perturbations.shape == (4, 1, 1, 10, 10)
    assert torch.equal(res.images[0], x)
    assert res.flipped.all()
    # Each round starts from the previous adversarial image and changes its label.
    assert (res.labels[1:] != res.labels[:-1]).all()
    with torch.no_grad():
        seen = torch.stack([model.eval()(img).argmax(1) for img in res.images])
    assert torch.equal(seen, res.labels)
    steps = res.images[1:].double() - res.images[:-1].double()
    torch.testing.assert_close(steps, res.perturbations)
    torch.testing.assert_close(res.total_perturbation, res.perturbations.sum(0))
    # FGS steps move every pixel with a nonzero gradient by exactly eps (up to float32 rounding).
    for i in range(4):
        moved = res.perturbations[i].abs()
        assert (moved[moved > 0] - res.eps[i, 0]).abs().max() < 1e-4


def test_binary_linear_zigzags_between_two_classes():
    layer = nn.Linear(3, 2).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [-1.0, 1.0, 0.0]]))
        layer.bias.zero_()
    x = torch.tensor([[1.0, 0.2, -0.3], [-1.0, 2.0, 0.0]], dtype=torch.float64)
    res = iterative_perturbation(nn.Sequential(layer), x, 5, SearchSettings(eps_max=10.0, tol=1e-9))
    assert res.flipped.all()
    assert torch.equal(res.labels[2:], res.labels[:-2])  # alternates
    # After the first crossing each step only needs to cross back (Section 2.7's observation).
    assert (res.perturbation_norm[1:] < res.perturbation_norm[:1] + 1e-6).all()


def test_rejects_true_label_loss():
    with pytest.raises(ValueError, match="predicted"):
        iterative_perturbation(nn.Sequential(nn.Linear(2, 2)), torch.zeros(1, 2), 2, SearchSettings(eps_max=1.0, tol=0.1, loss_label="true"))
