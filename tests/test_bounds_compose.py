"""Algorithm 5.1: composition, the registry, the Section 5.4 hand derivation for LeNet-5."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from advbounds.bounds import (
    BOUND_RULES,
    LOGITS_LABEL,
    UnsupportedLayerError,
    identity_output_bound,
    linear_output_bound,
    mlp_bound,
    model_bounds,
    plan_model,
)
from advbounds.bounds import compose
from advbounds.bounds import mlp as mlp_bounds
from advbounds.models import build_model
from advbounds.models.layers import Scale, make_lrn

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

#: Section 5.4's kappa_6 ... kappa_1 for LeNet-5 -> the step labels of model_bounds
THESIS_LENET_KAPPAS = {"kappa6": "ip2", "kappa5": "ip1", "kappa4": "pool2", "kappa3": "conv2",
                       "kappa2": "pool1", "kappa1": "conv1"}




def _lenet_inputs(n, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, 28, 28, generator=gen) * 255).to(dtype)


def test_section_5_4_derivation_falls_out_of_the_composition():
    """kappa6 = delta at h = ReLU(ip1(.)) (eq. 3.12, by explicit loops); kappa5 = Theorem 4.2 with ||J|| from
    the SVD of the autograd Jacobian, M = (max row sum |W_ip1|)^2 (Algorithm 4.1, ReLU'' = 1), n = 500;
    kappa4 = kappa5 / t2 (t2 = 4); kappa3 = kappa4 / ||W2||_F; kappa2 = kappa3 / t1 (t1 = 12);
    kappa1 = kappa2 / ||W1||_F; and the pixel-unit bound kappa1 / (1/256)."""
    model = build_model("lenet5", seed=1).double().eval().requires_grad_(False)
    x = _lenet_inputs(2)
    result = model_bounds(model, x)
    assert list(result.kappas) == ["scale", "conv1", "pool1", "conv2", "pool2", "flatten", "ip1", "ip2"]
    assert result.members["ip1"] == ("ip1", "relu1")
    with torch.no_grad():
        flat = model[:6](x)
        h = torch.relu(model.ip1(flat))
    w_out, b_out = model.ip2.weight.detach().numpy(), model.ip2.bias.detach().numpy()
    w1 = model.ip1.weight.detach()
    m = float(w1.abs().sum(1).max()) ** 2
    for i in range(len(x)):
        hi = h[i].numpy()
        z = w_out @ hi + b_out
        c = int(np.argmax(z))
        kappa6 = min(abs((w_out[k] - w_out[c]) @ hi + b_out[k] - b_out[c]) / np.linalg.norm(w_out[k] - w_out[c])
                     for k in range(10) if k != c)
        jac = torch.autograd.functional.jacobian(lambda f: torch.relu(model.ip1(f)), flat[i], vectorize=True)
        j = float(torch.linalg.svdvals(jac)[0])
        kappa5 = (math.sqrt(j**2 + 2 * m * math.sqrt(500) * kappa6) - j) / (m * math.sqrt(500))
        kappa4 = kappa5 / 4
        kappa3 = kappa4 / float(model.conv2.weight.norm())
        kappa2 = kappa3 / 12
        kappa1 = kappa2 / float(model.conv1.weight.norm())
        hand = dict(kappa6=kappa6, kappa5=kappa5, kappa4=kappa4, kappa3=kappa3, kappa2=kappa2, kappa1=kappa1)
        for name, label in THESIS_LENET_KAPPAS.items():
            assert float(result.kappas[label][i]) == pytest.approx(hand[name], rel=1e-5), name
        assert float(result.kappas["flatten"][i]) == pytest.approx(kappa5, rel=1e-5)
        assert float(result.bound[i]) == pytest.approx(kappa1 * 256, rel=1e-5)
        assert float(result.jacobian_norm[i]) >= j and float(result.jacobian_norm[i]) <= j * (1 + 1e-4)
    assert result.second_derivative_bound == pytest.approx(m)


def test_cifar_nin_identity_output_classifier_and_plan():
    model = build_model("cifar_nin", seed=0, width=0.05).eval()
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 255
    result = model_bounds(model, x)
    labels = list(result.kappas)
    assert labels[0] == "scale" and labels[-1] == LOGITS_LABEL and "flatten" in labels and "pool3" in labels
    assert result.jacobian_norm is None and result.second_derivative_bound is None  # no MLP tail
    with torch.no_grad():
        logits = model(x)
    torch.testing.assert_close(result.kappas[LOGITS_LABEL], identity_output_bound(logits).float())
    torch.testing.assert_close(result.kappas["pool3"], result.kappas[LOGITS_LABEL])  # global avg pool: t = 1
    # each conv divides by ||W||_F, each ReLU passes kappa unchanged
    torch.testing.assert_close(result.kappas["relu_cccp6"], result.kappas["pool3"])
    torch.testing.assert_close(result.kappas["cccp6"] * model.cccp6.weight.norm(), result.kappas["relu_cccp6"])
    torch.testing.assert_close(result.kappas["drop6"], result.kappas["conv3"])
    assert torch.all(result.bound > 0) and torch.all(torch.isfinite(result.bound))


@pytest.mark.parametrize("name", ["lenet_lrn1", "lenet_lrn3"])
def test_lrn_variants_compose(name):
    model = build_model(name, seed=0, conv_channels=(4, 6), hidden=20).eval()
    result = model_bounds(model, _lenet_inputs(2, dtype=torch.float32))
    assert "norm1" in result.kappas and result.rules["norm1"] == "lrn_rule"
    assert torch.all(torch.isfinite(result.bound)) and torch.all(result.bound > 0)


def test_batch_norm_and_avg_pool_model_composes():
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                          nn.Linear(12, 5), nn.Softplus(), nn.Dropout(0.2), nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    with torch.no_grad():
        model[1].running_var.uniform_(0.5, 2.0)
        model[1].running_mean.uniform_(-1, 1)
    x = torch.randn(5, 2, 6, 6)
    result = model_bounds(model, x)
    assert list(result.kappas) == ["0", "1", "2", "3", "4", "5", "10"]
    assert result.members["5"] == ("5", "6", "7", "8", "9")  # the tail skips the dropout
    assert result.rules["1"] == "batch_norm_rule"


def test_model_ending_in_an_activation_uses_the_identity_classifier_on_a_tail():
    model = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 4), nn.Sigmoid()).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    result = model_bounds(model, x)
    assert list(result.kappas) == ["0", LOGITS_LABEL]
    torch.testing.assert_close(result.kappas[LOGITS_LABEL], identity_output_bound(model(x).detach()))


def test_standalone_linear_layers_use_the_dense_rule():
    model = nn.Sequential(nn.Flatten(), nn.Linear(8, 6), nn.Linear(6, 3))
    x = torch.randn(4, 2, 4)
    result = model_bounds(model, x)
    assert result.rules == {"0": "identity_rule", "1": "dense_rule", "2": "output_rule"}
    with torch.no_grad():
        delta = linear_output_bound(model[2].weight, model[2].bias, model[1](x.flatten(1)))
    torch.testing.assert_close(result.kappas["2"], delta)
    torch.testing.assert_close(result.kappas["1"], delta / model[1].weight.norm())


def test_mlp_and_linear_models_agree_with_chapter_3_and_4_functions():
    gen = torch.Generator().manual_seed(0)
    mlp = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, 3))
    x = torch.randn(7, 5, generator=gen)
    result = model_bounds(mlp, x)
    assert list(result.kappas) == ["0", "4"]
    torch.testing.assert_close(result.bound, mlp_bound(mlp, x))
    linear = nn.Sequential(nn.Linear(5, 3))
    torch.testing.assert_close(model_bounds(linear, x).bound, linear_output_bound(linear[0].weight, linear[0].bias, x))


def test_unsupported_layers_raise_naming_the_layer():
    with pytest.raises(UnsupportedLayerError, match=r"'act' \(GELU\)"):
        plan_model(nn.Sequential(OrderedDictLike(lin=nn.Linear(2, 2), act=nn.GELU(), out=nn.Linear(2, 2))))
    with pytest.raises(UnsupportedLayerError, match="Conv1d"):
        model_bounds(nn.Sequential(nn.Conv1d(1, 1, 2), nn.Flatten(), nn.Linear(2, 2)), torch.zeros(1, 1, 3))
    with pytest.raises(UnsupportedLayerError, match="container"):
        plan_model(nn.Sequential(nn.Sequential(nn.Linear(2, 2)), nn.Linear(2, 2)))
    assert nn.Module not in BOUND_RULES


def OrderedDictLike(**layers):  # noqa: N802 - reads like the OrderedDict it builds
    from collections import OrderedDict

    return OrderedDict(layers)


def test_eval_mode_chunking_training_flags_and_frame():
    model = build_model("lenet5", seed=0, conv_channels=(4, 6), hidden=30)
    model.train()
    x = _lenet_inputs(7, dtype=torch.float32)
    full = model_bounds(model, x)
    assert model.training and all(m.training for m in model.modules())  # restored
    chunked = model_bounds(model, x, batch_size=3)
    torch.testing.assert_close(full.bound, chunked.bound)
    for label in full.kappas:
        torch.testing.assert_close(full.kappas[label], chunked.kappas[label])
    frame = full.to_frame()
    kappa_columns = [f"kappa_{k}" for k in full.kappas]
    assert list(frame.columns) == ["sample", "pred_label", "bound", *kappa_columns, "jacobian_norm"]
    assert len(frame) == 7 and frame["bound"].gt(0).all()
    exact = model_bounds(model, x, jacobian_norm="exact")
    frob = model_bounds(model, x, jacobian_norm="frobenius")
    assert torch.all(frob.bound <= exact.bound * (1 + 1e-6)) and torch.all(full.bound <= exact.bound * (1 + 1e-6))
    torch.testing.assert_close(full.bound, exact.bound, rtol=1e-4, atol=0)


def test_inplace_relu_does_not_corrupt_recorded_inputs():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(8, 3))
    ref = nn.Sequential(model[0], nn.ReLU(), model[2], model[3])
    x = torch.randn(3, 1, 4, 4)
    torch.testing.assert_close(model_bounds(model, x).bound, model_bounds(ref, x).bound)


def test_scale_multiplies_the_bound():
    inner = build_model("lenet5", seed=2, conv_channels=(3, 4), hidden=16, input_scale=1.0).eval()
    scaled = build_model("lenet5", seed=2, conv_channels=(3, 4), hidden=16, input_scale=1 / 256).eval()
    x = _lenet_inputs(2, dtype=torch.float32)
    torch.testing.assert_close(model_bounds(scaled, x).bound, model_bounds(inner, x / 256).bound * 256,
                               rtol=1e-5, atol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_device_agnostic(device):
    model = build_model("lenet5", seed=0, conv_channels=(4, 6), hidden=80).to(device)
    x = _lenet_inputs(4, dtype=torch.float32).to(device)
    result = model_bounds(model, x)
    assert result.bound.device.type == device and result.bound.dtype == torch.float32
    assert all(k.device.type == device for k in result.kappas.values())
    if device != "cpu":
        cpu = model_bounds(model.cpu(), x.cpu())
        torch.testing.assert_close(result.bound.cpu(), cpu.bound, rtol=1e-4, atol=0)


def test_scale_layer_type_is_registered():
    assert Scale in BOUND_RULES and nn.LocalResponseNorm in BOUND_RULES and type(make_lrn()) is nn.LocalResponseNorm


def test_the_tails_m_is_planned_once_and_the_extras_are_returned(monkeypatch):
    """Algorithm 4.1's M depends only on the weights: computed when the model is planned, once per
    call whatever the chunking, and handed to the tail rule (which then computes none itself);
    ||J(x)|| comes back in the result, one value per sample."""
    planned, in_rule = [], []
    real = mlp_bounds.second_derivative_bound
    monkeypatch.setattr(compose, "second_derivative_bound", lambda *a, **k: planned.append(1) or real(*a, **k))
    monkeypatch.setattr(mlp_bounds, "second_derivative_bound", lambda *a, **k: in_rule.append(1) or real(*a, **k))
    model = build_model("lenet5", seed=0, conv_channels=(4, 6), hidden=30)
    x = _lenet_inputs(7, dtype=torch.float32)
    result = model_bounds(model, x, batch_size=3)
    assert planned == [1] and in_rule == []
    tail = next(step for step in compose.plan_model(model) if isinstance(step.module, compose.MLPTail))
    assert result.second_derivative_bound == tail.m == real(tail.module.linears, tail.module.activations)
    assert result.jacobian_norm.shape == (7,) and torch.all(result.jacobian_norm > 0)
