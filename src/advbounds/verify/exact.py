"""Exact minimal L2 adversarial perturbation of a tiny ReLU MLP (a test oracle).

For ``f(x) = argmax z(x)`` with ``z`` a ReLU MLP (``nn.Sequential`` of ``Linear`` and ``ReLU``,
ending with a Linear), the minimal perturbation is

    Delta(x) = min ||r||_2   subject to   max_{j != c} z_j(x + r) - z_c(x + r) >= 0,   c = f(x).

Ties count as adversarial (``>= 0``): the infimum over the strict set ``{z_j > z_c}`` is the same
whenever that set is the interior of its closure near the optimum, which holds for generic
weights (and trivially for a network without hidden layer); with ties counted the minimum is
attained, and ``x + r`` lies on the boundary.

Method.
1. *Regions.* An activation pattern ``s`` (one bit per hidden unit, all layers) fixes
   ``z(y) = M_s y + c_s`` on the closed polyhedron ``P_s = {y : pre_i(y) >= 0 if s_i else <= 0}``
   (each pre-activation is affine in y given the pattern of the earlier layers). The patterns with
   ``P_s`` non-empty are enumerated depth-first, unit by unit, pruning a branch as soon as the LP
   ``find y with G y <= h`` (scipy ``linprog``, HiGHS) is infeasible. The closed regions cover the
   input space (every point has its own pattern), and on each the affine formula equals z
   (continuity at the boundaries, where the pre-activation is 0 and both formulas agree).
2. *Least-distance QPs.* For each region s and target ``j != c``:
   ``min ||y - x||^2 s.t. G_s y <= h_s, (M_j - M_c) y + (c_j - c_c) >= 0`` (a polyhedron Q).
   Its minimiser is the projection of x onto Q. By the KKT conditions ``y* = x - A_S^T lam`` with
   ``lam >= 0`` on the active rows; by Caratheodory's theorem for cones, the multipliers can be
   supported on a linearly independent subset S of at most ``d`` active rows, and then ``y*`` is
   the projection of x onto the affine set ``{A_S y = b_S}``. So ``y*`` is among the candidates
   ``y_S = x - A_S^T (A_S A_S^T)^{-1} (A_S x - b_S)`` over the independent subsets with
   ``|S| <= d`` (S empty gives x itself); every feasible candidate is a point of Q, so the feasible
   candidate closest to x *is* ``y*``: an exact, finite, closed-form solve (float64 rounding only).
3. ``Delta(x)`` is the minimum over regions and targets; ``perturbation = y* - x`` and ``target``
   the j that attains it.

The number of candidates grows like ``C(m + 1, <= d)`` (m hidden units), so this is for small
input dimensions (2-4) and at most a dozen or two hidden units; larger problems raise ValueError.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

#: candidate feasibility: signed distance to each constraint plane <= FEAS_TOL * (1 + scale)
FEAS_TOL = 1e-10
#: a subset of constraint rows counts as independent when the smallest singular value of its
#: row-normalised matrix exceeds this
RANK_TOL = 1e-9
#: refuse problems with more (region, subset) pairs than this
MAX_CANDIDATES = 2_000_000
#: refuse networks with more hidden units than this (the region count can grow like 2^m)
MAX_HIDDEN_UNITS = 24


@dataclass
class ExactReluResult:
    """``norm[B]`` (float64, inf if no other class is reachable), ``perturbation[B, d]`` (float64,
    ``x + perturbation`` lies on the decision boundary, ties counted), ``target[B]`` (the class that
    ties with the prediction there; -1 if none), ``predicted[B]`` (argmax of z(x), first on ties),
    ``n_regions`` (activation regions enumerated)."""

    norm: torch.Tensor
    perturbation: torch.Tensor
    target: torch.Tensor
    predicted: torch.Tensor | None = None
    n_regions: int = 0

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame({"norm": self.norm.cpu().numpy(), "target": self.target.cpu().numpy(),
                             "predicted": None if self.predicted is None else self.predicted.cpu().numpy()})


def _parse(model: nn.Module):
    """``(hidden [(W, b)], (W_out, b_out))`` in float64 numpy; consecutive Linears are composed."""
    layers = list(model.children()) if isinstance(model, nn.Sequential) else [model]
    if not layers:
        raise ValueError("the model has no layers")
    affine = None  # pending affine map (W, b) since the last ReLU
    hidden = []
    for layer in layers:
        if isinstance(layer, nn.Linear):
            W = layer.weight.detach().double().cpu().numpy()
            b = (layer.bias.detach().double().cpu().numpy() if layer.bias is not None else np.zeros(W.shape[0]))
            affine = (W, b) if affine is None else (W @ affine[0], W @ affine[1] + b)
        elif isinstance(layer, nn.ReLU):
            if affine is None:
                raise ValueError("exact_minimal_perturbation_relu: a ReLU must follow a Linear layer")
            hidden.append(affine)
            affine = None
        else:
            raise ValueError(f"exact_minimal_perturbation_relu supports nn.Sequential of Linear/ReLU only, "
                             f"got {type(layer).__name__}")
    if affine is None:
        raise ValueError("exact_minimal_perturbation_relu: the model must end with a Linear layer")
    return hidden, affine


def _feasible(G: list, h: list, d: int) -> bool:
    if not G:
        return True
    from scipy.optimize import linprog

    res = linprog(np.zeros(d), A_ub=np.asarray(G), b_ub=np.asarray(h), bounds=[(None, None)] * d, method="highs")
    return res.status == 0


def enumerate_regions(hidden, d: int):
    """Non-empty activation regions: a list of ``(G[m, d], h[m], A, a)``: the region is
    ``G y <= h`` and on it the output layer's input is ``A y + a``."""
    regions = []

    def layer_rec(l, A, a, G, h):
        if l == len(hidden):
            regions.append((np.asarray(G).reshape(-1, d), np.asarray(h, dtype=float), A, a))
            return
        W, b = hidden[l]
        pre_A, pre_a = W @ A, W @ a + b
        n = W.shape[0]

        def unit_rec(i, active, G, h):
            if i == n:
                D = np.asarray(active, dtype=float)
                layer_rec(l + 1, D[:, None] * pre_A, D * pre_a, G, h)
                return
            row, off = pre_A[i], pre_a[i]
            if np.linalg.norm(row) <= 1e-14 * (1 + abs(off)):
                unit_rec(i + 1, active + [off > 0], G, h)  # constant pre-activation: sign is fixed
                return
            for on in (True, False):
                g_row, g_h = (-row, off) if on else (row, -off)  # on: pre >= 0; off: pre <= 0
                G2, h2 = G + [g_row], h + [g_h]
                if _feasible(G2, h2, d):
                    unit_rec(i + 1, active + [on], G2, h2)

        unit_rec(0, [], G, h)

    layer_rec(0, np.eye(d), np.zeros(d), [], [])
    return regions


def _subsets(m: int, d: int):
    return [c for k in range(0, min(d, m) + 1) for c in itertools.combinations(range(m), k)]


def _project_candidates(A: torch.Tensor, bvec: torch.Tensor, X: torch.Tensor):
    """Exact least-distance projection of each row of ``X[n, d]`` onto ``{y : A y <= b}``
    (``A[m, d]``) by active-set enumeration; returns ``(dist[n], y[n, d])`` (inf where empty)."""
    m, d = A.shape
    n = X.shape[0]
    norms = torch.linalg.vector_norm(A, dim=1)
    keep = norms > 0
    if not keep.all():  # zero rows: 0 <= b must hold, else the polyhedron is empty
        if (bvec[~keep] < 0).any():
            return torch.full((n,), math.inf, dtype=X.dtype), torch.zeros_like(X)
        A, bvec, norms = A[keep], bvec[keep], norms[keep]
        m = A.shape[0]
    An, bn = A / norms[:, None], bvec / norms
    best_d = torch.full((n,), math.inf, dtype=X.dtype)
    best_y = X.clone()
    scale = 1 + X.abs().amax(dim=1) + bn.abs().max()
    for k in range(0, min(d, m) + 1):
        combos = list(itertools.combinations(range(m), k))
        if k == 0:
            Y = X[:, None, :]
        else:
            idx = torch.tensor(combos, dtype=torch.long)
            GS, hS = An[idx], bn[idx]  # [nS, k, d], [nS, k]
            sv = torch.linalg.svdvals(GS)
            ok = sv[:, -1] > RANK_TOL
            if not ok.any():
                continue
            GS, hS = GS[ok], hS[ok]
            gram = GS @ GS.transpose(1, 2)
            resid = torch.einsum("skd,nd->nsk", GS, X) - hS[None]  # [n, nS, k]
            lam = torch.linalg.solve(gram[None].expand(n, -1, -1, -1), resid[..., None])[..., 0]
            Y = X[:, None, :] - torch.einsum("nsk,skd->nsd", lam, GS)
        viol = torch.einsum("md,nsd->nsm", An, Y) - bn
        feas = (viol <= FEAS_TOL * scale[:, None, None]).all(dim=2)
        dist = torch.linalg.vector_norm(Y - X[:, None, :], dim=2)
        dist = torch.where(feas, dist, torch.full_like(dist, math.inf))
        dmin, arg = dist.min(dim=1)
        better = dmin < best_d
        best_d = torch.where(better, dmin, best_d)
        best_y = torch.where(better[:, None], Y[torch.arange(n), arg], best_y)
    return best_d, best_y


def exact_minimal_perturbation_relu(model: nn.Module, x: torch.Tensor) -> ExactReluResult:
    """Exact minimal L2 adversarial perturbation of a small ReLU MLP at each row of ``x[B, d]``
    (method and exactness: module docstring). Results are float64 on x's device."""
    if not isinstance(x, torch.Tensor) or not torch.is_floating_point(x) or x.dim() != 2 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty floating-point tensor [B, d], got "
                         f"{getattr(x, 'shape', type(x))}")
    if not torch.isfinite(x).all():
        raise ValueError("x contains non-finite values")
    hidden, (Wo, bo) = _parse(model)
    d = x.shape[1]
    in_dim = hidden[0][0].shape[1] if hidden else Wo.shape[1]
    if in_dim != d:
        raise ValueError(f"x has {d} features but the model expects {in_dim}")
    n_classes = Wo.shape[0]
    if n_classes < 2:
        raise ValueError("the model must have at least two outputs")
    m_hidden = sum(W.shape[0] for W, _ in hidden)
    n_sub = len(_subsets(m_hidden + 1, d))
    if m_hidden > MAX_HIDDEN_UNITS:
        raise ValueError(f"network too large for the exact reference ({m_hidden} hidden units, d={d})")
    regions = enumerate_regions(hidden, d)
    if len(regions) * n_sub > MAX_CANDIDATES:
        raise ValueError(f"too many candidates for the exact reference ({len(regions)} regions x {n_sub} subsets)")

    X = x.detach().double().cpu()
    with torch.no_grad():
        pred = _forward(hidden, Wo, bo, X).argmax(dim=1)
    B = X.shape[0]
    best = torch.full((B,), math.inf, dtype=torch.float64)
    best_y = X.clone()
    target = torch.full((B,), -1, dtype=torch.long)
    Wo_t, bo_t = torch.from_numpy(Wo), torch.from_numpy(bo)
    for G, h, A, a in regions:
        G_t, h_t = torch.from_numpy(G).reshape(-1, d), torch.from_numpy(h)
        M = Wo_t @ torch.from_numpy(A)  # logits = M y + cvec on this region
        cvec = Wo_t @ torch.from_numpy(a) + bo_t
        for c in pred.unique().tolist():
            rows = (pred == c).nonzero().flatten()
            for j in range(n_classes):
                if j == c:
                    continue
                # (M_j - M_c) y + (c_j - c_c) >= 0   <=>   (M_c - M_j) y <= c_j - c_c
                Arow = (M[c] - M[j])[None]
                brow = (cvec[j] - cvec[c]).reshape(1)
                dist, y = _project_candidates(torch.cat([G_t, Arow]), torch.cat([h_t, brow]), X[rows])
                better = dist < best[rows]
                sel = rows[better]
                best[sel] = dist[better]
                best_y[sel] = y[better]
                target[sel] = j
    dev = x.device
    pert = torch.where(torch.isfinite(best)[:, None], best_y - X, torch.zeros_like(X))
    return ExactReluResult(norm=best.to(dev), perturbation=pert.to(dev), target=target.to(dev),
                           predicted=pred.to(dev), n_regions=len(regions))


def _forward(hidden, Wo, bo, X: torch.Tensor) -> torch.Tensor:
    h = X
    for W, b in hidden:
        h = torch.relu(h @ torch.from_numpy(W).T + torch.from_numpy(b))
    return h @ torch.from_numpy(Wo).T + torch.from_numpy(bo)
