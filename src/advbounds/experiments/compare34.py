"""Our Chapter 3-4 numbers beside the published ones (Tables 3.1, 4.2, 4.3 and the three accuracies).

:func:`comparison_table` reads the published values (``reference/paper_values.yaml``) and our tables
and returns one row per published number: ours, the relative difference, and the same for the
"Ref" columns (the search with the reference M, ``chapter4.reference_attack``) where a table has
them. A relative difference above :data:`DIFFERENCE_THRESHOLD` is flagged; the reasons are worked
out in ``docs/chapters34.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

#: "Where they differ by more than about 25%, find out why" (the issue that asked for this table)
DIFFERENCE_THRESHOLD = 0.25

COLUMNS = ("Item", "Row", "Quantity", "Published", "Ours", "Rel. diff", "Differs", "Ours (ref M)",
           "Rel. diff (ref M)", "Differs (ref M)")

CAPTION = ("Chapters 3-4: our numbers beside the published ones. Rel. diff = ours / published - 1; "
           f"'Differs' flags |Rel. diff| > {DIFFERENCE_THRESHOLD:.0%}. 'ref M': the same search with "
           "the reference M (chapter4.reference_attack). Reasons: docs/chapters34.md")


def relative_difference(ours: Any, published: Any) -> float:
    try:
        o, p = float(ours), float(published)
    except (TypeError, ValueError):
        return math.nan
    if not (math.isfinite(o) and math.isfinite(p)) or p == 0:
        return math.nan
    return o / p - 1.0


def _flag(rel: float) -> str:
    if not math.isfinite(rel):
        return ""
    return "yes" if abs(rel) > DIFFERENCE_THRESHOLD else "no"


def _row(item: str, row: Any, quantity: str, published: Any, ours: Any, ours_ref: Any = math.nan) -> dict[str, Any]:
    rel, rel_ref = relative_difference(ours, published), relative_difference(ours_ref, published)
    return {"Item": item, "Row": str(row), "Quantity": quantity, "Published": float(published),
            "Ours": float(ours) if ours is not None else math.nan, "Rel. diff": rel, "Differs": _flag(rel),
            "Ours (ref M)": float(ours_ref) if ours_ref is not None else math.nan,
            "Rel. diff (ref M)": rel_ref, "Differs (ref M)": _flag(rel_ref)}


def _lookup(table: pd.DataFrame, key_column: str, key: Any) -> pd.Series | None:
    keys = table[key_column].astype(str).str.lower()
    match = table[keys == str(key).lower()]
    return None if match.empty else match.iloc[0]


def _column_name(name: Any) -> str:
    """A published column name; YAML 1.1 reads the bare column name ``no`` as the boolean False."""
    if name is False:
        return "no"
    if name is True:
        return "yes"
    return str(name)


def _compare_table(item: str, published: Mapping[str, Any], ours: pd.DataFrame, *, key: str, our_key: str,
                   quantities: Mapping[str, str]) -> list[dict[str, Any]]:
    columns = [_column_name(c) for c in published["columns"]]
    rows = []
    for values in published["rows"]:
        record = dict(zip(columns, values))
        mine = _lookup(ours, our_key, record[key])
        for published_column, our_column in quantities.items():
            ours_value = math.nan if mine is None else mine.get(our_column, math.nan)
            ref_value = math.nan if mine is None else mine.get(f"Ref {our_column.lower()}", math.nan)
            rows.append(_row(item, record[key], published_column, record[published_column], ours_value, ref_value))
    return rows


def comparison_table(published: Mapping[str, Any], *, table_3_1: pd.DataFrame, table_4_2: pd.DataFrame,
                     table_4_3: pd.DataFrame, accuracies: pd.DataFrame) -> pd.DataFrame:
    """One row per published number of Tables 3.1, 4.2, 4.3 and the Section 4.3.2 accuracies."""
    rows: list[dict[str, Any]] = []
    stats = {"mean": "Mean", "median": "Median", "std": "Std"}
    rows += _compare_table("Table 3.1", published["table_3_1"], table_3_1, key="no", our_key="No.", quantities=stats)
    rows += _compare_table("Table 4.2", published["table_4_2"], table_4_2, key="no", our_key="No.", quantities=stats)
    rows += _compare_table("Table 4.3", published["table_4_3"], table_4_3, key="dataset", our_key="Dataset",
                           quantities={**stats, "min": "Min", "max": "Max"})
    for dataset, values in published["trained_mlps"].items():
        mine = _lookup(accuracies, "Dataset", dataset)
        ours = math.nan if mine is None else mine["Test accuracy"]
        rows.append(_row("Section 4.3.2", dataset, "test accuracy", values["test_accuracy"], ours))
    return pd.DataFrame(rows, columns=list(COLUMNS))
