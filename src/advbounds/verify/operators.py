"""One bound operator per supported layer type, and the type/name -> operator registry.

Each operator wraps one layer of a flat ``nn.Sequential`` (weights copied to the verifier's dtype
and device) and offers the same methods:

* ``forward(x)``: the layer's eval-mode output.
* ``forward_interval(lo, hi) -> (lo, hi)``: an interval enclosing the outputs for inputs in the box.
* ``prepare(lo, hi) -> state``: the linear relaxation for inputs in ``[lo, hi]`` (None for affine
  layers, which need no input bounds).
* ``backward_linear(A, state) -> (A_in, bias)``: given coefficients ``A[Bb, S, *out_shape]`` of a
  linear function ``A . y`` of the layer's output y, return ``A_in[Bb', S, *in_shape]`` and
  ``bias[Bb', S]`` with ``A . y >= A_in . x + bias`` for every input x in the box the state was
  prepared for (CROWN's backward step for a *lower* bound; an upper bound is ``-lower(-A)``).
  ``Bb`` is 1 for coefficient rows shared by every sample, ``B`` otherwise.

Affine layers are exact: ``A . y = (A W) . x + A . b``. Nonlinear layers pick, per coefficient,
the lower relaxation where ``A >= 0`` and the upper one where ``A < 0``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from advbounds.models.layers import Scale

from .relaxations import relu_relaxation, sigmoid_relaxation, softplus_relaxation, tanh_relaxation


class UnsupportedLayerError(TypeError):
    """A layer the verifier has no sound bound operator for; the caller reports "not certified"."""


def _bias_term(A: torch.Tensor, b: torch.Tensor | None, channel_dim_from_end: int) -> torch.Tensor:
    """``sum A * b`` with ``b`` broadcast along the channel axis at ``-channel_dim_from_end``."""
    if b is None:
        return torch.zeros(A.shape[:2], dtype=A.dtype, device=A.device)
    spatial = tuple(range(A.dim() - channel_dim_from_end + 1, A.dim()))
    per_channel = A.sum(dim=spatial) if spatial else A  # [Bb, S, ..., C]
    per_channel = per_channel.reshape(A.shape[0], A.shape[1], -1, b.numel()).sum(dim=2)
    return per_channel @ b


class BoundOperator:
    """Base class; subclasses set ``name`` and ``affine`` and implement the methods."""

    name: str = "base"
    affine: bool = True

    def __init__(self, layer: nn.Module, in_shape: torch.Size, dtype: torch.dtype, device: torch.device,
                 label: str = "") -> None:
        self.layer = layer
        self.label = label
        self.in_shape = torch.Size(in_shape)
        self.dtype = dtype
        self.device = device
        self.setup()
        with torch.no_grad():
            probe = self.forward(torch.zeros((1, *self.in_shape), dtype=dtype, device=device))
        self.out_shape = probe.shape[1:]

    def setup(self) -> None:  # copy parameters
        pass

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_interval(self, lo, hi):
        raise NotImplementedError

    def prepare(self, lo, hi):
        return None

    def backward_linear(self, A, state):
        raise NotImplementedError

    def _flat(self, A):
        return A.reshape(A.shape[0] * A.shape[1], *A.shape[2:])

    def _unflat(self, A, Bb, S):
        return A.reshape(Bb, S, *A.shape[1:])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.label or self.layer.__class__.__name__})"


class MonotoneOp(BoundOperator):
    """A layer that is non-decreasing in each of its inputs (a reshape, a pooling, a non-decreasing
    activation): it runs as itself, and maps the box ``[lo, hi]`` into ``[layer(lo), layer(hi)]``."""

    def forward(self, x):
        return self.layer(x)

    def forward_interval(self, lo, hi):
        return self.layer(lo), self.layer(hi)


class IdentityOp(BoundOperator):
    """``nn.Identity`` and ``nn.Dropout`` (the eval-mode identity)."""

    name = "identity"

    def forward(self, x):
        return x

    def forward_interval(self, lo, hi):
        return lo, hi

    def backward_linear(self, A, state):
        return A, torch.zeros(A.shape[:2], dtype=A.dtype, device=A.device)


class ScaleOp(BoundOperator):
    """``advbounds.models.layers.Scale``: ``y = c x`` with ``c > 0``."""

    name = "scale"

    def setup(self):
        self.factor = float(self.layer.factor)

    def forward(self, x):
        return x * self.factor

    def forward_interval(self, lo, hi):
        return lo * self.factor, hi * self.factor

    def backward_linear(self, A, state):
        return A * self.factor, torch.zeros(A.shape[:2], dtype=A.dtype, device=A.device)


class FlattenOp(MonotoneOp):
    """``nn.Flatten``: a reshape (exact, both directions)."""

    name = "flatten"

    def backward_linear(self, A, state):
        return A.reshape(*A.shape[:2], *self.in_shape), torch.zeros(A.shape[:2], dtype=A.dtype, device=A.device)


class LinearOp(BoundOperator):
    """``nn.Linear``: ``y = x W^T + b`` (on the last axis)."""

    name = "linear"

    def setup(self):
        self.weight = self.layer.weight.detach().to(device=self.device, dtype=self.dtype)
        self.bias = None if self.layer.bias is None else self.layer.bias.detach().to(device=self.device, dtype=self.dtype)
        self.abs_weight = self.weight.abs()

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def forward_interval(self, lo, hi):
        mid, rad = (hi + lo) / 2, (hi - lo) / 2
        c = F.linear(mid, self.weight, self.bias)
        r = F.linear(rad, self.abs_weight)
        return c - r, c + r

    def backward_linear(self, A, state):
        return A @ self.weight, _bias_term(A, self.bias, 1)


class Conv2dOp(BoundOperator):
    """``nn.Conv2d`` with zero padding (the transposed convolution is the backward step)."""

    name = "conv2d"

    def setup(self):
        layer = self.layer
        if layer.padding_mode != "zeros":
            raise UnsupportedLayerError(f"Conv2d {self.label!r} with padding_mode={layer.padding_mode!r} "
                                        "is not supported by the verifier (only 'zeros')")
        self.weight = layer.weight.detach().to(device=self.device, dtype=self.dtype)
        self.bias = None if layer.bias is None else layer.bias.detach().to(device=self.device, dtype=self.dtype)
        self.abs_weight = self.weight.abs()
        self.kw = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation, groups=layer.groups)

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, **self.kw)

    def forward_interval(self, lo, hi):
        mid, rad = (hi + lo) / 2, (hi - lo) / 2
        c = F.conv2d(mid, self.weight, self.bias, **self.kw)
        r = F.conv2d(rad, self.abs_weight, None, **self.kw)
        return c - r, c + r

    def backward_linear(self, A, state):
        Bb, S = A.shape[:2]
        flat = self._flat(A)
        if isinstance(self.kw["padding"], str):  # 'same' / 'valid': let autograd transpose it
            x = torch.zeros((flat.shape[0], *self.in_shape), dtype=A.dtype, device=A.device, requires_grad=True)
            with torch.enable_grad():
                (g,) = torch.autograd.grad(F.conv2d(x, self.weight, None, **self.kw), x, flat)
        else:
            g = torch.nn.grad.conv2d_input((flat.shape[0], *self.in_shape), self.weight, flat, **self.kw)
        return self._unflat(g, Bb, S), _bias_term(A, self.bias, 3)


class BatchNorm2dOp(BoundOperator):
    """``nn.BatchNorm2d`` in eval mode: the per-channel affine map ``y = s x + t`` with
    ``s = gamma / sqrt(running_var + eps)``, ``t = beta - running_mean * s``."""

    name = "batchnorm2d"

    def setup(self):
        layer = self.layer
        if layer.running_mean is None or layer.running_var is None:
            raise UnsupportedLayerError(f"BatchNorm2d {self.label!r} without running statistics "
                                        "(track_running_stats=False) is not supported by the verifier")
        var = layer.running_var.detach().to(device=self.device, dtype=self.dtype)
        mean = layer.running_mean.detach().to(device=self.device, dtype=self.dtype)
        gamma = torch.ones_like(var) if layer.weight is None else layer.weight.detach().to(device=self.device, dtype=self.dtype)
        beta = torch.zeros_like(var) if layer.bias is None else layer.bias.detach().to(device=self.device, dtype=self.dtype)
        self.s = gamma / torch.sqrt(var + layer.eps)
        self.t = beta - mean * self.s

    def forward(self, x):
        return x * self.s[:, None, None] + self.t[:, None, None]

    def forward_interval(self, lo, hi):
        mid, rad = (hi + lo) / 2, (hi - lo) / 2
        c = self.forward(mid)
        r = rad * self.s.abs()[:, None, None]
        return c - r, c + r

    def backward_linear(self, A, state):
        return A * self.s[:, None, None], _bias_term(A, self.t, 3)


class AvgPool2dOp(MonotoneOp):
    """``nn.AvgPool2d``: linear with non-negative weights (so intervals map to intervals);
    transposed with autograd, which honours padding, ceil_mode, count_include_pad, divisor_override."""

    name = "avgpool2d"

    def backward_linear(self, A, state):
        Bb, S = A.shape[:2]
        flat = self._flat(A)
        x = torch.zeros((flat.shape[0], *self.in_shape), dtype=A.dtype, device=A.device, requires_grad=True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(self.layer(x), x, flat)
        return self._unflat(g, Bb, S), torch.zeros((Bb, S), dtype=A.dtype, device=A.device)


class MaxPool2dOp(MonotoneOp):
    """``nn.MaxPool2d`` (any kernel, stride, padding, dilation, ceil_mode).

    Relaxation of ``y = max_{i in window} x_i`` for ``x`` in the box ``[l, u]``: let ``k`` be the
    window position with the largest lower bound ``l_k``.

    * Lower: ``y >= x_k`` (the max is at least any of its arguments).
    * Upper: if ``l_k >= max_{i != k} u_i`` (the window is *dominated* by k), then for every x in
      the box ``x_k >= l_k >= u_i >= x_i``, so ``y = x_k`` exactly; otherwise ``y <= max_i u_i``
      (a constant), since every ``x_i <= u_i``.

    Padding positions hold ``-inf`` (as in torch) and are never selected.
    """

    name = "maxpool2d"
    affine = False

    def setup(self):
        layer = self.layer
        if layer.return_indices:
            raise UnsupportedLayerError(f"MaxPool2d {self.label!r} with return_indices=True is not supported")

        def pair(v):
            return (v, v) if isinstance(v, int) else tuple(v)

        self.k, self.s = pair(layer.kernel_size), pair(layer.stride if layer.stride is not None else layer.kernel_size)
        self.p, self.d = pair(layer.padding), pair(layer.dilation)
        C, H, W = self.in_shape
        with torch.no_grad():
            out = layer(torch.zeros(1, C, H, W, dtype=self.dtype, device=self.device))
        Ho, Wo = out.shape[-2:]
        need_h = (Ho - 1) * self.s[0] + self.d[0] * (self.k[0] - 1) + 1
        need_w = (Wo - 1) * self.s[1] + self.d[1] * (self.k[1] - 1) + 1
        self.pad = (self.p[1], max(0, need_w - W - self.p[1]), self.p[0], max(0, need_h - H - self.p[0]))
        self.Hp, self.Wp = H + self.pad[2] + self.pad[3], W + self.pad[0] + self.pad[1]
        pos = torch.arange(self.Hp * self.Wp, dtype=torch.float64).reshape(1, 1, self.Hp, self.Wp)
        idx = F.unfold(pos, self.k, dilation=self.d, stride=self.s)  # [1, K, L]
        self.idx = idx[0].round().long().to(self.device)  # [K, L] flat positions in the padded plane
        self.out_hw = (Ho, Wo)

    def _windows(self, t):
        B, C = t.shape[:2]
        padded = F.pad(t, self.pad, value=-math.inf).reshape(B, C, self.Hp * self.Wp)
        K, L = self.idx.shape
        return padded[:, :, self.idx.reshape(-1)].reshape(B, C, K, L)

    def prepare(self, lo, hi):
        wl, wu = self._windows(lo), self._windows(hi)
        sel = wl.argmax(dim=2, keepdim=True)  # [B, C, 1, L]
        l_sel = wl.gather(2, sel)
        u_other = wu.scatter(2, sel, -math.inf).amax(dim=2, keepdim=True)
        dominated = (l_sel >= u_other)[:, :, 0]  # [B, C, L]
        u_max = wu.amax(dim=2)  # [B, C, L]
        flat_pos = self.idx.expand(sel.shape[0], sel.shape[1], -1, -1).gather(2, sel)[:, :, 0]  # [B, C, L]
        return dominated, u_max, flat_pos

    def backward_linear(self, A, state):
        dominated, u_max, flat_pos = state
        B = dominated.shape[0]
        Bb, S, C = A.shape[:3]
        A = A.reshape(Bb, S, C, -1)
        keep = (A >= 0) | dominated[:, None]
        coef = torch.where(keep, A, torch.zeros((), dtype=A.dtype, device=A.device))
        bias = torch.where(keep, torch.zeros((), dtype=A.dtype, device=A.device), A * u_max[:, None]).sum(dim=(2, 3))
        coef = coef.expand(B, S, C, coef.shape[-1])
        out = torch.zeros((B, S, C, self.Hp * self.Wp), dtype=A.dtype, device=A.device)
        out.scatter_add_(3, flat_pos[:, None].expand(B, S, C, flat_pos.shape[-1]), coef)
        out = out.reshape(B, S, C, self.Hp, self.Wp)
        H, W = self.in_shape[1:]
        out = out[..., self.pad[2]:self.pad[2] + H, self.pad[0]:self.pad[0] + W]
        return out, bias


class ElementwiseOp(MonotoneOp):
    """An elementwise non-decreasing activation with a relaxation from :mod:`.relaxations`.

    ``prepare`` computes the per-element lines ``a_low x + b_low <= f(x) <= a_up x + b_up``;
    the backward step uses the lower line where ``A >= 0`` and the upper line where ``A < 0``:
    ``A f(x) >= A (a x + b)`` term by term in both cases.
    """

    affine = False

    def relaxation(self, lo, hi):
        raise NotImplementedError

    def prepare(self, lo, hi):
        return self.relaxation(lo, hi)

    def backward_linear(self, A, state):
        a_low, b_low, a_up, b_up = (t[:, None] for t in state)
        pos, neg = A.clamp(min=0), A.clamp(max=0)
        A_in = pos * a_low + neg * a_up
        bias = (pos * b_low + neg * b_up).flatten(2).sum(dim=2)
        return A_in, bias


class ReLUOp(ElementwiseOp):
    name = "relu"
    relaxation = staticmethod(relu_relaxation)


class TanhOp(ElementwiseOp):
    name = "tanh"
    relaxation = staticmethod(tanh_relaxation)


class SigmoidOp(ElementwiseOp):
    name = "sigmoid"
    relaxation = staticmethod(sigmoid_relaxation)


class SoftplusOp(ElementwiseOp):
    name = "softplus"

    def relaxation(self, lo, hi):
        return softplus_relaxation(lo, hi, beta=float(self.layer.beta), threshold=float(self.layer.threshold))


#: layer type -> operator class (the one registry; looked up along the layer's MRO)
OPERATORS: dict[type[nn.Module], type[BoundOperator]] = {
    nn.Identity: IdentityOp,
    nn.Dropout: IdentityOp,
    Scale: ScaleOp,
    nn.Flatten: FlattenOp,
    nn.Linear: LinearOp,
    nn.Conv2d: Conv2dOp,
    nn.BatchNorm2d: BatchNorm2dOp,
    nn.AvgPool2d: AvgPool2dOp,
    nn.MaxPool2d: MaxPool2dOp,
    nn.ReLU: ReLUOp,
    nn.Tanh: TanhOp,
    nn.Sigmoid: SigmoidOp,
    nn.Softplus: SoftplusOp,
}

#: operator name -> operator class
OPERATOR_NAMES: dict[str, type[BoundOperator]] = {cls.name: cls for cls in OPERATORS.values()}


def operator_for(layer: nn.Module, label: str = "") -> type[BoundOperator]:
    """The operator class of ``layer``; raises :class:`UnsupportedLayerError` naming it."""
    for cls in type(layer).__mro__:
        if cls in OPERATORS:
            return OPERATORS[cls]
        if cls is nn.Module:
            break
    supported = ", ".join(sorted(t.__name__ for t in OPERATORS))
    raise UnsupportedLayerError(
        f"layer {label!r} ({type(layer).__name__}) is not supported by the verifier; supported: {supported}")


def compile_model(model: nn.Module, in_shape, dtype: torch.dtype, device) -> list[BoundOperator]:
    """The model's layers as bound operators (a flat ``nn.Sequential``, or one bare layer)."""
    if isinstance(model, nn.Sequential):
        named = list(model.named_children())
    else:
        named = [(type(model).__name__, model)]
    ops: list[BoundOperator] = []
    shape = torch.Size(in_shape)
    for label, layer in named:
        if isinstance(layer, nn.Sequential):
            raise UnsupportedLayerError(f"layer {label!r} is a nested nn.Sequential; the verifier expects a flat model")
        op = operator_for(layer, label)(layer, shape, dtype, torch.device(device), label=label)
        ops.append(op)
        shape = op.out_shape
    if not ops:
        raise ValueError("the model has no layers")
    return ops
