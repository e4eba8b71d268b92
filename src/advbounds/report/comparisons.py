"""Which of our numbers meets which published number, item by item.

Each function takes a :class:`Context` and returns the item's :class:`Comparison` list. A file the
comparison needs but cannot find gives ``missing`` verdicts naming the file: the report shows a loud
placeholder instead of leaving the number out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from advbounds.metrics import ModelMetrics
from advbounds.report.catalog import BY_KEY, shown_file
from advbounds.report.compare import (
    MISSING,
    NOT_COMPARED,
    Comparison,
    Tolerance,
    as_number,
    compare_table,
    compare_value,
    match_row,
    normalize_name,
)


@dataclass
class Context:
    root: Path
    paper: Mapping[str, Any]
    settings: Mapping[str, Any]  # the ``report`` config section
    reasons: Mapping[str, Sequence[str]] = field(default_factory=dict)  # item key -> known reasons

    def tol(self, tolerance_class: str) -> Tolerance:
        return Tolerance.from_config(self.settings, tolerance_class)

    def path(self, relative: str) -> Path:
        return self.root / relative

    def table(self, relative: str) -> pd.DataFrame | None:
        path = self.path(relative)
        return pd.read_csv(path) if path.exists() else None

    def json(self, relative: str) -> Any:
        path = self.path(relative)
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

    def known(self, item: str) -> list[str]:
        return list(self.reasons.get(item, ()))


def _missing(item: str, quantity: str, published: Any, what: str, ctx: Context, tol: str = "") -> Comparison:
    return Comparison(item, quantity, published, None, MISSING, tolerance=tol,
                      reasons=[what, *ctx.known(item)])


def _not_compared(item: str, quantity: str, published: Any, ours: Any, why: str, ctx: Context) -> Comparison:
    return Comparison(item, quantity, published, ours, NOT_COMPARED, reasons=[why, *ctx.known(item)])


# ------------------------------------------------------------------------------------------------
# Tables
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableSpec:
    key: str  # key column of the published table
    result_columns: tuple[str, ...]
    setup_columns: tuple[str, ...] = ()
    aliases: Mapping[str, str] = field(default_factory=dict)  # our column name -> published name
    row_aliases: Mapping[str, str] = field(default_factory=dict)  # our row key -> published row key
    tolerance: str = "statistical"
    published_key: str | None = None  # paper_values key when it is not the item's
    #: published column -> the unit its numbers are in; the report says it beside each verdict
    units: Mapping[str, str] = field(default_factory=dict)

    def our_column(self, published_column: str) -> str:
        """The column of our table that meets ``published_column``."""
        return next((ours for ours, published in self.aliases.items() if published == published_column),
                    published_column)

    def compared_units(self) -> dict[str, str]:
        """published column -> "<unit>; our column `<name>`", for the columns with a unit."""
        return {column: f"{unit}; our column `{self.our_column(column)}`" for column, unit in self.units.items()}


def _table_5_1_spec() -> TableSpec:
    """Table 5.1, compared like with like: each published column meets our column in its unit.

    * ``normalized_theoretical_bound``: the network's **scaled input units** (the pixel value times
      1/256, the input ``Scale`` of the Caffe networks), per pixel. The thesis does not name the unit
      (Section 5.3: the bounds were averaged over the test set and divided by the number of pixels).
      But Algorithm 5.1 runs on the network's layers, and Caffe applies its ``scale: 0.00390625`` to
      the data before the first one, so the bound it returns is in that scaled unit unless it is
      divided by 1/256 again. Our numbers say the same: LeNet-5 trained on the full training set
      gives a mean bound per pixel of 6.9e-6 in pixel units and 2.7e-8 in scaled units, against the
      published 7.3e-8 -- a factor 94 off in pixels, 2.7 in scaled units (docs/chapter5.md, the
      issue "Beyond the thesis, lower side"). So we compare
      ``normalized_theoretical_bound_per_pixel_scaled``; the pixel-unit column stays in the table.
    * ``normalized_empirical_bound``: **pixel units** ([0, 255]), per pixel. Recomputed from Table 5.2,
      whose epsilons are in pixel units, it is ``mean(eps * ||sign(grad)||_2) / (H * W)``: for
      CIFAR-NIN 5.783 * sqrt(3072) / 1024 = 0.313, the published 0.3129927 (the note on Table 5.1 in
      reference/paper_values.yaml). So we compare ``normalized_empirical_bound_per_pixel``.
    * ``rate``: a fraction of the test samples; it has no unit.

    Both published bounds were divided by H * W, not by C * H * W as the text says (the CIFAR-NIN
    check above); our per-input columns (C * H * W) are shown in the table, not compared.
    """
    return TableSpec(
        key="network", result_columns=("normalized_theoretical_bound", "normalized_empirical_bound", "rate"),
        aliases={"normalized_theoretical_bound_per_pixel_scaled": "normalized_theoretical_bound",
                 "normalized_empirical_bound_per_pixel": "normalized_empirical_bound"},
        units={"normalized_theoretical_bound": "the network's scaled input units (pixel value x 1/256), per pixel",
               "normalized_empirical_bound": "pixel units ([0, 255]), per pixel"})


TABLE_SPECS: dict[str, TableSpec] = {
    "table_3_1": TableSpec(
        key="no", result_columns=("mean", "median", "std"),
        setup_columns=("classifiers", "samples", "dim", "classes", "sample_interval", "param_interval"),
        aliases={"test": "no", "dimensionality": "dim"}),
    "table_4_2": TableSpec(
        key="no", result_columns=("mean", "median", "std"),
        setup_columns=("samples", "dim", "mlps", "layers", "units", "classes", "sample_interval", "param_interval"),
        aliases={"test": "no", "dimensionality": "dim"}),
    "table_4_3": TableSpec(key="dataset", result_columns=("mean", "median", "std", "min", "max")),
    "table_5_1": _table_5_1_spec(),
    "table_5_2": TableSpec(key="network", result_columns=("min", "max", "mean", "median", "std")),
    "table_5_3": TableSpec(key="network", result_columns=("accuracy", "min", "max", "mean", "median", "std", "rate")),
}


def compare_published_table(item: str, ctx: Context, variant: str = "") -> list[Comparison]:
    """The published table ``item`` against ours (``figures/<item>.csv``), with :data:`TABLE_SPECS`.

    ``variant``: judge instead the columns of a variant of our experiment, which our table names
    ``"<variant> <column>"`` (``Ref mean``: the same search with the reference M); none when our
    table has no such column."""
    spec = TABLE_SPECS[item]
    published = ctx.paper.get(spec.published_key or item)
    if not published or "rows" not in published:
        return [_not_compared(item, "table", None, None, "paper_values.yaml has no rows for this table", ctx)]
    tol = ctx.tol(spec.tolerance)
    relative = shown_file(item)
    ours = ctx.table(relative)
    if ours is None:
        return [_missing(item, "table", None, f"{relative} was not produced", ctx, tol.describe())]
    if variant:
        renamed = {c: c.removeprefix(f"{variant} ") for c in ours.columns if c.startswith(f"{variant} ")}
        if not renamed:
            return []
        ours = ours.drop(columns=[c for c in renamed.values() if c in ours.columns]).rename(columns=renamed)
    return compare_table(item, published, ours.to_dict("records"), tol, key=spec.key,
                         result_columns=spec.result_columns, setup_columns=spec.setup_columns,
                         aliases=spec.aliases, row_aliases=spec.row_aliases, reasons=ctx.known(item),
                         units=spec.compared_units())


def compare_table_4_1(ctx: Context) -> list[Comparison]:
    """Table 4.1: closed-form bounds on |g'| and |g''|; our table lists the values the bounds engine uses."""
    item = "table_4_1"
    published = ctx.paper.get(item, {})
    tol = ctx.tol("exact")
    ours = ctx.table(shown_file(item))
    if ours is None:
        return [_missing(item, "table", None, f"{shown_file(item)} was not produced", ctx, tol.describe())]
    records = {normalize_name(r.get("activation", r.get(ours.columns[0]))): {normalize_name(k): v for k, v in r.items()}
               for r in ours.to_dict("records")}
    out = []
    for activation, values in published.items():
        if not isinstance(values, Mapping):
            continue
        row = match_row(normalize_name(activation), records)
        for column, value in values.items():
            quantity = f"{activation} / {column}"
            if row is None:
                out.append(_missing(item, quantity, value, f"our table has no row {activation!r}", ctx, tol.describe()))
                continue
            candidates = list(_DERIVATIVE_ALIASES.get(normalize_name(column), (normalize_name(column),)))
            found = next((c for c in candidates if c in row), None)
            if found is None:
                out.append(_missing(item, quantity, value, f"our table has no column {column!r}", ctx, tol.describe()))
                continue
            out.append(compare_value(item, quantity, row[found], value, tol, reasons=ctx.known(item)))
    return out


#: our columns that hold an independently computed value (never a copy of the thesis's column),
#: in order of preference: the numeric maximum over a grid first, then a closed form
_DERIVATIVE_ALIASES = {
    "first": ("first_order_numeric", "first_order_analytic", "first_derivative_bound"),
    "second": ("second_order_numeric", "second_order_analytic", "second_derivative_bound"),
    "second_used_in_experiments": ("second_order_used", "second_used"),
}


# ------------------------------------------------------------------------------------------------
# Numbers stated in the text
# ------------------------------------------------------------------------------------------------


def _metrics(ctx: Context, model: str) -> tuple[ModelMetrics | None, str]:
    """The metrics JSON training wrote for ``model`` (None when it was not produced)."""
    relative = f"results/models/{model}.metrics.json"
    data = ctx.json(relative)
    return (None if data is None else ModelMetrics.from_dict(data, source=relative)), relative


def compare_section_4_3_2(ctx: Context) -> list[Comparison]:
    """The test accuracies Section 4.3.2 states, against our accuracy table (figures/section_4_3_2.csv)
    or, lacking it, each model's metrics.json."""
    item = "section_4_3_2"
    tol = ctx.tol("statistical")
    table = ctx.table(f"figures/{item}.csv")
    rows = {}
    if table is not None:
        cols = {normalize_name(c): c for c in table.columns}
        if "dataset" in cols and "test_accuracy" in cols:
            rows = {normalize_name(r[cols["dataset"]]): r[cols["test_accuracy"]] for r in table.to_dict("records")}
    out = []
    for dataset, spec in ctx.paper.get("trained_mlps", {}).items():
        quantity = f"{dataset} MLP test accuracy"
        published = spec.get("test_accuracy")
        value, source = rows.get(normalize_name(dataset)), f"figures/{item}.csv"
        if value is None:
            metrics, source = _metrics(ctx, f"mlp_{dataset}")
            value = metrics.test_accuracy if metrics else None
        if as_number(value) is None:
            out.append(_missing(item, quantity, published, f"neither figures/{item}.csv nor {source} holds it",
                                ctx, tol.describe()))
            continue
        out.append(compare_value(item, quantity, value, published, tol, reasons=ctx.known(item)))
    return out


def compare_section_5_3_1(ctx: Context) -> list[Comparison]:
    item = "section_5_3_1"
    stat, approx = ctx.tol("statistical"), ctx.tol("approximate")
    text = ctx.paper.get("section_5_3_1", {})
    lenet = ctx.paper.get("lenet5", {})
    out = []

    def accuracy_check(model, name, wording, published, tolerance, **mode):
        metrics, relative = _metrics(ctx, model)
        value = metrics.test_accuracy if metrics else None
        if value is None:
            return _missing(item, f"{name} test accuracy", published,
                            f"{relative} was not produced or has no test accuracy", ctx, tolerance.describe())
        return compare_value(item, f"{name} test accuracy (thesis: {wording})", value, published, tolerance,
                             reasons=ctx.known(item), **mode)

    out.append(accuracy_check("lenet5", "LeNet-5", "above", lenet.get("test_accuracy_above"), stat, mode="at_least"))
    out.append(accuracy_check("cifar_nin", "CIFAR-NIN", "about", text.get("cifar_nin_test_accuracy_about"), approx))

    attacks = ctx.table("results/attacks/lenet5.csv")
    if attacks is None:
        out.append(_missing(item, "LeNet-5 samples FGS did not flip", text.get("lenet5_unflipped_samples"),
                            "results/attacks/lenet5.csv was not produced", ctx, stat.describe()))
    else:
        flipped = attacks["flipped"].astype(bool)
        out.append(compare_value(item, "LeNet-5 samples FGS did not flip", int((~flipped).sum()),
                                 text.get("lenet5_unflipped_samples"), stat,
                                 reasons=[f"of {len(attacks)} test samples here, 10,000 in the thesis",
                                          *ctx.known(item)]))
        counts = attacks.loc[flipped, "adv_label"].astype(int).value_counts()
        for label, count in (text.get("lenet5_adversarial_target_counts") or {}).items():
            out.append(compare_value(item, f"LeNet-5 samples turned into \"{label}\"", int(counts.get(int(label), 0)),
                                     count, stat,
                                     reasons=[f"of {int(flipped.sum())} flipped samples here", *ctx.known(item)]))

    cifar = ctx.table("results/attacks/cifar_nin.csv")
    pairs = text.get("cifar_nin_common_confusions")
    if cifar is None:
        out.append(_missing(item, "CIFAR-NIN most common confusions", pairs,
                            "results/attacks/cifar_nin.csv was not produced", ctx))
    else:
        flipped = cifar[cifar["flipped"].astype(bool)]
        top = (flipped.groupby(["orig_label", "adv_label"]).size().sort_values(ascending=False, kind="stable")
               .head(3))
        ours = [[int(a), int(b), int(n)] for (a, b), n in top.items()]
        out.append(_not_compared(item, "CIFAR-NIN most common confusions (orig, adv, count)", pairs, ours,
                                 "a ranking, shown for reading; the thesis's class names are in the note", ctx))
    return out


def compare_table_5_2_extra(ctx: Context) -> list[Comparison]:
    """The smallest perturbation norms the thesis quotes beside Table 5.2."""
    item = "table_5_2"
    tol = ctx.tol("statistical")
    published = ctx.paper.get("table_5_2", {}).get("smallest_perturbation_l2_norm", {})
    relative = shown_file(item)
    ours = ctx.table(relative)
    out = []
    for dataset, network in (("mnist", "LeNet-5"), ("cifar10", "CIFAR-NIN")):
        quantity = f"{network} / smallest perturbation L2 norm"
        if dataset not in published:
            continue
        if ours is None or "min_perturbation_norm" not in ours.columns:
            out.append(_missing(item, quantity, published[dataset],
                                f"{relative} has no min_perturbation_norm column", ctx, tol.describe()))
            continue
        rows = ours[ours["network"].map(normalize_name) == normalize_name(network)]
        if rows.empty:
            out.append(_missing(item, quantity, published[dataset], f"{relative} has no row {network}",
                                ctx, tol.describe()))
            continue
        out.append(compare_value(item, quantity, rows["min_perturbation_norm"].iloc[0], published[dataset], tol,
                                 reasons=ctx.known(item)))
    return out


def compare_figure_5_9(ctx: Context) -> list[Comparison]:
    item = "figure_5_9"
    examples = ctx.paper.get("figure_5_9_examples") or []
    return [_not_compared(item, f"{orig} misclassified as {adv}", eps, None,
                          "an example of one trained network on one test image; our network and samples differ",
                          ctx) for orig, adv, eps in examples]


def _provenance_settings(ctx: Context, artifact: str) -> Mapping[str, Any] | None:
    record = ctx.json(f"results/provenance/{artifact}.json")
    if record is None:
        return None
    return (record.get("params") or {}).get("settings") or {}


def _find_setting(settings: Any, name: str) -> Any:
    """A key anywhere in a (nested) settings mapping; None when absent."""
    if isinstance(settings, Mapping):
        if name in settings:
            return settings[name]
        for value in settings.values():
            found = _find_setting(value, name)
            if found is not None:
                return found
    return None


def compare_figure_parameters(item: str, ctx: Context, names: Sequence[str]) -> list[Comparison]:
    """A figure drawn from a formula: its parameters, as the job that drew it received them
    (read from the provenance record), against the thesis's."""
    published = ctx.paper.get(item, {})
    tol = ctx.tol("exact")
    image = shown_file(item)
    settings = _provenance_settings(ctx, image)
    out = []
    for name in names:
        if name not in published:
            continue
        if settings is None:
            out.append(_missing(item, f"parameter {name}", published[name],
                                f"results/provenance/{image}.json was not written", ctx, tol.describe()))
            continue
        value = _find_setting(settings, name)
        if value is None:
            out.append(_missing(item, f"parameter {name}", published[name],
                                f"the job that drew {image} received no setting {name!r}", ctx,
                                tol.describe()))
            continue
        out.append(compare_value(item, f"parameter {name}", value, published[name], tol, reasons=ctx.known(item)))
    return out


def compare_figure_curve_values(item: str, ctx: Context, data_file: str, x_column: str, y_column: str,
                                points: Mapping[str, Any], tolerance_class: str = "exact", what: str = "curve",
                                reasons: Sequence[str] = ()) -> list[Comparison]:
    """Values the thesis reads off a curve (``{"n4": 1.524}``: the curve at x = 4), against the
    column ``y_column`` of the figure's data file. A point beyond the range this run's config draws
    is ``not compared`` (said so), not ``missing``."""
    tol = ctx.tol(tolerance_class)
    data = ctx.table(data_file)
    out = []
    for name, value in points.items():
        x = as_number(str(name).lstrip("nNlL"))
        quantity = f"{what} at {x_column} = {x:g}" if x is not None else f"{what} {name}"
        if data is None:
            out.append(_missing(item, quantity, value, f"{data_file} was not produced", ctx, tol.describe()))
            continue
        if y_column not in data.columns or x_column not in data.columns:
            out.append(_missing(item, quantity, value, f"{data_file} has no columns {x_column!r} and {y_column!r}",
                                ctx, tol.describe()))
            continue
        rows = data[data[x_column].astype(float) == x]
        if rows.empty or rows[y_column].isna().all():
            out.append(_not_compared(item, quantity, value, None,
                                     f"this run's {data_file} has no {y_column} at {x_column} = {x:g} "
                                     f"(its config draws {x_column} up to {data[x_column].max():g})", ctx))
            continue
        out.append(compare_value(item, quantity, float(rows[y_column].iloc[0]), value, tol,
                                 reasons=[*reasons, *ctx.known(item)]))
    return out


def compare_figure_5_12(ctx: Context) -> list[Comparison]:
    item = "figure_5_12"
    points = ctx.paper.get(item, {}).get("values", {})
    data = BY_KEY[item].data_files[0]
    out = compare_figure_parameters(item, ctx, ("epsilon",))
    out += compare_figure_curve_values(item, ctx, data, "n", "analytic_gain", points, "exact", "(1 - epsilon)^-n")
    out += compare_figure_curve_values(
        item, ctx, data, "n", "ratio_median", points, "approximate", "measured bound ratio (median)",
        reasons=["the thesis's numbers are the analytic curve, which assumes the other layers' kappas do not "
                 "change; the measured ratio recomputes every kappa of our scaled network"])
    return out


def compare_figure_5_13(ctx: Context) -> list[Comparison]:
    return compare_figure_parameters("figure_5_13", ctx, ("alpha", "delta", "kappa_L"))


def compare_figure_4_3(ctx: Context) -> list[Comparison]:
    item = "figure_4_3"
    published = ctx.paper.get(item, {}).get("spambase_min_accuracy_about")
    tol = ctx.tol("approximate")
    data_file = BY_KEY[item].data_files[0]
    data = ctx.table(data_file)
    quantity = "Spambase lowest accuracy over the regularization sweep (thesis: about)"
    if data is None:
        return [_missing(item, quantity, published, f"{data_file} was not produced", ctx, tol.describe())]
    cols = {normalize_name(c): c for c in data.columns}
    if "dataset" not in cols or "accuracy" not in cols:
        return [_missing(item, quantity, published, f"{data_file} has no dataset / accuracy columns", ctx,
                         tol.describe())]
    rows = data[data[cols["dataset"]].map(normalize_name) == "spambase"]
    if rows.empty:
        return [_missing(item, quantity, published, f"{data_file} has no Spambase rows", ctx, tol.describe())]
    return [compare_value(item, quantity, float(rows[cols["accuracy"]].min()), published, tol,
                          reasons=ctx.known(item))]


def _published_table_comparer(item: str) -> Callable[[Context], list[Comparison]]:
    return lambda ctx: compare_published_table(item, ctx)


#: item key -> its comparer: every table of :data:`TABLE_SPECS` is compared cell by cell, and the
#: items below add (or are) their own comparisons
COMPARERS: dict[str, Callable[[Context], list[Comparison]]] = {
    **{item: _published_table_comparer(item) for item in TABLE_SPECS},
    "table_4_1": compare_table_4_1,
    "section_4_3_2": compare_section_4_3_2,
    "figure_4_3": compare_figure_4_3,
    "section_5_3_1": compare_section_5_3_1,
    "figure_5_9": compare_figure_5_9,
    "table_5_2": lambda ctx: compare_published_table("table_5_2", ctx) + compare_table_5_2_extra(ctx),
    "figure_5_12": compare_figure_5_12,
    "figure_5_13": compare_figure_5_13,
}


def compare_item(key: str, ctx: Context) -> list[Comparison]:
    """The comparisons of one item; an item without published numbers has none. An error while
    comparing is itself reported (a ``missing`` row naming it), never swallowed silently."""
    comparer = COMPARERS.get(key)
    if comparer is None:
        return []
    try:
        return comparer(ctx)
    except Exception as error:  # noqa: BLE001 - shown in the report, and the report job logs it
        return [Comparison(key, "comparison", None, None, MISSING,
                           reasons=[f"comparing failed: {type(error).__name__}: {error}"])]


def nan_to_none(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value
