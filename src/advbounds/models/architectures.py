"""The thesis's architectures as flat ``nn.Sequential`` stacks with named children.

Every builder returns a model whose output is the logits (the softmax is implicit) and which
contains only layer types the bounds engine knows (see ``docs/CONTRACTS.md``). Builders use the
global torch RNG for initialisation; ``advbounds.models.build_model(name, seed=...)`` seeds it.
The architectures and every choice the thesis leaves open are documented in ``docs/models.md``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from .layers import Scale, make_lrn
from .weights import initialize_

#: Caffe's ``transform_param { scale: 0.00390625 }`` (1/256) of its MNIST LeNet example.
CAFFE_PIXEL_SCALE = 0.00390625

#: activation name -> module class (names as in ``advbounds.bounds.ACTIVATION_DERIVATIVE_BOUNDS``)
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "softplus": nn.Softplus,
}


def _activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}") from None


def _positive_int(value, what: str) -> int:
    if int(value) != value or int(value) < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def _output_shape(layers: OrderedDict, in_channels: int, image_size: int) -> torch.Size:
    """Shape of one sample after ``layers`` (a dry forward pass, so pooling arithmetic is torch's)."""
    with torch.no_grad():
        probe = nn.Sequential(layers).eval()(torch.zeros(1, in_channels, image_size, image_size))
    return probe.shape[1:]


# ------------------------------------------------------------------------------------------------
# Linear classifier and MLP (Chapters 3 and 4)
# ------------------------------------------------------------------------------------------------


def linear(in_dim: int, n_classes: int, init: str = "xavier") -> nn.Sequential:
    """Linear (softmax-regression) classifier: ``Sequential(fc1 = Linear(in_dim, n_classes))``."""
    in_dim = _positive_int(in_dim, "in_dim")
    n_classes = _positive_int(n_classes, "n_classes")
    model = nn.Sequential(OrderedDict(fc1=nn.Linear(in_dim, n_classes)))
    return initialize_(model, init)


def mlp(
    in_dim: int,
    hidden: Sequence[int],
    n_classes: int,
    activation: str = "tanh",
    init: str = "xavier",
) -> nn.Sequential:
    """MLP ``fc1, <act>1, ..., fc<L>, <act><L>, fc<L+1>`` with L = len(hidden) hidden layers.

    ``hidden=[]`` gives the linear classifier. The last Linear is the output layer whose logits
    are softmaxed implicitly (Section 2.3).
    """
    in_dim = _positive_int(in_dim, "in_dim")
    n_classes = _positive_int(n_classes, "n_classes")
    widths = [_positive_int(h, "hidden width") for h in hidden]
    _activation(activation)  # validate early, even for hidden=[]
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    previous = in_dim
    for i, width in enumerate(widths, start=1):
        layers[f"fc{i}"] = nn.Linear(previous, width)
        layers[f"{activation}{i}"] = _activation(activation)
        previous = width
    layers[f"fc{len(widths) + 1}"] = nn.Linear(previous, n_classes)
    return initialize_(nn.Sequential(layers), init)


# ------------------------------------------------------------------------------------------------
# LeNet-5 and its LRN variants (Sections 5.3 and 5.4.1)
# ------------------------------------------------------------------------------------------------


def _lenet(
    lrn_after: tuple[int, ...],
    *,
    in_channels: int,
    image_size: int,
    n_classes: int,
    conv_channels: Sequence[int],
    hidden: int,
    input_scale: float,
    lrn_n: int,
    lrn_alpha: float,
    lrn_beta: float,
    lrn_k: float,
    init: str,
) -> nn.Sequential:
    if len(conv_channels) != 2:
        raise ValueError(f"conv_channels must have two entries (C1, C3), got {conv_channels!r}")
    c1, c3 = (_positive_int(c, "conv_channels entry") for c in conv_channels)
    in_channels = _positive_int(in_channels, "in_channels")
    image_size = _positive_int(image_size, "image_size")
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    layers["scale"] = Scale(input_scale)
    # Caffe's LeNet: convolutions are linear (no ReLU); pooling uses Caffe's ceil rounding,
    # which equals floor rounding for the even sizes of MNIST (24 -> 12, 8 -> 4).
    layers["conv1"] = nn.Conv2d(in_channels, c1, kernel_size=5, stride=1)
    layers["pool1"] = nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True)
    if 1 in lrn_after:
        layers["norm1"] = make_lrn(lrn_n, lrn_alpha, lrn_beta, lrn_k)
    layers["conv2"] = nn.Conv2d(c1, c3, kernel_size=5, stride=1)
    layers["pool2"] = nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True)
    if 2 in lrn_after:
        layers["norm2"] = make_lrn(lrn_n, lrn_alpha, lrn_beta, lrn_k)
    layers["flatten"] = nn.Flatten()
    flat = int(torch.Size(_output_shape(layers, in_channels, image_size)).numel())
    layers["ip1"] = nn.Linear(flat, _positive_int(hidden, "hidden"))
    layers["relu1"] = nn.ReLU()
    layers["ip2"] = nn.Linear(hidden, _positive_int(n_classes, "n_classes"))
    return initialize_(nn.Sequential(layers), init)


def lenet5(
    in_channels: int = 1,
    image_size: int = 28,
    n_classes: int = 10,
    conv_channels: Sequence[int] = (20, 50),
    hidden: int = 500,
    input_scale: float = CAFFE_PIXEL_SCALE,
    init: str = "xavier",
) -> nn.Sequential:
    """Caffe's MNIST LeNet (Section 5.4): scale, conv1 20@5x5, pool1 max 2x2/2, conv2 50@5x5,
    pool2 max 2x2/2, flatten, ip1 800->500, relu1, ip2 500->10. 431,080 parameters."""
    return _lenet((), in_channels=in_channels, image_size=image_size, n_classes=n_classes,
                  conv_channels=conv_channels, hidden=hidden, input_scale=input_scale,
                  lrn_n=5, lrn_alpha=1e-4 / 5, lrn_beta=0.75, lrn_k=1.0, init=init)


def _lenet_lrn_builder(lrn_after: tuple[int, ...], doc: str):
    def builder(
        in_channels: int = 1,
        image_size: int = 28,
        n_classes: int = 10,
        conv_channels: Sequence[int] = (20, 50),
        hidden: int = 500,
        input_scale: float = CAFFE_PIXEL_SCALE,
        lrn_n: int = 5,
        lrn_alpha: float = 1e-4 / 5,
        lrn_beta: float = 0.75,
        lrn_k: float = 1.0,
        init: str = "xavier",
    ) -> nn.Sequential:
        return _lenet(lrn_after, in_channels=in_channels, image_size=image_size, n_classes=n_classes,
                      conv_channels=conv_channels, hidden=hidden, input_scale=input_scale,
                      lrn_n=lrn_n, lrn_alpha=lrn_alpha, lrn_beta=lrn_beta, lrn_k=lrn_k, init=init)

    builder.__doc__ = (
        f"{doc}\n\nLRN hyperparameters use the thesis's notation (Section 5.2.4): ``lrn_alpha`` multiplies "
        "the plain sum of squares over the ``lrn_n`` neighbouring channels. The default 1e-4 / 5 is "
        "Caffe's/torch's ``alpha: 0.0001, local_size: 5`` (see ``layers.make_lrn``)."
    )
    return builder


lenet_lrn1 = _lenet_lrn_builder((1,), "LeNet-LRN1: LeNet-5 with an LRN layer (norm1) after pool1 (Section 5.4.1).")
lenet_lrn2 = _lenet_lrn_builder((2,), "LeNet-LRN2: LeNet-5 with an LRN layer (norm2) after pool2 (Section 5.4.1).")
lenet_lrn3 = _lenet_lrn_builder((1, 2), "LeNet-LRN3: LeNet-5 with LRN layers after both pooling layers (5.4.1).")
for _name, _fn in (("lenet_lrn1", lenet_lrn1), ("lenet_lrn2", lenet_lrn2), ("lenet_lrn3", lenet_lrn3)):
    _fn.__name__ = _fn.__qualname__ = _name


# ------------------------------------------------------------------------------------------------
# CIFAR-NIN (Section 5.1.2; Lin et al. 2013, Caffe model zoo "NIN CIFAR-10")
# ------------------------------------------------------------------------------------------------


def cifar_nin(
    in_channels: int = 3,
    image_size: int = 32,
    n_classes: int = 10,
    width: float = 1.0,
    dropout: float = 0.5,
    input_scale: float = CAFFE_PIXEL_SCALE,
    init: str = "kaiming",
    final_relu: bool = True,
    calibrate_output: bool = True,
) -> nn.Sequential:
    """Network-in-Network for CIFAR-10 with the layer names of the Caffe model-zoo prototxt.

    scale; conv1 192@5x5 p2, relu, cccp1 160@1x1, relu, cccp2 96@1x1, relu, pool1 max 3x3/2 (ceil),
    drop3; conv2 192@5x5 p2, relu, cccp3 192@1x1, relu, cccp4 192@1x1, relu, pool2 avg 3x3/2 (ceil),
    drop6; conv3 192@3x3 p1, relu, cccp5 192@1x1, relu, cccp6 n_classes@1x1, relu, pool3 global avg
    (8x8 for 32x32 inputs); flatten -> logits. ``width`` multiplies every hidden channel count
    (rounded, at least 1), so the smoke run can build a tiny copy with the same layer sequence.
    """
    if not width > 0:
        raise ValueError(f"width must be > 0, got {width}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
    in_channels = _positive_int(in_channels, "in_channels")
    image_size = _positive_int(image_size, "image_size")
    n_classes = _positive_int(n_classes, "n_classes")

    def w(channels: int) -> int:
        return max(1, int(round(channels * width)))

    layers: OrderedDict[str, nn.Module] = OrderedDict()
    layers["scale"] = Scale(input_scale)

    def mlpconv(names: Sequence[str], c_in: int, widths: Sequence[int], kernel: int, pad: int) -> int:
        for j, (name, c_out) in enumerate(zip(names, widths)):
            k, p = (kernel, pad) if j == 0 else (1, 0)
            layers[name] = nn.Conv2d(c_in, c_out, kernel_size=k, padding=p)
            layers[f"relu_{name}"] = nn.ReLU()
            c_in = c_out
        return c_in

    c = mlpconv(("conv1", "cccp1", "cccp2"), in_channels, (w(192), w(160), w(96)), 5, 2)
    layers["pool1"] = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)
    layers["drop3"] = nn.Dropout(dropout)
    c = mlpconv(("conv2", "cccp3", "cccp4"), c, (w(192), w(192), w(192)), 5, 2)
    layers["pool2"] = nn.AvgPool2d(kernel_size=3, stride=2, ceil_mode=True)
    layers["drop6"] = nn.Dropout(dropout)
    mlpconv(("conv3", "cccp5", "cccp6"), c, (w(192), w(192), n_classes), 3, 1)
    _, height, width_out = _output_shape(layers, in_channels, image_size)
    if height != width_out:
        raise ValueError(f"non-square feature map {height}x{width_out}")
    if not final_relu:
        del layers["relu_cccp6"]
    layers["pool3"] = nn.AvgPool2d(kernel_size=int(height), stride=1)  # global average pooling
    layers["flatten"] = nn.Flatten()
    model = initialize_(nn.Sequential(layers), init)
    if calibrate_output:
        _calibrate_output_bias_(model, in_channels, image_size)
    return model


#: pre-activation of every class channel at the grey image after ``_calibrate_output_bias_``
NIN_OUTPUT_BIAS_TARGET = 0.5


@torch.no_grad()
def _calibrate_output_bias_(model: nn.Sequential, in_channels: int, image_size: int) -> None:
    """Shift cccp6's bias so that every class channel's mean pre-activation on a uniform mid-grey
    image (127.5 in raw pixel units) is ``NIN_OUTPUT_BIAS_TARGET``.

    Without mean subtraction the inputs are all positive, so a freshly initialised NIN is almost
    input-independent and each class channel of cccp6 is a near-constant O(1) number; the ones
    that start negative are cut to zero by relu_cccp6 for every input, get no gradient and the
    class can never be predicted (3 of 10 classes for some seeds). Starting every class channel
    slightly positive keeps all of them trainable. Data-independent and deterministic.
    """
    h = torch.full((1, in_channels, image_size, image_size), 127.5)
    was_training = model.training
    model.eval()
    for name, layer in model.named_children():
        h = layer(h)
        if name == "cccp6":
            break
    model.train(was_training)
    model.cccp6.bias -= h.mean(dim=(0, 2, 3)) - NIN_OUTPUT_BIAS_TARGET
