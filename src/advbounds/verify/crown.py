"""Batched linear-relaxation bounds (CROWN, Zhang et al. 2018) and IBP over an L2 ball.

The input set of sample ``b`` is the ball ``{x : ||x - x0_b||_2 <= eps_b}`` (no clipping to a pixel
box, so the certificate holds for a superset of the valid images).

Concretisation on the ball. For a linear function ``lam . x + c``,
``min_{||x - x0|| <= eps} lam . x + c = lam . x0 + c - eps ||lam||_2`` (Cauchy-Schwarz, attained
at ``x0 - eps lam / ||lam||``).

Intermediate bounds. Let ``p`` be the index of the first nonlinear layer. Nodes up to ``p`` are
affine images ``M x + c`` of the input, so their exact bounds are ``M x0 + c +- eps ||M_i||_2``
(``||M_i||`` the row norms, computed once per call from the backward pass of an identity
specification; for a first Linear layer they are the ``||W_i||``: this is also IBP's first step).
After that, every node gets IBP bounds (interval arithmetic from the previous node's box); with
``intermediate="crown"`` every node that feeds a nonlinear layer is tightened by CROWN from that
node: the specification ``[I; -I]`` (only the rows that can change the relaxation: unstable ReLU
inputs, elements of non-dominated max-pool windows) is back-substituted to the input through the
relaxations of all earlier nonlinear layers and concretised on the ball; the final box is the
intersection of the IBP and CROWN boxes (both are sound, so is their intersection).

Margins. The specification ``C`` (rows ``e_y - e_j``, ``j != y``) is back-substituted through
the whole network: ``C z(x) >= Lam x + beta`` on the ball, so ``C z >= Lam x0 + beta - eps
||Lam_row||``. With CROWN the verifier also computes the interval bound of ``C`` applied to the
trailing affine block (C W_last elided into the last Linear, as in IBP) and keeps the larger one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .operators import BoundOperator

#: default working-set size (number of tensor elements) of one backward chunk
DEFAULT_MEMORY_ELEMENTS = 2**25

INTERMEDIATE_MODES = ("crown", "ibp")


def _concretize(A: torch.Tensor, bias: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor):
    """``(Lam x0 + beta, ||Lam||_2, |Lam| |x0|)`` per sample and row; ``A[Bb, S, ...]``, ``x0[B, d]``."""
    Bb, S = A.shape[:2]
    flat = A.reshape(Bb, S, -1)
    if Bb == 1 and x0.shape[0] != 1:
        center = (x0 @ flat[0].T)  # [B, S]
        absdot = (x0.abs() @ flat[0].abs().T)
        norm = torch.linalg.vector_norm(flat[0], dim=1).expand(x0.shape[0], S)
    else:
        center = torch.einsum("bsd,bd->bs", flat, x0)
        absdot = torch.einsum("bsd,bd->bs", flat.abs(), x0.abs())
        norm = torch.linalg.vector_norm(flat, dim=2)
    return center + bias, norm, absdot


@dataclass
class MarginBounds:
    """Lower bounds on the specification rows at one eps per sample.

    ``crown_center`` (``Lam x0 + beta``) and ``crown_norm`` (``||Lam||``) give the CROWN bound
    ``crown_center - eps' crown_norm`` for every ``eps' <= eps`` (the relaxations computed for the
    ball of radius eps stay valid on smaller balls); ``interval`` is the interval bound (valid for
    every ``eps' <= eps``, constant in eps'); ``lower`` the best of them at eps; ``scale`` the size of
    the terms summed (for the rounding slack). Tensors ``[B, S]``; crown fields are None for IBP.
    """

    lower: torch.Tensor
    interval: torch.Tensor
    crown_center: torch.Tensor | None
    crown_norm: torch.Tensor | None
    scale: torch.Tensor


class BoundEngine:
    """Bounds of one batch of samples ``x0[B, *in_shape]`` at radii ``eps[B]``."""

    def __init__(self, ops: list[BoundOperator], x0: torch.Tensor, eps: torch.Tensor, *,
                 intermediate: str = "crown", memory_elements: int = DEFAULT_MEMORY_ELEMENTS,
                 row_norms: torch.Tensor | None = None) -> None:
        if intermediate not in INTERMEDIATE_MODES:
            raise ValueError(f"intermediate must be one of {INTERMEDIATE_MODES}, got {intermediate!r}")
        self.ops = ops
        self.x0 = x0
        self.x0_flat = x0.reshape(x0.shape[0], -1)
        self.eps = eps
        self.B = x0.shape[0]
        self.mode = intermediate
        self.memory = int(memory_elements)
        self.shapes = [ops[0].in_shape] + [op.out_shape for op in ops]
        self.numels = [int(math.prod(s)) for s in self.shapes]
        self.p = next((i for i, op in enumerate(ops) if not op.affine), len(ops))
        self.values = [x0]
        with torch.no_grad():
            for op in ops:
                self.values.append(op.forward(self.values[-1]))
        self.row_norms = row_norms if row_norms is not None else prefix_row_norms(ops, self.p, memory_elements)
        self.bounds: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.states: dict[int, object] = {}
        self._compute_bounds()

    @property
    def logits(self) -> torch.Tensor:
        return self.values[-1]

    # ------------------------------------------------------------------------------------------
    def _compute_bounds(self) -> None:
        p, ops = self.p, self.ops
        if p == len(ops):
            return  # affine network: no relaxations needed
        e = self.eps.reshape(-1, *([1] * len(self.shapes[p])))
        center = self.values[p]
        self.bounds[p] = (center - e * self.row_norms, center + e * self.row_norms)
        for i in range(p, len(ops)):
            lo, hi = self.bounds[i]
            if not ops[i].affine:
                self.states[i] = ops[i].prepare(lo, hi)
            nlo, nhi = ops[i].forward_interval(lo, hi)
            j = i + 1
            if self.mode == "crown" and j < len(ops) and not ops[j].affine:
                nlo, nhi = self._tighten(j, nlo, nhi)
            self.bounds[j] = (nlo, nhi)

    def _needed_rows(self, j: int, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        """Flat indices of node j whose bounds can change op j's relaxation for some sample."""
        name = self.ops[j].name
        if name == "relu":
            mask = ((lo < 0) & (hi > 0)).reshape(self.B, -1).any(dim=0)
        elif name == "maxpool2d":
            dominated, _, _ = self.ops[j].prepare(lo, hi)
            op = self.ops[j]
            bad = (~dominated).to(lo.dtype)  # [B, C, L]
            K = op.idx.shape[0]
            spread = bad[:, :, None, :].expand(-1, -1, K, -1).reshape(self.B, bad.shape[1], -1)
            plane = torch.zeros((self.B, bad.shape[1], op.Hp * op.Wp), dtype=lo.dtype, device=lo.device)
            plane.scatter_add_(2, op.idx.reshape(1, 1, -1).expand(self.B, bad.shape[1], -1), spread)
            plane = plane.reshape(self.B, -1, op.Hp, op.Wp)
            H, W = op.in_shape[1:]
            plane = plane[..., op.pad[2]:op.pad[2] + H, op.pad[0]:op.pad[0] + W]
            mask = (plane > 0).reshape(self.B, -1).any(dim=0)
        else:
            mask = torch.ones(self.numels[j], dtype=torch.bool, device=lo.device)
        return mask.nonzero().flatten()

    def _tighten(self, j: int, lo: torch.Tensor, hi: torch.Tensor):
        """CROWN bounds of node j (rows that matter), intersected with the IBP box."""
        rows = self._needed_rows(j, lo, hi)
        if rows.numel() == 0:
            return lo, hi
        n = self.numels[j]
        widest = max(self.numels[: j + 1])
        chunk = max(1, self.memory // max(1, self.B * widest * 2))
        lo_f, hi_f = lo.reshape(self.B, -1).clone(), hi.reshape(self.B, -1).clone()
        dt, dev = lo.dtype, lo.device
        for start in range(0, rows.numel(), chunk):
            r = rows[start:start + chunk]
            s = r.numel()
            A = torch.zeros((1, 2 * s, n), dtype=dt, device=dev)
            ar = torch.arange(s, device=dev)
            A[0, ar, r] = 1.0
            A[0, s + ar, r] = -1.0
            A = A.reshape(1, 2 * s, *self.shapes[j])
            A, bias = self.backward(j, A)
            center, norm, _ = _concretize(A, bias, self.x0_flat, self.eps)
            lb = center - self.eps[:, None] * norm
            lo_f[:, r] = torch.maximum(lo_f[:, r], lb[:, :s])
            hi_f[:, r] = torch.minimum(hi_f[:, r], -lb[:, s:])
        return lo_f.reshape(lo.shape), hi_f.reshape(hi.shape)

    def backward(self, k: int, A: torch.Tensor, stop: int = 0):
        """Back-substitute ``A[Bb, S, *shape_k]`` from node k to node ``stop``: ``(A_stop, bias)``."""
        bias = torch.zeros(A.shape[:2], dtype=A.dtype, device=A.device)
        for i in range(k - 1, stop - 1, -1):
            A, b = self.ops[i].backward_linear(A, self.states.get(i))
            bias = bias + b
        return A, bias

    # ------------------------------------------------------------------------------------------
    def margins(self, C: torch.Tensor, method: str) -> MarginBounds:
        """Lower bounds of ``C[B, S, n_out] . z(x)`` on the balls; ``method`` is crown or ibp."""
        L = len(self.ops)
        q = max((i for i, op in enumerate(self.ops) if not op.affine), default=-1)
        logit_scale = self.logits.reshape(self.B, -1).abs().amax(dim=1, keepdim=True)
        # interval bound of C through the trailing affine block (exact when the network is affine)
        A_t, bias_t = self.backward(L, C, stop=q + 1)
        if q < 0:
            center, norm, absdot = _concretize(A_t, bias_t, self.x0_flat, self.eps)
            interval = center - self.eps[:, None] * norm
            scale = absdot + self.eps[:, None] * norm + center.abs() + logit_scale
            if method == "crown":
                return MarginBounds(interval, interval, center, norm, scale)
            return MarginBounds(interval, interval, None, None, scale)
        lo, hi = self.bounds[q + 1]
        mid = ((lo + hi) / 2).reshape(self.B, -1)
        rad = ((hi - lo) / 2).reshape(self.B, -1)
        At = A_t.reshape(A_t.shape[0], A_t.shape[1], -1)
        interval = torch.einsum("bsd,bd->bs", At, mid) + bias_t - torch.einsum("bsd,bd->bs", At.abs(), rad)
        scale_i = torch.einsum("bsd,bd->bs", At.abs(), mid.abs() + rad) + bias_t.abs() + logit_scale
        if method == "ibp":
            return MarginBounds(interval, interval, None, None, scale_i)
        A, bias = self.backward(q + 1, A_t, stop=0)
        center, norm, absdot = _concretize(A, bias + bias_t, self.x0_flat, self.eps)
        crown = center - self.eps[:, None] * norm
        scale = torch.maximum(scale_i, absdot + self.eps[:, None] * norm + center.abs() + logit_scale)
        return MarginBounds(torch.maximum(crown, interval), interval, center, norm, scale)


def prefix_row_norms(ops: list[BoundOperator], p: int, memory_elements: int = DEFAULT_MEMORY_ELEMENTS):
    """``||M_i||_2`` for the affine prefix ``ops[:p]`` (``M`` its linear part), shaped like node p.

    Computed column by column in forward mode: ``M e_k = f(e_k) - f(0)`` for the input basis
    vectors ``e_k`` (chunked), and ``||M_i||^2 = sum_k (M e_k)_i^2``.
    """
    if p >= len(ops):
        return None
    shape = ops[p].in_shape
    dt, dev = ops[0].dtype, ops[0].device
    if p == 0:
        return torch.ones(shape, dtype=dt, device=dev)
    in_shape = ops[0].in_shape
    d = int(math.prod(in_shape))
    widest = max(int(math.prod(ops[i].in_shape)) for i in range(p + 1))
    chunk = max(1, memory_elements // max(1, 2 * widest))

    def f(x):
        for op in ops[:p]:
            x = op.forward(x)
        return x

    with torch.no_grad():
        base = f(torch.zeros((1, *in_shape), dtype=dt, device=dev))
        acc = torch.zeros(shape, dtype=dt, device=dev)
        for start in range(0, d, chunk):
            k = torch.arange(start, min(d, start + chunk), device=dev)
            E = torch.zeros((k.numel(), d), dtype=dt, device=dev)
            E[torch.arange(k.numel(), device=dev), k] = 1.0
            cols = f(E.reshape(k.numel(), *in_shape)) - base
            acc += (cols * cols).sum(dim=0)
    return acc.sqrt()
