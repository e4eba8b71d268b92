"""Chapter 5's tables and figure data from the per-sample frames (pandas and numpy only, no torch).

The model runs (:mod:`advbounds.experiments.cnn`) write one attack frame and one bounds frame per
network (``results/attacks/<model>.csv``, ``results/bounds/<model>.csv``); everything here reads
those frames, or the metrics JSON training writes, and summarises them:

* :func:`table_5_1`, :func:`table_5_2`, :func:`table_5_3` build the chapter's tables from the
  ``entries`` :func:`load_entries` reads;
* :func:`transition_counts`, :func:`select_examples`, :func:`kernel_scaling_gain`,
  :func:`layer_robustness_gain`, :func:`measured_layer_gain`, :func:`figure_5_12_table` and
  :func:`figure_5_13_data` compute what the figures show.

Units: every bound, epsilon and norm is in raw pixel units [0, 255] (``docs/chapter5.md``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from advbounds.frames import CERTIFIED_RADIUS, CORRECTED_BOUND, KAPPA_PREFIX
from advbounds.metrics import ModelMetrics

#: model name (registry builder or config key) -> the thesis's display name
DISPLAY_NAMES: dict[str, str] = {
    "lenet5": "LeNet-5",
    "lenet5_adam": "LeNet-5 (Adam)",
    "lenet_lrn1": "LeNet-LRN1",
    "lenet_lrn2": "LeNet-LRN2",
    "lenet_lrn3": "LeNet-LRN3",
    "cifar_nin": "CIFAR-NIN",
}


#: columns of the per-sample attack frame (results/attacks/<model>.csv)
ATTACK_COLUMNS = ("sample", "true_label", "eps", "eps_lower", "perturbation_norm", "orig_label", "adv_label",
                  "flipped", "flips_at_eps_max", "consistent", "direction_norm")


def display_name(model: str) -> str:
    """The thesis's name of a model (``lenet5`` -> ``LeNet-5``); unknown names are returned as is."""
    return DISPLAY_NAMES.get(model, model)


def kappa_columns(frame: pd.DataFrame) -> list[str]:
    """The ``kappa_<layer>`` columns of a bounds frame, input -> output."""
    return [c for c in frame.columns if c.startswith(KAPPA_PREFIX)]


def epsilon_statistics(attacks: pd.DataFrame) -> dict[str, float]:
    """Min, max, mean, median and (sample, ddof=1) standard deviation of ``eps`` over the flipped
    samples, as in Tables 5.2 and 5.3 (an unflipped sample has no adversarial epsilon)."""
    eps = attacks.loc[attacks["flipped"].astype(bool), "eps"].to_numpy(dtype=float)
    if len(eps) == 0:
        return {k: math.nan for k in ("min", "max", "mean", "median", "std")}
    return {
        "min": float(eps.min()),
        "max": float(eps.max()),
        "mean": float(eps.mean()),
        "median": float(np.median(eps)),
        "std": float(eps.std(ddof=1)) if len(eps) > 1 else math.nan,
    }


def flip_rate(attacks: pd.DataFrame) -> float:
    """Fraction of all test samples whose label FGS changed with ``eps <= eps_max``."""
    return float(attacks["flipped"].astype(bool).mean())


def bound_violations(bounds: pd.DataFrame | None, attacks: pd.DataFrame) -> float:
    """How many flipped samples have a theoretical bound above the FGS perturbation norm that flipped
    them (a lower bound must never be; NaN without a bounds frame). Rows are matched by ``sample``."""
    if bounds is None:
        return math.nan
    merged = attacks[attacks["flipped"].astype(bool)].merge(bounds[["sample", "bound"]], on="sample", how="inner")
    return int((merged["bound"] > merged["perturbation_norm"]).sum())


def table_5_1(entries: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Table 5.1 with both normalizations.

    ``entries``: one mapping per network with ``name``, ``bounds`` (bounds frame), ``attacks``
    (attack frame) and ``shape`` ``(C, H, W)``. The theoretical column averages the bound over all
    test samples; the empirical column averages ``perturbation_norm`` over the flipped samples.

    * ``*_per_pixel`` divides by ``H * W``: what the published numbers were divided by
      (CIFAR-NIN's 0.3129927 = 5.783 * sqrt(3072) / 1024, see docs/chapter5.md);
    * ``*_per_input`` divides by ``C * H * W``: what the thesis's text says it did.
    For the single-channel MNIST the two agree.

    Beyond the thesis, appended after its columns: the theoretical bound per pixel in the network's
    scaled input units (``normalized_theoretical_bound_per_pixel_scaled``: the bound at the first
    layer after the input ``Scale``, 1/256 of the pixel value for our networks; the published bound
    is very likely in this unit, docs/chapter5.md), and the means of the sound ``bound_corrected``
    and of ``radius_certified`` (over the certified samples) where the bounds frame has them.
    """
    rows = []
    for entry in entries:
        bounds, attacks = entry["bounds"], entry["attacks"]
        c, h, w = (int(v) for v in entry["shape"])
        flipped = attacks["flipped"].astype(bool)
        mean_bound = float(bounds["bound"].mean())
        mean_norm = float(attacks.loc[flipped, "perturbation_norm"].mean()) if flipped.any() else math.nan
        rows.append({
            "network": entry["name"],
            "input": f"{c}x{h}x{w}",
            "normalized_theoretical_bound_per_pixel": mean_bound / (h * w),
            "normalized_empirical_bound_per_pixel": mean_norm / (h * w),
            "normalized_theoretical_bound_per_input": mean_bound / (c * h * w),
            "normalized_empirical_bound_per_input": mean_norm / (c * h * w),
            "rate": flip_rate(attacks),
            "mean_theoretical_bound": mean_bound,
            "mean_empirical_norm": mean_norm,
            "n_samples": int(len(attacks)),
            "n_flipped": int(flipped.sum()),
            "n_bound_above_fgs": bound_violations(bounds, attacks),
            "normalized_theoretical_bound_per_pixel_scaled": float(scaled_input_bound(bounds).mean()) / (h * w),
            **sound_columns(bounds),
        })
    return pd.DataFrame(rows)


def scaled_input_bound(bounds: pd.DataFrame) -> pd.Series:
    """The theoretical bound in the network's scaled input units: the kappa of the step after the
    input ``Scale`` layer (the bound itself when the network has none)."""
    kappas = kappa_columns(bounds)
    if len(kappas) > 1 and kappas[0] == f"{KAPPA_PREFIX}scale":
        return bounds[kappas[1]]
    return bounds["bound"]


def sound_columns(bounds: pd.DataFrame | None) -> dict[str, float]:
    """Means of the sound lower bounds (pixel units) where the bounds frame has them: the corrected
    bound over all samples, the certified radius over the certified ones (NaN: not certified)."""
    if bounds is None:
        return {}
    out: dict[str, float] = {}
    if CORRECTED_BOUND in bounds:
        out["mean_corrected_bound"] = float(bounds[CORRECTED_BOUND].mean())
    if CERTIFIED_RADIUS in bounds:
        certified = bounds[CERTIFIED_RADIUS].dropna()
        out["mean_certified_radius"] = float(certified.mean()) if len(certified) else math.nan
        out["n_certified"] = int(len(certified))
    return out


def table_5_2(entries: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Table 5.2: statistics of the FGS epsilon over the flipped samples, plus the smallest
    perturbation norm (the thesis quotes 0.0182 for MNIST and 0.0671 for CIFAR-10)."""
    rows = []
    for entry in entries:
        attacks = entry["attacks"]
        flipped = attacks["flipped"].astype(bool)
        rows.append({
            "network": entry["name"],
            **epsilon_statistics(attacks),
            "min_perturbation_norm": float(attacks.loc[flipped, "perturbation_norm"].min()) if flipped.any() else math.nan,
            "n_flipped": int(flipped.sum()),
        })
    return pd.DataFrame(rows)


def table_5_3(entries: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Table 5.3: accuracy, epsilon statistics and flip rate per network (LeNet-LRN1/2/3 and any
    reference networks), plus the mean theoretical bound (not in the thesis's table)."""
    rows = []
    for entry in entries:
        attacks = entry["attacks"]
        rows.append({
            "network": entry["name"],
            "accuracy": float(entry["accuracy"]),
            **epsilon_statistics(attacks),
            "rate": flip_rate(attacks),
            "mean_theoretical_bound": float(entry["bounds"]["bound"].mean()) if entry.get("bounds") is not None else math.nan,
            "n_bound_above_fgs": bound_violations(entry.get("bounds"), attacks),
            **sound_columns(entry.get("bounds")),
        })
    return pd.DataFrame(rows)



def load_entries(models: Sequence[str], *, attacks: Sequence[str], bounds: Sequence[str] | None = None,
                 metrics: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Read the per-model files a table or figure needs into the ``entries`` of :func:`table_5_1`
    and friends: ``name``, ``model``, ``attacks``, ``bounds`` and, from the metrics JSON the
    Chapter 5 training job wrote, ``shape``, ``accuracy`` and ``classes``."""
    entries = []
    for i, model in enumerate(models):
        entry: dict[str, Any] = {"model": model, "name": display_name(model), "attacks": pd.read_csv(attacks[i])}
        entry["bounds"] = pd.read_csv(bounds[i]) if bounds else None
        if metrics:
            m = ModelMetrics.from_json(metrics[i])
            entry["shape"] = tuple(m.details["input_shape"])
            entry["accuracy"] = m.test_accuracy
            entry["classes"] = list(m.details["classes"])
        entries.append(entry)
    return entries


def transition_counts(attacks: pd.DataFrame, n_classes: int) -> np.ndarray:
    """``counts[orig, adv]``: how many samples predicted ``orig`` FGS turned into ``adv``
    (Figure 5.10). Unflipped samples sit on the diagonal."""
    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(counts, (attacks["orig_label"].to_numpy(int), attacks["adv_label"].to_numpy(int)), 1)
    return counts


def transitions_long(counts: np.ndarray, network: str, classes: Sequence[str]) -> pd.DataFrame:
    rows = [{"network": network, "orig_class": classes[i], "adv_class": classes[j], "orig_label": i,
             "adv_label": j, "count": int(counts[i, j])}
            for i in range(counts.shape[0]) for j in range(counts.shape[1])]
    return pd.DataFrame(rows)


def select_examples(attacks: pd.DataFrame, n: int, seed: int) -> list[int]:
    """``n`` flipped samples for an example grid (Figures 5.8, 5.9): a seeded random order, taking
    one sample per original class first so that the grid shows distinct classes. Returns sample
    indices (positions in the test set)."""
    flipped = attacks[attacks["flipped"].astype(bool)]
    if flipped.empty or n <= 0:
        return []
    order = np.random.default_rng(seed).permutation(len(flipped))
    shuffled = flipped.iloc[order]
    first = shuffled.drop_duplicates("orig_label")
    rest = shuffled.drop(first.index)
    chosen = pd.concat([first, rest]).head(n)
    return [int(s) for s in chosen["sample"]]


def check_reproduced(expected: pd.DataFrame, reproduced: Mapping[str, Any], log=None,
                     atol: float = 0.0) -> bool:
    """Whether re-running the search on chosen samples reproduced the attack CSV's epsilons (to
    ``atol``, normally the search's ``tol``) and adversarial labels. The search is elementwise, but
    the model's float32 forward pass may round differently for a different batch size, which can
    move the bisection by one step; larger differences mean something is wrong. Logs a warning
    naming the samples that differ."""
    eps_ok = np.isclose(expected["eps"].to_numpy(float), np.asarray(reproduced["eps"], dtype=float), rtol=1e-9,
                        atol=float(atol) * 1.001, equal_nan=True)
    label_ok = expected["adv_label"].to_numpy(int) == np.asarray(reproduced["adv_label"], dtype=int)
    ok = bool(eps_ok.all() and label_ok.all())
    if not ok and log is not None:
        bad = list(expected.index[~(eps_ok & label_ok)])
        log.warning("re-running the search did not reproduce samples %s of the attack CSV", bad)
    return ok


def kernel_scaling_gain(n: Sequence[int] | np.ndarray, epsilon: float) -> np.ndarray:
    """Figure 5.12: the relative increase ``(1 - epsilon) ** -n`` of the theoretical robustness when
    ``n`` convolution kernels are scaled by ``1 - epsilon`` (other layers assumed unaffected)."""
    return (1.0 - float(epsilon)) ** (-np.asarray(n, dtype=float))


def layer_robustness_gain(L: Sequence[int] | np.ndarray, alpha: float, delta: float, kappa_L: float) -> np.ndarray:
    """Figure 5.13 / Eq. (5.13): ``1 + delta * (1 - alpha**-L) / (kappa_L * (1 - alpha**-1))``,
    the relative increase when each of ``L`` layers with ``kappa_l = alpha**(L-l) kappa_L`` gains
    ``delta``. Equal to ``1 + (delta / kappa_L) * sum_{l=0}^{L-1} alpha**-l``."""
    L = np.asarray(L, dtype=float)
    return 1.0 + float(delta) * (1.0 - float(alpha) ** (-L)) / (float(kappa_L) * (1.0 - 1.0 / float(alpha)))


def default_gain_layers(bounds: pd.DataFrame) -> list[str]:
    """The layers Eq. (5.13) sums over when the config names none: every kappa column except the
    input ``scale`` step (a unit change, not a layer of the thesis's networks) and identity steps
    (flatten, dropout, ReLU) whose kappa equals the next step's for every sample, so that no layer
    is counted twice. Returns layer labels, input -> output."""
    cols = [c for c in kappa_columns(bounds) if c != f"{KAPPA_PREFIX}scale"]
    keep = [c for c, nxt in zip(cols, cols[1:] + [None])
            if nxt is None or not np.array_equal(bounds[c].to_numpy(), bounds[nxt].to_numpy())]
    return [c.removeprefix(KAPPA_PREFIX) for c in keep]


def measured_layer_gain(bounds: pd.DataFrame, delta: float, layers: Sequence[str] | None = None) -> pd.DataFrame:
    """Figure 5.13 on a trained network, from its per-layer kappas (Eq. 5.13).

    ``layers``: the kappa columns to use, input -> output (default: every kappa column). Counting
    from the output side, the network with its last ``L`` of these layers gains
    ``1 + delta * sum_{l in last L} 1 / kappa_l`` (each layer's robustness raised by ``delta``).
    Also gives the per-sample ratio ``alpha_l = kappa_l / kappa_{l+1}`` of consecutive layers.

    Returns one row per (sample, L): ``L``, ``layer`` (the layer added at that depth), ``sample``,
    ``kappa``, ``alpha`` (its kappa over the next layer's; NaN for the last) and ``gain``.
    """
    cols = list(layers) if layers is not None else kappa_columns(bounds)
    if not cols:
        raise ValueError("the bounds frame has no kappa columns")
    kappas = bounds[cols].to_numpy(dtype=float)  # [N, K], input -> output
    inverse = 1.0 / kappas
    frames = []
    for L in range(1, len(cols) + 1):
        j = len(cols) - L  # the layer added when the network grows to L layers
        gain = 1.0 + float(delta) * inverse[:, j:].sum(axis=1)
        alpha = kappas[:, j] / kappas[:, j + 1] if j + 1 < len(cols) else np.full(len(kappas), np.nan)
        frames.append(pd.DataFrame({
            "L": L,
            "layer": cols[j].removeprefix(KAPPA_PREFIX),
            "sample": bounds["sample"].to_numpy(),
            "kappa": kappas[:, j],
            "alpha": alpha,
            "gain": gain,
        }))
    return pd.concat(frames, ignore_index=True)


def summarize_layer_gain(measured: pd.DataFrame) -> pd.DataFrame:
    """Median and quartiles of the measured gain and alpha per depth ``L`` (one row per L), and
    the geometric-mean alpha and median output kappa for the analytic comparison curve."""
    grouped = measured.groupby("L", sort=True)
    out = grouped.agg(
        layer=("layer", "first"),
        gain_median=("gain", "median"),
        gain_q1=("gain", lambda v: float(np.quantile(v, 0.25))),
        gain_q3=("gain", lambda v: float(np.quantile(v, 0.75))),
        kappa_median=("kappa", "median"),
        alpha_median=("alpha", "median"),
    ).reset_index()
    return out


def figure_5_12_table(measured: pd.DataFrame, *, epsilon: float, max_n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Summary table of Figure 5.12: per ``n`` the analytic gain and, where measured, the median and
    quartiles of the recomputed bound ratio and the fraction of samples whose prediction the scaling
    left unchanged. Returns ``(table, analytic)``."""
    n = np.arange(0, max(int(max_n), int(measured["n"].max()) if len(measured) else 0) + 1)
    analytic = pd.DataFrame({"n": n, "gain": kernel_scaling_gain(n, epsilon)})
    grouped = measured.groupby("n")
    summary = pd.DataFrame({
        "ratio_median": grouped["ratio"].median(),
        "ratio_q1": grouped["ratio"].quantile(0.25),
        "ratio_q3": grouped["ratio"].quantile(0.75),
        "same_prediction": grouped["same_prediction"].mean(),
        "n_samples": grouped["ratio"].size(),
    }).reset_index()
    table = analytic.rename(columns={"gain": "analytic_gain"}).merge(summary, on="n", how="left")
    table.insert(1, "epsilon", float(epsilon))
    return table, analytic


def figure_5_13_data(bounds: pd.DataFrame, *, alpha: float, delta: float, kappa_L: float, max_L: int,
                     layers: Sequence[str] | None = None) -> dict[str, pd.DataFrame]:
    """Everything Figure 5.13 shows: ``analytic`` (Eq. 5.13 with the thesis's parameters),
    ``measured`` (per sample and depth, :func:`measured_layer_gain`, over ``layers`` or
    :func:`default_gain_layers`), ``summary`` (median/IQR per
    depth), ``fitted`` (Eq. 5.13 with the network's median per-layer alpha and output kappa) and the
    joined ``table`` that is written as CSV."""
    names = list(layers) if layers else default_gain_layers(bounds)
    missing = [n for n in names if f"{KAPPA_PREFIX}{n}" not in bounds.columns]
    if missing:
        raise ValueError(f"layers {missing} have no kappa column; available: "
                         f"{[c.removeprefix(KAPPA_PREFIX) for c in kappa_columns(bounds)]}")
    measured = measured_layer_gain(bounds, delta, [f"{KAPPA_PREFIX}{n}" for n in names])
    summary = summarize_layer_gain(measured)
    depth = int(max(int(max_L), int(summary["L"].max())))
    L = np.arange(1, depth + 1)
    analytic = pd.DataFrame({"L": L, "gain": layer_robustness_gain(L, alpha, delta, kappa_L)})
    ratios = measured["alpha"].to_numpy(float)
    ratios = ratios[np.isfinite(ratios) & (ratios > 0)]
    fit_alpha = float(np.exp(np.median(np.log(ratios)))) if len(ratios) else math.nan
    fit_kappa = float(summary.loc[summary["L"] == 1, "kappa_median"].iloc[0])
    with np.errstate(all="ignore"):
        fitted = pd.DataFrame({"L": L, "gain": layer_robustness_gain(L, fit_alpha, delta, fit_kappa)})
    table = analytic.rename(columns={"gain": "analytic_gain"})
    table["fitted_gain"] = fitted["gain"]
    table["fitted_alpha"] = fit_alpha
    table["fitted_kappa_L"] = fit_kappa
    table = table.merge(summary, on="L", how="left")
    return {"analytic": analytic, "measured": measured, "summary": summary, "fitted": fitted, "table": table}


__all__ = [
    "ATTACK_COLUMNS",
    "DISPLAY_NAMES",
    "bound_violations",
    "check_reproduced",
    "default_gain_layers",
    "display_name",
    "epsilon_statistics",
    "figure_5_12_table",
    "figure_5_13_data",
    "flip_rate",
    "kappa_columns",
    "kernel_scaling_gain",
    "layer_robustness_gain",
    "load_entries",
    "measured_layer_gain",
    "scaled_input_bound",
    "select_examples",
    "sound_columns",
    "summarize_layer_gain",
    "table_5_1",
    "table_5_2",
    "table_5_3",
    "transition_counts",
    "transitions_long",
]
