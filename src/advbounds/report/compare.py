"""Setting a reproduced number beside the thesis's: ratio, difference, verdict and reason.

Pure functions only (no files, no plotting), so every rule of the verdict is unit-tested.

A verdict is one of

* ``reproduced``: within the tolerance stated in the config (``report.tolerances``);
* ``same order of magnitude``: outside the tolerance, same sign, and ``|log10(ours / thesis)|`` at
  most ``report.order_of_magnitude``;
* ``differs``: anything else (other sign, far off, or a published zero we do not hit);
* ``missing``: the pipeline produced no value (the artifact or the column is absent): a loud
  placeholder, never a silent pass;
* ``not compared``: the thesis gives no number to compare with (an illustration, a qualitative claim).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

REPRODUCED = "reproduced"
SAME_ORDER = "same order of magnitude"
DIFFERS = "differs"
MISSING = "missing"
NOT_COMPARED = "not compared"
VERDICTS = (REPRODUCED, SAME_ORDER, DIFFERS, MISSING, NOT_COMPARED)
#: how bad a verdict is, for summarising an item by its worst number
SEVERITY = {NOT_COMPARED: 0, REPRODUCED: 1, SAME_ORDER: 2, DIFFERS: 3, MISSING: 4}

#: the comparison modes: an equality, or a one-sided statement such as "accuracy above 99 %"
MODES = ("equal", "at_least", "at_most")


@dataclass(frozen=True)
class Tolerance:
    """When a reproduced number counts as the published one.

    ``rel``: relative tolerance (fraction of ``|published|``); ``abs``: absolute tolerance (needed for
    published zeros); ``printed_precision``: also accept anything that rounds to the printed value
    (half a unit in the last printed digit, e.g. +-0.0005 for ``1.524``); ``orders``: the widest
    ``|log10(ratio)|`` still called the same order of magnitude.
    """

    rel: float = 0.1
    abs: float = 0.0
    printed_precision: bool = False
    orders: float = 1.0

    def __post_init__(self) -> None:
        for name in ("rel", "abs", "orders"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"tolerance {name} must be a finite number >= 0, got {value!r}")

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], tolerance_class: str) -> Tolerance:
        """The tolerance of one class (``exact``, ``statistical``, ...) from the ``report`` config."""
        classes = settings.get("tolerances", {})
        if tolerance_class not in classes:
            raise KeyError(f"report.tolerances has no class {tolerance_class!r}; "
                           f"known: {', '.join(sorted(classes)) or 'none'}")
        spec = dict(classes[tolerance_class])
        return cls(rel=float(spec.get("rel", 0.0)), abs=float(spec.get("abs", 0.0)),
                   printed_precision=bool(spec.get("printed_precision", False)),
                   orders=float(settings.get("order_of_magnitude", 1.0)))

    def describe(self) -> str:
        parts = []
        if self.rel:
            parts.append(f"{self.rel:.3g} relative")
        if self.abs:
            parts.append(f"{self.abs:.3g} absolute")
        if self.printed_precision:
            parts.append("printed precision")
        return " or ".join(parts) or "exact"


@dataclass
class Comparison:
    """One published number beside ours."""

    item: str  # thesis key, e.g. "table_5_2"
    quantity: str  # e.g. "LeNet-5 / mean"
    published: Any
    reproduced: Any
    verdict: str
    difference: float | None = None  # ours - thesis
    ratio: float | None = None  # ours / thesis
    mode: str = "equal"
    tolerance: str = ""
    reasons: list[str] = field(default_factory=list)
    #: the unit both numbers are in and the column of ours compared, where our table holds the
    #: quantity in more than one unit (Table 5.1); empty elsewhere
    unit: str = ""
    #: the second verdict: the same number under the protocol study's best single reading
    #: (``advbounds.experiments.protocol``), with that reading's label; empty where the run has no
    #: study or the study has no such cell (the verdict above is always the stated protocol's)
    best_reading: str = ""
    best_reading_value: Any = None
    best_reading_verdict: str = ""

    def as_row(self) -> dict[str, Any]:
        return {"item": self.item, "quantity": self.quantity, "thesis": self.published,
                "ours": self.reproduced, "difference": self.difference, "ratio": self.ratio,
                "verdict": self.verdict, "tolerance": self.tolerance, "reasons": " | ".join(self.reasons),
                "unit": self.unit, "best_reading": self.best_reading,
                "best_reading_ours": self.best_reading_value, "best_reading_verdict": self.best_reading_verdict}


# ------------------------------------------------------------------------------------------------
# Numbers
# ------------------------------------------------------------------------------------------------


def as_number(value: Any) -> float | None:
    """A finite float from a number or a numeric string ("99.94%", "7.274294e - 8"); else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "").replace("\u2212", "-")
        percent = text.endswith("%")
        text = text.rstrip("%")
        try:
            number = float(text)
        except ValueError:
            return None
        if percent:
            number /= 100.0
    else:
        try:
            number = float(value)  # numpy scalars
        except (TypeError, ValueError):
            return None
    return number if math.isfinite(number) else None


def difference(ours: float, published: float) -> float:
    """``ours - published``."""
    return float(ours) - float(published)


def ratio(ours: float, published: float) -> float | None:
    """``ours / published``; None when the published value is zero."""
    if float(published) == 0.0:
        return None
    return float(ours) / float(published)


def printed_half_unit(value: float) -> float:
    """Half a unit in the last digit of the shortest printed form of ``value``.

    ``1.524 -> 0.0005``, ``2.09 -> 0.005``, ``7.274294e-08 -> 5e-15``. This is how far the true
    value may lie from a number the thesis printed rounded. A whole number (``1.0``, ``6``,
    ``4767``) gets no slack: YAML keeps no trailing zeros, so ``1.00`` (100 % accuracy) and ``1``
    cannot be told apart, and counts are exact anyway.
    """
    text = repr(float(value)).lower()
    mantissa, _, exponent = text.partition("e")
    decimals = len(mantissa.partition(".")[2].rstrip("0")) if "." in mantissa else 0
    if decimals == 0 and not exponent:
        return 0.0
    return 0.5 * 10.0 ** (-decimals + (int(exponent) if exponent else 0))


def orders_apart(ours: float, published: float) -> float | None:
    """``|log10(ours / published)|``; None when the signs differ or either value is zero."""
    if ours == 0 or published == 0 or (ours > 0) != (published > 0):
        return None
    return abs(math.log10(ours / published))


def within_tolerance(ours: float, published: float, tol: Tolerance) -> bool:
    allowed = max(tol.abs, tol.rel * abs(published))
    if tol.printed_precision:
        allowed = max(allowed, printed_half_unit(published))
    # a hair of slack for the float arithmetic of the allowance itself
    return abs(ours - published) <= allowed * (1 + 1e-12) + 1e-300


def verdict(ours: Any, published: Any, tol: Tolerance, mode: str = "equal") -> tuple[str, str]:
    """The verdict for one number and a short explanation of how it was reached."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    pub = as_number(published)
    if pub is None:
        return NOT_COMPARED, "the thesis gives no number here"
    val = as_number(ours)
    if val is None:
        if isinstance(ours, float) or (isinstance(ours, str) and ours.strip().lower() == "nan"):
            return MISSING, "our table holds no number here (NaN: e.g. no sample to take a statistic over)"
        return MISSING, "the pipeline produced no value"
    if mode == "at_least" and val >= pub:
        return REPRODUCED, f"{val:.6g} >= {pub:.6g}, as the thesis states"
    if mode == "at_most" and val <= pub:
        return REPRODUCED, f"{val:.6g} <= {pub:.6g}, as the thesis states"
    if within_tolerance(val, pub, tol):
        return REPRODUCED, f"within tolerance ({tol.describe()})"
    apart = orders_apart(val, pub)
    if apart is not None and apart <= tol.orders:
        return SAME_ORDER, f"outside tolerance ({tol.describe()}); {apart:.2f} orders of magnitude apart"
    if apart is None:
        if pub == 0:
            return DIFFERS, f"outside tolerance ({tol.describe()}) of a published zero"
        return DIFFERS, "ours is zero" if val == 0 else "ours has the opposite sign"
    return DIFFERS, f"{apart:.2f} orders of magnitude apart"


def compare_value(item: str, quantity: str, ours: Any, published: Any, tol: Tolerance,
                  mode: str = "equal", reasons: Iterable[str] = (), unit: str = "") -> Comparison:
    """Build the :class:`Comparison` of one number."""
    outcome, how = verdict(ours, published, tol, mode)
    pub, val = as_number(published), as_number(ours)
    both = pub is not None and val is not None
    return Comparison(
        item=item, quantity=quantity, published=published, reproduced=ours, verdict=outcome,
        difference=difference(val, pub) if both else None,
        ratio=ratio(val, pub) if both else None,
        mode=mode, tolerance=tol.describe(), reasons=[how, *reasons], unit=unit,
    )


def worst(verdicts: Iterable[str]) -> str:
    """The summary verdict of an item: its worst number (``not compared`` when there is none)."""
    verdicts = list(verdicts)
    return max(verdicts, key=SEVERITY.__getitem__) if verdicts else NOT_COMPARED


def tally(comparisons: Iterable[Comparison]) -> dict[str, int]:
    counts = {name: 0 for name in VERDICTS}
    for comparison in comparisons:
        counts[comparison.verdict] += 1
    return counts


# ------------------------------------------------------------------------------------------------
# Tables
# ------------------------------------------------------------------------------------------------


def normalize_name(name: Any) -> str:
    """Column / row keys compared loosely: ``"Normalized theoretical bound" -> "normalized_theoretical_bound"``,
    ``"LeNet-5" -> "lenet_5"``."""
    return re.sub(r"[^0-9a-z]+", "_", str(name).strip().lower()).strip("_")


def compare_table(item: str, published: Mapping[str, Any], rows: Sequence[Mapping[str, Any]],
                  tol: Tolerance, *, key: str, result_columns: Sequence[str],
                  setup_columns: Sequence[str] = (), aliases: Mapping[str, str] | None = None,
                  row_aliases: Mapping[str, str] | None = None,
                  reasons: Iterable[str] = (), units: Mapping[str, str] | None = None) -> list[Comparison]:
    """Compare a published table (``{"columns": [...], "rows": [[...], ...]}``) with ours.

    ``rows`` are our table's records (e.g. ``DataFrame.to_dict("records")``). Rows are matched on the
    ``key`` column (normalised names, so ``"LeNet-5"`` meets ``"lenet5"`` via ``row_aliases`` and
    ``"no"`` meets ``1`` as a string). Result columns get a verdict with ``tol``; setup columns (the
    experiment's parameters) are compared exactly and a mismatch becomes a reason on that row's
    verdicts, because a different setup explains a different result. A published row we lack, or a
    column we lack, is ``missing``. ``units`` (published column -> the unit it is compared in) sets
    :attr:`Comparison.unit` on every verdict of that column.
    """
    aliases = {normalize_name(k): normalize_name(v) for k, v in (aliases or {}).items()}
    row_aliases = {normalize_name(k): normalize_name(v) for k, v in (row_aliases or {}).items()}
    columns = [normalize_name(c) for c in published["columns"]]
    key_n = normalize_name(key)
    if key_n not in columns:
        raise KeyError(f"{item}: key column {key!r} is not a published column {published['columns']}")

    def row_key(value: Any) -> str:
        number = as_number(value)
        text = normalize_name(f"{number:g}" if number is not None and float(number).is_integer() else value)
        return row_aliases.get(text, text)

    ours_by_key: dict[str, dict[str, Any]] = {}
    for record in rows:
        normalized = {aliases.get(normalize_name(k), normalize_name(k)): v for k, v in record.items()}
        if key_n in normalized:
            ours_by_key[row_key(normalized[key_n])] = normalized

    base_reasons = list(reasons)
    units = {normalize_name(k): v for k, v in (units or {}).items()}
    out: list[Comparison] = []
    for published_row in published["rows"]:
        pub = dict(zip(columns, published_row))
        label = str(pub[key_n])
        ours = match_row(row_key(pub[key_n]), ours_by_key)
        row_reasons = list(base_reasons)
        if ours is not None:
            for column in map(normalize_name, setup_columns):
                if column in ours and not _same_setting(ours[column], pub.get(column)):
                    row_reasons.append(f"setup differs: {column} = {ours[column]} here, "
                                       f"{pub.get(column)} in the thesis")
        for column in map(normalize_name, result_columns):
            quantity = f"{label} / {column}"
            if ours is None:
                out.append(Comparison(item, quantity, pub.get(column), None, MISSING,
                                      tolerance=tol.describe(),
                                      reasons=[f"our table has no row {label!r}", *base_reasons]))
                continue
            unit = units.get(column, "")
            if column not in ours:
                out.append(Comparison(item, quantity, pub.get(column), None, MISSING,
                                      tolerance=tol.describe(),
                                      reasons=[f"our table has no column {column!r}", *base_reasons], unit=unit))
                continue
            out.append(compare_value(item, quantity, ours[column], pub.get(column), tol, reasons=row_reasons,
                                     unit=unit))
    return out


def match_row(key: str, rows: Mapping[str, Any]) -> Any:
    """The row of ``rows`` (keyed by normalised name) for ``key``: an exact match, else the one row
    whose name is a prefix of ``key`` or has ``key`` as prefix (``sigm`` meets ``sigmoid``); None when
    there is no such row or several."""
    if key in rows:
        return rows[key]
    candidates = [name for name in rows if len(min(name, key, key=len)) >= 3
                  and (name.startswith(key) or key.startswith(name))]
    return rows[candidates[0]] if len(candidates) == 1 else None


def _same_setting(ours: Any, published: Any) -> bool:
    """Setup cells compared as values: 10 == 10.0, [-1, 1] == "[-1, 1]" == "[-1.0, 1.0]"."""
    a, b = _setting_values(ours), _setting_values(published)
    if a is None or b is None:
        return normalize_name(ours) == normalize_name(published)
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12) for x, y in zip(a, b))


def _setting_values(value: Any) -> list[float] | None:
    if isinstance(value, (list, tuple)):
        numbers = [as_number(v) for v in value]
    else:
        number = as_number(value)
        if number is not None:
            return [number]
        numbers = [as_number(tok) for tok in re.findall(r"-?[0-9.]+(?:e-?[0-9]+)?", str(value))]
        if not numbers:
            return None
    return None if any(n is None for n in numbers) else [float(n) for n in numbers]


# ------------------------------------------------------------------------------------------------
# Reasons
# ------------------------------------------------------------------------------------------------


def reasons_for(item: str, notes: Mapping[str, Sequence[str]], findings: Mapping[str, Sequence[str]],
                context: Sequence[str] = ()) -> list[str]:
    """Everything we know that explains a gap for ``item``: run-wide context (e.g. a synthetic smoke
    run), the inconsistency notes of paper_values.yaml, and the findings that concern it."""
    reasons = list(context)
    reasons += [f"thesis note: {note}" for note in notes.get(item, ())]
    reasons += [f"finding: {finding}" for finding in findings.get(item, ())]
    return reasons
