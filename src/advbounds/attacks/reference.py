"""Naive per-sample Algorithm 2.1: the literal loop, one sample and one forward pass at a time.

This is the reference the batched search is tested against and the baseline of
``benchmarks/bench_attacks.py``. It shares the direction and perturbation helpers with the batched
code (so both evaluate the model at bit-identical inputs) but keeps its bracket in Python floats and
branches per sample exactly as Algorithm 2.1 is written. It is slow on purpose; do not use it for
experiments.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from advbounds.progress import progress_bar
from advbounds.settings import SearchSettings

from .direction import attack_direction, perturb, perturbation_norm
from .search import (
    AttackResult,
    bisection_steps,
    check_labels,
    flip_verdict,
    grid_points_eps,
    search_setup,
    verify_in_model,
)

#: The policies the literal loop implements; ``regula_falsi`` is tested against ``bisection``.
NAIVE_SEARCH_POLICIES = ("bisection", "grid")


def naive_minimal_epsilon(
    model: nn.Module,
    x1: torch.Tensor,
    settings: SearchSettings,
    *,
    label: torch.Tensor | None = None,
    verify_model: nn.Module | None = None,
    verify_format: torch.memory_format = torch.contiguous_format,
) -> dict:
    """Algorithm 2.1 for one input ``x1`` of shape ``[1, ...]`` (already on the model's device/dtype).

    The final point is then checked, as in the batched search, by :func:`.search.verify_in_model`
    in ``verify_model`` (default: ``model``) fed in ``verify_format``, here with a batch of one.
    Returns a dict with the fields of :class:`AttackResult` as Python scalars.
    """
    method, eps_max, tol, clip = settings.method, settings.eps_max, settings.tol, settings.clip
    search, grid_points, verify_margin_ulps = settings.search, settings.grid_points, settings.verify_margin_ulps
    dtype = x1.dtype
    logits, direction = attack_direction(
        model, x1, method=method, loss_label=settings.loss_label, labels=label, fgv_normalize=settings.fgv_normalize
    )
    orig = int(logits.argmax(dim=1).item())
    x64 = x1.to(torch.float64)

    orig_t = torch.tensor([orig], dtype=torch.int64, device=x1.device)

    def verdict_at(eps: float) -> bool:
        """Whether ``x + eps d`` flips by the margin (the label comes from the final check)."""
        with torch.inference_mode():
            e = torch.tensor([eps], dtype=torch.float64, device=x1.device)
            z = model(perturb(x64, direction, e, clip, dtype))
            return bool(flip_verdict(z, orig_t, verify_margin_ulps).item())

    max_noflip, min_flip = 0.0, math.inf

    def record(eps: float, flips: bool) -> None:
        nonlocal max_noflip, min_flip
        if flips:
            min_flip = min(min_flip, eps)
        else:
            max_noflip = max(max_noflip, eps)

    flips_max = verdict_at(eps_max)
    record(eps_max, flips_max)

    if search == "bisection":
        lo, hi, hi_flips = 0.0, eps_max, flips_max
        steps = bisection_steps(eps_max, tol)
    else:
        grid = grid_points_eps(eps_max, grid_points)
        lo, hi, hi_flips = eps_max, eps_max, False
        for k in range(1, grid_points + 1):
            flips = flips_max if k == grid_points else verdict_at(grid[k])
            record(grid[k], flips)
            if flips:
                lo, hi, hi_flips = grid[k - 1], grid[k], True
                break
        steps = bisection_steps(eps_max / grid_points, tol) if hi_flips else 0

    # Algorithm 2.1: eps <- l + (u - l)/2; if f(x) = f(x + eps s) then l <- eps else u <- eps.
    for _ in range(steps):
        mid = lo + (hi - lo) / 2.0
        flips = verdict_at(mid)
        record(mid, flips)
        if not flips:
            lo = mid
        else:
            hi, hi_flips = mid, True

    grid_step = math.ldexp(eps_max / grid_points if search == "grid" else eps_max, -steps)
    f64 = dict(dtype=torch.float64, device=x1.device)
    eps_t, adv_t, flipped_t, verify_t = verify_in_model(
        model if verify_model is None else verify_model, x64, direction,
        torch.tensor([orig], dtype=torch.int64, device=x1.device), torch.tensor([hi], **f64),
        torch.tensor([bool(hi_flips)], device=x1.device), grid_step=grid_step, eps_max=eps_max, clip=clip,
        dtype=dtype, memory_format=verify_format, margin_ulps=verify_margin_ulps / 2,
    )
    flipped, hi = bool(flipped_t.item()), float(eps_t.item())
    return {
        "eps": hi if flipped else math.nan,
        "eps_lower": lo,
        "perturbation_norm": float(perturbation_norm(x64, direction, eps_t, clip)) if flipped else math.nan,
        "orig_label": orig,
        "adv_label": int(adv_t.item()) if flipped else orig,
        "flipped": flipped,
        "flips_at_eps_max": bool(flips_max),
        "consistent": max_noflip < min_flip,
        "direction_norm": float(direction.flatten(1).norm(dim=1)),
        "verify_steps": int(verify_t.item()),
    }


def naive_minimal_epsilon_search(model: nn.Module, x: torch.Tensor, settings: SearchSettings, *,
                                 labels: torch.Tensor | None = None, progress: bool = False) -> AttackResult:
    """:func:`naive_minimal_epsilon` for every row of ``x``, one at a time; same settings and result
    type as the batched :func:`~advbounds.attacks.minimal_epsilon_search` (``channels_last``,
    ``allow_tf32`` and ``verify_margin_ulps`` act as there, so that a comparison isolates the effect
    of batching; ``batch_size`` is ignored: the batch is always one sample)."""
    if settings.search not in NAIVE_SEARCH_POLICIES:
        raise ValueError(f"the naive reference implements search in {NAIVE_SEARCH_POLICIES}, got {settings.search!r}: "
                         "regula_falsi is checked against bisection instead (docs/attacks.md)")
    check_labels(settings, x, labels)
    rows = []
    with search_setup(model, x, settings) as run:
        for i in progress_bar(range(x.shape[0]), disable=not progress, desc=f"naive {settings.method}"):
            rows.append(
                naive_minimal_epsilon(
                    run.model, run.inputs(x[i : i + 1]), settings,
                    label=None if labels is None else labels[i : i + 1].to(run.device),
                    verify_model=model, verify_format=run.caller_format,
                )
            )
    out_device = x.device

    def column(name, dtype_):
        return torch.tensor([r[name] for r in rows], dtype=dtype_, device=out_device)

    return AttackResult(
        eps=column("eps", torch.float64),
        eps_lower=column("eps_lower", torch.float64),
        perturbation_norm=column("perturbation_norm", torch.float64),
        orig_label=column("orig_label", torch.int64),
        adv_label=column("adv_label", torch.int64),
        flipped=column("flipped", torch.bool),
        flips_at_eps_max=column("flips_at_eps_max", torch.bool),
        consistent=column("consistent", torch.bool),
        direction_norm=column("direction_norm", torch.float64),
        verify_steps=column("verify_steps", torch.int64),
    )
