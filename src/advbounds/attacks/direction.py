"""Attack directions (FGS eq. 2.8, FGV eq. 2.10) and how a perturbation is applied.

Both the batched search (:mod:`.search`) and the naive per-sample reference (:mod:`.reference`)
go through the helpers in this module, so the two differ only in how they batch the forward
passes, never in arithmetic.

Numerical trap handled here
---------------------------
With the cross-entropy loss ``L = -log softmax(z)_y`` the gradient with respect to the logits is
``p - e_y``. When the softmax saturates (logit gap above ~17 in float32, ~37 in float64) ``p_y``
rounds to exactly 1, the ``y`` component ``p_y - 1`` becomes exactly 0 and only the tiny
``p_j`` (j != y) survive, or nothing at all once they underflow (gap above ~104 in float32). FGS
then either cannot move (``sign(0) = 0``) or moves along a direction that has lost the dominant
``-grad z_y`` term. Plain float64 autograd only delays the problem.

We instead use the exact factorisation

    p - e_y = (1 - p_y) * (q - e_y),   q_j = softmax_{k != y}(z)_j for j != y,  q_y = 0,

so ``grad_x L = (1 - p_y) * J^T (q - e_y)`` with ``J = dz/dx``. The vector ``q - e_y`` has entries
in [-1, 1] with the ``y`` entry exactly -1, so back-propagating it never underflows and its sign
pattern is the exact sign pattern of ``grad_x L`` (the factor ``1 - p_y`` is positive). The
factor itself is kept in log space, ``log(1 - p_y) = logsumexp_{k != y} z_k - logsumexp z``,
and only FGV, whose step is proportional to the gradient's magnitude, multiplies it back in.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from advbounds.settings import LOSS_LABELS, METHODS


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode (no dropout, BatchNorm running stats) and restore each module's
    own ``training`` flag afterwards, so calling an attack never changes the caller's model."""
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, flag in flags:
            module.training = flag


@contextlib.contextmanager
def fp32_precision(allow_tf32: bool = False) -> Iterator[None]:
    """Run float32 convolutions and matmuls in full IEEE precision unless ``allow_tf32``.

    PyTorch lets cuDNN convolutions use TF32 by default on Ampere and later GPUs. TF32 keeps a
    10-bit mantissa, so a pixel of 255 perturbed by eps = 0.01 is rounded back to 255 before the
    first convolution: the minimal-epsilon search would be meaningless on a GPU. The previous
    settings are restored on exit. (Global state: do not run other work in parallel threads.)
    """
    saved = []
    if not allow_tf32:
        for backend in (getattr(torch.backends.cudnn, "conv", None), getattr(torch.backends.cuda, "matmul", None)):
            if backend is not None and hasattr(backend, "fp32_precision"):
                saved.append((backend, backend.fp32_precision))
                backend.fp32_precision = "ieee"
    try:
        yield
    finally:
        for backend, value in reversed(saved):
            backend.fp32_precision = value


def prepare_model(
    model: nn.Module, x: torch.Tensor, channels_last: bool | None
) -> tuple[nn.Module, torch.memory_format]:
    """The module to run and the memory format to feed it.

    ``channels_last=None`` (auto) uses the channels-last layout on the CPU for 4-D inputs to models
    with a ``Conv2d``: oneDNN's convolutions and max pooling are 2-3x faster in NHWC there. The
    caller's model is never modified: a converted copy is returned. The layout changes only the
    order of floating-point accumulation inside kernels, not the mathematics.
    """
    device, _ = model_device_dtype(model, x)
    if channels_last is None:
        channels_last = (
            device.type == "cpu" and x.dim() == 4 and any(isinstance(m, nn.Conv2d) for m in model.modules())
        )
    if not channels_last or x.dim() != 4:
        return model, torch.contiguous_format
    import copy

    return copy.deepcopy(model).to(memory_format=torch.channels_last), torch.channels_last


def model_device_dtype(model: nn.Module, fallback: torch.Tensor) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype the model computes in (first parameter or buffer); models without
    any (e.g. a bare ``Flatten``) compute wherever and in whatever dtype the input is."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    dtype = fallback.dtype if fallback.is_floating_point() else torch.get_default_dtype()
    return fallback.device, dtype


def loss_logit_weights(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Saturation-free factorisation of ``dL/dz`` for the cross-entropy loss (see module docstring).

    Returns ``(weights, log_scale)`` in float64 with ``dL/dz = exp(log_scale) * weights``;
    ``weights = q - e_y`` has entries in [-1, 1] and ``weights[y] == -1`` exactly.
    """
    z = logits.detach().to(torch.float64)
    if z.dim() != 2 or z.shape[1] < 2:
        raise ValueError(f"logits must have shape [B, C] with C >= 2, got {tuple(z.shape)}")
    onehot = torch.nn.functional.one_hot(labels.to(z.device).long(), z.shape[1]).bool()
    others = z.masked_fill(onehot, float("-inf"))
    q = torch.softmax(others, dim=1)  # q_y = exp(-inf) = 0 exactly
    weights = q - onehot.to(torch.float64)
    log_scale = torch.logsumexp(others, dim=1) - torch.logsumexp(z, dim=1)
    return weights, log_scale


def attack_direction(
    model: nn.Module,
    x: torch.Tensor,
    *,
    method: str = "fgs",
    loss_label: str = "predicted",
    labels: torch.Tensor | None = None,
    fgv_normalize: bool = False,
    return_linear_eps: bool = False,
) -> tuple[torch.Tensor, ...]:
    """One forward and one backward pass: the logits at ``x`` and the attack direction ``d``.

    ``x`` must already be on the model's device and in its dtype. The model should be in eval mode
    (the search functions take care of that).

    - ``method="fgs"``: ``d = sign(grad_x L)`` (eq. 2.8); components with a zero gradient stay 0.
    - ``method="fgv"``: ``d = grad_x L`` (eq. 2.10), or ``grad / ||grad||_2`` with ``fgv_normalize``
      (then epsilon is directly the L2 norm of the perturbation).
    - ``loss_label``: the label ``y`` of ``L(x, y)``. ``"predicted"`` = ``f(x)`` as in Algorithm 2.1;
      ``"true"`` uses ``labels``.

    Returns ``(logits, d)``; ``logits`` are detached in the model's dtype, ``d`` is float64 with the
    shape of ``x`` (float64 so that FGV's scale ``1 - p_y`` survives even when it is below float32's
    range). With ``return_linear_eps`` also a first-order guess of the flipping epsilon, free from
    the same passes: the soft margin ``s = z_y - sum_{j != y} q_j z_j`` (``q`` as in the module
    docstring; ``s >= z_y - max_j z_j``) falls along ``d`` at the rate ``(J^T (q - e_y)) . d``, so its
    linearisation reaches 0 at ``s / ((J^T (q - e_y)) . d)`` (``inf`` where ``d`` does not lower it).
    The search uses it only to choose where to look first.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if loss_label not in LOSS_LABELS:
        raise ValueError(f"loss_label must be one of {LOSS_LABELS}, got {loss_label!r}")
    with torch.enable_grad():
        x_req = x.detach().requires_grad_(True)
        logits = model(x_req)
        if loss_label == "predicted":
            y = logits.detach().argmax(dim=1)
        else:
            if labels is None:
                raise ValueError('loss_label="true" needs the true labels (labels=...)')
            y = labels.to(logits.device).long()
        weights, log_scale = loss_logit_weights(logits, y)
        # Back-propagating a vector-Jacobian product computes all per-sample gradients in one
        # pass: samples do not interact in eval mode.
        (vjp,) = torch.autograd.grad(logits, x_req, grad_outputs=weights.to(logits.dtype))
    vjp = vjp.detach().to(torch.float64)
    soft_margin = -(weights * logits.detach().to(torch.float64)).sum(dim=1)
    if method == "fgs":
        direction = torch.sign(vjp)
    else:
        if fgv_normalize:
            norms = vjp.flatten(1).norm(dim=1).clamp_min(torch.finfo(torch.float64).tiny)
            direction = vjp / norms.view((-1,) + (1,) * (vjp.dim() - 1))
        else:
            direction = vjp * log_scale.exp().view((-1,) + (1,) * (vjp.dim() - 1))
    if not return_linear_eps:
        return logits.detach(), direction
    descent = (vjp * direction).flatten(1).sum(dim=1)
    linear_eps = torch.where(descent > 0, soft_margin / descent, torch.full_like(descent, torch.inf))
    return logits.detach(), direction, linear_eps


def perturb(
    x64: torch.Tensor,
    direction: torch.Tensor,
    eps: torch.Tensor,
    clip: tuple[float, float] | None,
    dtype: torch.dtype,
) -> torch.Tensor:
    """``x + eps * d`` (optionally clipped), computed in float64 and rounded once to ``dtype``.

    ``x64`` and ``direction`` are float64 ``[B, ...]``, ``eps`` is float64 ``[B]``. Rounding once
    (instead of forming ``eps * d`` in float32 and then adding) keeps tiny epsilons on 255-valued
    pixels as accurate as the model's dtype allows. Elementwise only, so a sample's result does not
    depend on the batch it is computed in.
    """
    adv = x64 + eps.view((-1,) + (1,) * (x64.dim() - 1)) * direction
    if clip is not None:
        adv = adv.clamp(clip[0], clip[1])
    return adv.to(dtype)


def perturbation_norm(
    x64: torch.Tensor,
    direction: torch.Tensor,
    eps: torch.Tensor,
    clip: tuple[float, float] | None,
) -> torch.Tensor:
    """L2 norm of the perturbation ``eps * d`` (float64, per sample).

    Without clipping this is ``eps * ||d||_2`` exactly, i.e. ``eps * sqrt(#nonzero signs)`` for FGS:
    components with a zero gradient sign do not move and do not count. With clipping it is
    ``||clip(x + eps d) - x||_2``. Both are the ideal (real-number) perturbation; the input the
    model saw differs from it by the single rounding of :func:`perturb` (at most half an ulp of
    the pixel value, 7.6e-6 at 255 in float32).
    """
    if clip is None:
        return eps * direction.flatten(1).norm(dim=1)
    adv = (x64 + eps.view((-1,) + (1,) * (x64.dim() - 1)) * direction).clamp(clip[0], clip[1])
    return (adv - x64).flatten(1).norm(dim=1)
