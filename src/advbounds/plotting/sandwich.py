"""Figure ``sandwich_<name>``: every lower bound and attack of one experiment, per sample."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from advbounds.experiments.sandwich import CHAIN, attack_columns  # noqa: E402

#: how each quantity is drawn: label, colour, line style; lower bounds dashed, attacks solid
STYLE = {
    "bound_thesis": ("thesis bound (Alg. 5.1)", "tab:gray", "--"),
    "bound_corrected": ("sound bound (corrected rules)", "tab:green", "--"),
    "radius_certified": ("certified radius (verifier)", "tab:blue", "--"),
    "exact_min": ("exact minimum", "black", "-"),
    "best_attack": ("best attack", "tab:red", "-"),
    "attack_fgs": ("FGS", "tab:orange", "-"),
}


def sandwich_figure(frame: pd.DataFrame, title: str, labels: Mapping[str, str] | None = None) -> plt.Figure:
    """Samples sorted by their best attack on the x axis; each quantity a curve on a log y axis.
    Samples where a quantity is missing (no flip, not certified) leave a gap in its curve.
    ``labels``: legend labels that replace ``STYLE``'s (the thesis bound of a linear classifier is
    Lemma 3.5's, not Algorithm 5.1's)."""
    order = frame.sort_values("best_attack", na_position="last").reset_index(drop=True)
    x = np.arange(len(order))
    fig, ax = plt.subplots(figsize=(9.0, 4.2), constrained_layout=True)
    columns = [c for c in CHAIN if c in order] + [c for c in attack_columns(order) if c not in CHAIN]
    for column in columns:
        values = order[column].where(order[column] > 0)
        if values.notna().sum() == 0:
            continue
        label, colour, style = STYLE.get(column, (column.removeprefix("attack_"), None, ":"))
        label = (labels or {}).get(column, label)
        ax.plot(x, values, style, color=colour, label=label, lw=1.6 if column in STYLE else 0.9,
                alpha=1.0 if column in STYLE else 0.7)
    ax.set_yscale("log")
    ax.set_xlabel("test samples, sorted by the best attack's norm")
    ax.set_ylabel("L2 norm (input units)")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    # outside the axes: the curves fill the whole height
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return fig
