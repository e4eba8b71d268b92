"""The report's verdicts on a group of thesis items as one table: ``figures/comparison_chapters34.*``.

The rows are the report's own comparisons (:func:`.comparisons.compare_item`, judged with the
configured ``report.tolerances``), so a verdict in the table is the report's by construction. Where
our table also holds the same experiment with the reference M (the ``Ref ...`` columns of Tables 4.2
and 4.3, ``chapter4.reference_attack``), that variant is judged by the same comparer and tolerance
and set beside ours. The reasons for the differences are worked out in ``docs/chapters34.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from advbounds.report.catalog import BY_KEY, EXTRA_BY_KEY
from advbounds.report.compare import Comparison
from advbounds.report.comparisons import TABLE_SPECS, Context, compare_item, compare_published_table

#: how our tables name the columns of the search with the reference M (``Ref mean``)
REFERENCE_M = "Ref"

COLUMNS = ("Item", "Quantity", "Published", "Ours", "Rel. diff", "Verdict", "Tolerance", "Ours (ref M)",
           "Rel. diff (ref M)", "Verdict (ref M)")


def relative_difference(comparison: Comparison | None) -> float:
    """``ours / published - 1``; NaN without two numbers or with a published zero."""
    if comparison is None or comparison.ratio is None:
        return math.nan
    return comparison.ratio - 1.0


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def verdict_table(ctx: Context, keys: Sequence[str]) -> pd.DataFrame:
    """One row per published number of the items ``keys``, with the report's verdict, and the
    reference-M variant's where our table has one."""
    rows = []
    for key in keys:
        reference = {c.quantity: c for c in compare_published_table(key, ctx, REFERENCE_M)} \
            if key in TABLE_SPECS else {}
        for c in compare_item(key, ctx):
            ref = reference.get(c.quantity)
            rows.append({
                "Item": BY_KEY[key].label, "Quantity": c.quantity, "Published": _number(c.published),
                "Ours": _number(c.reproduced), "Rel. diff": relative_difference(c), "Verdict": c.verdict,
                "Tolerance": c.tolerance,
                "Ours (ref M)": _number(ref.reproduced) if ref else math.nan,
                "Rel. diff (ref M)": relative_difference(ref), "Verdict (ref M)": ref.verdict if ref else "",
            })
    return pd.DataFrame(rows, columns=list(COLUMNS))


def caption(key: str) -> str:
    """The caption of verdict table ``key`` (a catalog extra): its items and how a verdict is reached."""
    extra = EXTRA_BY_KEY[key]
    labels = ", ".join(BY_KEY[item].label for item in extra.compares)
    return (f"{extra.label}: our numbers of {labels} beside the published ones, with the report's verdicts "
            "(figures/report.html; tolerances: the config's report section, per row in 'Tolerance'). "
            "Rel. diff = ours / published - 1. 'ref M': the same search with the reference M "
            "(chapter4.reference_attack). Reasons: docs/chapters34.md")
