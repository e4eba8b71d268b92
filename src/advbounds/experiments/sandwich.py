"""The robustness sandwich: per sample, every lower bound and every attack on one axis.

For each sample the true minimal L2 perturbation ``rho`` lies between what the lower bounds prove
and what the attacks find::

    thesis bound  ?  sound bound (corrected)  ?  certified radius  <=  rho  <=  best attack  <=  FGS

The thesis's rules are not all valid (docs/findings.md), so its bound is compared but its
inequality is a *finding* when it fails; the sound bound and the certified radius are proven, so
their failure is a *bug*. Between the two sound lower bounds there is no theorem (either may be
tighter), so no inequality is asserted there. ``exact_min`` (linear classifiers, tiny ReLU
networks) is ``rho`` itself.

This module is torch-free: it reads per-sample frames and writes summaries. Column contract of a
sandwich frame (any may be absent or NaN where the pipeline has no such quantity):

* ``bound_thesis``, ``bound_corrected``, ``radius_certified``, ``exact_min``: lower side;
* ``attack_<name>`` for each attack (``attack_fgs``, ``attack_fgv``, ``attack_deepfool``, ...):
  the L2 norm of a verified adversarial perturbation, NaN where the attack found none;
* ``best_attack``: the per-sample minimum over the ``attack_*`` columns.

All in the same unit (the model's input units: pixels for the CNNs).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

LOWER = ("bound_thesis", "bound_corrected", "radius_certified")
#: the quantities in the order of the chain, lower side to upper side
CHAIN = ("bound_thesis", "bound_corrected", "radius_certified", "exact_min", "best_attack", "attack_fgs")
#: relative slack for float rounding: an attack's norm is computed in float32 from the perturbed
#: input the model saw, a bound in float64 rounded down
RTOL = 1e-5


@dataclass(frozen=True)
class Inequality:
    lower: str
    upper: str
    sound: bool  # True: a violation is a bug; False: a finding about the thesis

    @property
    def name(self) -> str:
        return f"{self.lower} <= {self.upper}"


INEQUALITIES: tuple[Inequality, ...] = (
    Inequality("bound_thesis", "exact_min", False),
    Inequality("bound_thesis", "best_attack", False),
    Inequality("bound_corrected", "exact_min", True),
    Inequality("bound_corrected", "best_attack", True),
    Inequality("radius_certified", "exact_min", True),
    Inequality("radius_certified", "best_attack", True),
    Inequality("exact_min", "best_attack", True),
    Inequality("best_attack", "attack_fgs", True),
)


def attack_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith("attack_")]


def with_best_attack(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with ``best_attack``: the smallest verified norm over its ``attack_*`` columns."""
    frame = frame.copy()
    attacks = attack_columns(frame)
    frame["best_attack"] = frame[attacks].min(axis=1, skipna=True) if attacks else np.nan
    return frame


def violations(frame: pd.DataFrame) -> dict[str, int]:
    """Per inequality of the chain, how many samples break it (both sides known)."""
    counts = {}
    for ineq in INEQUALITIES:
        if ineq.lower in frame and ineq.upper in frame:
            lower, upper = frame[ineq.lower], frame[ineq.upper]
            known = lower.notna() & upper.notna()
            counts[ineq.name] = int((lower[known] > upper[known] * (1 + RTOL)).sum())
    return counts


def sound_violations(frame: pd.DataFrame) -> dict[str, int]:
    sound = {ineq.name for ineq in INEQUALITIES if ineq.sound}
    return {name: n for name, n in violations(frame).items() if name in sound and n}


def _median(series: pd.Series) -> float:
    values = series.dropna()
    return float(values.median()) if len(values) else float("nan")


def summary_row(name: str, frame: pd.DataFrame) -> dict[str, object]:
    """One experiment's row: medians of each quantity, median ratios between neighbours of the
    chain (per sample, then the median), and the violation count of each inequality."""
    row: dict[str, object] = {"experiment": name, "samples": int(len(frame))}
    present = [c for c in CHAIN if c in frame] + [c for c in attack_columns(frame) if c not in CHAIN]
    for column in present:
        row[f"median {column}"] = _median(frame[column])
    chain = [c for c in CHAIN if c in frame and frame[c].notna().any()]
    for lower, upper in zip(chain, chain[1:]):
        row[f"median {lower} / {upper}"] = _median(frame[lower] / frame[upper])
    for lower in ("bound_thesis", "bound_corrected", "radius_certified"):
        if lower in chain and "best_attack" in chain and (lower, "best_attack") not in zip(chain, chain[1:]):
            row[f"median {lower} / best_attack"] = _median(frame[lower] / frame["best_attack"])
    if "best_attack" in frame:  # AttackBench: how much the ensemble buys over each single attack
        for column, values in optimality(frame).items():
            row[f"median optimality {column}"] = _median(values)
    for ineq_name, count in violations(frame).items():
        row[f"violations {ineq_name}"] = count
    return row


def summary_table(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """``figures/sandwich_summary``: one row per experiment (columns: the union of the rows')."""
    rows = [summary_row(name, frame) for name, frame in frames.items()]
    return pd.DataFrame(rows)


def optimality(frame: pd.DataFrame) -> pd.DataFrame:
    """AttackBench-style optimality per sample: the best norm any attack found divided by each
    attack's norm (1 = this attack was the best; NaN where it found nothing)."""
    return pd.DataFrame({c: frame["best_attack"] / frame[c] for c in attack_columns(frame)})


def orders_of_magnitude(lower: float, upper: float) -> float:
    return float(np.log10(upper / lower)) if lower > 0 and upper > 0 else float("nan")


def describe(name: str, frame: pd.DataFrame) -> str:
    """A paragraph for the report: how far the thesis bound lies below the best attack, and how much
    of the gap the sound lower bounds close."""
    row = summary_row(name, frame)
    best = row.get("median best_attack", float("nan"))
    parts = [f"{name}: {row['samples']} samples; median best attack {best:.4g}"]
    if "median attack_fgs" in row:
        # the ratio is the median of per-sample ratios (the summary's column), not a ratio of two
        # medians, which may come from different samples
        ratio = row.get("median best_attack / attack_fgs", float("nan"))
        shown = f"{ratio:.2f}x" if np.isfinite(ratio) else "n/a"
        parts[0] += f" (median per-sample ratio to FGS {shown}; FGS's median {row['median attack_fgs']:.4g})"
    for lower, what in (("bound_thesis", "the thesis bound"), ("bound_corrected", "the sound (corrected) bound"),
                        ("radius_certified", "the certified radius")):
        value = row.get(f"median {lower}")
        if value is not None and np.isfinite(value):
            parts.append(f"{what} {value:.3g} lies {orders_of_magnitude(value, best):.1f} orders of "
                         "magnitude below it")
    closed = gap_closed(frame)
    if np.isfinite(closed):
        parts.append(f"the sound bound closes {100 * closed:.0f} % of the thesis bound's gap to the best attack "
                     "(in orders of magnitude, medians)")
    if "median exact_min" in row and np.isfinite(row["median exact_min"]):
        parts.append(f"the exact minimum is {row['median exact_min']:.4g}")
        near = attack_within(frame, EXACT_CLOSE_RTOL)
        if near is not None:
            parts.append(f"the best attack is within {100 * EXACT_CLOSE_RTOL:.0f} % of it on {near[0]} of "
                         f"{near[1]} samples")
    bugs = sound_violations(frame)
    findings = {k: v for k, v in violations(frame).items() if v and k not in bugs}
    if bugs:
        parts.append("SOUND INEQUALITY VIOLATED (a bug): " + ", ".join(f"{k} on {v}" for k, v in bugs.items()))
    if findings:
        parts.append("the thesis's chain fails (a finding): " + ", ".join(f"{k} on {v}" for k, v in findings.items()))
    return "; ".join(parts) + "."


#: "the best attack comes within 1 % of the exact minimum" (issue 15's target on tiny networks)
EXACT_CLOSE_RTOL = 0.01


def gap_closed(frame: pd.DataFrame) -> float:
    """The share of the gap between the thesis bound and the best attack, in orders of magnitude of
    the medians, that the sound (corrected) bound closes: 0 = no better than the thesis's, 1 = up
    to the best attack, negative = below the thesis bound. NaN where a quantity is missing."""
    if not {"bound_thesis", "bound_corrected", "best_attack"} <= set(frame):
        return float("nan")
    thesis, sound, best = (_median(frame[c]) for c in ("bound_thesis", "bound_corrected", "best_attack"))
    gap = orders_of_magnitude(thesis, best)
    if not np.isfinite(gap) or gap <= 0:
        return float("nan")
    return orders_of_magnitude(thesis, sound) / gap


def attack_within(frame: pd.DataFrame, rtol: float) -> tuple[int, int] | None:
    """``(samples where the best attack is within rtol of the exact minimum, samples with both)``."""
    if "exact_min" not in frame or "best_attack" not in frame:
        return None
    known = frame["exact_min"].notna() & frame["best_attack"].notna() & np.isfinite(frame["exact_min"])
    close = frame.loc[known, "best_attack"] <= frame.loc[known, "exact_min"] * (1 + rtol)
    return int(close.sum()), int(known.sum())


def frame_from_parts(samples: Iterable[int], **columns: Iterable[float]) -> pd.DataFrame:
    """A sandwich frame from per-sample columns (missing quantities simply left out)."""
    frame = pd.DataFrame({"sample": list(samples), **{k: list(v) for k, v in columns.items()}})
    return with_best_attack(frame)
