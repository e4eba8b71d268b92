"""The figure functions of advbounds.plotting: what a reader sees (legends, bands, tick labels,
colour-bar labels, font sizes, notes), checked on the returned matplotlib figures built from small
frames. No smoke run needed."""

from __future__ import annotations

import math
import re

import matplotlib

matplotlib.use("Agg", force=True)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402

from advbounds.plotting import chapter5, chapters34  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _texts(fig) -> list[str]:
    """Every text drawn on the figure (titles, annotations, legend entries, notes)."""
    return [t.get_text() for t in fig.findobj(matplotlib.text.Text)]


def _tick_labels(axis) -> list[str]:
    fig = axis.axes.figure
    fig.canvas.draw()
    return [t.get_text() for t in axis.get_ticklabels() if t.get_text()]


def _legend_texts(ax) -> list[str]:
    legend = ax.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend else []


# ------------------------------------------------------------------------------------------------
# Figure 5.12
# ------------------------------------------------------------------------------------------------


def _kernel_scaling(max_n: int = 6, convs: int = 2):
    rng = np.random.default_rng(0)
    analytic = pd.DataFrame({"n": np.arange(max_n + 1), "gain": 0.9 ** -np.arange(max_n + 1)})
    measured = pd.DataFrame([{"n": n, "sample": s, "ratio": 0.9 ** -n * (1 + 0.05 * n * rng.standard_normal())}
                             for n in range(convs + 1) for s in range(20)])
    return chapter5.kernel_scaling_figure(analytic, measured, epsilon=0.1, network="LeNet-5")


def test_figure_5_12_draws_the_iqr_band_its_legend_announces() -> None:
    fig = _kernel_scaling()
    ax = fig.axes[0]
    labels = _legend_texts(ax)
    assert any("IQR" in text for text in labels)
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 1
    # the band spans the quartiles: its vertices reach above the median at n = 2
    vertices = bands[0].get_paths()[0].vertices
    assert vertices[:, 0].max() == 2 and np.ptp(vertices[vertices[:, 0] == 2, 1]) > 0


def test_figure_5_12_explains_why_the_measured_points_stop() -> None:
    text = " ".join(_texts(_kernel_scaling(max_n=6, convs=2)))
    assert "LeNet-5 has 2 convolution layers" in text and "beyond $n$ = 2" in text
    # no note when the measured points cover the whole curve
    assert "convolution layer" not in " ".join(_texts(_kernel_scaling(max_n=2, convs=2)))


# ------------------------------------------------------------------------------------------------
# Figure 5.13
# ------------------------------------------------------------------------------------------------


def test_mathtext_rewrites_plain_symbol_names_only_outside_math() -> None:
    assert chapter5.mathtext("(alpha = 0.01, delta = 0.1, kappa_L = 2)") == \
        r"($\alpha$ = 0.01, $\delta$ = 0.1, $\kappa_L$ = 2)"
    assert chapter5.mathtext(r"$\alpha$ and alphabet") == r"$\alpha$ and alphabet"


def test_figure_5_13_legend_uses_mathtext_throughout() -> None:
    analytic = pd.DataFrame({"L": [1, 2, 3], "gain": [1.1, 1.3, 1.6]})
    fitted = pd.DataFrame({"L": [1, 2, 3], "gain": [1.05, 1.2, 1.4]})
    summary = pd.DataFrame({"L": [1, 2], "gain_median": [1.1, 1.2], "gain_q1": [1.05, 1.1], "gain_q3": [1.2, 1.3],
                            "layer": ["ip1", "pool2"]})
    fig = chapter5.layer_gain_figure(analytic, summary, fitted=fitted, network="LeNet-5",
                                     parameters="(alpha = 0.01, delta = 0.1, kappa_L = 2)")
    labels = _legend_texts(fig.axes[0])
    assert len(labels) == 3
    for label in labels:
        outside = "".join(re.split(r"\$[^$]*\$", label))  # the text outside $...$
        assert not re.search(r"alpha|delta|kappa", outside), label
    assert any(r"$\alpha$" in label and r"$\kappa_L$" in label for label in labels)


# ------------------------------------------------------------------------------------------------
# Figure 4.1 (deviation boxplots on a symlog axis)
# ------------------------------------------------------------------------------------------------


def test_symlog_ticks_fill_the_linear_region() -> None:
    majors, minors = chapters34.symlog_ticks(-0.1, 160.0, 1.0)
    assert majors == [0.0, 0.25, 0.5, 0.75, 1.0, 10.0, 100.0]
    assert 2.0 in minors and 90.0 in minors and 0.5 not in minors and 200.0 not in minors
    majors, _ = chapters34.symlog_ticks(0.0, 5.0, 0.01, quarters=False)
    assert majors == [0.0, 0.01, 0.1, 1.0]


def test_figure_4_1_symlog_axis_has_ticks_between_0_and_1() -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"test": np.repeat([1, 2, 3], 10), "kind": np.tile(["a", "b"], 15),
                          "mean_deviation": np.abs(rng.standard_normal(30)) * 50})
    fig = chapters34.deviation_boxplots(frame, x="test", y="mean_deviation", hue="kind", xlabel="test",
                                        ylabel="deviation", symlog=1.0)
    ax = fig.axes[0]
    labels = _tick_labels(ax.yaxis)
    assert {"0", "0.25", "0.5", "0.75", "1"} <= set(labels)
    assert not any("10^" in label for label in labels)  # one plain format


# ------------------------------------------------------------------------------------------------
# Figure 4.3
# ------------------------------------------------------------------------------------------------


def _sweep(ells, fgs_median) -> pd.DataFrame:
    rows = []
    for ell, median in zip(ells, fgs_median):
        rows.append({"dataset": "iris", "ell": ell, "accuracy": 0.9, "fgs_error_rate": 0.5, "fgv_error_rate": 0.4,
                     "fgs_norm_median": median, "fgv_norm_median": 0.3, "bound_mean": 0.1})
    return pd.DataFrame(rows)


def test_plain_number_is_one_decimal_format() -> None:
    assert [chapters34.plain_number(v) for v in (0, 0.01, 0.25, 1, 10, 1000)] == \
        ["0", "0.01", "0.25", "1", "10", "1000"]


def test_figure_4_3_tick_labels_are_consistent() -> None:
    fig = chapters34.figure_4_3(_sweep([0.0, 1.0], [0.2, 0.3]), {"iris": "Iris"})
    labels = _tick_labels(fig.axes[1].xaxis)  # the bottom panel carries the x labels
    assert labels == ["0", "1"]
    fig = chapters34.figure_4_3(_sweep([0.0, 0.01, 0.1, 1.0, 3.0], [0.2] * 5), {"iris": "Iris"})
    labels = _tick_labels(fig.axes[1].xaxis)
    assert labels == ["0", "0.01", "0.1", "1"]
    assert not any("10^" in label or "$" in label for label in labels)


def test_figure_4_3_explains_missing_points() -> None:
    fig = chapters34.figure_4_3(_sweep([0.0, 0.5, 1.0], [0.2, math.nan, math.nan]), {"iris": "Iris"})
    text = " ".join(_texts(fig))
    assert "no sample flipped" in text and "0.5, 1" in text
    bottom = fig.axes[1]
    hollow = [line for line in bottom.get_lines() if line.get_markerfacecolor() == "none"]
    assert len(hollow) == 1 and list(hollow[0].get_xdata()) == [0.5, 1.0]
    # nothing to explain: no note
    fig = chapters34.figure_4_3(_sweep([0.0, 1.0], [0.2, 0.3]), {"iris": "Iris"})
    assert "no sample flipped" not in " ".join(_texts(fig))


# ------------------------------------------------------------------------------------------------
# Figure 5.10, Figure 2.5, Figure 2.1
# ------------------------------------------------------------------------------------------------


def test_figure_5_10_colorbars_are_labelled() -> None:
    counts = np.array([[5, 1, 0], [2, 4, 1], [0, 3, 6]])
    fig = chapter5.transition_heatmaps({"LeNet-5": (counts, ["0", "1", "2"]), "CIFAR-NIN": (counts, ["a", "b", "c"])})
    colorbars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(colorbars) == 2
    for cbar in colorbars:
        assert cbar.get_ylabel() == chapter5.TRANSITION_COLORBAR_LABEL
        assert "count" in cbar.get_ylabel()


def test_number_format_is_one_format_per_figure() -> None:
    fixed = chapter5.number_format([0.0312, 5.0, 412.7])
    assert [fixed(v) for v in (0.0312, 5.0, 412.7)] == ["0.0312", "5.0000", "412.7000"]
    sci = chapter5.number_format([3e-5, 2.0])
    assert [sci(v) for v in (3e-5, 2.0)] == ["3.00e-05", "2.00e+00"]


def test_figure_2_5_prints_every_number_in_one_format() -> None:
    rng = np.random.default_rng(2)
    images = [rng.uniform(0, 255, (1, 4, 4)) for _ in range(4)]
    # magnitudes that "%.3g" printed as 1.2e-05, 0.5 and 312: three formats in one figure
    perturbations = [np.full((1, 4, 4), v) for v in (78.0, 3e-6, 0.125, 80.0)]
    fig = chapter5.iterative_figure(images, perturbations, [0, 0, 1, 1], [1.2e-5, 0.5, 312.0], ["a", "b"])
    numbers = [m for text in _texts(fig) for m in re.findall(r"= (\S+)", text)]
    assert len(numbers) == 4 + 3
    kinds = {"sci" if "e" in n else "fixed" for n in numbers}
    assert len(kinds) == 1
    assert len({len(n.split(".")[-1]) for n in numbers}) == 1  # the same number of decimals


def test_figure_2_1_fonts_are_readable_in_the_report() -> None:
    x = np.linspace(-3, 3, 20)
    curves = pd.concat([pd.DataFrame({"activation": name, "order": order, "x": x, "value": np.tanh(x) * (order + 1)})
                        for name in ("sigm", "tanh") for order in (0, 1, 2)])
    fig = chapters34.figure_2_1(curves)
    width = fig.get_size_inches()[0]
    assert width <= 9.5
    # the report shows the PNG ~800 px wide: a font of `size` points is size / 72 * 800 / width px
    # there; the tick labels must stay >= 12 px (the old 12-inch canvas gave ~9 px)
    for ax in fig.axes:
        size = ax.xaxis.get_ticklabels()[0].get_fontsize()
        assert size / 72 * 800 / width >= 12, size
        assert ax.title.get_fontsize() >= 13
    assert all(t.get_fontsize() >= 11 for t in fig.axes[0].get_legend().get_texts())
