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


def _plt():
    import matplotlib.pyplot as plt

    return plt


def figure_2_1(curves: pd.DataFrame):
    """Activation functions (left) with their first (middle) and second (right) derivatives."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), sharex=True)
    for ax, (order, label) in zip(axes, ORDER_LABELS.items()):
        part = curves[curves["order"] == order]
        for name, group in part.groupby("activation", sort=False):
            ax.plot(group["x"], group["value"], label=name, linewidth=1.6)
        ax.set_title(label)
        ax.set_xlabel("x")
        ax.axhline(0, color="0.6", linewidth=0.6)
    axes[0].legend(loc="upper left")
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
        ax.set_ylim(min(lowest, 0.0) - 0.1 * float(symlog), top)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    if hue is not None and ax.get_legend() is not None:
        ax.legend(title=None, fontsize=8)
    fig.tight_layout()
    return fig


def figure_4_3(frame: pd.DataFrame, dataset_names: Mapping[str, str]):
    """Section 4.4 sweep: top row accuracy and FGS/FGV adversarial error rates against l, bottom row
    the median minimal perturbation norms (FGS, FGV) and the mean bound; one column per data set."""
    plt = _plt()
    datasets = list(dict.fromkeys(frame["dataset"]))
    fig, axes = plt.subplots(2, len(datasets), figsize=(4.2 * len(datasets), 6.4), squeeze=False, sharex="col")
    for col, dataset in enumerate(datasets):
        part = frame[frame["dataset"] == dataset].sort_values("ell")
        ells = part["ell"].to_numpy()
        top, bottom = axes[0, col], axes[1, col]
        top.plot(ells, part["accuracy"], "o-", label="accuracy")
        top.plot(ells, part["fgs_error_rate"], "s--", label="error rate (FGS)")
        top.plot(ells, part["fgv_error_rate"], "^--", label="error rate (FGV)")
        top.set_ylim(-0.03, 1.03)
        top.set_title(dataset_names.get(dataset, dataset))
        bottom.plot(ells, part["fgs_norm_median"], "s-", label="FGS median norm")
        bottom.plot(ells, part["fgv_norm_median"], "^-", label="FGV median norm")
        bottom.plot(ells, part["bound_mean"], "o:", label="mean bound (Thm 4.2)")
        bottom.set_xlabel(r"regularization $\ell$")
        for ax in (top, bottom):
            if len(ells) and ells.min() >= 0 and ells.max() > 0:
                positive = ells[ells > 0]
                ax.set_xscale("symlog", linthresh=float(positive.min()) if len(positive) else 1.0)
    axes[0, 0].set_ylabel("fraction of the data set")
    axes[1, 0].set_ylabel(r"$\|r\|_2$")
    axes[0, 0].legend(fontsize=8)
    axes[1, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig
