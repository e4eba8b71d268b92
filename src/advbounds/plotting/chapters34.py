"""Figures of Chapters 2-4: Figure 2.1 (activation functions), Figure 3.1 (minimal perturbation of a
binary linear classifier), Figure 3.2 (deviations, linear classifiers), Figure 4.1 (per-MLP average
deviations, random MLPs), Figure 4.2 (deviations, trained MLPs) and Figure 4.3 (regularization sweep).

Every function takes plain data (frames or dicts from ``advbounds.experiments``) and returns a
matplotlib figure; ``advbounds.artifacts.save_figure`` writes it. Call ``advbounds.artifacts.use_style``
first (the scripts do).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

ORDER_LABELS = {0: "g(x)", 1: "g'(x)", 2: "g''(x)"}
#: Figure 2.1's base font size in points (titles one larger, tick labels and legend one smaller)
FIGURE_2_1_FONTSIZE = 13


def plain_number(value: float) -> str:
    """A tick label in one plain decimal format (``0``, ``0.25``, ``10``, ``1000``): never mixed
    with ``10^k`` labels on the same axis."""
    value = float(value)
    if value == 0:
        return "0"
    if abs(value) >= 1e6 or abs(value) < 1e-6:
        return f"{value:.0e}"
    return np.format_float_positional(value, precision=6, unique=True, trim="-")


def symlog_ticks(lo: float, hi: float, linthresh: float, *,
                 quarters: bool = True) -> tuple[list[float], list[float]]:
    """Major and minor ticks of a symmetric-log axis spanning ``[lo, hi]``, linear within
    ``+-linthresh``: the linear region gets majors at quarters of ``linthresh`` (0, 0.25, 0.5, 0.75, 1
    for ``linthresh = 1``; only 0 and +-linthresh with ``quarters=False``), the log region majors at
    the decades ``linthresh * 10^k`` and minors at 2..9 times each decade."""
    lt = float(linthresh)
    steps = (-1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0) if quarters else (-1.0, 0.0, 1.0)
    linear = [q * lt for q in steps]
    majors = [t for t in linear if lo - 1e-12 * lt <= t <= hi + 1e-12 * lt]
    minors: list[float] = []
    for sign in (1.0, -1.0):
        extent = hi if sign > 0 else -lo
        decade = lt
        while decade * 10 <= extent * (1 + 1e-12):
            decade *= 10
            majors.append(sign * decade)
        decade = lt
        while decade <= extent:
            minors += [sign * k * decade for k in range(2, 10) if k * decade <= extent]
            decade *= 10
    return sorted(set(majors)), sorted(set(minors))


def _symlog_axis(axis, lo: float, hi: float, linthresh: float, *, quarters: bool = True) -> None:
    """Fixed ticks (:func:`symlog_ticks`) labelled with :func:`plain_number` on a symlog ``axis``."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    majors, minors = symlog_ticks(lo, hi, linthresh, quarters=quarters)
    axis.set_major_locator(FixedLocator(majors))
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: plain_number(v)))
    axis.set_minor_locator(FixedLocator(minors))
    axis.set_minor_formatter(NullFormatter())


def _plt():
    import matplotlib.pyplot as plt

    return plt


def figure_2_1(curves: pd.DataFrame):
    """Activation functions (left) with their first (middle) and second (right) derivatives."""
    plt = _plt()
    # the report shows the PNG at about 850 px wide: a compact canvas with large fonts keeps the
    # text readable there (a 12-inch canvas shrank the default fonts to ~5 px)
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.2), sharex=True)
    for ax, (order, label) in zip(axes, ORDER_LABELS.items()):
        part = curves[curves["order"] == order]
        for name, group in part.groupby("activation", sort=False):
            ax.plot(group["x"], group["value"], label=name, linewidth=1.8)
        ax.set_title(label, fontsize=FIGURE_2_1_FONTSIZE + 1)
        ax.set_xlabel("x", fontsize=FIGURE_2_1_FONTSIZE)
        ax.tick_params(labelsize=FIGURE_2_1_FONTSIZE - 1)
        ax.axhline(0, color="0.6", linewidth=0.6)
    axes[0].legend(loc="upper left", fontsize=FIGURE_2_1_FONTSIZE - 1)
    fig.tight_layout()
    return fig


def figure_3_1(example: Mapping[str, Any]):
    """The decision line ``w . x + b = 0`` of a binary linear classifier, an input ``x``, its minimal
    adversarial perturbation ``r`` (orthogonal projection, eq. 3.7) and an FGS perturbation ``q``
    with ``||q|| >= ||r||`` (Lemma 3.1), drawn from a computed example."""
    plt = _plt()
    w = np.asarray(example["w"], dtype=float)
    b = float(example["b"])
    x = np.asarray(example["x"], dtype=float)
    r = np.asarray(example["r"], dtype=float)
    q = np.asarray(example["q"], dtype=float)
    points = np.stack([x, x + r, x + q])
    center = points.mean(axis=0)
    half = max(1.2 * np.abs(points - center).max(), 0.5)
    lo, hi = center - half, center + half
    fig, ax = plt.subplots(figsize=(5.2, 5.2))
    grid_x, grid_y = np.meshgrid(np.linspace(lo[0], hi[0], 300), np.linspace(lo[1], hi[1], 300))
    side = (w[0] * grid_x + w[1] * grid_y + b) >= 0
    ax.contourf(grid_x, grid_y, side.astype(float), levels=[-0.5, 0.5, 1.5], colors=["#dbe9f6", "#fde0c5"], alpha=0.8)
    # the decision line: a point on it and its direction (perpendicular to w)
    foot = -b * w / float(w @ w)
    direction = np.array([-w[1], w[0]]) / np.linalg.norm(w)
    t = np.linspace(-4 * half - np.linalg.norm(foot - center), 4 * half + np.linalg.norm(foot - center), 2)
    line = foot[None, :] + t[:, None] * direction[None, :]
    ax.plot(line[:, 0], line[:, 1], color="k", linewidth=1.2, label=r"$w\cdot x + b = 0$")
    arrow = dict(arrowstyle="-|>", linewidth=1.6, mutation_scale=14)
    ax.annotate("", xy=x + r, xytext=x, arrowprops={**arrow, "color": "tab:red"})
    ax.annotate("", xy=x + q, xytext=x, arrowprops={**arrow, "color": "tab:blue", "linestyle": "--"})
    wn = w / np.linalg.norm(w) * 0.35 * half
    ax.annotate("", xy=foot + wn, xytext=foot, arrowprops={**arrow, "color": "0.3"})
    ax.text(*(foot + wn), r"  $w$", color="0.3", va="center")
    ax.plot(*x, "ko", markersize=5)
    ax.text(*x, r"  $x$", va="bottom")
    ax.plot([], [], color="tab:red", label=rf"minimal $r$ (eq. 3.7): $\|r\| = {example['r_norm']:.3f}$")
    ax.plot([], [], color="tab:blue", linestyle="--", label=rf"FGS $q$: $\|q\| = {example['q_norm']:.3f}$")
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_aspect("equal")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.legend(loc="lower left", fontsize=8, framealpha=0.9)
    ax.set_title(f"f(x) = {example['label']}; the other class lies across the line", fontsize=9)
    fig.tight_layout()
    return fig


def deviation_boxplots(frame: pd.DataFrame, *, x: str, y: str, hue: str | None = None, xlabel: str,
                       ylabel: str, order: Sequence[Any] | None = None, title: str = "",
                       symlog: float | None = None):
    """Boxplots of ``y`` grouped by ``x`` (optionally split by ``hue``), outliers shown. ``symlog``: a
    symmetric-log y axis, linear below that value (for heavy-tailed deviations)."""
    import seaborn as sns

    plt = _plt()
    n_groups = frame[x].nunique() if len(frame) else 1
    fig, ax = plt.subplots(figsize=(max(4.5, 1.1 * n_groups + 2), 3.8))
    if len(frame):
        sns.boxplot(data=frame, x=x, y=y, hue=hue, order=order, ax=ax, fliersize=2, linewidth=1)
    ax.axhline(0, color="tab:red", linewidth=0.8, linestyle=":")
    if symlog:
        ax.set_yscale("symlog", linthresh=float(symlog))
        # no empty negative decade; a negative value (a violation) still stays in view
        lowest = float(np.nanmin(frame[y])) if len(frame) else 0.0
        highest = float(np.nanmax(frame[y])) if len(frame) else float(symlog)
        top = highest * 1.6 if highest > float(symlog) else float(symlog) * 1.1
        bottom = min(lowest, 0.0) - 0.1 * float(symlog)
        ax.set_ylim(bottom, top)
        _symlog_axis(ax.yaxis, bottom, top, float(symlog))
        ax.tick_params(axis="y", which="minor", left=True, length=2, width=0.6)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    if hue is not None and ax.get_legend() is not None:
        ax.legend(title=None, fontsize=8)
    fig.tight_layout()
    return fig


#: Figure 4.3's series: (column, marker style, legend label, why a point can be absent)
FIGURE_4_3_TOP = (
    ("accuracy", "o-", "accuracy", "no data"),
    ("fgs_error_rate", "s--", "error rate (FGS)", "no data"),
    ("fgv_error_rate", "^--", "error rate (FGV)", "no data"),
)
FIGURE_4_3_BOTTOM = (
    ("fgs_norm_median", "s-", "FGS median norm", "no sample flipped"),
    ("fgv_norm_median", "^-", "FGV median norm", "no sample flipped"),
    ("bound_mean", "o:", "mean bound (Thm 4.2)", "no finite bound"),
)


def _mark_missing(ax, ells: np.ndarray, part: pd.DataFrame, series) -> list[str]:
    """Where a series has no value (NaN: e.g. a median norm when FGS flipped no sample), draw a
    hollow marker of its colour just above the bottom edge (one height per series, so that they do
    not hide each other) and return one note per series, e.g.
    ``"FGS median norm: no sample flipped at l = 1"``."""
    notes = []
    for k, ((column, style, label, why), line) in enumerate(zip(series, list(ax.get_lines())[:len(series)])):
        values = part[column].to_numpy(dtype=float)
        gone = ells[~np.isfinite(values)]
        if not len(gone):
            continue
        ax.plot(gone, np.full(len(gone), 0.04 + 0.06 * k), linestyle="none", marker=style[0], markersize=7,
                markerfacecolor="none", markeredgecolor=line.get_color(), markeredgewidth=1.4, clip_on=False,
                transform=ax.get_xaxis_transform(), zorder=4)
        notes.append(f"{label}: {why} at $\\ell$ = {', '.join(plain_number(v) for v in gone)}")
    return notes


def figure_4_3(frame: pd.DataFrame, dataset_names: Mapping[str, str]):
    """Section 4.4 sweep: top row accuracy and FGS/FGV adversarial error rates against l, bottom row
    the median minimal perturbation norms (FGS, FGV) and the mean bound; one column per data set.

    The x axis is linear from 0 to the smallest positive l and logarithmic above, with plain
    decimal tick labels (0, 0.01, 0.1, 1). A value the sweep could not compute (a median norm when
    no sample flipped) is a hollow marker on the bottom edge, explained in a note in the panel."""
    plt = _plt()
    datasets = list(dict.fromkeys(frame["dataset"]))
    fig, axes = plt.subplots(2, len(datasets), figsize=(4.2 * len(datasets), 6.4), squeeze=False, sharex="col")
    for col, dataset in enumerate(datasets):
        part = frame[frame["dataset"] == dataset].sort_values("ell")
        ells = part["ell"].to_numpy(dtype=float)
        top, bottom = axes[0, col], axes[1, col]
        for column, style, label, _why in FIGURE_4_3_TOP:
            top.plot(ells, part[column], style, label=label)
        top.set_ylim(-0.03, 1.03)
        top.set_title(dataset_names.get(dataset, dataset))
        for column, style, label, _why in FIGURE_4_3_BOTTOM:
            bottom.plot(ells, part[column], style, label=label)
        bottom.set_xlabel(r"regularization $\ell$")
        notes = _mark_missing(top, ells, part, FIGURE_4_3_TOP) + _mark_missing(bottom, ells, part, FIGURE_4_3_BOTTOM)
        if notes:  # below the x label, so that it hides no data
            bottom.annotate("hollow marker = no point:\n" + "\n".join(notes), xy=(0.0, 0.0), xycoords="axes fraction",
                            xytext=(0, -38), textcoords="offset points", ha="left", va="top", fontsize=8,
                            color="0.25")
        if len(ells) and ells.min() >= 0 and ells.max() > 0:
            positive = ells[ells > 0]
            linthresh = float(positive.min()) if len(positive) else 1.0
            for ax in (top, bottom):
                ax.set_xscale("symlog", linthresh=linthresh)
            span = float(ells.max())
            bottom.set_xlim(-0.05 * linthresh, span * (1.25 if span > linthresh else 1.05))
            _symlog_axis(bottom.xaxis, 0.0, span * 1.25, linthresh, quarters=False)
    axes[0, 0].set_ylabel("fraction of the data set")
    axes[1, 0].set_ylabel(r"$\|r\|_2$")
    axes[0, 0].legend(fontsize=8)
    axes[1, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig
