"""Chapter 4's tables and figure data from the per-sample frames (pandas only, no torch).

The model runs (:mod:`advbounds.experiments.mlp`) write one frame per randomized test of Table 4.2
and per trained MLP, and one point per regularization weight; everything here summarises them:
:func:`table_4_2` and :func:`mlp_average_deviations` (Figure 4.1), :func:`table_4_3`,
:func:`accuracy_table` (Section 4.3.2), :func:`deviations_long` (Figures 4.1, 4.2) and
:func:`regularization_frame` (Figure 4.3). The column names of those frames are defined here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from advbounds.metrics import ModelMetrics

from .deviations import deviation_cells, interval_cells, summarize

DATASET_NAMES = {"iris": "Iris", "wine": "Wine", "spambase": "Spambase"}
RANDOM_SAMPLE_COLUMNS = (
    "test", "mlp", "sample", "pred_label", "bound", "M", "delta_hidden", "fgs_eps", "fgs_norm",
    "fgs_flipped", "fgs_flips_at_eps_max", "fgs_consistent", "fgs_adv_label", "deviation",
)
#: columns of the second search with the reference M (``chapter4.reference_attack``)
REFERENCE_COLUMNS = ("ref_eps", "ref_norm", "ref_flipped", "ref_deviation")
TRAINED_SAMPLE_COLUMNS = (
    "dataset", "split", "sample", "true_label", "pred_label", "correct", "bound", "M", "delta_hidden",
    "fgs_eps", "fgs_norm", "fgs_flipped", "fgs_flips_at_eps_max", "fgs_consistent", "fgs_adv_label",
    "deviation",
)
TABLE_4_2_COLUMNS = (
    "No.", "Samples", "Dim", "MLPs", "Layers", "Units", "Classes", "Sample interval", "Param interval",
    "Mean", "Median", "Std", "Flipped", "Violations", "MLP-average std", "Bound mean", "FGS norm mean",
    "Ref mean", "Ref median", "Ref std", "Ref flipped",
)
TABLE_4_3_COLUMNS = ("Dataset", "Mean", "Median", "Std", "Min", "Max", "Samples", "Flipped", "Violations",
                     "Bound mean", "FGS norm mean", "Ref mean", "Ref median", "Ref std", "Ref min", "Ref max",
                     "Ref flipped")
ACCURACY_COLUMNS = ("Dataset", "Hidden", "Train accuracy", "Validation accuracy", "Test accuracy",
                    "Train samples", "Validation samples", "Test samples")
REGULARIZATION_COLUMNS = (
    "dataset", "ell", "accuracy", "fgs_error_rate", "fgv_error_rate", "fgs_norm_mean", "fgs_norm_median",
    "fgv_norm_mean", "fgv_norm_median", "bound_mean", "delta_hidden_mean", "samples", "test_accuracy",
)


def _reference_stats(frame: pd.DataFrame) -> dict[str, Any]:
    """``Ref *`` table cells: deviation statistics of the reference-M search (NaN without one)."""
    if "ref_flipped" not in frame:
        return {"Ref mean": math.nan, "Ref median": math.nan, "Ref std": math.nan, "Ref min": math.nan,
                "Ref max": math.nan, "Ref flipped": ""}
    flipped = frame["ref_flipped"].astype(bool)
    stats = summarize(frame.loc[flipped, "ref_deviation"])
    return {f"Ref {name}": value for name, value in stats.items()} | {
        "Ref flipped": f"{int(flipped.sum())}/{len(frame)}"}


#: ``kind`` labels of the long frames behind Figures 4.1 and 4.2
KIND_SEARCH = "FGS (search M)"
KIND_REFERENCE = "FGS (reference M)"


def deviations_long(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Long frame ``keys..., kind, deviation`` of the flipped samples: the main search and, when the
    frame has them, the reference-M search (Figures 4.1 and 4.2)."""
    parts = []
    flipped = frame[frame["fgs_flipped"].astype(bool)]
    parts.append(flipped[list(keys)].assign(kind=KIND_SEARCH, deviation=flipped["deviation"]))
    if "ref_flipped" in frame:
        ref = frame[frame["ref_flipped"].astype(bool)]
        parts.append(ref[list(keys)].assign(kind=KIND_REFERENCE, deviation=ref["ref_deviation"]))
    return pd.concat(parts, ignore_index=True)


def mlp_average_deviations(frame: pd.DataFrame) -> pd.DataFrame:
    """Figure 4.1's data: per test, MLP and search (``kind``), the mean deviation over that MLP's
    flipped samples (MLPs with no flipped sample are left out; Table 4.2's Flipped column counts them)."""
    long = deviations_long(frame, ["test", "mlp"])
    return (long.groupby(["test", "mlp", "kind"], as_index=False, sort=False)["deviation"].mean()
            .rename(columns={"deviation": "mean_deviation"}))


def table_4_2_row(spec: Mapping[str, Any], frame: pd.DataFrame, *, number: int, atol: float) -> dict[str, Any]:
    flipped = frame["fgs_flipped"].astype(bool)
    averages = mlp_average_deviations(frame)
    averages = averages.loc[averages["kind"] == KIND_SEARCH, "mean_deviation"]
    hidden = list(spec["hidden"])
    return {
        "No.": int(number),
        "Samples": int(spec["samples"]),
        "Dim": int(spec["dim"]),
        "MLPs": int(spec["mlps"]),
        "Layers": len(hidden),
        "Units": "/".join(str(h) for h in hidden) if len(set(hidden)) > 1 else int(hidden[0]),
        "Classes": int(spec["classes"]),
        **interval_cells(spec),
        **deviation_cells(frame, atol=atol),
        "MLP-average std": summarize(averages)["std"],
        "Bound mean": summarize(frame["bound"])["mean"],
        "FGS norm mean": summarize(frame.loc[flipped, "fgs_norm"])["mean"],
        **_reference_stats(frame),
    }


def table_4_2(specs: Sequence[Mapping[str, Any]], frames: Sequence[pd.DataFrame], *, atol: float) -> pd.DataFrame:
    """Table 4.2: deviation statistics over all flipped samples of each test (ddof=1 std), the flip
    count, violations (FGS norm below the bound) and, beside them, the std of the per-MLP averages
    that Figure 4.1 shows, and the mean bound and mean FGS norm the deviation is made of."""
    if len(specs) != len(frames):
        raise ValueError(f"{len(specs)} test specs but {len(frames)} result frames")
    rows = [table_4_2_row(spec, frame, number=i, atol=atol)
            for i, (spec, frame) in enumerate(zip(specs, frames), start=1)]
    return pd.DataFrame(rows).reindex(columns=list(TABLE_4_2_COLUMNS))


def table_4_3(frames: Mapping[str, pd.DataFrame], *, atol: float) -> pd.DataFrame:
    """Table 4.3: deviation statistics per data set (flipped samples, ddof=1 std) with the sample and
    flip counts, violations (must be 0), and the mean bound and FGS norm."""
    rows = []
    for dataset, frame in frames.items():
        flipped = frame["fgs_flipped"].astype(bool)
        rows.append({
            "Dataset": DATASET_NAMES.get(dataset, dataset),
            **deviation_cells(frame, atol=atol),
            "Samples": len(frame),
            "Bound mean": summarize(frame["bound"])["mean"],
            "FGS norm mean": summarize(frame.loc[flipped, "fgs_norm"])["mean"],
            **_reference_stats(frame),
        })
    return pd.DataFrame(rows).reindex(columns=list(TABLE_4_3_COLUMNS))


def accuracy_table(metrics: Mapping[str, ModelMetrics], hidden: Mapping[str, Sequence[int]]) -> pd.DataFrame:
    """The accuracies of Section 4.3.2 (from each model's metrics JSON, as :func:`train_mlp` wrote it)."""
    rows = []
    for dataset, m in metrics.items():
        rows.append({
            "Dataset": DATASET_NAMES.get(dataset, dataset),
            "Hidden": "(" + ", ".join(str(h) for h in hidden[dataset]) + ")",
            "Train accuracy": float_or_nan(m.train_accuracy),
            "Validation accuracy": float_or_nan(m.val_accuracy),
            "Test accuracy": float_or_nan(m.test_accuracy),
            "Train samples": m.n_train,
            "Validation samples": m.details["n_val"],
            "Test samples": m.details["n_test"],
        })
    return pd.DataFrame(rows, columns=list(ACCURACY_COLUMNS))


def float_or_nan(value: Any) -> float:
    """A metric that may be absent (``None``: an empty split) as a float, NaN when absent."""
    return math.nan if value is None else float(value)


def regularization_frame(points: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Figure 4.3's data, one row per (dataset, ell), sorted by data set (Iris, Wine, Spambase, then
    any other in order of appearance) and ell."""
    frame = pd.DataFrame(list(points), columns=list(REGULARIZATION_COLUMNS))
    order = {name: i for i, name in enumerate(dict.fromkeys([*DATASET_NAMES, *frame["dataset"]]))}
    frame = frame.assign(_order=frame["dataset"].map(order))
    return frame.sort_values(["_order", "ell"], kind="stable").drop(columns="_order").reset_index(drop=True)


__all__ = [
    "ACCURACY_COLUMNS",
    "DATASET_NAMES",
    "KIND_REFERENCE",
    "KIND_SEARCH",
    "RANDOM_SAMPLE_COLUMNS",
    "REFERENCE_COLUMNS",
    "REGULARIZATION_COLUMNS",
    "TABLE_4_2_COLUMNS",
    "TABLE_4_3_COLUMNS",
    "TRAINED_SAMPLE_COLUMNS",
    "accuracy_table",
    "deviations_long",
    "float_or_nan",
    "mlp_average_deviations",
    "regularization_frame",
    "table_4_2",
    "table_4_2_row",
    "table_4_3",
]
