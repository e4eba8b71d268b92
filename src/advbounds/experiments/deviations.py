"""Shared helpers of the Chapter 3 and 4 experiments: seeds, deviation statistics, shared table cells
(numpy and pandas only; the random test cases are drawn in :mod:`.stacked`).

Deviation (Tables 3.1, 4.2, 4.3) is the L2 norm of the FGS perturbation found by Algorithm 2.1 minus
the theoretical lower bound, per sample. A *violation* is a sample whose perturbation (FGS, or the
exact one for linear classifiers) is smaller than the bound by more than ``atol`` (float64 round-off
only; see ``docs/chapters34.md``). Samples that FGS never flipped have no perturbation: they are
counted in their own column and left out of the statistics, never silently dropped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from advbounds.settings import SearchSettings

#: summary statistics reported for a set of deviations, in table order
STATS = ("mean", "median", "std", "min", "max")

def derive_seed(base: int, *keys: int | str) -> int:
    """A 31-bit seed that depends only on ``base`` and ``keys`` (e.g. chapter, test number).

    Strings are hashed through their UTF-8 bytes (stable across runs, unlike ``hash``)."""
    parts = [int(base)]
    for key in keys:
        if isinstance(key, str):
            parts.extend(key.encode("utf-8"))
        else:
            parts.append(int(key))
    return int(np.random.SeedSequence(parts).generate_state(1, dtype=np.uint32)[0] >> 1)


def format_interval(value: Sequence[float]) -> str:
    """``[-1, 1]`` as the thesis prints it (integers without a decimal point)."""
    return "[" + ", ".join(f"{float(v):g}" for v in value) + "]"


def summarize(values: Any) -> dict[str, float]:
    """Mean, median, sample standard deviation (ddof=1, NaN for a single value), min and max of the
    finite entries; NaN everywhere when there are none."""
    array = np.asarray(values, dtype=float)
    array = array[np.isfinite(array)]
    if array.size == 0:
        return {name: math.nan for name in STATS}
    return {
        "mean": float(array.mean()),
        "median": float(np.median(array)),
        "std": float(array.std(ddof=1)) if array.size > 1 else math.nan,
        "min": float(array.min()),
        "max": float(array.max()),
    }


def count_violations(perturbation: Any, bound: Any, atol: float) -> int:
    """Samples whose perturbation norm is below the bound by more than ``atol`` (NaN norms, i.e.
    unflipped samples, are not violations: they have no perturbation to compare)."""
    p = np.asarray(perturbation, dtype=float)
    b = np.asarray(bound, dtype=float)
    return int(np.sum(np.isfinite(p) & (p < b - float(atol))))


def deviation_cells(frame: pd.DataFrame, *, atol: float) -> dict[str, Any]:
    """The table cells Tables 3.1, 4.2 and 4.3 share, from a per-sample frame (``fgs_flipped``,
    ``deviation``, ``fgs_norm``, ``bound``): the deviation statistics over the flipped samples
    (``Mean`` ... ``Max``, ddof=1 std), ``Flipped`` (``k/n``) and ``Violations`` (FGS norm below the
    bound by more than ``atol``)."""
    flipped = frame["fgs_flipped"].astype(bool)
    stats = summarize(frame.loc[flipped, "deviation"])
    return {
        **{name.capitalize(): value for name, value in stats.items()},
        "Flipped": f"{int(flipped.sum())}/{len(frame)}",
        "Violations": count_violations(frame["fgs_norm"], frame["bound"], atol),
    }


def interval_cells(spec: Mapping[str, Any]) -> dict[str, str]:
    """The ``Sample interval`` and ``Param interval`` cells of a randomized test's ``spec``."""
    return {"Sample interval": format_interval(spec["sample_interval"]),
            "Param interval": format_interval(spec["param_interval"])}


def with_spec_eps_max(attack: SearchSettings, spec: Mapping[str, Any]) -> SearchSettings:
    """``attack`` with the ``eps_max`` of a randomized test's ``spec`` where it has one (the config's
    per-test override of Tables 3.1 and 4.2)."""
    return attack.replace(eps_max=spec["eps_max"]) if "eps_max" in spec else attack


def published_rows(published: Mapping[str, Any]) -> pd.DataFrame:
    """A ``paper_values.yaml`` table (``columns`` + ``rows``) as a DataFrame."""
    return pd.DataFrame([list(row) for row in published["rows"]], columns=list(published["columns"]))
