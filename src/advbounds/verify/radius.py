"""Certified per-sample L2 radius: the largest eps at which every margin lower bound is > 0.

Search (all samples of a chunk at once, only unfinished ones are recomputed). Every pass at radius
``eps`` (per sample) returns, besides "certified at eps or not", a *certified radius* ``r(eps)``:
the relaxations built for the ball of radius eps remain valid on every smaller ball, on which the
CROWN bound of margin j is ``c_j - eps' ||Lam_j||`` (linear in eps'), and the interval bound is
constant. So ``r(eps) = min(eps, min_j r_j)`` with ``r_j = eps`` where the bound at eps is already
positive and ``r_j = (c_j - slack_j) / ||Lam_j||`` otherwise is certified. The search keeps
``lo`` = best certified radius so far and ``hi`` = smallest eps found not certified, starts at a
first-order estimate of the distance to the decision boundary (or at twice the IBP radius, if
larger), doubles eps while certified, then bisects ``(lo, hi)`` until ``hi - lo <= tol * hi``.
The reported radius is ``lo`` times ``(1 - 4 u)`` (u the unit roundoff): a radius at which the
network was certified, rounded down. Certification at eps implies it for every smaller ball, so
any certified value is a valid answer; the bisection only aims at the largest one.

Rounding slack: a margin counts as positive only above ``slack = ROUNDING_SLACK_ULPS * u * L *
scale`` (L the number of layers, ``scale`` the sum of the magnitudes of the terms of the bound),
which covers the rounding error of the float computation of the bound (a heuristic guard, not
interval arithmetic; float64 makes it negligible).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from .crown import DEFAULT_MEMORY_ELEMENTS, BoundEngine, prefix_row_norms
from .operators import compile_model

METHODS = ("crown", "ibp")
#: rounding slack, in units of the working dtype's machine epsilon per layer
ROUNDING_SLACK_ULPS = 64.0
#: default relative bisection tolerance
DEFAULT_TOL = 1e-3
DEFAULT_MAX_ITER = 60
#: relative tolerance of the IBP screening search (only a starting point for CROWN)
SCREEN_TOL = 0.1


@dataclass
class CertifyResult:
    """Per-sample certified L2 radii (tensors ``[B]`` on x's device).

    ``radius``: certified radius (float64; 0 where not even eps = 0 is certified: misclassified
    when ``labels`` are given, or a tie at x). ``predicted``: argmax of the logits. ``label``: the
    class that is certified (``labels`` or ``predicted``). ``correct``: ``predicted == label``.
    ``radius_upper``: smallest eps at which the search failed to certify (inf if never; this is
    *not* an upper bound on the true robustness, only the end of the search bracket).
    ``ibp_radius``: the IBP screening radius (a certified radius itself; equals ``radius`` for
    method ibp). ``iterations``: bound passes spent per sample. ``at_eps_max``: certified at
    ``eps_max`` (the search stopped there).
    """

    radius: torch.Tensor
    predicted: torch.Tensor
    label: torch.Tensor
    correct: torch.Tensor
    radius_upper: torch.Tensor
    ibp_radius: torch.Tensor
    iterations: torch.Tensor
    at_eps_max: torch.Tensor
    method: str = "crown"
    info: dict = field(default_factory=dict)

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame({
            "sample": range(self.radius.shape[0]),
            "radius": self.radius.cpu().numpy(),
            "predicted": self.predicted.cpu().numpy(),
            "label": self.label.cpu().numpy(),
            "correct": self.correct.cpu().numpy(),
            "radius_upper": self.radius_upper.cpu().numpy(),
            "ibp_radius": self.ibp_radius.cpu().numpy(),
            "iterations": self.iterations.cpu().numpy(),
            "at_eps_max": self.at_eps_max.cpu().numpy(),
        })


def _check_inputs(model, x):
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(x, torch.Tensor) or not torch.is_floating_point(x):
        raise TypeError("x must be a floating-point tensor [B, ...]")
    if x.dim() < 2 or x.shape[0] == 0:
        raise ValueError(f"x must have a non-empty leading batch dimension, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("x contains non-finite values")


def _resolve_dtype(dtype, x):
    dtype = torch.float64 if dtype is None else dtype
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    return dtype


def _compile(model, x, dtype):
    try:
        return compile_model(model, x.shape[1:], dtype, x.device)
    except RuntimeError as exc:  # shape mismatch in the probe forward pass
        raise ValueError(f"the model does not accept inputs of shape {tuple(x.shape[1:])}: {exc}") from exc


def _spec(labels: torch.Tensor, n_out: int, dtype) -> torch.Tensor:
    """``C[B, n_out - 1, n_out]`` with rows ``e_label - e_j`` for j != label (j ascending)."""
    B = labels.shape[0]
    dev = labels.device
    eye = torch.eye(n_out, dtype=dtype, device=dev)
    others = torch.arange(n_out, device=dev)[None, :].expand(B, -1)
    mask = others != labels[:, None]
    js = others[mask].reshape(B, n_out - 1)
    return eye[labels][:, None, :] - eye[js]


def _others(labels, n_out):
    B = labels.shape[0]
    others = torch.arange(n_out, device=labels.device)[None, :].expand(B, -1)
    return others[others != labels[:, None]].reshape(B, n_out - 1)


def _labels_and_pred(ops, x, labels):
    with torch.no_grad():
        z = x
        for op in ops:
            z = op.forward(z)
    if z.dim() != 2:
        raise ValueError(f"the model's output must be logits [B, C], got shape {tuple(z.shape)}")
    if z.shape[1] < 2:
        raise ValueError("the model must have at least two outputs (classes)")
    pred = z.argmax(dim=1)
    if labels is None:
        lab = pred
    else:
        lab = torch.as_tensor(labels, device=x.device).long().reshape(-1)
        if lab.shape[0] != x.shape[0]:
            raise ValueError(f"labels has {lab.shape[0]} entries for {x.shape[0]} samples")
        if ((lab < 0) | (lab >= z.shape[1])).any():
            raise ValueError(f"labels must lie in [0, {z.shape[1]})")
    return z, pred, lab


def _eps_tensor(eps, B, dtype, device):
    e = torch.as_tensor(eps, dtype=dtype, device=device)
    if e.dim() == 0:
        e = e.expand(B)
    e = e.reshape(-1)
    if e.shape[0] != B:
        raise ValueError(f"eps must be a scalar or have shape [{B}], got {tuple(e.shape)}")
    if not torch.isfinite(e).all():
        raise ValueError("eps must be finite")
    if (e < 0).any():
        raise ValueError("eps must be >= 0")
    return e.contiguous()


def margin_lower_bounds(model: nn.Module, x: torch.Tensor, eps, method: str = "crown", *, labels=None,
                        intermediate: str | None = None, dtype=None, batch_size: int | None = None,
                        memory_elements: int = DEFAULT_MEMORY_ELEMENTS) -> torch.Tensor:
    """Lower bounds ``[B, C]`` on ``z_y(x') - z_j(x')`` over ``||x' - x|| <= eps`` (y = labels, or the
    predicted class); column y is 0 (exact). ``eps``: scalar or ``[B]``, >= 0. ``method``: ``crown``
    (CROWN margins; intermediate bounds by ``intermediate``, default ``crown``) or ``ibp``.
    Returned in ``dtype`` (default float64) on x's device."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    _check_inputs(model, x)
    dtype = _resolve_dtype(dtype, x)
    xd = x.detach().to(dtype)
    ops = _compile(model, xd, dtype)
    z, pred, lab = _labels_and_pred(ops, xd, labels)
    B, n_out = z.shape
    e = _eps_tensor(eps, B, dtype, x.device)
    inter = _intermediate(method, intermediate)
    row_norms = prefix_row_norms(ops, next((i for i, op in enumerate(ops) if not op.affine), len(ops)),
                                 memory_elements)
    out = torch.zeros((B, n_out), dtype=dtype, device=x.device)
    bs = batch_size or _default_batch(method)
    for s in range(0, B, bs):
        sl = slice(s, min(B, s + bs))
        eng = BoundEngine(ops, xd[sl], e[sl], intermediate=inter, memory_elements=memory_elements,
                          row_norms=row_norms)
        mb = eng.margins(_spec(lab[sl], n_out, dtype), method)
        out[sl].scatter_(1, _others(lab[sl], n_out), mb.lower)
    return out


def _intermediate(method, intermediate):
    if intermediate is None:
        return "crown" if method == "crown" else "ibp"
    if method == "ibp" and intermediate != "ibp":
        raise ValueError("method='ibp' uses IBP intermediate bounds; intermediate must be None or 'ibp'")
    return intermediate


def _default_batch(method):
    return 64 if method == "crown" else 1024


def _first_order_distance(ops, x, labels):
    """``min_j m_j(x) / ||grad m_j(x)||``: a first-order estimate of the distance to the boundary
    (only used to place the first search point)."""
    xg = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        z = xg
        for op in ops:
            z = op.forward(z)
        n_out = z.shape[1]
        est = torch.full((x.shape[0],), math.inf, dtype=x.dtype, device=x.device)
        zy = z.gather(1, labels[:, None])[:, 0]
        for j in range(n_out):
            m = zy - z[:, j]
            (g,) = torch.autograd.grad(m.sum(), xg, retain_graph=j < n_out - 1)
            gn = torch.linalg.vector_norm(g.reshape(x.shape[0], -1), dim=1)
            d = torch.where((labels != j) & (gn > 0), m.detach() / gn.clamp_min(1e-300), torch.full_like(gn, math.inf))
            est = torch.minimum(est, d)
    return est


def _pass(ops, x, eps, C, method, inter, memory, row_norms, slack_rel):
    """One bound pass: ``(certified radius r(eps), certified at eps)`` per sample."""
    eng = BoundEngine(ops, x, eps, intermediate=inter, memory_elements=memory, row_norms=row_norms)
    mb = eng.margins(C, method)
    slack = slack_rel * mb.scale
    ok_rows = (mb.lower > slack)
    certified = ok_rows.all(dim=1)
    e = eps[:, None].expand_as(mb.lower)
    if mb.crown_center is not None:
        norm = mb.crown_norm
        r_lin = torch.where(norm > 0, (mb.crown_center - slack) / norm.clamp_min(torch.finfo(norm.dtype).tiny),
                            torch.where(mb.crown_center > slack, torch.full_like(norm, math.inf),
                                        torch.zeros_like(norm)))
        r_rows = torch.where(ok_rows, e, torch.minimum(r_lin, e))
    else:
        r_rows = torch.where(ok_rows, e, torch.zeros_like(e))
    r = r_rows.amin(dim=1).clamp_min(0)
    r = torch.where(certified, eps, r)
    return r, certified


def _search(ops, x, C, method, inter, *, lo, eps0, tol, eps_max, max_iter, memory, row_norms, slack_rel):
    """Batched search for the largest certified radius (module docstring). Returns lo, hi, iters, at_max."""
    B = x.shape[0]
    dt, dev = x.dtype, x.device
    hi = torch.full((B,), math.inf, dtype=dt, device=dev)
    iters = torch.zeros(B, dtype=torch.long, device=dev)
    cap = math.inf if eps_max is None else float(eps_max)
    eps = torch.minimum(eps0, torch.full_like(eps0, cap))
    at_max = torch.zeros(B, dtype=torch.bool, device=dev)
    done = lo >= cap
    at_max |= done
    floor = 1e-9 * eps0  # below this an uncertified sample is given up (radius 0)
    for _ in range(max_iter):
        act = (~done).nonzero().flatten()
        if act.numel() == 0:
            break
        r, cert = _pass(ops, x[act], eps[act], C[act], method, inter, memory, row_norms, slack_rel)
        iters[act] += 1
        lo[act] = torch.maximum(lo[act], r)
        hi[act] = torch.where(cert, hi[act], torch.minimum(hi[act], eps[act]))
        l, h, e = lo[act], hi[act], eps[act]
        reached_cap = l >= cap
        at_max[act] = reached_cap
        grow = torch.isinf(h)
        geometric = (l > 0) & (h > 4 * l)
        nxt = torch.where(grow, 2 * torch.maximum(e, l),
                          torch.where(l <= 0, h / 4, torch.where(geometric, torch.sqrt(l * h), l + (h - l) / 2)))
        nxt = torch.minimum(nxt, torch.full_like(nxt, cap))
        tiny = torch.finfo(dt).tiny * 1e6
        finished = (reached_cap | (~grow & ((h - l) <= tol * h)) | (~grow & (h <= floor[act]))
                    | (grow & (nxt <= tiny)))
        done[act] = finished
        eps[act] = torch.where(nxt > tiny, nxt, torch.full_like(nxt, tiny))
    return lo, hi, iters, at_max


def certified_radius(model: nn.Module, x: torch.Tensor, *, method: str = "crown", labels=None,
                     tol: float = DEFAULT_TOL, eps_max: float | None = None, batch_size: int | None = None,
                     progress: bool = False, intermediate: str | None = None, dtype=None,
                     ibp_screen: bool = False, max_iter: int = DEFAULT_MAX_ITER,
                     memory_elements: int = DEFAULT_MEMORY_ELEMENTS) -> CertifyResult:
    """Certified L2 radius of every sample of ``x[B, ...]`` (model = flat nn.Sequential, logits out).

    ``method``: ``crown`` (CROWN margins, intermediate bounds by ``intermediate``: ``crown``
    (default) or ``ibp``) or ``ibp``. ``labels``: certify these classes (misclassified samples get
    radius 0); default the predicted class. ``tol``: relative width of the final search bracket
    (``hi - lo <= tol * hi``). ``eps_max``: never search beyond it (a sample certified at eps_max
    gets radius eps_max and ``at_eps_max``). ``ibp_screen`` (crown only): run the cheap IBP search
    first and start from its certified radius. ``dtype``: working precision (default float64).
    Raises ``UnsupportedLayerError`` for layers without a bound operator.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not (isinstance(tol, (int, float)) and 0 < tol < 1):
        raise ValueError(f"tol must lie in (0, 1), got {tol!r}")
    if eps_max is not None and not (math.isfinite(eps_max) and eps_max > 0):
        raise ValueError(f"eps_max must be a positive finite number, got {eps_max!r}")
    if batch_size is not None and int(batch_size) < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size!r}")
    _check_inputs(model, x)
    dtype = _resolve_dtype(dtype, x)
    inter = _intermediate(method, intermediate)
    xd = x.detach().to(dtype)
    ops = _compile(model, xd, dtype)
    z, pred, lab = _labels_and_pred(ops, xd, labels)
    B, n_out = z.shape
    dev = x.device
    p = next((i for i, op in enumerate(ops) if not op.affine), len(ops))
    row_norms = prefix_row_norms(ops, p, memory_elements)
    slack_rel = ROUNDING_SLACK_ULPS * torch.finfo(dtype).eps * len(ops)
    round_down = 1 - 4 * torch.finfo(dtype).eps

    radius = torch.zeros(B, dtype=torch.float64, device=dev)
    upper = torch.full((B,), math.inf, dtype=torch.float64, device=dev)
    ibp_r = torch.zeros(B, dtype=torch.float64, device=dev)
    iters = torch.zeros(B, dtype=torch.long, device=dev)
    at_max = torch.zeros(B, dtype=torch.bool, device=dev)
    correct = pred == lab
    bs = int(batch_size or _default_batch(method))
    starts = range(0, B, bs)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"certify ({method})", unit="chunk")
    for s in starts:
        sl = slice(s, min(B, s + bs))
        xs, ls = xd[sl], lab[sl]
        ok = correct[sl]
        idx = ok.nonzero().flatten()
        if idx.numel() == 0:
            continue
        xs, ls = xs[idx], ls[idx]
        C = _spec(ls, n_out, dtype)
        eps0 = _first_order_distance(ops, xs, ls)
        eps0 = torch.where(torch.isfinite(eps0) & (eps0 > 0), eps0,
                           torch.linalg.vector_norm(xs.reshape(xs.shape[0], -1), dim=1).clamp_min(1.0))
        kw = dict(eps_max=eps_max, max_iter=max_iter, memory=memory_elements, row_norms=row_norms,
                  slack_rel=slack_rel)
        lo = torch.zeros(idx.numel(), dtype=dtype, device=dev)
        it_total = torch.zeros(idx.numel(), dtype=torch.long, device=dev)
        ibp_vals = torch.full((idx.numel(),), math.nan, dtype=dtype, device=dev)
        if p == len(ops):
            # affine network: one pass gives the exact radius min_j (c_j - slack_j) / ||Lam_j||
            huge = torch.full_like(eps0, math.inf if eps_max is None else float(eps_max))
            eng = BoundEngine(ops, xs, torch.zeros_like(eps0), intermediate="ibp", memory_elements=memory_elements,
                              row_norms=row_norms)
            mb = eng.margins(C, "crown")
            r_rows = torch.where(mb.crown_norm > 0, (mb.crown_center - slack_rel * mb.scale)
                                 / mb.crown_norm.clamp_min(torch.finfo(dtype).tiny),
                                 torch.where(mb.crown_center > slack_rel * mb.scale, math.inf, 0.0))
            lo = torch.minimum(r_rows.amin(dim=1).clamp_min(0), huge)
            hi = torch.where(lo < huge, lo, torch.full_like(lo, math.inf))
            am = lo >= huge
            it_total += 1
            ibp_vals = lo.clone()
        else:
            if method == "ibp" or ibp_screen:
                tol_i = tol if method == "ibp" else max(tol, SCREEN_TOL)
                lo, hi, it_i, am = _search(ops, xs, C, "ibp", "ibp", lo=lo, eps0=eps0.clone(), tol=tol_i, **kw)
                ibp_vals = lo.clone()
                it_total += it_i
            if method == "crown":
                start = torch.maximum(eps0, 2 * lo)
                lo, hi, it_c, am = _search(ops, xs, C, "crown", inter, lo=lo.clone(), eps0=start, tol=tol, **kw)
                it_total += it_c
        glob = idx + s
        radius[glob] = lo.double() * round_down
        upper[glob] = hi.double()
        ibp_r[glob] = ibp_vals.double() * round_down
        iters[glob] = it_total
        at_max[glob] = am
    return CertifyResult(radius=radius, predicted=pred, label=lab, correct=correct, radius_upper=upper,
                         ibp_radius=ibp_r, iterations=iters, at_eps_max=at_max, method=method,
                         info={"intermediate": inter, "dtype": str(dtype).replace("torch.", ""), "tol": tol,
                               "eps_max": eps_max, "ibp_screen": bool(ibp_screen and method == "crown")})
