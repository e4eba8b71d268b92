"""Certified upper bounds on the Lipschitz constants (L2 operator norms) of the layers of a network.

Everything here returns an upper bound that is *certified* for the exact-arithmetic map the layer
defines with its stored parameters: computed in float64, with explicit slack for every rounding step,
and rounded up (``round_up``). The sound bound rules of ``advbounds.bounds.sound`` divide by these
constants, so an under-estimate would make a bound false; an over-estimate only makes it smaller.

* ``certified_lambda_max`` -- ``lambda_max`` of (a batch of) Gram matrices ``A A^H``: eigensolver
  estimate, then a Cholesky factorisation of ``mu I - G`` proves ``lambda_max <= mu``.
* ``matrix_operator_norm`` -- ``||W||_2`` of a dense matrix (a Linear layer).
* ``conv2d_operator_norm`` -- ``||conv||_2`` of an ``nn.Conv2d`` on a given input size, from the
  kernel's Fourier transform (proof in its docstring).
* ``pool_lipschitz_constant`` -- max / average / L_p pooling, from the exact count of windows that
  cover each input pixel.
* ``lrn_lipschitz_constant`` -- local response normalisation, global or on a ball.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._common import BOUND_DTYPE, UNIT_ROUNDOFF_F64, UnsupportedLayerError
from .spectral import power_of_two_exponent, scale_by_power_of_two

#: relative margins ``eta`` tried, in order, to certify ``lambda_max <= lambda_estimate * (1 + eta)``
CERTIFY_LADDER = (2.0**-40, 2.0**-30, 2.0**-20, 2.0**-10, 1.0)

_U = UNIT_ROUNDOFF_F64


def gamma(k: float) -> float:
    """Higham's ``gamma_k = k u / (1 - k u)`` for float64."""
    return k * _U / (1.0 - k * _U)


def round_up(t: torch.Tensor, ulps: float = 4.0) -> torch.Tensor:
    """``t (1 + ulps u)`` moved one float up: an upper bound on the exact value of a non-negative
    quantity whose computed value ``t`` has relative error at most ``ulps * u`` (so a computed 0 is an
    exact 0 and stays 0)."""
    t = torch.as_tensor(t, dtype=BOUND_DTYPE)
    grown = t * (1.0 + ulps * _U)
    raised = torch.nextafter(grown, torch.full_like(grown, math.inf))
    return torch.where(torch.isfinite(grown) & (grown != 0), raised, grown)


def round_down(t: torch.Tensor, ulps: float = 4.0) -> torch.Tensor:
    """``t (1 - ulps u)`` moved one float towards 0, clamped at 0: a lower bound on the exact value of a
    non-negative quantity whose computed value ``t`` has relative error at most ``ulps * u``. ``inf``
    stays ``inf`` (an infinite bound is exact: nothing can reach the next layer's threshold)."""
    t = torch.as_tensor(t, dtype=BOUND_DTYPE)
    shrunk = (t * (1.0 - ulps * _U)).clamp_min(0.0)
    lowered = torch.where(shrunk > 0, torch.nextafter(shrunk, torch.zeros_like(shrunk)), shrunk)
    return torch.where(torch.isinf(t), t, lowered)


# ------------------------------------------------------------------------------------------------
# Gram matrices and dense matrices
# ------------------------------------------------------------------------------------------------


def certified_lambda_max(gram: torch.Tensor, inner_dim: int) -> torch.Tensor:
    """Upper bound ``[b]`` on ``lambda_max(A A^H)`` for the exact ``A``, given the computed Gram matrices
    ``gram = fl(A A^H)`` ``[b, m, m]`` (real or complex, float64) of inner dimension ``inner_dim``.

    Proof. (1) Forming the Gram matrix: ``|G~ - G| <= gamma_c |A||A|^H`` entrywise (``c = inner_dim`` for
    real, ``4 inner_dim`` covers complex products), and ``|| |A||A|^H ||_2 <= ||A||_F^2 <= trace(G~) / (1 -
    gamma_c)``, so ``lambda_max(G) <= lambda_max(G~) + gamma_c trace(G~) (1 + 2 gamma_c)`` (Weyl).
    (2) ``lambda_max(G~) <= mu`` is proved by a Cholesky factorisation of ``C = fl(mu I - G~)``: if it
    completes, ``L L^H = C + E`` with ``|E| <= gamma_{m+1} |L||L^H|`` (Higham, Thm 10.3; ``4(m+1)`` for
    complex), so ``lambda_min(C) >= -gamma ||L||_F^2``; forming the diagonal of ``C`` moves it by at most
    ``u (mu + max_i G~_ii)``. Hence ``lambda_max(G~) <= mu + gamma ||L||_F^2 + u (mu + max G~_ii)``.
    ``mu = theta (1 + eta)`` with ``theta`` the eigensolver's estimate and ``eta`` climbing
    ``CERTIFY_LADDER``; if nothing certifies, ``trace(G~) >= lambda_max(G~)`` (PSD) is used.
    """
    is_complex = gram.is_complex()
    m = gram.shape[-1]
    factor = 4.0 if is_complex else 1.0
    diag = gram.diagonal(dim1=-2, dim2=-1).real
    trace = diag.sum(-1).clamp_min(0.0)
    formation = gamma(factor * inner_dim + 2) * trace * (1.0 + 2.0 * gamma(factor * inner_dim + 2))
    result = round_up(trace * (1.0 + gamma(m + 1)) + formation, 8)  # trace fallback, always valid
    pending = trace > 0
    if not bool(pending.any()):
        return torch.where(pending, result, torch.zeros_like(result))
    theta = torch.linalg.eigvalsh(gram).real[..., -1].clamp_min(0.0)
    for eta in CERTIFY_LADDER:
        index = pending.nonzero().squeeze(1)
        if index.numel() == 0:
            break
        mu = theta[index] * (1.0 + eta) + eta * trace[index] / m
        shifted = -gram[index]
        shifted.diagonal(dim1=-2, dim2=-1).add_(mu[:, None])
        chol, info = torch.linalg.cholesky_ex(shifted)
        ok = info == 0
        if bool(ok.any()):
            done = index[ok]
            fro_sq = torch.linalg.matrix_norm(chol[ok]).real ** 2
            slack = (gamma(factor * (m + 1)) * fro_sq + _U * (mu[ok] + diag[done].max(-1).values))
            bound = round_up(mu[ok] + slack + formation[done], 8)
            result[done] = torch.minimum(result[done], bound)
            pending[done] = False
    return torch.where(trace > 0, result, torch.zeros_like(result))


def _gram_smaller_side(a: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``A A^H`` or ``A^H A`` (whichever is smaller) of ``[..., p, q]`` and the inner dimension."""
    p, q = a.shape[-2:]
    if p <= q:
        return a @ a.transpose(-2, -1).conj(), q
    return a.transpose(-2, -1).conj() @ a, p


@torch.no_grad()
def matrix_operator_norm(weight: torch.Tensor) -> float:
    """Certified upper bound on ``||W||_2`` (largest singular value) of a matrix ``[p, q]``.

    ``W`` is first divided by a power of two (exact) so that its largest entry lies in ``[1/2, 1)``:
    the Gram matrix can then neither overflow nor underflow (weights of 1e150 or 1e-150 are fine).
    ``||W||_2 = sqrt(lambda_max(W W^T))`` with ``certified_lambda_max``; the square root is rounded up.
    """
    w = weight.detach().to(BOUND_DTYPE)
    if w.dim() != 2:
        w = w.reshape(w.shape[0], -1)
    if not bool(torch.isfinite(w).all()):
        raise ValueError("matrix_operator_norm: non-finite weights")
    exponent = power_of_two_exponent(w)
    gram, inner = _gram_smaller_side(scale_by_power_of_two(w, -exponent))
    lam = certified_lambda_max(gram.unsqueeze(0), inner)[0]
    return float(scale_by_power_of_two(round_up(lam.sqrt(), 2), exponent))


# ------------------------------------------------------------------------------------------------
# Convolutions
# ------------------------------------------------------------------------------------------------


def _pair(v) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _conv_padding(layer: nn.Conv2d) -> tuple[tuple[int, int], tuple[int, int]]:
    """((top, bottom), (left, right)) zero padding of a torch ``Conv2d`` (ints, tuples, 'same', 'valid')."""
    if isinstance(layer.padding, str):
        if layer.padding == "valid":
            return (0, 0), (0, 0)
        # 'same': torch pads d (q - 1) in total, the smaller half first
        pads = []
        for q, d in zip(_pair(layer.kernel_size), _pair(layer.dilation)):
            total = d * (q - 1)
            pads.append((total // 2, total - total // 2))
        return pads[0], pads[1]
    p_h, p_w = _pair(layer.padding)
    return (p_h, p_h), (p_w, p_w)


def _twiddles(n: int, taps: int, dilation: int, half: bool, device: torch.device) -> torch.Tensor:
    """``exp(2 pi i a (d k) / n)`` for frequencies ``a`` (0..n-1, or 0..n//2 with ``half``) and taps ``k``.
    The phase index ``a d k mod n`` is reduced in integers, so each angle is accurate to a few ulps."""
    freqs = torch.arange(n // 2 + 1 if half else n, dtype=torch.int64, device=device)
    taps_at = dilation * torch.arange(taps, dtype=torch.int64, device=device)
    phase = torch.remainder(freqs[:, None] * taps_at[None, :], n)
    angle = phase.to(BOUND_DTYPE) * (2.0 * math.pi / n)
    return torch.polar(torch.ones_like(angle), angle)


def _polyphase_kernel(weight: torch.Tensor, stride: tuple[int, int], dilation: tuple[int, int]) -> torch.Tensor:
    """The stride-1, dilation-1 kernel ``[K, Cg s_h s_w, q'_h, q'_w]`` acting on the polyphase components of
    the input: tap ``k`` of offset ``t = d k`` reads component ``t mod s`` at offset ``t // s``."""
    out_channels, in_per_group, q_h, q_w = weight.shape
    (s_h, s_w), (d_h, d_w) = stride, dilation
    taps_h = d_h * torch.arange(q_h, device=weight.device)
    taps_w = d_w * torch.arange(q_w, device=weight.device)
    sub_h, sub_w = int(taps_h[-1]) // s_h + 1, int(taps_w[-1]) // s_w + 1
    poly = weight.new_zeros(out_channels, in_per_group, s_h, s_w, sub_h, sub_w)
    phase_h, shift_h = (taps_h % s_h)[:, None].expand(q_h, q_w), (taps_h // s_h)[:, None].expand(q_h, q_w)
    phase_w, shift_w = (taps_w % s_w)[None, :].expand(q_h, q_w), (taps_w // s_w)[None, :].expand(q_h, q_w)
    poly[:, :, phase_h, phase_w, shift_h, shift_w] = weight  # distinct (phase, shift) per tap: a plain copy
    return poly.reshape(out_channels, in_per_group * s_h * s_w, sub_h, sub_w)


def _circular_norm_bound(kernel: torch.Tensor, groups: int, grid: tuple[int, int],
                         dilation: tuple[int, int]) -> torch.Tensor:
    """Certified bound on ``max_omega sigma_max(W^(omega))`` over the ``grid`` frequencies, i.e. on the norm of
    the circular multi-channel correlation with ``kernel`` (float64, entries of magnitude < 1) on that torus."""
    out_channels, in_per_group, q_h, q_w = kernel.shape
    # a one-tap axis has the same transform at every frequency: one frequency suffices (1x1 convolutions)
    grid = (1 if q_h == 1 else grid[0], 1 if q_w == 1 else grid[1])
    tw_h = _twiddles(grid[0], q_h, dilation[0], half=False, device=kernel.device)  # [A, q_h]
    tw_w = _twiddles(grid[1], q_w, dilation[1], half=True, device=kernel.device)  # [Bh, q_w]
    # W^[a, b, o, c] = sum_{kh, kw} tw_h[a, kh] tw_w[b, kw] w[o, c, kh, kw]
    partial = torch.matmul(kernel.to(torch.complex128), tw_w.t())  # [K, Cg, q_h, Bh]
    spectrum = torch.einsum("ah,ochb->aboc", tw_h, partial)
    blocks = spectrum.reshape(-1, groups, out_channels // groups, in_per_group).reshape(
        -1, out_channels // groups, in_per_group)
    gram, inner = _gram_smaller_side(blocks)
    sigma = round_up(certified_lambda_max(gram, inner).sqrt(), 2).max()
    # DFT rounding: each entry is within rel * ||w_{o,c}||_1 of the exact one, so ||Delta W^(omega)||_2 is
    # at most rel times the Frobenius norm of those l1 norms over one group (the worst group)
    l1 = kernel.abs().sum(dim=(2, 3)).reshape(groups, out_channels // groups, in_per_group)
    dft_error = (4 * (q_h + q_w) + 80) * _U * l1.square().sum(dim=(1, 2)).sqrt().max()
    return round_up(sigma + dft_error, 2)


@torch.no_grad()
def conv2d_operator_norm(layer: nn.Conv2d, input_hw: tuple[int, int]) -> float:
    """Certified upper bound on the L2 operator norm of ``layer`` (its linear part; the bias does not
    change differences) on ``C x H x W`` inputs, as torch computes it: zero or circular padding, stride,
    dilation, groups.

    Proof. (a) *Torus embedding (zero padding, stride 1).* Place the zero-padded input (``N_h x N_w``,
    ``N = H + pad_before + pad_after``) on the ``N_h x N_w`` torus. Output ``j`` reads padded positions
    ``j + d k <= N - 1``, so no index wraps around: the layer is ``P C E``, with ``E`` the isometric
    embedding into the torus, ``C`` the circular multi-channel correlation there and ``P`` a coordinate
    selection, hence ``||layer|| <= ||C||``. (b) *Stride* (zero padding). Output ``i`` reads
    ``x_pad[s i + d k]``. Split the padded input into its ``s_h s_w`` polyphase components
    ``x_a[i] = x_pad[s i + a]`` (a permutation of coordinates, an isometry) and tap ``k`` into
    ``d k = s t + a``: the strided layer is the stride-1 correlation of the ``C s_h s_w``-channel polyphase
    input with the kernel ``w'[o, (c, a), t] = w[o, c, k]``, and its valid outputs read ``x_a[i + t]`` with
    ``s (i + t) + a <= N - 1``, so (a) applies on the ``ceil(N/s)`` torus. (A cruder but also valid bound:
    a strided output is a coordinate selection of the stride-1 output, norm <= the stride-1 norm; the
    polyphase form is exact for non-overlapping ``stride = kernel`` layers.) (c) *Circular padding*
    (``padding_mode='circular'``) reads ``x[(j - pad + d k) mod H]``: stride-1 output ``j`` is output
    ``(j - pad) mod H`` of the circular correlation on the ``H x W`` torus itself, each selected at most
    ``m = ceil(n_out / H)`` times per axis (``n_out`` the stride-1 output length), so ``||layer|| <=
    sqrt(m_h m_w) ||C||`` (exact for the usual 'same' layer, ``n_out = H``); a stride selects a subset.
    (d) The 2-D DFT (unitary after normalisation) block-diagonalises ``C``: at frequency ``omega`` it acts
    on the channel vector by the ``K x C`` matrix ``W^(omega)_{oc} = sum_k w_{o,c,k} exp(i omega . d k)``
    (block-diagonal over the groups), so ``||C|| = max_omega sigma_max(W^(omega))`` over the torus's
    frequency grid. Real kernels have ``W^(-omega) = conj(W^(omega))``: half of the grid suffices.
    Rounding: the kernel is scaled by a power of two first (exact); every computed ``W^(omega)`` entry is
    within ``(4 (q_h + q_w) + 80) u sum_k |w_{o,c,k}|`` of the exact one (two summations of ``q`` products
    with twiddles accurate to a few ulps), which bounds the change of ``sigma_max`` by the Frobenius norm of
    those errors; ``sigma_max`` of the computed matrices comes from ``certified_lambda_max``.
    """
    if layer.padding_mode not in ("zeros", "circular"):
        raise UnsupportedLayerError(
            f"Conv2d with padding_mode={layer.padding_mode!r} has no certified norm here; use 'zeros' or 'circular'")
    height, width = int(input_hw[0]), int(input_hw[1])
    weight = layer.weight.detach().to(BOUND_DTYPE)
    if not bool(torch.isfinite(weight).all()):
        raise ValueError("conv2d_operator_norm: non-finite weights")
    _, _, q_h, q_w = weight.shape
    groups = int(layer.groups)
    dilation = _pair(layer.dilation)
    stride = _pair(layer.stride)
    (top, bottom), (left, right) = _conv_padding(layer)
    n_out_h = height + top + bottom - dilation[0] * (q_h - 1)
    n_out_w = width + left + right - dilation[1] * (q_w - 1)
    if n_out_h < 1 or n_out_w < 1:
        raise ValueError(f"conv2d_operator_norm: kernel larger than the padded {height}x{width} input")
    exponent = power_of_two_exponent(weight)
    scaled = scale_by_power_of_two(weight, -exponent)
    if layer.padding_mode == "zeros":
        padded_h, padded_w = height + top + bottom, width + left + right
        kernel = _polyphase_kernel(scaled, stride, dilation)
        grid = (math.ceil(padded_h / stride[0]), math.ceil(padded_w / stride[1]))
        bound = _circular_norm_bound(kernel, groups, grid, (1, 1))
    else:
        multiplicity = math.ceil(n_out_h / height) * math.ceil(n_out_w / width)
        bound = round_up(_circular_norm_bound(scaled, groups, (height, width), dilation) * math.sqrt(multiplicity), 2)
    return float(scale_by_power_of_two(bound, exponent))


def dense_conv_matrix(layer: nn.Conv2d, input_shape: tuple[int, int, int]) -> torch.Tensor:
    """The matrix of ``layer``'s linear part on ``C x H x W`` inputs (float64), built by applying it to the
    identity basis. For tests and small layers only (``(C H W)^2`` entries)."""
    c, h, w = input_shape
    basis = torch.eye(c * h * w, dtype=BOUND_DTYPE).reshape(-1, c, h, w)
    weight = layer.weight.detach().to(BOUND_DTYPE)
    if layer.padding_mode != "zeros":
        padded = F.pad(basis, layer._reversed_padding_repeated_twice, mode=layer.padding_mode)
        out = F.conv2d(padded, weight, None, layer.stride, 0, layer.dilation, layer.groups)
    else:
        out = F.conv2d(basis, weight, None, layer.stride, layer.padding, layer.dilation, layer.groups)
    return out.reshape(c * h * w, -1).t()


# ------------------------------------------------------------------------------------------------
# Pooling
# ------------------------------------------------------------------------------------------------


def _windows_per_pixel_1d(length: int, out_length: int, kernel: int, stride: int, padding: int,
                          dilation: int) -> int:
    """Largest number of pooling windows (along one axis) that contain one input position: window ``i``
    reads positions ``i s - p + d k`` (``k < q``) that lie in ``[0, length)``."""
    starts = torch.arange(out_length, dtype=torch.int64) * stride - padding
    positions = (starts[:, None] + dilation * torch.arange(kernel, dtype=torch.int64)[None, :]).reshape(-1)
    inside = positions[(positions >= 0) & (positions < length)]
    return int(torch.bincount(inside, minlength=length).max()) if inside.numel() else 0


def _output_hw(layer: nn.Module, input_hw: tuple[int, int]) -> tuple[int, int]:
    """Output size of ``layer`` on one ``1 x H x W`` map, from torch itself (ceil_mode rules included)."""
    with torch.no_grad():
        probe = layer(torch.zeros(1, 1, *input_hw, dtype=BOUND_DTYPE))
    return int(probe.shape[-2]), int(probe.shape[-1])


def _weighted_window_coverage(input_hw, kernel, stride, padding, ceil_mode, window_weight_fn) -> float:
    """``max_p sum_{windows w containing p} c_w`` for window weights ``c_w = window_weight_fn(n_w)``, ``n_w``
    the number of input pixels in window ``w``: the adjoint of the (zero-padded) window-sum operator
    applied to ``c``, computed with autograd through ``avg_pool2d(divisor_override=1)``."""
    ones = torch.ones(1, 1, *input_hw, dtype=BOUND_DTYPE, requires_grad=True)
    with torch.enable_grad():
        counts = F.avg_pool2d(ones, kernel, stride, padding, ceil_mode=ceil_mode, count_include_pad=True,
                              divisor_override=1)
        weights = window_weight_fn(counts.detach())
        (counts * weights).sum().backward()
    return float(ones.grad.max())


@torch.no_grad()
def pool_lipschitz_constant(layer: nn.Module, input_hw: tuple[int, int]) -> float:
    """Certified Lipschitz constant (L2 -> L2) of a pooling layer on ``H x W`` maps (channels pool
    independently, so the constant does not depend on their number).

    Proof. Write ``c(p)`` for the number of windows that contain input pixel ``p`` (computed exactly from
    torch's output size, so padding, dilation and ``ceil_mode`` are accounted for; at most
    ``ceil(q_h/s_h) ceil(q_w/s_w)`` for dilation 1, and 1 for LeNet's 2x2/2).

    * Max pooling: ``|max_w(x + r) - max_w(x)| <= max_{p in w} |r_p| <= ||r_w||_2`` (padding is -inf and never
      wins), so ``||Delta||^2 <= sum_w ||r_w||^2 = sum_p c(p) r_p^2 <= max_p c(p) ||r||^2``: ``L = sqrt(max c)``;
      a 2-D window is a product of 1-D windows, so ``max c = max c_h * max c_w``.
    * Average pooling: window ``w`` with ``n_w`` input pixels and torch's divisor ``D_w`` (kernel area,
      area clipped to the padded input, the real-pixel count, or ``divisor_override``) changes by
      ``|sum_{p in w} r_p| / D_w <= sqrt(n_w) ||r_w|| / D_w``, so ``L^2 = max_p sum_{w containing p} n_w / D_w^2``
      (``c(p) / (q_h q_w)`` for full windows: ``1/2`` for LeNet-style 2x2/2, ``1/t`` for global pooling).
    * L_p pooling (torch: ``(q_h q_w / n_w * sum_w x^p)^(1/p)``) is a scaled window norm
      ``(q_h q_w / n_w)^(1/p) ||x_w||_p`` only for even integer ``p`` (``x^p = |x|^p``); then
      ``| ||a||_p - ||b||_p | <= ||a - b||_p <= ||a - b||_2`` (``p >= 2``) gives
      ``L^2 = max_p sum_{w containing p} (q_h q_w / n_w)^(2/p)``; ``p = inf`` is max pooling of ``|x|``. Other
      ``p`` are not Lipschitz on signed inputs (docs/findings.md F7) and raise ``UnsupportedLayerError``.

    The float results are small rationals computed to a few ulps; the constant is rounded up.
    """
    input_hw = (int(input_hw[0]), int(input_hw[1]))
    out_hw = _output_hw(layer, input_hw)
    if isinstance(layer, nn.MaxPool2d) or (isinstance(layer, nn.LPPool2d) and math.isinf(float(layer.norm_type))):
        if isinstance(layer, nn.LPPool2d) and float(layer.norm_type) < 0:
            raise UnsupportedLayerError("LPPool2d with p = -inf (a min of |x|) is supported only as p = +inf")
        kernel = _pair(layer.kernel_size)
        stride = _pair(layer.stride if layer.stride is not None else layer.kernel_size)
        padding = _pair(getattr(layer, "padding", 0))
        dilation = _pair(getattr(layer, "dilation", 1))
        count = 1
        for axis in range(2):
            count *= _windows_per_pixel_1d(input_hw[axis], out_hw[axis], kernel[axis], stride[axis],
                                           padding[axis], dilation[axis])
        return float(round_up(torch.tensor(math.sqrt(count), dtype=BOUND_DTYPE), 2))
    if isinstance(layer, nn.AvgPool2d):
        kernel = _pair(layer.kernel_size)
        stride = _pair(layer.stride if layer.stride is not None else layer.kernel_size)
        padding = _pair(layer.padding)
        ones = torch.ones(1, 1, *input_hw, dtype=BOUND_DTYPE)
        # n_w / D_w, exactly as torch divides (count_include_pad, ceil_mode borders, divisor_override)
        mean_of_ones = layer(ones)

        def weight(n_w):
            return torch.where(n_w > 0, mean_of_ones**2 / n_w.clamp_min(1.0), torch.zeros_like(n_w))

        coverage = _weighted_window_coverage(input_hw, kernel, stride, padding, layer.ceil_mode, weight)
        return float(round_up(torch.tensor(math.sqrt(coverage), dtype=BOUND_DTYPE), 16))
    if isinstance(layer, nn.LPPool2d):
        p = float(layer.norm_type)
        if not (p >= 2 and p == int(p) and int(p) % 2 == 0):
            raise UnsupportedLayerError(
                f"LPPool2d with p = {p:g}: torch computes the signed root of sum x^p, a norm of the window only "
                "for even integer p (or p = inf); it is not Lipschitz on signed inputs (and for 0 < p < 1 not "
                "at all, docs/findings.md F7), so no sound rule exists")
        kernel = _pair(layer.kernel_size)
        stride = _pair(layer.stride if layer.stride is not None else layer.kernel_size)
        area = kernel[0] * kernel[1]

        def weight(n_w):
            return torch.where(n_w > 0, (area / n_w.clamp_min(1.0)) ** (2.0 / p), torch.zeros_like(n_w))

        coverage = _weighted_window_coverage(input_hw, kernel, stride, (0, 0), layer.ceil_mode, weight)
        return float(round_up(torch.tensor(math.sqrt(coverage), dtype=BOUND_DTYPE), 16))
    raise UnsupportedLayerError(f"no Lipschitz constant for pooling layer {type(layer).__name__}")


# ------------------------------------------------------------------------------------------------
# Local response normalisation
# ------------------------------------------------------------------------------------------------


def _lrn_params(layer: nn.LocalResponseNorm) -> tuple[int, float, float, float]:
    """``(size, alpha', beta, k)`` with ``alpha' = alpha / size`` the factor of the plain window sum."""
    size, beta, k = int(layer.size), float(layer.beta), float(layer.k)
    alpha = float(layer.alpha) / size
    if not (k > 0 and alpha >= 0 and beta >= 0):
        raise UnsupportedLayerError(
            f"LocalResponseNorm needs k > 0, alpha >= 0, beta >= 0 to be Lipschitz; got k={k}, alpha={layer.alpha}, "
            f"beta={beta}")
    return size, alpha, beta, k


def lrn_lipschitz_constant(layer: nn.LocalResponseNorm, channels: int,
                           window_sq_max: torch.Tensor | float = math.inf) -> torch.Tensor:
    """Certified Lipschitz constant of torch's LRN, on the set of inputs whose channel-window sums of
    squares are all at most ``window_sq_max`` (``inf``: globally). Returns a float64 tensor shaped like
    ``window_sq_max``.

    torch computes ``b_i = a_i S_i^(-beta)``, ``S_i = k + alpha' Q_i``, ``Q_i = sum_{l in win(i)} a_l^2`` with
    ``alpha' = alpha / size`` and ``win(i) = [i - size//2, i + (size-1)//2]`` clipped to the channels, at every
    spatial position separately. Proof. The Jacobian is block-diagonal over positions; at one position
    ``J_il = delta_il S_i^(-beta) - 2 alpha' beta a_i a_l S_i^(-beta-1) [l in win(i)]``, i.e.
    ``J = D - 2 alpha' beta E``.
    ``||D|| <= k^(-beta)`` (``S >= k``). For a unit ``x``: ``|(E x)_i| <= |a_i| S_i^(-beta-1) ||a_win(i)|| ||x_win(i)||
    <= g(Q_i) ||x_win(i)||`` (Cauchy-Schwarz, and ``|a_i| <= sqrt(Q_i)`` since ``i in win(i)``) with
    ``g(Q) = Q (k + alpha' Q)^(-beta-1)``, and every channel lies in at most ``n = min(size, C)`` windows, so
    ``||E x||^2 <= n max g^2``. ``g`` increases up to ``Q* = k / (alpha' beta)`` and decreases after, so
    ``sup_{Q <= Q_max} g = g(min(Q_max, Q*))``. Hence ``||J|| <= k^(-beta) + 2 alpha' beta sqrt(n)
    g(min(Q_max, Q*))``; globally ``2 alpha' beta g(Q*) = 2 k^(-beta) (beta / (1 + beta))^(1 + beta)``. A map
    whose Jacobian norm is at most ``L`` on a convex set is ``L``-Lipschitz there (mean value inequality).
    At ``a = 0`` the Jacobian is ``k^(-beta) I``, so no bound is below ``k^(-beta)`` (1 for ``k = 1``).
    """
    size, alpha, beta, k = _lrn_params(layer)
    n_windows = min(size, int(channels))
    q_max = torch.as_tensor(window_sq_max, dtype=BOUND_DTYPE)
    base = k ** (-beta)
    if alpha == 0.0 or beta == 0.0:
        return round_up(torch.full_like(q_max, base), 8)
    q_star = k / (alpha * beta)
    q = torch.minimum(q_max, torch.full_like(q_max, q_star))
    g = q * (k + alpha * q) ** (-beta - 1.0)
    return round_up(base + 2.0 * alpha * beta * math.sqrt(n_windows) * g, 32)


__all__ = [
    "CERTIFY_LADDER",
    "certified_lambda_max",
    "conv2d_operator_norm",
    "dense_conv_matrix",
    "gamma",
    "lrn_lipschitz_constant",
    "matrix_operator_norm",
    "pool_lipschitz_constant",
    "round_down",
    "round_up",
]
