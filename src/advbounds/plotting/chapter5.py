"""Figures of Chapter 5 (and Figure 2.5): matplotlib/seaborn figures built from plain arrays and
data frames. Every function returns a ``matplotlib.figure.Figure``; saving is
``advbounds.artifacts.save_figure``'s job. Call ``advbounds.artifacts.use_style()`` first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch


def _image(x: torch.Tensor | np.ndarray) -> tuple[np.ndarray, dict]:
    """One ``[C, H, W]`` image in pixel units -> (array for imshow, imshow kwargs). Values are
    clipped to [0, 255] for display only."""
    a = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=float)
    if a.ndim == 3 and a.shape[0] == 1:
        return np.clip(a[0], 0, 255), {"cmap": "gray", "vmin": 0, "vmax": 255}
    if a.ndim == 3:
        return np.clip(a.transpose(1, 2, 0), 0, 255) / 255.0, {}
    return np.clip(a, 0, 255), {"cmap": "gray", "vmin": 0, "vmax": 255}


def _perturbation_image(r: torch.Tensor | np.ndarray) -> tuple[np.ndarray, dict]:
    """A perturbation ``[C, H, W]`` rescaled to its own max |value| for display (grey = 0)."""
    a = np.asarray(r.detach().cpu() if isinstance(r, torch.Tensor) else r, dtype=float)
    scale = float(np.abs(a).max()) or 1.0
    if a.shape[0] == 1:
        return a[0] / scale, {"cmap": "RdBu_r", "vmin": -1, "vmax": 1}
    return np.clip(0.5 + 0.5 * a.transpose(1, 2, 0) / scale, 0, 1), {}


def _off(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def dataset_samples(x: torch.Tensor, y: torch.Tensor, classes: Sequence[str], *, per_class: int = 1,
                    seed: int = 0, title: str | None = None):
    """Figures 5.1 and 5.3: ``per_class`` random samples of each class (a seeded choice), one
    column per class."""
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    y_np = np.asarray(y)
    present = [c for c in range(len(classes)) if (y_np == c).any()]
    fig, axes = plt.subplots(per_class, len(present), figsize=(1.1 * len(present), 1.2 * per_class + 0.3),
                             squeeze=False)
    for col, c in enumerate(present):
        idx = rng.choice(np.flatnonzero(y_np == c), size=min(per_class, int((y_np == c).sum())), replace=False)
        for row in range(per_class):
            ax = axes[row, col]
            _off(ax)
            if row < len(idx):
                img, kw = _image(x[idx[row]])
                ax.imshow(img, **kw)
            if row == 0:
                ax.set_title(str(classes[c]), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def adversarial_grid(originals, adversarials, perturbations, orig_labels, adv_labels, eps,
                     classes: Sequence[str], *, title: str | None = None):
    """Figures 5.8 and 5.9: one column per example; rows: original image (its predicted class),
    the FGS perturbation (rescaled), the adversarial image (its class and epsilon)."""
    import matplotlib.pyplot as plt

    n = len(originals)
    if n == 0:
        fig, ax = plt.subplots(figsize=(4, 1.5))
        _off(ax)
        ax.text(0.5, 0.5, "no flipped samples", ha="center", va="center")
        return fig
    fig, axes = plt.subplots(3, n, figsize=(1.6 * n, 5.2), squeeze=False)
    for j in range(n):
        for row, (img, kw) in enumerate((_image(originals[j]), _perturbation_image(perturbations[j]),
                                         _image(adversarials[j]))):
            ax = axes[row, j]
            _off(ax)
            ax.imshow(img, **kw)
        axes[0, j].set_title(f"{classes[int(orig_labels[j])]}", fontsize=8)
        axes[2, j].set_title(f"{classes[int(adv_labels[j])]}\n$\\varepsilon$ = {float(eps[j]):.3g}", fontsize=8)
    axes[0, 0].set_ylabel("original", fontsize=8)
    axes[1, 0].set_ylabel("perturbation\n(rescaled)", fontsize=8)
    axes[2, 0].set_ylabel("adversarial", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


#: Figure 5.10's colour-bar label (the diagonal is greyed out of the scale)
TRANSITION_COLORBAR_LABEL = "count of samples (off-diagonal)"


def transition_heatmaps(panels: Mapping[str, tuple[np.ndarray, Sequence[str]]]):
    """Figure 5.10: per network, counts of original class (rows) against adversarial class
    (columns). The diagonal (samples FGS did not flip) is greyed out of the colour scale and
    annotated, as the thesis ignores it in its discussion."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 4.6), squeeze=False)
    for ax, (letter, (name, (counts, classes))) in zip(axes[0], zip("abcdefgh", panels.items())):
        counts = np.asarray(counts)
        mask = np.eye(len(counts), dtype=bool)
        labels = [str(c) for c in classes]
        sns.heatmap(pd.DataFrame(counts, index=labels, columns=labels), mask=mask, ax=ax, cmap="viridis",
                    annot=len(counts) <= 10, fmt="d", annot_kws={"fontsize": 6}, cbar=True, square=True,
                    linewidths=0.3, linecolor="white", cbar_kws={"label": TRANSITION_COLORBAR_LABEL})
        for i in range(len(counts)):
            ax.add_patch(plt.Rectangle((i, i), 1, 1, fill=True, color="0.85", zorder=2))
            ax.text(i + 0.5, i + 0.5, str(int(counts[i, i])), ha="center", va="center", fontsize=6,
                    color="0.3", zorder=3)
        ax.set_xlabel("adversarial class")
        ax.set_ylabel("original class")
        ax.set_title(f"({letter}) {name}")
    fig.tight_layout()
    return fig


def epsilon_boxplots(panels: Mapping[str, np.ndarray]):
    """Figure 5.11: boxplots of the FGS epsilon of the flipped samples, one panel per network."""
    import matplotlib.pyplot as plt

    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 4.0), squeeze=False)
    for ax, (letter, (name, eps)) in zip(axes[0], zip("abcdefgh", panels.items())):
        eps = np.asarray(eps, dtype=float)
        eps = eps[np.isfinite(eps)]
        if len(eps):
            ax.boxplot(eps, widths=0.5, showfliers=True, flierprops={"markersize": 2, "alpha": 0.4})
        ax.set_xticks([1])
        ax.set_xticklabels([name])
        ax.set_ylabel(r"$\varepsilon$ (pixel units)")
        ax.set_title(f"({letter}) {name}, n = {len(eps)}")
    fig.tight_layout()
    return fig


def kernel_scaling_figure(analytic: pd.DataFrame, measured: pd.DataFrame | None, *, epsilon: float,
                          network: str = "LeNet-5"):
    """Figure 5.12: ``(1 - epsilon)^-n`` against the number ``n`` of scaled kernels, with the
    measured ratio of the recomputed bound of a trained network: its median per ``n`` (markers) and
    interquartile range (a shaded band).

    The network has only so many convolutions (LeNet-5: two), so the measured points stop at that
    ``n`` while the analytic curve runs to ``max_n``; the figure says so in a note."""
    import matplotlib.pyplot as plt
    from matplotlib.legend_handler import HandlerTuple

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    handles, labels = [], []
    (curve,) = ax.plot(analytic["n"], analytic["gain"], "-o", ms=3)
    handles.append(curve)
    labels.append(rf"$(1-\varepsilon)^{{-n}}$, $\varepsilon$ = {epsilon:g}")
    if measured is not None and len(measured):
        summary = measured.groupby("n")["ratio"].quantile([0.25, 0.5, 0.75]).unstack()
        n = summary.index.to_numpy(dtype=float)
        band = ax.fill_between(n, summary[0.25], summary[0.75], color="C3", alpha=0.25, linewidth=0.8,
                               edgecolor="C3", zorder=1)
        (median,) = ax.plot(n, summary[0.5], "s", color="C3", ms=5, zorder=3)
        handles.append((band, median))
        labels.append(f"{network}: recomputed bound ratio (median, IQR band)")
        measured_max = int(summary.index.max())
        curve_max = int(analytic["n"].max()) if len(analytic) else measured_max
        if measured_max < curve_max:
            ax.axvline(measured_max, color="C3", linewidth=0.8, linestyle=":", zorder=0)
            layers = f"{measured_max} convolution layer{'s' if measured_max != 1 else ''}"
            ax.text(measured_max, 0.04, f"  {network} has {layers}:\n  no kernels left to scale beyond $n$ = "
                    f"{measured_max}", transform=ax.get_xaxis_transform(), ha="left", va="bottom", fontsize=8,
                    color="C3")
    ax.set_xlabel("number of scaled convolution kernels $n$")
    ax.set_ylabel(r"relative robustness increase $\kappa_1'/\kappa_1$")
    ax.legend(handles, labels, fontsize=8, handler_map={tuple: HandlerTuple(ndivide=None, pad=0)})
    fig.tight_layout()
    return fig


#: plain parameter names -> mathtext, for legend text such as ``"alpha = 0.01, kappa_L = 2"``
_MATH_NAMES = (("kappa_L", r"$\kappa_L$"), ("kappa_l", r"$\kappa_l$"), ("alpha", r"$\alpha$"),
               ("delta", r"$\delta$"), ("epsilon", r"$\varepsilon$"))


def mathtext(text: str) -> str:
    """``text`` with the plain Greek parameter names (``alpha``, ``delta``, ``kappa_L``, ...) written
    as mathtext symbols; anything already between ``$`` signs is left alone."""
    import re

    pieces = re.split(r"(\$[^$]*\$)", text)
    for i, piece in enumerate(pieces):
        if piece.startswith("$") and piece.endswith("$") and len(piece) > 1:
            continue
        for plain, math in _MATH_NAMES:
            piece = re.sub(rf"(?<![A-Za-z\\]){plain}(?![A-Za-z])", lambda _m, math=math: math, piece)
        pieces[i] = piece
    return "".join(pieces)


def layer_gain_figure(analytic: pd.DataFrame, measured_summary: pd.DataFrame | None, *,
                      fitted: pd.DataFrame | None = None, network: str = "LeNet-5", parameters: str = ""):
    """Figure 5.13: Eq. (5.13)'s relative increase against the number of layers L (log scale),
    with the same quantity computed from a trained network's per-layer kappas. Every symbol in the
    legend is mathtext (``parameters`` may name them in plain text: ``"(alpha = 0.01, ...)"``)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.8, 3.9))
    ax.semilogy(analytic["L"], analytic["gain"], "-o", ms=3, label=mathtext(f"analytic {parameters}".strip()))
    if fitted is not None and len(fitted):
        ax.semilogy(fitted["L"], fitted["gain"], "--", color="C2",
                    label=f"analytic, {network}'s median $\\alpha$ and $\\kappa_L$")
    if measured_summary is not None and len(measured_summary):
        m = measured_summary
        ax.errorbar(m["L"], m["gain_median"], yerr=[m["gain_median"] - m["gain_q1"], m["gain_q3"] - m["gain_median"]],
                    fmt="s", color="C3", capsize=3, label=f"{network}: $1+\\delta\\sum 1/\\kappa_l$ (median, IQR)")
        if "layer" in m:
            for L, gain, layer in zip(m["L"], m["gain_median"], m["layer"]):
                ax.annotate(f"+{layer}", (L, gain), textcoords="offset points", xytext=(6, -10), fontsize=6,
                            color="C3")
    ax.set_xlabel("number of layers $L$")
    ax.set_ylabel(r"relative robustness increase $\kappa_1'/\kappa_1$")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def number_format(values: Sequence[float]):
    """One number format for every value of a figure: fixed-point with enough decimals for three
    significant digits of the smallest non-zero magnitude when all magnitudes lie in [0.01, 10^5),
    else scientific with two decimals (``1.23e-04``) for all of them. Returns ``value -> str``."""
    magnitudes = [abs(float(v)) for v in values if np.isfinite(float(v)) and float(v) != 0.0]
    if not magnitudes:
        return lambda v: f"{float(v):.2f}"
    smallest, largest = min(magnitudes), max(magnitudes)
    if smallest >= 0.01 and largest < 1e5:
        decimals = max(0, 2 - int(np.floor(np.log10(smallest))))
        return lambda v: f"{float(v):.{decimals}f}"
    return lambda v: f"{float(v):.2e}"


def iterative_figure(images, perturbations, labels, eps, classes: Sequence[str], *, title: str | None = None):
    """Figure 2.5: top row X_0..X_n with their predicted class, bottom row the perturbations
    (the first one is X_n - X_0, then X_i - X_{i-1}), each rescaled to its own range. Every epsilon
    and norm is printed in one format (:func:`number_format`)."""
    import matplotlib.pyplot as plt

    n = len(images)
    norms = [float(np.linalg.norm(np.asarray(perturbations[i], dtype=float))) for i in range(n)]
    eps_values = [float(eps[i - 1]) for i in range(1, n)]
    number = number_format(norms + eps_values)
    fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 4.3), squeeze=False)
    for i in range(n):
        img, kw = _image(images[i])
        axes[0, i].imshow(img, **kw)
        _off(axes[0, i])
        label = classes[int(labels[i])] if int(labels[i]) < len(classes) else str(int(labels[i]))
        axes[0, i].set_title(f"$X_{i}$: {label}", fontsize=8)
        pimg, pkw = _perturbation_image(perturbations[i])
        axes[1, i].imshow(pimg, **pkw)
        _off(axes[1, i])
        caption = f"$X_{n - 1}-X_0$" if i == 0 else f"$\\varepsilon$ = {number(eps_values[i - 1])}"
        axes[1, i].set_title(f"{caption}\n$\\|\\cdot\\|$ = {number(norms[i])}", fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


__all__ = [
    "adversarial_grid",
    "mathtext",
    "number_format",
    "dataset_samples",
    "epsilon_boxplots",
    "iterative_figure",
    "kernel_scaling_figure",
    "layer_gain_figure",
    "transition_heatmaps",
]
