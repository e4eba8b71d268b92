"""Architectures, registry, initialisation and random-parameter builders of advbounds.models."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from advbounds.models import (
    MODEL_REGISTRY,
    Scale,
    UnknownModelError,
    build_model,
    initialize_,
    lrn_thesis_params,
    make_lrn,
    random_uniform_linear,
    random_uniform_mlp,
    uniform_parameters_,
)



ALLOWED_LAYERS = (Scale, nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.LPPool2d, nn.BatchNorm2d,
                  nn.LocalResponseNorm, nn.Flatten, nn.Linear, nn.ReLU, nn.Tanh, nn.Sigmoid,
                  nn.Softplus, nn.Dropout)

# name -> (kwargs, input shape, n_classes)
CASES = {
    "linear": ({"in_dim": 4, "n_classes": 3}, (5, 4), 3),
    "mlp": ({"in_dim": 13, "hidden": [5, 3], "n_classes": 3}, (5, 13), 3),
    "lenet5": ({}, (3, 1, 28, 28), 10),
    "lenet_lrn1": ({}, (3, 1, 28, 28), 10),
    "lenet_lrn2": ({}, (3, 1, 28, 28), 10),
    "lenet_lrn3": ({}, (3, 1, 28, 28), 10),
    "cifar_nin": ({"width": 0.1}, (2, 3, 32, 32), 10),
}

LENET_NAMES = ["scale", "conv1", "pool1", "conv2", "pool2", "flatten", "ip1", "relu1", "ip2"]
NIN_NAMES = [
    "scale",
    "conv1", "relu_conv1", "cccp1", "relu_cccp1", "cccp2", "relu_cccp2", "pool1", "drop3",
    "conv2", "relu_conv2", "cccp3", "relu_cccp3", "cccp4", "relu_cccp4", "pool2", "drop6",
    "conv3", "relu_conv3", "cccp5", "relu_cccp5", "cccp6", "relu_cccp6", "pool3", "flatten",
]


def names(model: nn.Sequential) -> list[str]:
    return [name for name, _ in model.named_children()]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_has_the_contract_names():
    assert set(MODEL_REGISTRY) == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_model_is_flat_allowed_and_outputs_logits(name):
    kwargs, shape, n_classes = CASES[name]
    model = build_model(name, seed=0, **kwargs).eval()
    assert isinstance(model, nn.Sequential)
    for child_name, child in model.named_children():
        assert isinstance(child, ALLOWED_LAYERS), f"{name}.{child_name} is a {type(child).__name__}"
        assert not list(child.children()), f"{name}.{child_name} is nested"
    x = torch.rand(shape) * (255 if len(shape) == 4 else 1)
    out = model(x)
    assert out.shape == (shape[0], n_classes)
    assert torch.isfinite(out).all()


def test_lenet5_architecture():
    model = build_model("lenet5")
    assert names(model) == LENET_NAMES
    assert n_params(model) == 431_080
    assert model.scale.factor == 0.00390625
    assert (model.conv1.in_channels, model.conv1.out_channels, model.conv1.kernel_size) == (1, 20, (5, 5))
    assert (model.conv2.in_channels, model.conv2.out_channels, model.conv2.kernel_size) == (20, 50, (5, 5))
    for pool in (model.pool1, model.pool2):
        assert isinstance(pool, nn.MaxPool2d) and pool.kernel_size == 2 and pool.stride == 2
    assert (model.ip1.in_features, model.ip1.out_features) == (800, 500)
    assert (model.ip2.in_features, model.ip2.out_features) == (500, 10)
    # Caffe's LeNet has no non-linearity after its convolutions: the only ReLU follows ip1.
    relus = [n for n, m in model.named_children() if isinstance(m, (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.Softplus))]
    assert relus == ["relu1"]


@pytest.mark.parametrize(
    "name, expected",
    [
        ("lenet_lrn1", ["scale", "conv1", "pool1", "norm1", "conv2", "pool2", "flatten", "ip1", "relu1", "ip2"]),
        ("lenet_lrn2", ["scale", "conv1", "pool1", "conv2", "pool2", "norm2", "flatten", "ip1", "relu1", "ip2"]),
        ("lenet_lrn3", ["scale", "conv1", "pool1", "norm1", "conv2", "pool2", "norm2", "flatten", "ip1",
                        "relu1", "ip2"]),
    ],
)
def test_lenet_lrn_variants_place_lrn_after_pooling(name, expected):
    model = build_model(name)
    assert names(model) == expected
    lrns = [n for n, m in model.named_children() if isinstance(m, nn.LocalResponseNorm)]
    assert lrns == [n for n in expected if n.startswith("norm")]
    assert n_params(model) == 431_080  # LRN has no parameters
    params = lrn_thesis_params(getattr(model, lrns[0]))
    assert (params.n, params.beta, params.k) == (5, 0.75, 1.0)
    assert params.alpha == pytest.approx(1e-4 / 5)  # Caffe's alpha: 0.0001 with local_size: 5


def test_lenet_lrn_kwargs_use_the_thesis_alpha():
    model = build_model("lenet_lrn1", lrn_n=3, lrn_alpha=0.01, lrn_beta=0.5, lrn_k=2.0)
    params = lrn_thesis_params(model.norm1)
    assert (params.n, params.beta, params.k) == (3, 0.5, 2.0)
    assert params.alpha == pytest.approx(0.01)
    assert model.norm1.alpha == pytest.approx(0.03)  # torch's alpha is n * thesis alpha


def test_lrn_layer_matches_the_thesis_definition():
    """b_i = a_i (k + alpha * sum_{l=max(0,i-n/2)}^{min(N-1,i+n/2)} a_l^2)^(-beta), Section 5.2.4."""
    n, alpha, beta, k = 3, 0.05, 0.6, 1.5
    layer = make_lrn(n, alpha, beta, k)
    a = torch.randn(2, 6, 3, 4, dtype=torch.float64) * 3
    expected = torch.empty_like(a)
    channels = a.shape[1]
    for i in range(channels):
        lo, hi = max(0, i - n // 2), min(channels - 1, i + n // 2)
        window = (a[:, lo:hi + 1] ** 2).sum(dim=1)
        expected[:, i] = a[:, i] * (k + alpha * window) ** (-beta)
    torch.testing.assert_close(layer(a), expected)


@pytest.mark.parametrize("bad", [dict(n=4), dict(n=0), dict(alpha=0.0), dict(beta=1.0), dict(beta=0.0), dict(k=0.0)])
def test_make_lrn_enforces_assumption_5_10(bad):
    with pytest.raises(ValueError):
        make_lrn(**bad)


def test_cifar_nin_architecture():
    model = build_model("cifar_nin")
    assert names(model) == NIN_NAMES
    assert n_params(model) == 966_986
    convs = {n: (m.in_channels, m.out_channels, m.kernel_size[0], m.padding[0])
             for n, m in model.named_children() if isinstance(m, nn.Conv2d)}
    assert convs == {
        "conv1": (3, 192, 5, 2), "cccp1": (192, 160, 1, 0), "cccp2": (160, 96, 1, 0),
        "conv2": (96, 192, 5, 2), "cccp3": (192, 192, 1, 0), "cccp4": (192, 192, 1, 0),
        "conv3": (192, 192, 3, 1), "cccp5": (192, 192, 1, 0), "cccp6": (192, 10, 1, 0),
    }
    assert isinstance(model.pool1, nn.MaxPool2d) and model.pool1.ceil_mode
    assert isinstance(model.pool2, nn.AvgPool2d) and model.pool2.ceil_mode
    assert (model.pool1.kernel_size, model.pool1.stride, model.pool2.kernel_size, model.pool2.stride) == (3, 2, 3, 2)
    assert isinstance(model.pool3, nn.AvgPool2d) and model.pool3.kernel_size == 8
    assert model.drop3.p == model.drop6.p == 0.5
    # spatial sizes with Caffe's ceil rounding: 32 -> 16 -> 8 -> 1
    shapes = {}
    x = torch.zeros(1, 3, 32, 32)
    for n, m in model.eval().named_children():
        x = m(x)
        shapes[n] = tuple(x.shape[1:])
    assert shapes["pool1"] == (96, 16, 16) and shapes["pool2"] == (192, 8, 8) and shapes["pool3"] == (10, 1, 1)


def test_cifar_nin_width_keeps_the_layer_sequence():
    tiny = build_model("cifar_nin", width=0.05, image_size=8)
    assert names(tiny) == NIN_NAMES
    assert [type(m) for m in tiny] == [type(m) for m in build_model("cifar_nin")]
    assert tiny.conv1.out_channels == 10 and tiny.cccp6.out_channels == 10
    assert tiny(torch.rand(4, 3, 8, 8) * 255).shape == (4, 10)


def test_mlp_layer_sequence_and_activations():
    model = build_model("mlp", in_dim=57, hidden=[7, 5, 3], n_classes=2)
    assert names(model) == ["fc1", "tanh1", "fc2", "tanh2", "fc3", "tanh3", "fc4"]
    assert [m.out_features for m in model if isinstance(m, nn.Linear)] == [7, 5, 3, 2]
    for activation, cls in [("relu", nn.ReLU), ("sigmoid", nn.Sigmoid), ("softplus", nn.Softplus)]:
        model = build_model("mlp", in_dim=4, hidden=[5], n_classes=3, activation=activation)
        assert isinstance(model[1], cls)
    assert names(build_model("mlp", in_dim=4, hidden=[], n_classes=3)) == ["fc1"]
    with pytest.raises(ValueError, match="tanh"):
        build_model("mlp", in_dim=4, hidden=[5], n_classes=3, activation="elu")


def test_registry_typo_names_the_valid_models():
    with pytest.raises(UnknownModelError) as info:
        build_model("lenet_5")
    message = str(info.value)
    for valid in MODEL_REGISTRY:
        assert valid in message
    assert "Did you mean 'lenet5'" in message


def test_bad_kwarg_names_the_accepted_ones():
    with pytest.raises(TypeError, match="conv_channels"):
        build_model("lenet5", n_hidden=3)


def test_build_model_seed_is_reproducible_and_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    a = build_model("lenet5", seed=3)
    b = build_model("lenet5", seed=3)
    c = build_model("lenet5", seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.conv1.weight, c.conv1.weight)


def test_init_schemes():
    model = build_model("lenet5", seed=0)  # xavier: Caffe's U(+-sqrt(3 / fan_in)), zero bias
    bound = math.sqrt(3 / 800)
    assert model.ip1.weight.abs().max() <= bound
    assert model.ip1.weight.abs().max() > 0.95 * bound
    assert torch.count_nonzero(model.ip1.bias) == 0
    nin = build_model("cifar_nin", seed=0)  # kaiming: N(0, 2 / fan_in)
    assert nin.conv3.weight.std().item() == pytest.approx(math.sqrt(2 / (192 * 9)), rel=0.05)
    assert torch.count_nonzero(nin.conv3.bias) == 0
    with pytest.raises(ValueError, match="xavier"):
        initialize_(model, "glorot")


def test_random_uniform_mlp_draws_within_the_interval_and_is_seeded():
    model = random_uniform_mlp(2, [10, 10, 10], 5, -100.0, 100.0, seed=7)
    values = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert values.min() >= -100 and values.max() <= 100
    assert values.min() < -90 and values.max() > 90  # the whole interval is used
    assert abs(values.mean().item()) < 15
    again = random_uniform_mlp(2, [10, 10, 10], 5, -100.0, 100.0, seed=7)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), again.parameters()))
    other = random_uniform_mlp(2, [10, 10, 10], 5, -100.0, 100.0, seed=8)
    assert not torch.equal(model.fc1.weight, other.fc1.weight)
    # a shared generator is consumed: successive models differ, the sequence is reproducible
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    first, second = (random_uniform_linear(20, 5, -1, 1, generator=g1) for _ in range(2))
    assert not torch.equal(first.fc1.weight, second.fc1.weight)
    assert torch.equal(random_uniform_linear(20, 5, -1, 1, generator=g2).fc1.weight, first.fc1.weight)
    assert [type(m) for m in first] == [nn.Linear]


def test_uniform_parameters_rejects_an_empty_interval():
    with pytest.raises(ValueError):
        uniform_parameters_(build_model("linear", in_dim=2, n_classes=2), 1.0, -1.0)


def test_scale_layer():
    assert torch.equal(Scale(0.5)(torch.tensor([2.0, 4.0])), torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError):
        Scale(0.0)


@pytest.mark.parametrize("seed", range(4))
def test_cifar_nin_starts_with_every_class_alive(seed):
    """relu_cccp6 must not cut a class to zero for every input at initialisation (it would never
    receive a gradient); the cccp6 bias calibration guarantees it."""
    x = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 255
    with torch.no_grad():
        logits = build_model("cifar_nin", seed=seed, width=0.25).eval()(x)
    assert (logits > 0).any(dim=0).all()


def test_cifar_nin_without_the_final_relu():
    model = build_model("cifar_nin", width=0.1, final_relu=False)
    assert names(model) == [n for n in NIN_NAMES if n != "relu_cccp6"]
