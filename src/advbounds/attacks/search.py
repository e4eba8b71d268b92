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

What "flipped" means, and what is guaranteed
--------------------------------------------
Every verdict (midpoints, regula-falsi probes, the ``eps_max`` check, the grid scan) is
:func:`flip_verdict`: the best rival must beat ``f(x)`` by ``tau = verify_margin_ulps *
finfo(dtype).eps * max_j |z_j|`` (default 64 ulps of the largest logit). ``verify_margin_ulps=0`` is
plain ``argmax != f(x)``, under which an exact tie counts as flipped iff the rival has the lower
index (``argmax`` takes the first maximum); with a margin a tie never counts. The flip is judged
against ``f(x)``, not the true label: a misclassified sample moved to its true class counts.

Without the margin, a ``tol`` below the input's float32 resolution (1.5e-5 at pixel 255) let the
verdict at the last bracket depend on the memory layout and batch of the search's own passes (a
channels-last copy of the model on the CPU): about half of the returned adversarials of a trained
LeNet-5 did not flip in the caller's model. Now the final points are also checked by a separate pass
in the *caller's* model and layout (:func:`verify_in_model`, one batched pass per chunk, half the
margin); a sample that fails steps up the search grid until it passes there (``verify_steps``), or
is reported as not flipped. Guarantee: each flipped sample's ``adversarial`` (= ``x + eps d`` rounded
once) flips by ``tau / 2`` in the caller's model run on the returned chunk; any other batching or
one-at-a-time evaluation differs from that pass only by accumulation order (measured at ~2 ulps of
``max|z|`` on LeNet-5, well inside ``tau / 2``; docs/attacks.md has the details and the limits).

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

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, fields

import pandas as pd
import torch
from torch import nn

from advbounds.progress import progress_bar
from advbounds.settings import SearchSettings

from .direction import (
    attack_direction,
    eval_mode,
    fp32_precision,
    model_device_dtype,
    perturb,
    perturbation_norm,
    prepare_model,
)

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
    - ``verify_steps``: grid steps the verification in the caller's model added above the search's
      own flipping point (0: it passed as is; -1: not flipped). Where it is positive,
      ``eps - eps_lower`` exceeds ``tol`` by that many grid steps.
    - ``adversarial``: ``x + eps d`` exactly as the verification pass fed it to the caller's model
      (model dtype, the caller's memory layout), only with ``return_adversarial=True`` (for a sample
      that did not flip: the point at ``eps_max``).
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
    verify_steps: torch.Tensor
    adversarial: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.eps.shape[0])

    def to_frame(self, prefix: str = "") -> pd.DataFrame:
        """One row per sample: every per-sample field except ``adversarial``, as the column of its
        name. With a ``prefix`` (``"fgs_"``) every column is ``<prefix><field>``, except that
        ``perturbation_norm`` is ``<prefix>norm``, as in the minimal-L2 attacks' frames
        (:meth:`advbounds.attacks.MinimalAttackResult.to_frame`)."""
        return pd.DataFrame(
            {
                f"{prefix}norm" if prefix and f.name == "perturbation_norm" else f"{prefix}{f.name}":
                    getattr(self, f.name).detach().cpu().numpy()
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


def minimal_epsilon_search(
    model: nn.Module,
    x: torch.Tensor,
    settings: SearchSettings,
    *,
    labels: torch.Tensor | None = None,
    return_adversarial: bool = False,
    progress: bool = False,
) -> AttackResult:
    """Smallest epsilon with ``f(x + eps * d) != f(x)``, ``d`` the FGS or FGV direction (Alg. 2.1).

    Parameters
    ----------
    model: a classifier returning logits. It is run in eval mode (its flags are restored).
    x: inputs ``[B, ...]`` on any device; chunks are moved to the model's device and dtype.
    settings: method, ``eps_max``, ``tol``, clipping, search policy, chunk size, verification margin
        (:class:`advbounds.settings.SearchSettings`; the search policies are described in the module
        docstring, the margin under "What is guaranteed").
    labels: the true labels, needed with ``settings.loss_label == "true"``.
    return_adversarial: also return the perturbed inputs (memory: one copy of ``x``).
    progress: show a tqdm bar over samples (updated after each chunk).
    """
    if not isinstance(settings, SearchSettings):
        raise TypeError(f"settings must be a SearchSettings, got {type(settings).__name__}")
    check_labels(settings, x, labels)
    if x.shape[0] == 0:
        raise ValueError("x is empty")
    parts = []
    with search_setup(model, x, settings) as run, progress_bar(
        total=x.shape[0], disable=not progress, desc=f"{settings.method} {settings.search}", unit="sample"
    ) as bar:
        chunk = settings.batch_size or DEFAULT_BATCH_SIZE.get(run.device.type, 1024)
        for start in range(0, x.shape[0], chunk):
            xc = run.inputs(x[start : start + chunk])
            yc = None if labels is None else labels[start : start + chunk].to(run.device)
            outcome = _search_chunk(run.model, xc, yc, settings)
            part = _finish_chunk(
                model, outcome, eps_max=settings.eps_max, clip=settings.clip, dtype=run.dtype,
                memory_format=run.caller_format, margin_ulps=settings.verify_margin_ulps / 2,
                return_adversarial=return_adversarial,
            )
            parts.append(_to_device(part, x.device))
            bar.update(xc.shape[0])
    return AttackResult.concatenate(parts)


@dataclass(frozen=True)
class SearchSetup:
    """Where a search runs: ``model`` (the caller's, or its channels-last copy), the caller's model's
    ``device`` and ``dtype``, the layout the search feeds ``model`` (``memory_format``) and the
    caller's own layout (``caller_format``, in which the final points are verified)."""

    model: nn.Module
    device: torch.device
    dtype: torch.dtype
    memory_format: torch.memory_format
    caller_format: torch.memory_format

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` on the model's device and dtype, in the search's layout."""
        return x.to(device=self.device, dtype=self.dtype).contiguous(memory_format=self.memory_format)


@contextlib.contextmanager
def search_setup(model: nn.Module, x: torch.Tensor, settings: SearchSettings) -> Iterator[SearchSetup]:
    """The model copy and layouts of a search over ``x`` (the batched one and the naive reference
    alike), with both models in eval mode and ``settings.allow_tf32`` in force for the duration."""
    device, dtype = model_device_dtype(model, x)
    work_model, memory_format = prepare_model(model, x, settings.channels_last)
    with eval_mode(model), eval_mode(work_model), fp32_precision(settings.allow_tf32):
        yield SearchSetup(work_model, device, dtype, memory_format, caller_memory_format(x))


def check_labels(settings: SearchSettings, x: torch.Tensor, labels: torch.Tensor | None) -> None:
    """The true labels a search needs: present for ``loss_label="true"``, one per input."""
    if settings.loss_label == "true" and labels is None:
        raise ValueError('loss_label="true" needs the true labels (labels=...)')
    if labels is not None and labels.shape[0] != x.shape[0]:
        raise ValueError(f"labels has {labels.shape[0]} entries for {x.shape[0]} inputs")


def _to_device(result: AttackResult, device: torch.device) -> AttackResult:
    return AttackResult(
        **{f.name: (None if getattr(result, f.name) is None else getattr(result, f.name).to(device))
           for f in fields(AttackResult)}
    )


def caller_memory_format(x: torch.Tensor) -> torch.memory_format:
    """The layout the caller's inputs come in: channels-last for a 4-D tensor stored that way (and
    not also contiguous, as for 1x1 images), else the default."""
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def _search_chunk(model, x, labels, settings: SearchSettings) -> _SearchOutcome:
    method, eps_max, tol, clip = settings.method, settings.eps_max, settings.tol, settings.clip
    loss_label, search, grid_points = settings.loss_label, settings.search, settings.grid_points
    fgv_normalize, margin_ulps = settings.fgv_normalize, settings.verify_margin_ulps
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

    def predict(idx: torch.Tensor | None, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(flips by the margin, labels) at ``x + eps d`` for the samples ``idx``."""
        z = logits_at(idx, eps)
        return flip_verdict(z, orig if idx is None else orig[idx], margin_ulps), z.argmax(dim=1)

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
    flips_max = flip_verdict(logits_max, orig, margin_ulps)
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
            linear_eps[bracketed], eps_max=eps_max, steps=steps, tol=tol, margin_ulps=margin_ulps,
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
                flips_k, labels_k = flips_max[scanning], label_max[scanning]
            else:
                flips_k, labels_k = predict(scanning, grid[k].expand(scanning.numel()))
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
        flips, labels_mid = predict(active, mid)
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

    if search == "grid":
        grid_step = math.ldexp(eps_max / grid_points, -steps)
    else:
        grid_step = math.ldexp(eps_max, -steps)
    return _SearchOutcome(
        x64=x64, direction=direction, orig=orig, hi=hi, lo=lo, flipped=hi_flips, adv=adv,
        flips_max=flips_max, consistent=max_noflip < min_flip, grid_step=grid_step,
    )


@dataclass
class _SearchOutcome:
    """What :func:`_search_chunk` found, before the verification in the caller's model."""

    x64: torch.Tensor
    direction: torch.Tensor
    orig: torch.Tensor
    hi: torch.Tensor
    lo: torch.Tensor
    flipped: torch.Tensor
    adv: torch.Tensor
    flips_max: torch.Tensor
    consistent: torch.Tensor
    grid_step: float


def flip_verdict(logits: torch.Tensor, labels: torch.Tensor, margin_ulps: float) -> torch.Tensor:
    """Which rows of ``logits[B, C]`` count as flipped away from ``labels[B]``.

    ``margin_ulps = 0``: plain ``argmax != label``. ``torch.argmax`` returns the *first* maximal
    class, so an exact tie between ``label`` and a rival counts as flipped iff the rival has the
    lower index. ``margin_ulps > 0``: the best rival must beat ``label`` strictly and by at least
    ``margin_ulps * finfo(dtype).eps * max_j |z_j|`` (ties never count). That is the margin the
    minimal-epsilon search requires of the points it returns (see :func:`verify_in_model`).
    """
    flips = logits.argmax(dim=1) != labels
    if margin_ulps == 0:
        return flips
    z = logits.detach().to(torch.float64)
    own = z.gather(1, labels.view(-1, 1)).squeeze(1)
    rival = z.scatter(1, labels.view(-1, 1), -math.inf).amax(dim=1)
    tau = float(margin_ulps) * torch.finfo(logits.dtype).eps * z.abs().amax(dim=1)
    return flips & (rival > own) & (rival - own >= tau)


@torch.inference_mode()
def verify_in_model(
    model: nn.Module,
    x64: torch.Tensor,
    direction: torch.Tensor,
    orig: torch.Tensor,
    eps: torch.Tensor,
    flipped: torch.Tensor,
    *,
    grid_step: float,
    eps_max: float,
    clip: tuple[float, float] | None,
    dtype: torch.dtype,
    memory_format: torch.memory_format,
    margin_ulps: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Check the search's final points in the caller's ``model`` and layout; step up where needed.

    For every sample with ``flipped``, ``x + eps d`` (rounded once, in ``memory_format``) is run
    through ``model`` in one batched pass and judged by :func:`flip_verdict` with ``margin_ulps``.
    Where it does not pass, ``eps`` moves up the search's grid (``eps + j * grid_step``, capped at
    ``eps_max``): ``j = 1, 2, 4, ...`` until a point passes (batched over the failing samples, one
    pass per doubling), then bisection on ``j`` between the last failing and the first passing
    doubling, so that the returned point passes and the grid point ``grid_step`` below it was seen
    to fail (or was the search's own). A sample for which not even ``eps_max`` passes is reported
    as not flipped.

    Returns ``(eps, adv_label, flipped, verify_steps)``: the verified epsilon (the search's where it
    passed), the caller's model's label there, the new flag and the number of grid steps added
    (0: the search's point passed as is; -1: not flipped).
    """
    eps = eps.clone()
    flipped = flipped.clone()
    adv_label = orig.clone()
    verify_steps = torch.full_like(orig, -1)

    def judge(idx: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # the whole chunk goes through the model, the other samples at their current eps: the
        # verdict must come from the batch as the caller's model sees it, and some models need
        # their batch whole (a StackedMLP holds one block of rows per stacked classifier)
        full = torch.nan_to_num(eps.to(e.dtype), nan=0.0)
        full[idx] = e
        point = perturb(x64, direction, full, clip, dtype).contiguous(memory_format=memory_format)
        logits = model(point)[idx]
        return flip_verdict(logits, orig[idx], margin_ulps), logits.argmax(dim=1)

    cand = flipped.nonzero().squeeze(1)
    if cand.numel():
        ok, label = judge(cand, eps[cand])
        adv_label[cand[ok]], verify_steps[cand[ok]] = label[ok], 0
        fail = cand[~ok]
    else:
        fail = cand
    if fail.numel():
        base = eps[fail]
        # grid steps up to eps_max (at least float64's spacing, for absurdly fine grids)
        step = torch.maximum(torch.full_like(base, grid_step), torch.nextafter(base, torch.full_like(base, math.inf)) - base)
        room = ((eps_max - base) / step).floor().clamp_min(0)  # grid steps left below eps_max

        def at(rows: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
            return torch.where(j >= room[rows], torch.full_like(j, eps_max), base[rows] + j * step[rows])

        j_fail = torch.zeros_like(base)  # the search's own point failed
        j_pass = torch.full_like(base, math.inf)
        j = torch.ones_like(base)
        live = torch.arange(fail.numel(), device=base.device)
        while live.numel():  # doubling: one pass per round over the samples still failing
            j_live = torch.minimum(j[live], room[live].clamp_min(1))
            ok, _ = judge(fail[live], at(live, j_live))
            j_pass[live[ok]] = j_live[ok]
            j_fail[live[~ok]] = j_live[~ok]
            exhausted = ~ok & (j_live >= room[live])
            live = live[~ok & ~exhausted]
            j[live] = j[live] * 2
        found = torch.isfinite(j_pass)
        live = found.nonzero().squeeze(1)
        while live.numel():  # bisection on the grid index between a failing and a passing j
            live = live[j_pass[live] - j_fail[live] > 1]
            if not live.numel():
                break
            mid = (j_fail[live] + (j_pass[live] - j_fail[live]) / 2).floor()
            stuck = (mid <= j_fail[live]) | (mid >= j_pass[live])
            live, mid = live[~stuck], mid[~stuck]
            if not live.numel():
                break
            ok, _ = judge(fail[live], at(live, mid))
            j_pass[live] = torch.where(ok, mid, j_pass[live])
            j_fail[live] = torch.where(ok, j_fail[live], mid)
        new_eps = at(torch.arange(fail.numel(), device=base.device), torch.where(found, j_pass, torch.zeros_like(j_pass)))
        eps[fail] = torch.where(found, new_eps, eps[fail])
        flipped[fail] = found
        steps_added = torch.where(found, torch.minimum(j_pass, room).to(orig.dtype), torch.full_like(fail, -1))
        verify_steps[fail] = steps_added
        if found.any():  # labels at the final points (one more pass over the moved samples only)
            moved = fail[found]
            _, label = judge(moved, eps[moved])
            adv_label[moved] = label
    return eps, adv_label, flipped, verify_steps


def _finish_chunk(
    model: nn.Module, out: _SearchOutcome, *, eps_max, clip, dtype, memory_format, margin_ulps, return_adversarial,
) -> AttackResult:
    """Verification in the caller's model and layout, then the reported fields."""
    eps, adv_label, flipped, verify_steps = verify_in_model(
        model, out.x64, out.direction, out.orig, out.hi, out.flipped, grid_step=out.grid_step,
        eps_max=eps_max, clip=clip, dtype=dtype, memory_format=memory_format, margin_ulps=margin_ulps,
    )
    x64, direction = out.x64, out.direction
    nan = torch.full_like(eps, math.nan)
    # Non-flipped samples: the point at eps_max (as before the verification existed)
    at = torch.where(flipped, eps, torch.full_like(eps, eps_max))
    adversarial = None
    if return_adversarial:
        adversarial = perturb(x64, direction, at, clip, dtype).contiguous(memory_format=memory_format)
    return AttackResult(
        eps=torch.where(flipped, eps, nan),
        eps_lower=out.lo,
        perturbation_norm=torch.where(flipped, perturbation_norm(x64, direction, eps, clip), nan),
        orig_label=out.orig,
        adv_label=torch.where(flipped, adv_label, out.orig),
        flipped=flipped,
        flips_at_eps_max=out.flips_max,
        consistent=out.consistent,
        direction_norm=direction.flatten(1).norm(dim=1),
        verify_steps=verify_steps,
        adversarial=adversarial,
    )


def _regula_falsi(logits_at, orig, idx, logits_lo, logits_hi, first_guess, *, eps_max: float, steps: int,
                  tol: float, margin_ulps: float):
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
    n = idx.numel()
    grid = _RegulaFalsiGrid(steps, eps_max, tol)
    scale = grid.scale
    lo = torch.zeros(n, dtype=grid.dtype, device=device)
    hi = torch.full((n,), grid.top, dtype=grid.dtype, device=device)
    z_lo, z_hi = logits_lo.detach().to(torch.float64), logits_hi.detach().to(torch.float64)
    weight_lo = torch.ones(n, dtype=torch.float64, device=device)  # Illinois down-weighting
    weight_hi = torch.ones(n, dtype=torch.float64, device=device)
    last_moved = torch.zeros(n, dtype=torch.int8, device=device)  # +1: lo moved last, -1: hi moved last
    stalls = torch.zeros(n, dtype=torch.int8, device=device)
    tiny = torch.finfo(torch.float64).tiny
    margin_unit = float(margin_ulps) * torch.finfo(logits_lo.dtype).eps  # see flip_verdict
    evaluated = []
    live = torch.arange(n, device=device)  # positions (into idx) still searching
    guess = torch.nan_to_num(first_guess / eps_max * scale, posinf=scale).clamp(0, scale)
    first = True
    while True:
        live = live[grid.open(lo[live], hi[live])]
        if not live.numel():
            break
        a, b = lo[live], hi[live]
        width = b - a
        own = orig[live].view(-1, 1)
        rival = z_hi[live].argmax(dim=1, keepdim=True)  # the label at the upper end
        # Verdicts come from argmax; ties (argmax takes the first maximal class) still need a
        # strictly positive margin below and a strictly negative one above for the interpolation.
        # The flip predicate asks the rival to win by tau = margin_unit * max|z|: interpolate on the
        # gap shifted by it, so that the root lands on the predicate's crossing.
        zl, zh = z_lo[live], z_hi[live]
        gap_lo = (zl.gather(1, own) - zl.gather(1, rival)).squeeze(1) + margin_unit * zl.abs().amax(dim=1)
        gap_hi = (zh.gather(1, own) - zh.gather(1, rival)).squeeze(1) + margin_unit * zh.abs().amax(dim=1)
        g_a = (gap_lo * weight_lo[live]).clamp_min(tiny)
        g_b = (gap_hi * weight_hi[live]).clamp_max(-tiny)
        # Interpolated root, rounded up to the grid and kept strictly inside the bracket; after two
        # interpolation steps in a row that did not halve the bracket, one bisection step.
        root = a.to(torch.float64) + g_a / (g_a - g_b) * width.to(torch.float64)
        if first:
            root, first = guess[live], False
        candidate = torch.minimum(torch.maximum(grid.round_up(root), grid.above(a)), grid.below(b))
        bisect = stalls[live] >= 2
        candidate = torch.where(bisect, torch.minimum(torch.maximum(grid.half(a, b), grid.above(a)), grid.below(b)),
                                candidate)
        eps = grid.to_eps(candidate)
        raw = logits_at(idx[live], eps)
        flips = flip_verdict(raw, orig[live], margin_ulps)  # in the model's dtype: its epsilon sets the margin
        logits = raw.to(torch.float64)
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
    return grid.to_eps(lo), grid.to_eps(hi), z_hi.argmax(dim=1), evaluated


class _RegulaFalsiGrid:
    """Positions on bisection's grid ``eps_max * i / 2**steps`` for :func:`_regula_falsi`.

    Up to ``steps = 62`` the positions are exact ``int64`` integers ``i`` in ``[0, 2**steps]`` and
    ``eps = eps_max * (i / 2**steps)`` (bit-identical to bisection's points while ``steps <= 52``).
    Beyond that (``eps_max / tol > 2**62``) ``2**steps`` does not fit an ``int64`` (and beyond 1023
    not even a float64): positions are then the float64 fractions ``i / 2**steps`` in ``[0, 1]``,
    which are finer than float64 can tell apart almost everywhere, so the grid becomes float64's own
    numbers. The search stops when the bracket is at most ``tol`` wide or no float64 lies between its
    ends. Same answer as bisection's cell whenever the label flips once along the ray, up to the
    float64 rounding of bisection's own midpoints.
    """

    INT_STEPS = 62

    def __init__(self, steps: int, eps_max: float, tol: float):
        self.exact = steps <= self.INT_STEPS
        self.eps_max, self.tol = eps_max, tol
        if self.exact:
            self.dtype, self.top, self.scale = torch.int64, 2**steps, 2.0**steps
        else:
            self.dtype, self.top, self.scale = torch.float64, 1.0, 1.0

    def open(self, a, b):
        """Brackets that still need a step."""
        if self.exact:
            return b - a > 1
        return ((b - a) * self.eps_max > self.tol) & (torch.nextafter(a, torch.full_like(a, 2.0)) < b)

    def above(self, a):
        return a + 1 if self.exact else torch.nextafter(a, torch.full_like(a, 2.0))

    def below(self, b):
        return b - 1 if self.exact else torch.nextafter(b, torch.full_like(b, -1.0))

    def half(self, a, b):
        return a + (b - a) // 2 if self.exact else a + (b - a) / 2

    def round_up(self, root):
        return torch.ceil(root).clamp(min=1.0).to(torch.int64) if self.exact else root

    def to_eps(self, position):
        if self.exact:
            return self.eps_max * (position.to(torch.float64) / self.scale)
        return self.eps_max * position
