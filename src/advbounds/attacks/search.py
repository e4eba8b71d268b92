"""Batched minimal-epsilon search: Algorithm 2.1 of the thesis for FGS, and the same search for FGV.

Algorithm 2.1 computes the gradient sign ``s`` once, then bisects ``[l, u] = [0, M]`` on the
predicate "``f(x + eps s) != f(x)``". Here every sample keeps its own ``[lo, hi]`` and one forward
pass per bisection step serves a whole chunk of samples. All samples need the same number of
halvings, fixed in advance by :func:`bisection_steps`, so the batched search and the per-sample
reference loop (:mod:`.reference`) evaluate exactly the same epsilons.

What is reported, and how it relates to the thesis
--------------------------------------------------
Algorithm 2.1 returns the midpoint of its last bracket, a point it never evaluated. We report the
bracket's upper end ``hi`` as ``eps``: the smallest epsilon *observed* to flip the label, so that
``eps`` is a verified adversarial step. It differs from the thesis's midpoint by at most ``tol/2``.
The lower end is ``eps_lower`` (largest epsilon observed not to flip, ``hi - eps_lower <= tol``).

Algorithm 2.1 presumes ``M`` flips the label. We evaluate ``M`` once (``flips_at_eps_max``); a
sample counts as ``flipped`` when some evaluated epsilon flipped it (the thesis's "rate"). For a
sample that never flips, ``eps`` and ``perturbation_norm`` are NaN.

Fewer forward passes: ``search="regula_falsi"``
-----------------------------------------------
Bisection spends ``ceil(log2(M / tol))`` passes on every sample (27 for the thesis's M = 100 with
tol = 1e-6). The logits along the ray are continuous and, for
linear classifiers and ReLU / max-pool networks, piecewise linear, so interpolating the margin
between the original class and its rival finds the crossing in a handful of passes. ``search="regula_falsi"`` keeps, per sample, a bracket of two
points *of bisection's own grid* ``eps_max * i / 2**k`` (``k`` = the bisection step count): the
lower end observed not to flip, the upper end observed to flip. Each pass evaluates one grid point
chosen by the Illinois variant of regula falsi on the margin (a bisection step whenever two
interpolation steps in a row failed to halve the bracket, so it never needs more than about
three times bisection's passes). It stops when the two ends are adjacent grid points.

Consequence: whenever the label flips at most once along the ray (at least on the grid points),
the final bracket is exactly the grid cell bisection ends in, so ``eps`` and ``eps_lower`` are
bit-identical to ``search="bisection"`` (a test checks it). When the label flips back and forth
the two policies may return different crossings; ``consistent`` flags what each saw. Samples whose
label does not flip at ``eps_max`` have no bracket to interpolate and take plain bisection (as the
thesis, which follows a flipping midpoint even then). Verdicts are always the model's own argmax;
the margin only chooses where to look.

Non-monotone flips
------------------
Bisection assumes a single crossing along the ray. ``search="bisection"`` (default) is the plain
bisection of the thesis; ``search="grid"`` first scans ``eps_max * k / grid_points`` upwards,
takes the first grid point that flips and bisects the grid cell below it, so it finds the first
crossing up to the grid's resolution. Either way ``consistent`` records whether the evaluated
points are compatible with a single crossing (every epsilon observed not to flip lies below every
epsilon observed to flip); ``False`` means the search saw the label flip back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch import nn
from tqdm.auto import tqdm

from .direction import (
    METHODS,
    attack_direction,
    eval_mode,
    fp32_precision,
    model_device_dtype,
    perturb,
    perturbation_norm,
    prepare_model,
    validate_clip,
)

SEARCH_POLICIES = ("bisection", "regula_falsi", "grid")

#: Chunk size used when ``batch_size=None``, by device type. On the CPU, 128-512 samples per chunk
#: keep the activations in cache and were fastest for LeNet-5; on a GPU 1024 keeps the device busy
#: while one chunk of CIFAR-NIN activations still fits in a few GB.
DEFAULT_BATCH_SIZE = {"cpu": 256, "cuda": 1024}

#: Upper bound on epsilon that the thesis uses for MNIST and CIFAR-10 in raw pixel units (5.3.1).
THESIS_EPS_MAX_PIXELS = 100.0


def bisection_steps(width: float, tol: float) -> int:
    """Number of halvings of an interval of ``width`` until it is at most ``tol``.

    This is the iteration count of Algorithm 2.1's ``while u - l > tol`` loop. It is fixed up front
    (instead of testing each sample's ``hi - lo``, whose last bits depend on the path) so that every
    sample, batched or not, performs exactly the same steps.
    """
    if not (width > 0 and tol > 0):
        raise ValueError(f"need width > 0 and tol > 0, got width={width}, tol={tol}")
    steps, w = 0, float(width)
    while w > tol:
        w /= 2.0
        steps += 1
    return steps


def grid_points_eps(eps_max: float, grid_points: int) -> list[float]:
    """The grid of ``search="grid"``: ``eps_max * k / grid_points`` for ``k = 0..grid_points``.

    Computed in Python floats with the exact expression the batched code uses."""
    return [eps_max * k / grid_points for k in range(grid_points + 1)]


@dataclass
class AttackResult:
    """Per-sample results of :func:`minimal_epsilon_search` (tensors of length B, on x's device).

    - ``eps``: smallest epsilon observed to flip the label (float64; NaN if not flipped).
    - ``eps_lower``: largest epsilon observed not to flip it (lower end of the last bracket).
    - ``perturbation_norm``: L2 norm of ``eps * d`` (FGS: ``eps * sqrt(#nonzero signs)``); NaN if not
      flipped.
    - ``orig_label``: ``f(x)``; ``adv_label``: ``f(x + eps d)`` (``= orig_label`` if not flipped).
    - ``flipped``: some evaluated epsilon in (0, eps_max] changed the label (the thesis's "rate").
    - ``flips_at_eps_max``: the endpoint check, ``f(x + eps_max d) != f(x)``.
    - ``consistent``: the evaluated points fit a single crossing (see module docstring).
    - ``direction_norm``: ``||d||_2`` (FGS: ``sqrt`` of the number of nonzero gradient signs).
    - ``adversarial``: ``x + eps d`` as the model saw it, only with ``return_adversarial=True``
      (for a sample that did not flip: the point at ``eps_max``).
    """

    eps: torch.Tensor
    eps_lower: torch.Tensor
    perturbation_norm: torch.Tensor
    orig_label: torch.Tensor
    adv_label: torch.Tensor
    flipped: torch.Tensor
    flips_at_eps_max: torch.Tensor
    consistent: torch.Tensor
    direction_norm: torch.Tensor
    adversarial: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.eps.shape[0])

    def to_frame(self):
        """One row per sample; every per-sample field except ``adversarial``."""
        import pandas as pd

        return pd.DataFrame(
            {
                f.name: getattr(self, f.name).detach().cpu().numpy()
                for f in fields(self)
                if f.name != "adversarial"
            }
        )

    @staticmethod
    def concatenate(parts: list[AttackResult]) -> AttackResult:
        """Join results of consecutive chunks (in order)."""
        merged = {}
        for f in fields(AttackResult):
            values = [getattr(p, f.name) for p in parts]
            merged[f.name] = None if any(v is None for v in values) else torch.cat(values)
        return AttackResult(**merged)


def validate_search_args(method, eps_max, tol, search, grid_points) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not (math.isfinite(eps_max) and eps_max > 0):
        raise ValueError(f"eps_max must be a positive finite number, got {eps_max}")
    if not (math.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a positive finite number, got {tol}")
    if search not in SEARCH_POLICIES:
        raise ValueError(f"search must be one of {SEARCH_POLICIES}, got {search!r}")
    if search == "grid" and (int(grid_points) != grid_points or grid_points < 1):
        raise ValueError(f"grid_points must be a positive integer, got {grid_points}")


def minimal_epsilon_search(
    model: nn.Module,
    x: torch.Tensor,
    *,
    method: str = "fgs",
    eps_max: float,
    tol: float,
    clip: tuple[float, float] | None = None,
    loss_label: str = "predicted",
    labels: torch.Tensor | None = None,
    batch_size: int | None = None,
    search: str = "bisection",
    grid_points: int = 100,
    fgv_normalize: bool = False,
    return_adversarial: bool = False,
    channels_last: bool | None = None,
    allow_tf32: bool = False,
    progress: bool = False,
) -> AttackResult:
    """Smallest epsilon with ``f(x + eps * d) != f(x)``, ``d`` the FGS or FGV direction (Alg. 2.1).

    Parameters
    ----------
    model: a classifier returning logits. It is run in eval mode (its flags are restored).
    x: inputs ``[B, ...]`` on any device; chunks are moved to the model's device and dtype.
    method: ``"fgs"`` (eq. 2.8, the thesis's method) or ``"fgv"`` (eq. 2.10).
    eps_max: ``M``, the upper end of the search (thesis: 100 in pixel units for MNIST/CIFAR-10).
    tol: bisection stops once the bracket is at most ``tol`` wide (not stated in the thesis).
    clip: ``None`` (Algorithm 2.1 does not clip) or ``(low, high)``, e.g. ``(0, 255)``.
    loss_label: ``"predicted"`` (``L(x, f(x))`` as in Algorithm 2.1) or ``"true"`` (needs ``labels``).
    batch_size: samples per chunk (``None``: :data:`DEFAULT_BATCH_SIZE` for the model's device).
    search: ``"bisection"`` (the thesis), ``"regula_falsi"`` (bisection's result in far fewer passes
        when the label flips once along the ray) or ``"grid"`` (coarse scan first); see the module
        docstring.
    grid_points: grid resolution for ``search="grid"``.
    fgv_normalize: FGV only: use ``grad / ||grad||_2`` so that epsilon is the L2 norm.
    return_adversarial: also return the perturbed inputs (memory: one copy of ``x``).
    channels_last: run a channels-last copy of the model (``None``: on the CPU for conv nets).
    allow_tf32: let cuDNN/cuBLAS use TF32 for float32 (default off: it would swamp small epsilons).
    progress: show a tqdm bar over samples (updated after each chunk).
    """
    validate_search_args(method, eps_max, tol, search, grid_points)
    clip = validate_clip(clip)
    if loss_label == "true" and labels is None:
        raise ValueError('loss_label="true" needs the true labels (labels=...)')
    if labels is not None and labels.shape[0] != x.shape[0]:
        raise ValueError(f"labels has {labels.shape[0]} entries for {x.shape[0]} inputs")
    if x.shape[0] == 0:
        raise ValueError("x is empty")
    eps_max, tol = float(eps_max), float(tol)
    device, dtype = model_device_dtype(model, x)
    chunk = int(batch_size) if batch_size else DEFAULT_BATCH_SIZE.get(device.type, 1024)
    if chunk < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    work_model, memory_format = prepare_model(model, x, channels_last)
    parts = []
    with eval_mode(work_model), fp32_precision(allow_tf32), tqdm(
        total=x.shape[0], disable=not progress, desc=f"{method} {search}", unit="sample"
    ) as bar:
        for start in range(0, x.shape[0], chunk):
            xc = x[start : start + chunk].to(device=device, dtype=dtype).contiguous(memory_format=memory_format)
            yc = None if labels is None else labels[start : start + chunk].to(device)
            part = _search_chunk(
                work_model, xc, yc, method=method, eps_max=eps_max, tol=tol, clip=clip,
                loss_label=loss_label, search=search, grid_points=int(grid_points),
                fgv_normalize=fgv_normalize, return_adversarial=return_adversarial,
            )
            parts.append(_to_device(part, x.device))
            bar.update(xc.shape[0])
    return AttackResult.concatenate(parts)


def _to_device(result: AttackResult, device: torch.device) -> AttackResult:
    return AttackResult(
        **{f.name: (None if getattr(result, f.name) is None else getattr(result, f.name).to(device))
           for f in fields(AttackResult)}
    )


def _search_chunk(
    model, x, labels, *, method, eps_max, tol, clip, loss_label, search, grid_points,
    fgv_normalize, return_adversarial,
) -> AttackResult:
    dtype = x.dtype
    logits, direction, linear_eps = attack_direction(
        model, x, method=method, loss_label=loss_label, labels=labels, fgv_normalize=fgv_normalize,
        return_linear_eps=True,
    )
    orig = logits.argmax(dim=1)
    x64 = x.to(torch.float64)
    n = x.shape[0]
    f64 = dict(dtype=torch.float64, device=x.device)

    @torch.inference_mode()
    def logits_at(idx: torch.Tensor | None, eps: torch.Tensor) -> torch.Tensor:
        """Logits at ``x + eps d`` for the samples ``idx`` (all if None): one forward pass."""
        xs, ds = (x64, direction) if idx is None else (x64[idx], direction[idx])
        return model(perturb(xs, ds, eps, clip, dtype))

    def predict(idx: torch.Tensor | None, eps: torch.Tensor) -> torch.Tensor:
        return logits_at(idx, eps).argmax(dim=1)

    # Per-sample record of everything evaluated, for the single-crossing consistency flag.
    max_noflip = torch.zeros(n, **f64)  # eps = 0 is x itself: label unchanged by definition
    min_flip = torch.full((n,), math.inf, **f64)

    def record(idx, eps, flips):
        nonlocal max_noflip, min_flip
        if idx is None:
            max_noflip = torch.where(flips, max_noflip, torch.maximum(max_noflip, eps))
            min_flip = torch.where(flips, torch.minimum(min_flip, eps), min_flip)
        else:
            max_noflip[idx] = torch.where(flips, max_noflip[idx], torch.maximum(max_noflip[idx], eps))
            min_flip[idx] = torch.where(flips, torch.minimum(min_flip[idx], eps), min_flip[idx])

    # Endpoint check at eps_max (both policies).
    at_max = torch.full((n,), eps_max, **f64)
    logits_max = logits_at(None, at_max)
    label_max = logits_max.argmax(dim=1)
    flips_max = label_max != orig
    record(None, at_max, flips_max)

    if search == "regula_falsi":
        lo = torch.zeros(n, **f64)
        hi = at_max.clone()
        hi_flips = flips_max.clone()
        adv = label_max.clone()
        steps = bisection_steps(eps_max, tol)
        bracketed = flips_max.nonzero().squeeze(1)
        cell_lo, cell_hi, adv_b, evaluated = _regula_falsi(
            logits_at, orig[bracketed], bracketed, logits[bracketed], logits_max[bracketed],
            linear_eps[bracketed], eps_max=eps_max, steps=steps,
        )
        for idx, eps, flips in evaluated:
            record(idx, eps, flips)
        lo[bracketed], hi[bracketed], adv[bracketed] = cell_lo, cell_hi, adv_b
        active = (~flips_max).nonzero().squeeze(1)  # no bracket: plain bisection, as the thesis
    elif search == "bisection":
        lo = torch.zeros(n, **f64)
        hi = at_max.clone()
        hi_flips = flips_max.clone()  # Algorithm 2.1 takes u = M as flipping without checking
        adv = label_max.clone()
        active = None  # every sample bisects, including those that do not flip at M (faithful)
        steps = bisection_steps(eps_max, tol)
    else:
        grid = torch.tensor(grid_points_eps(eps_max, grid_points), **f64)
        lo = torch.zeros(n, **f64)
        hi = at_max.clone()
        hi_flips = torch.zeros(n, dtype=torch.bool, device=x.device)
        adv = orig.clone()
        scanning = torch.arange(n, device=x.device)
        for k in range(1, grid_points + 1):
            if scanning.numel() == 0:
                break
            if k == grid_points:  # already evaluated: the eps_max pass
                labels_k = label_max[scanning]
            else:
                labels_k = predict(scanning, grid[k].expand(scanning.numel()))
            flips_k = labels_k != orig[scanning]
            record(scanning, grid[k].expand(scanning.numel()), flips_k)
            found = scanning[flips_k]
            lo[found], hi[found], hi_flips[found], adv[found] = grid[k - 1], grid[k], True, labels_k[flips_k]
            scanning = scanning[~flips_k]
        # Samples with no flip anywhere on the grid are not flipped (every evaluated point, eps_max
        # included, kept the label); only the others bisect their grid cell.
        lo[~hi_flips] = eps_max
        active = hi_flips.nonzero().squeeze(1)
        steps = bisection_steps(eps_max / grid_points, tol)

    for _ in range(steps):
        if active is not None and active.numel() == 0:
            break
        lo_a, hi_a = (lo, hi) if active is None else (lo[active], hi[active])
        mid = lo_a + (hi_a - lo_a) / 2.0  # same expression as Algorithm 2.1 and the reference loop
        labels_mid = predict(active, mid)
        orig_a = orig if active is None else orig[active]
        flips = labels_mid != orig_a
        record(active, mid, flips)
        new_hi, new_lo = torch.where(flips, mid, hi_a), torch.where(flips, lo_a, mid)
        if active is None:
            hi, lo = new_hi, new_lo
            adv = torch.where(flips, labels_mid, adv)
            hi_flips = hi_flips | flips
        else:
            hi[active], lo[active] = new_hi, new_lo
            adv[active] = torch.where(flips, labels_mid, adv[active])
            hi_flips[active] = hi_flips[active] | flips

    flipped = hi_flips
    nan = torch.full_like(hi, math.nan)
    eps = torch.where(flipped, hi, nan)
    adversarial = perturb(x64, direction, hi, clip, dtype) if return_adversarial else None
    return AttackResult(
        eps=eps,
        eps_lower=lo,
        perturbation_norm=torch.where(flipped, perturbation_norm(x64, direction, hi, clip), nan),
        orig_label=orig,
        adv_label=torch.where(flipped, adv, orig),
        flipped=flipped,
        flips_at_eps_max=flips_max,
        consistent=max_noflip < min_flip,
        direction_norm=direction.flatten(1).norm(dim=1),
        adversarial=adversarial,
    )


def _regula_falsi(logits_at, orig, idx, logits_lo, logits_hi, first_guess, *, eps_max: float, steps: int):
    """Grid-aligned Illinois regula falsi for the samples ``idx``, which flip at ``eps_max``.

    Works on integer positions ``i`` of bisection's grid ``eps_max * i / 2**steps``: the bracket
    starts at ``[0, 2**steps]`` and ends as two adjacent positions, the lower observed not to flip
    and the upper observed to flip (see the module docstring). ``logits_lo``/``logits_hi`` are the
    logits at 0 and at ``eps_max``. The first pass looks at ``first_guess`` (the gradient's
    first-order estimate of the crossing, see :func:`.direction.attack_direction`) instead of
    interpolating across the whole of ``[0, eps_max]``, where the logits are far from linear.

    The interpolated function is the *pairwise* margin ``z_orig - z_j`` for the class ``j`` that
    wins at the upper end, not ``z_orig - max_{k != orig} z_k``: for a linear classifier the pairwise
    margin is exactly linear along the ray (the max-margin is only piecewise linear and concave, on
    which regula falsi creeps), so each step lands on the crossing with ``j`` and at most one step
    per class that overtakes ``orig`` earlier is needed. ReLU / max-pool networks are piecewise
    linear, so the same holds once the bracket sits inside one linear piece.

    Returns the bracket ends as epsilons, the label at the upper end, and every ``(idx, eps, flips)``
    evaluated, for the consistency flag.
    """
    device = logits_lo.device
    scale = 2.0**steps
    n = idx.numel()
    lo = torch.zeros(n, dtype=torch.int64, device=device)
    hi = torch.full((n,), 2**steps, dtype=torch.int64, device=device)
    z_lo, z_hi = logits_lo.detach().to(torch.float64), logits_hi.detach().to(torch.float64)
    weight_lo = torch.ones(n, dtype=torch.float64, device=device)  # Illinois down-weighting
    weight_hi = torch.ones(n, dtype=torch.float64, device=device)
    last_moved = torch.zeros(n, dtype=torch.int8, device=device)  # +1: lo moved last, -1: hi moved last
    stalls = torch.zeros(n, dtype=torch.int8, device=device)
    tiny = torch.finfo(torch.float64).tiny
    evaluated = []
    live = torch.arange(n, device=device)  # positions (into idx) still searching
    guess = torch.nan_to_num(first_guess / eps_max * scale, posinf=scale).clamp(0, scale)
    first = True
    while True:
        live = live[hi[live] - lo[live] > 1]
        if not live.numel():
            break
        a, b = lo[live], hi[live]
        width = b - a
        own = orig[live].view(-1, 1)
        rival = z_hi[live].argmax(dim=1, keepdim=True)  # the label at the upper end
        # Verdicts come from argmax; ties (argmax takes the first maximal class) still need a
        # strictly positive margin below and a strictly negative one above for the interpolation.
        g_a = ((z_lo[live].gather(1, own) - z_lo[live].gather(1, rival)).squeeze(1) * weight_lo[live]).clamp_min(tiny)
        g_b = ((z_hi[live].gather(1, own) - z_hi[live].gather(1, rival)).squeeze(1) * weight_hi[live]).clamp_max(-tiny)
        # Interpolated root, rounded up to the grid and kept strictly inside the bracket; after two
        # interpolation steps in a row that did not halve the bracket, one bisection step.
        root = a.to(torch.float64) + g_a / (g_a - g_b) * width.to(torch.float64)
        if first:
            root, first = guess[live], False
        candidate = torch.ceil(root).clamp(min=1.0).to(torch.int64)
        candidate = torch.minimum(torch.maximum(candidate, a + 1), b - 1)
        bisect = stalls[live] >= 2
        candidate = torch.where(bisect, a + width // 2, candidate)
        eps = eps_max * (candidate.to(torch.float64) / scale)
        logits = logits_at(idx[live], eps).to(torch.float64)
        flips = logits.argmax(dim=1) != orig[live]
        evaluated.append((idx[live], eps, flips))
        # Illinois: an end kept twice in a row has its weight halved, so the next root moves
        # towards it instead of creeping from one side; a replaced end starts afresh.
        kept_lo_twice = flips & (last_moved[live] == -1)
        kept_hi_twice = ~flips & (last_moved[live] == 1)
        weight_lo[live] = torch.where(flips, torch.where(kept_lo_twice, weight_lo[live] / 2, weight_lo[live]), 1.0)
        weight_hi[live] = torch.where(flips, 1.0, torch.where(kept_hi_twice, weight_hi[live] / 2, weight_hi[live]))
        f = flips.view(-1, 1)
        z_hi[live] = torch.where(f, logits, z_hi[live])
        z_lo[live] = torch.where(f, z_lo[live], logits)
        hi[live] = torch.where(flips, candidate, b)
        lo[live] = torch.where(flips, a, candidate)
        last_moved[live] = torch.where(flips, -1, 1).to(torch.int8)
        halved = 2 * (hi[live] - lo[live]) <= width
        stalls[live] = torch.where(halved | bisect, 0, stalls[live] + 1).to(torch.int8)
    cell_lo = eps_max * (lo.to(torch.float64) / scale)
    cell_hi = eps_max * (hi.to(torch.float64) / scale)
    return cell_lo, cell_hi, z_hi.argmax(dim=1), evaluated
