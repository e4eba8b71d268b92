"""The attack direction: the saturated-softmax trap, FGV against autograd, zero-sign components."""

from __future__ import annotations

import torch
from layer_support import linear_model
from torch import nn

from advbounds.attacks import attack_direction, loss_logit_weights, minimal_epsilon_search
from advbounds.settings import SearchSettings


def test_factorisation_matches_softmax_minus_onehot():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(20, 7, dtype=torch.float64, generator=g) * 3
    y = torch.randint(0, 7, (20,), generator=g)
    weights, log_scale = loss_logit_weights(z, y)
    expected = torch.softmax(z, 1) - nn.functional.one_hot(y, 7).double()
    torch.testing.assert_close(log_scale.exp()[:, None] * weights, expected, rtol=1e-12, atol=1e-15)
    assert (weights.gather(1, y[:, None]) == -1).all()


def test_saturated_softmax_trap():
    """float32 cross-entropy gives an exactly zero gradient; our direction is the exact sign."""
    g = torch.Generator().manual_seed(1)
    W = torch.randn(4, 6, generator=g)
    b = torch.tensor([400.0, 0.0, -5.0, 3.0])  # class 0 wins by a logit gap of ~400
    model = linear_model(W, b)
    x = torch.randn(3, 6, generator=g)
    # The trap: float32 cross-entropy at the predicted label has an exactly zero input gradient.
    xr = x.clone().requires_grad_(True)
    logits = model(xr)
    assert (logits.argmax(1) == 0).all()
    nn.functional.cross_entropy(logits, logits.argmax(1), reduction="sum").backward()
    assert (xr.grad == 0).all()
    # Ours: grad_x L is proportional to sum_{j != y} q_j w_j - w_y, q = softmax over j != y.
    _, direction = attack_direction(model.eval(), x, method="fgs")
    z = (x.double() @ W.double().T + b.double())
    q = torch.softmax(z[:, 1:], dim=1)
    exact = q @ W[1:].double() - W[0].double()
    assert torch.equal(direction, torch.sign(exact))
    # FGS can now move, and the search finds the flip.
    res = minimal_epsilon_search(model, x, SearchSettings(eps_max=1e4, tol=1e-3))
    assert res.flipped.all()


def test_fgv_direction_equals_the_loss_gradient():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double().eval()
    x = torch.randn(10, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (10,))
    for loss_label, target in (("predicted", None), ("true", y)):
        _, direction = attack_direction(model, x, method="fgv", loss_label=loss_label, labels=target)
        xr = x.clone().requires_grad_(True)
        logits = model(xr)
        label = logits.argmax(1) if target is None else target
        nn.functional.cross_entropy(logits, label, reduction="sum").backward()
        torch.testing.assert_close(direction, xr.grad, rtol=1e-10, atol=1e-14)
        _, signs = attack_direction(model, x, method="fgs", loss_label=loss_label, labels=target)
        assert torch.equal(signs, torch.sign(xr.grad))
    _, unit = attack_direction(model, x, method="fgv", fgv_normalize=True)
    torch.testing.assert_close(unit.norm(dim=1), torch.ones(10, dtype=torch.float64))


def test_fgv_keeps_a_gradient_below_float32_range():
    """The FGV magnitude (1 - p_y) ~ exp(-100) underflows float32 but is kept in float64."""
    W = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    model = linear_model(W, torch.tensor([100.0, 0.0]))
    x = torch.zeros(1, 2)
    _, direction = attack_direction(model.eval(), x, method="fgv")
    expected = torch.exp(torch.tensor(-100.0, dtype=torch.float64)) * torch.tensor([[-1.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(direction, expected, rtol=1e-6, atol=0)


def test_zero_gradient_components_do_not_move_or_count():
    """Inputs the model ignores have a zero gradient sign: they stay put and are not in the norm."""
    torch.manual_seed(3)
    layer = nn.Linear(10, 3)
    with torch.no_grad():
        layer.weight[:, 5:] = 0.0  # the last five inputs are ignored
    model = nn.Sequential(layer)
    x = torch.randn(8, 10)
    res = minimal_epsilon_search(model, x, SearchSettings(eps_max=100.0, tol=1e-4), return_adversarial=True)
    assert res.flipped.all()
    assert torch.equal(res.adversarial[:, 5:], x[:, 5:])
    torch.testing.assert_close(res.perturbation_norm, res.eps * 5**0.5, rtol=1e-12, atol=0)
    torch.testing.assert_close(res.direction_norm, torch.full((8,), 5**0.5, dtype=torch.float64))


def test_true_label_direction_differs_from_predicted_when_misclassified():
    W = torch.eye(3, dtype=torch.float64)
    model = linear_model(W, torch.zeros(3, dtype=torch.float64))
    x = torch.tensor([[2.0, 1.0, 0.0]], dtype=torch.float64)  # predicted 0; pretend the truth is 1
    _, pred_dir = attack_direction(model.eval(), x, method="fgs")
    _, true_dir = attack_direction(model.eval(), x, method="fgs", loss_label="true", labels=torch.tensor([1]))
    assert pred_dir[0, 0] == -1 and true_dir[0, 1] == -1
    assert not torch.equal(pred_dir, true_dir)
