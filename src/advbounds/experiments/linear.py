"""Chapter 3: robustness of linear classifiers (Table 3.1, Figures 3.1 and 3.2).

* :func:`linear_test_frame` runs one randomized test of Table 3.1 (Section 3.3): K random linear
  classifiers, N uniform samples each; per sample the bound ``delta(x; f)`` of Lemma 3.5 / eq. 3.12
  (``advbounds.bounds.linear_output_bound``), the minimal FGS perturbation of Algorithm 2.1
  (``advbounds.attacks.minimal_epsilon_search``, batched over all classifiers with
  :mod:`.stacked`) and, beyond the thesis, the *exact* minimal perturbation
  (``advbounds.attacks.exact_minimal_perturbation_linear``).
* :func:`table_3_1` summarizes the per-sample frames; :func:`deviations_long` feeds Figure 3.2.
* :func:`figure_3_1_example` computes the binary example drawn in Figure 3.1.

The thesis states (3.3) that FGS "is exact in the case of linear classifiers". It is exact in the
L-infinity sense of Goodfellow et al., not for the L2 norm the bound is about: the sign vector is in
general not parallel to ``w_c' - w_c``. The ``exact`` columns measure how far FGS is from the L2
optimum, and how tight the bound itself is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from advbounds.settings import SearchSettings

from .deviations import (
    count_violations,
    derive_seed,
    deviation_cells,
    interval_cells,
    summarize,
    with_spec_eps_max,
)
from .stacked import draw_random_test, resolve_dtype, stacked_search

#: chapter number mixed into every seed of this module
CHAPTER = 3

#: per-sample columns of results/linear/test_<k>.csv
SAMPLE_COLUMNS = (
    "test", "classifier", "sample", "pred_label", "bound", "fgs_eps", "fgs_norm", "fgs_flipped",
    "fgs_consistent", "fgs_adv_label", "exact_norm", "exact_target", "deviation", "exact_minus_bound",
    "fgs_minus_exact",
)


#: the published columns, then ours (see docs/chapters34.md for every extra column)
TABLE_3_1_COLUMNS = (
    "No.", "Classifiers", "Samples", "Dim", "Classes", "Sample interval", "Param interval",
    "Mean", "Median", "Std", "Flipped", "Violations", "Exact - bound mean", "Exact - bound max",
    "Exact violations", "FGS - exact mean", "FGS - exact median", "FGS optimal",
)


def test_seed(base_seed: int, number: int) -> int:
    """Seed of test ``number`` (1-based) of Table 3.1."""
    return derive_seed(base_seed, CHAPTER, int(number))


def linear_test_frame(spec: Mapping[str, Any], *, number: int, seed: int, attack: SearchSettings,
                      dtype: str = "float64", progress: bool = False) -> pd.DataFrame:
    """Per-sample results of one Table 3.1 test (``spec``: one entry of ``chapter3.tests``; its
    optional ``eps_max`` overrides ``attack``'s).

    ``seed`` is the test's own seed (:func:`test_seed`). Bounds, FGS and exact perturbations are
    computed in ``dtype`` (float64 by default, so that round-off cannot fake a violation).
    """
    from advbounds.attacks import exact_minimal_perturbation_linear
    from advbounds.bounds import linear_output_bound

    torch_dtype = resolve_dtype(dtype)
    models, x = draw_random_test(
        n_models=spec["classifiers"], n_samples=spec["samples"], dim=spec["dim"], n_classes=spec["classes"],
        hidden=[], sample_interval=spec["sample_interval"], param_interval=spec["param_interval"],
        seed=seed, dtype=torch_dtype,
    )
    fgs = stacked_search(models, x, with_spec_eps_max(attack, spec), progress=progress)
    bounds, exact_norm, exact_target, pred = [], [], [], []
    with torch.no_grad():
        for model, xs in zip(models, x):
            layer = model[0]
            bounds.append(linear_output_bound(layer.weight, layer.bias, xs))
            exact = exact_minimal_perturbation_linear(layer.weight, layer.bias, xs)
            exact_norm.append(exact.norm)
            exact_target.append(exact.target)
            pred.append(exact.orig_label)
    n_models, n_samples = x.shape[:2]
    bound = torch.cat(bounds).double().cpu().numpy()
    exact_n = torch.cat(exact_norm).double().cpu().numpy()
    pred_label = torch.cat(pred).cpu().numpy()
    if not np.array_equal(pred_label, fgs.orig_label.cpu().numpy()):
        raise RuntimeError("the stacked search and the per-classifier predictions disagree")
    frame = pd.concat([pd.DataFrame({
        "test": int(number),
        "classifier": np.repeat(np.arange(n_models), n_samples),
        "sample": np.tile(np.arange(n_samples), n_models),
        "pred_label": pred_label,
        "bound": bound,
        "exact_norm": exact_n,
        "exact_target": torch.cat(exact_target).cpu().numpy(),
    }), fgs.to_frame(prefix="fgs_")], axis=1)
    frame["deviation"] = frame["fgs_norm"] - frame["bound"]
    frame["exact_minus_bound"] = frame["exact_norm"] - frame["bound"]
    frame["fgs_minus_exact"] = frame["fgs_norm"] - frame["exact_norm"]
    return frame[list(SAMPLE_COLUMNS)]


def fgs_optimal_fraction(frame: pd.DataFrame, rtol: float) -> float:
    """Fraction of flipped samples whose FGS norm is within ``rtol`` (relative) of the exact minimum."""
    flipped = frame[frame["fgs_flipped"].astype(bool)]
    if flipped.empty:
        return math.nan
    close = flipped["fgs_minus_exact"] <= rtol * flipped["exact_norm"].abs()
    return float(close.mean())


def table_3_1_row(spec: Mapping[str, Any], frame: pd.DataFrame, *, number: int, atol: float,
                  optimal_rtol: float) -> dict[str, Any]:
    flipped = frame["fgs_flipped"].astype(bool)
    exact_dev = summarize(frame["exact_minus_bound"])
    gap = summarize(frame.loc[flipped, "fgs_minus_exact"])
    return {
        "No.": int(number),
        "Classifiers": int(spec["classifiers"]),
        "Samples": int(spec["samples"]),
        "Dim": int(spec["dim"]),
        "Classes": int(spec["classes"]),
        **interval_cells(spec),
        **deviation_cells(frame, atol=atol),
        "Exact - bound mean": exact_dev["mean"],
        "Exact - bound max": exact_dev["max"],
        "Exact violations": count_violations(frame["exact_norm"], frame["bound"], atol),
        "FGS - exact mean": gap["mean"],
        "FGS - exact median": gap["median"],
        "FGS optimal": fgs_optimal_fraction(frame, optimal_rtol),
    }


def table_3_1(specs: Sequence[Mapping[str, Any]], frames: Sequence[pd.DataFrame], *, atol: float,
              optimal_rtol: float) -> pd.DataFrame:
    """Table 3.1 from the per-sample frames of every test (in config order, numbered from 1).

    Mean/Median/Std: FGS norm minus bound over the flipped samples (ddof=1 std). Flipped: samples
    flipped within ``eps_max`` / all samples. Violations: FGS norm below the bound (must be 0).
    Exact columns: the exact minimal perturbation minus the bound (the bound's own slack, >= 0 by
    Lemma 3.5), FGS minus exact (how far FGS is from the L2 optimum) and the fraction of samples
    where FGS is optimal to ``optimal_rtol``.
    """
    if len(specs) != len(frames):
        raise ValueError(f"{len(specs)} test specs but {len(frames)} result frames")
    rows = [table_3_1_row(spec, frame, number=i, atol=atol, optimal_rtol=optimal_rtol)
            for i, (spec, frame) in enumerate(zip(specs, frames), start=1)]
    return pd.DataFrame(rows, columns=list(TABLE_3_1_COLUMNS))


def deviations_long(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Long frame ``test, kind, value`` of the flipped samples for Figure 3.2: the FGS deviation and,
    beside it, the exact perturbation's deviation."""
    parts = []
    for frame in frames:
        flipped = frame[frame["fgs_flipped"].astype(bool)]
        parts.append(pd.DataFrame({"test": flipped["test"], "kind": "FGS - bound", "value": flipped["deviation"]}))
        parts.append(pd.DataFrame({"test": frame["test"], "kind": "exact - bound", "value": frame["exact_minus_bound"]}))
    return pd.concat(parts, ignore_index=True)


# ------------------------------------------------------------------------------------------------
# Figure 3.1
# ------------------------------------------------------------------------------------------------


def figure_3_1_example(*, sample_interval: Sequence[float], param_interval: Sequence[float], attack: SearchSettings,
                       seed: int) -> dict[str, Any]:
    """A binary linear classifier in the plane, one input, its minimal perturbation and an FGS one.

    Draws ``W[2, 2], b[2]`` uniformly from ``param_interval`` and ``x`` from ``sample_interval``
    (config ``chapter3.figure_3_1``; ``attack`` its ``attack`` block). With ``w = w_1 - w_0`` and ``b = b_1 - b_0`` (eq. 3.2), ``r`` is
    eq. 3.7 (``binary_minimal_perturbation``) and ``q`` the FGS perturbation found by Algorithm 2.1,
    an adversarial perturbation with ``||q|| >= ||r||`` (Lemma 3.1). Returns plain numbers and lists.
    """
    from advbounds.attacks import binary_minimal_perturbation, minimal_epsilon_search
    from advbounds.bounds import linear_output_bound

    models, x = draw_random_test(
        n_models=1, n_samples=1, dim=2, n_classes=2, hidden=[], sample_interval=sample_interval,
        param_interval=param_interval, seed=seed, dtype=torch.float64,
    )
    layer = models[0][0]
    W, bias, x0 = layer.weight.detach(), layer.bias.detach(), x[0]
    w, b = W[1] - W[0], bias[1] - bias[0]
    exact = binary_minimal_perturbation(w, b, x0)
    fgs = minimal_epsilon_search(models[0], x0, attack)
    if not bool(fgs.flipped[0]):
        raise RuntimeError("FGS did not flip the Figure 3.1 example; raise chapter3.figure_3_1.attack.eps_max")
    _, direction = _fgs_direction(models[0], x0)
    q = (fgs.eps[0] * direction[0]).tolist()
    return {
        "seed": int(seed),
        "w": w.tolist(),
        "b": float(b),
        "x": x0[0].tolist(),
        "label": int(exact.orig_label[0]),
        "r": exact.perturbation[0].tolist(),
        "r_norm": float(exact.norm[0]),
        "q": q,
        "q_norm": float(fgs.perturbation_norm[0]),
        "fgs_eps": float(fgs.eps[0]),
        "bound": float(linear_output_bound(W, bias, x0)[0]),
        "margin": float((x0[0] @ w + b)),
    }


def _fgs_direction(model, x):
    from advbounds.attacks import attack_direction

    return attack_direction(model, x, method="fgs")
