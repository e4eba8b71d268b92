"""Chapters 3-4 experiments: advbounds.experiments.{stacked, deviations, linear, activations, mlp}
and advbounds.plotting.chapters34."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from advbounds.attacks import exact_minimal_perturbation_linear, minimal_epsilon_search
from advbounds.bounds import ACTIVATION_DERIVATIVE_BOUNDS, linear_output_bound
from advbounds.experiments import activations, linear, mlp, mlp_summary
from advbounds.experiments.deviations import count_violations, derive_seed, format_interval, summarize
from advbounds.experiments.stacked import StackedMLP, draw_random_test, stacked_search
from advbounds.settings import SearchSettings, TrainingSettings


ATTACK = SearchSettings(eps_max=100.0, tol=1e-7)


def linear_spec(**overrides):
    spec = {"classifiers": 4, "samples": 5, "dim": 3, "classes": 4, "sample_interval": [-1, 1],
            "param_interval": [-1, 1]}
    return {**spec, **overrides}


def mlp_spec(**overrides):
    spec = {"samples": 4, "dim": 2, "mlps": 3, "hidden": [6, 6], "classes": 3, "sample_interval": [-1, 1],
            "param_interval": [-1, 1]}
    return {**spec, **overrides}


def blobs(n_per_class=40, dim=4, n_classes=3, seed=0):
    """Gaussian blobs split 70/20/10 like the UCI data sets (standardized-ish scale)."""
    g = torch.Generator().manual_seed(seed)
    centers = 2.0 * torch.randn(n_classes, dim, generator=g)
    x = torch.cat([centers[c] + 0.6 * torch.randn(n_per_class, dim, generator=g) for c in range(n_classes)])
    y = torch.arange(n_classes).repeat_interleave(n_per_class)
    perm = torch.randperm(len(x), generator=g)
    x, y = x[perm], y[perm]
    a, b = int(0.7 * len(x)), int(0.9 * len(x))
    return {"x_train": x[:a], "y_train": y[:a], "x_test": x[a:b], "y_test": y[a:b], "x_val": x[b:], "y_val": y[b:],
            "classes": [str(c) for c in range(n_classes)], "meta": {}}


# ------------------------------------------------------------------------------------------------
# stacked evaluation
# ------------------------------------------------------------------------------------------------


def test_stacked_mlp_matches_each_model():
    models, x = draw_random_test(n_models=5, n_samples=7, dim=3, n_classes=4, hidden=[8, 5],
                                 sample_interval=[-1, 1], param_interval=[-1, 1], seed=3)
    stacked = StackedMLP(models, 7)
    expected = torch.cat([m(xs) for m, xs in zip(models, x)])
    torch.testing.assert_close(stacked(x.reshape(-1, 3)), expected, rtol=1e-12, atol=1e-12)


def test_stacked_mlp_refuses_other_batch_shapes():
    models, x = draw_random_test(n_models=2, n_samples=3, dim=2, n_classes=3, hidden=[4],
                                 sample_interval=[-1, 1], param_interval=[-1, 1], seed=0)
    with pytest.raises(ValueError, match="needs input"):
        StackedMLP(models, 3)(x.reshape(-1, 2)[:5])


def test_stacked_search_equals_per_model_search():
    models, x = draw_random_test(n_models=4, n_samples=6, dim=3, n_classes=4, hidden=[6, 6],
                                 sample_interval=[-1, 1], param_interval=[-1, 1], seed=11)
    batched = stacked_search(models, x, SearchSettings(method="fgs", eps_max=20.0, tol=1e-8))
    single = [minimal_epsilon_search(m, xs, SearchSettings(method="fgs", eps_max=20.0, tol=1e-8)) for m, xs in zip(models, x)]
    for field in ("eps", "perturbation_norm"):
        expected = torch.cat([getattr(r, field) for r in single])
        torch.testing.assert_close(getattr(batched, field), expected, rtol=1e-9, atol=1e-12, equal_nan=True)
    assert torch.equal(batched.flipped, torch.cat([r.flipped for r in single]))


# ------------------------------------------------------------------------------------------------
# shared helpers
# ------------------------------------------------------------------------------------------------


def test_derive_seed_is_stable_and_separates_keys():
    assert derive_seed(2017, 3, 1) == derive_seed(2017, 3, 1)
    seeds = {derive_seed(2017, 3, k) for k in range(1, 6)} | {derive_seed(2017, 4, "iris"), derive_seed(2017, 4, "wine")}
    assert len(seeds) == 7
    assert all(0 <= s < 2**31 for s in seeds)


def test_summarize_and_violations():
    stats = summarize([1.0, 2.0, 3.0, 10.0, math.nan])
    assert stats == {"mean": 4.0, "median": 2.5, "std": pytest.approx(np.std([1, 2, 3, 10], ddof=1)), "min": 1.0,
                     "max": 10.0}
    assert all(math.isnan(v) for v in summarize([math.nan]).values())
    # unflipped samples (NaN norm) are not violations; a norm below the bound by more than atol is
    assert count_violations([1.0, math.nan, 0.5, 0.9999999999], [0.9, 5.0, 0.6, 1.0], atol=1e-9) == 1
    assert format_interval([-1, 1]) == "[-1, 1]" and format_interval([-0.5, 2.0]) == "[-0.5, 2]"


def test_draw_random_test_is_reproducible_and_in_range():
    a_models, a_x = draw_random_test(n_models=3, n_samples=4, dim=2, n_classes=3, hidden=[],
                                     sample_interval=[-10, 10], param_interval=[-2, 2], seed=5)
    b_models, b_x = draw_random_test(n_models=3, n_samples=4, dim=2, n_classes=3, hidden=[],
                                     sample_interval=[-10, 10], param_interval=[-2, 2], seed=5)
    assert torch.equal(a_x, b_x) and a_x.dtype == torch.float64
    assert a_x.abs().max() <= 10
    for ma, mb in zip(a_models, b_models):
        assert torch.equal(ma[0].weight, mb[0].weight)
        assert ma[0].weight.abs().max() <= 2


# ------------------------------------------------------------------------------------------------
# Chapter 3
# ------------------------------------------------------------------------------------------------


def test_linear_test_frame_columns_and_invariants():
    frame = linear.linear_test_frame(linear_spec(), number=2, seed=7, attack=ATTACK)
    assert list(frame.columns) == list(linear.SAMPLE_COLUMNS)
    assert len(frame) == 20 and (frame["test"] == 2).all()
    assert frame["fgs_flipped"].all()
    # Lemma 3.5 and the search: bound <= exact <= FGS (FGS reports a verified flipping epsilon)
    assert (frame["exact_minus_bound"] >= -1e-9).all()
    assert (frame["fgs_minus_exact"] >= -1e-9).all()
    assert (frame["deviation"] >= 0).all()


def test_linear_bound_is_the_exact_minimal_perturbation():
    """For a linear classifier the cell of f(x) is an intersection of half-spaces, so the distance to
    its complement is the smallest distance to one of the pairwise hyperplanes: delta(x; f) of
    eq. 3.12 equals Delta_adv(x; f) (tight for every classifier, not only Theorem 3.7's example)."""
    frame = linear.linear_test_frame(linear_spec(classes=7, dim=2, classifiers=6), number=1, seed=1, attack=ATTACK)
    np.testing.assert_allclose(frame["exact_norm"], frame["bound"], rtol=1e-9, atol=1e-12)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), dim=st.integers(1, 6), classes=st.integers(2, 8))
def test_exact_never_below_bound_and_fgs_never_below_exact(seed, dim, classes):
    models, x = draw_random_test(n_models=1, n_samples=8, dim=dim, n_classes=classes, hidden=[],
                                 sample_interval=[-3, 3], param_interval=[-1, 1], seed=seed)
    layer = models[0][0]
    bound = linear_output_bound(layer.weight, layer.bias, x[0])
    exact = exact_minimal_perturbation_linear(layer.weight, layer.bias, x[0]).norm
    fgs = minimal_epsilon_search(models[0], x[0], SearchSettings(method="fgs", eps_max=1e3, tol=1e-9))
    assert torch.all(exact >= bound - 1e-9 * (1 + bound))
    flipped = fgs.flipped
    assert torch.all(fgs.perturbation_norm[flipped] >= exact[flipped] - 1e-7)


def test_table_3_1_counts_violations_and_flips():
    spec = linear_spec()
    frame = linear.linear_test_frame(spec, number=1, seed=3, attack=ATTACK)
    table = linear.table_3_1([spec], [frame], atol=1e-9, optimal_rtol=1e-4)
    assert list(table.columns) == list(linear.TABLE_3_1_COLUMNS)
    row = table.iloc[0]
    assert row["Violations"] == 0 and row["Exact violations"] == 0
    assert row["Flipped"] == "20/20"
    assert row["Mean"] == pytest.approx(frame["deviation"].mean())
    # a violation is counted (the table can fail the sanity test)
    broken = frame.copy()
    broken.loc[0, "fgs_norm"] = broken.loc[0, "bound"] - 1e-3
    assert linear.table_3_1([spec], [broken], atol=1e-9, optimal_rtol=1e-4).iloc[0]["Violations"] == 1
    # an unflipped sample is reported, not hidden
    broken.loc[1, ["fgs_flipped", "fgs_norm", "deviation"]] = [False, math.nan, math.nan]
    assert linear.table_3_1([spec], [broken], atol=1e-9, optimal_rtol=1e-4).iloc[0]["Flipped"] == "19/20"
    with pytest.raises(ValueError):
        linear.table_3_1([spec, spec], [frame], atol=1e-9, optimal_rtol=1e-4)


def test_deviations_long_has_both_kinds():
    frame = linear.linear_test_frame(linear_spec(), number=4, seed=3, attack=ATTACK)
    long = linear.deviations_long([frame])
    assert set(long["kind"]) == {"FGS - bound", "exact - bound"}
    assert len(long) == 2 * len(frame)


def test_figure_3_1_example_geometry():
    example = linear.figure_3_1_example(sample_interval=[-1, 1], param_interval=[-1, 1],
                                        attack=SearchSettings(eps_max=100.0, tol=1e-10), seed=4)
    w, b, x, r, q = (np.asarray(example[k]) for k in ("w", "b", "x", "r", "q"))
    assert w @ (x + r) + b == pytest.approx(0.0, abs=1e-12)  # x + r lies on the decision line (eq. 3.7)
    assert np.linalg.norm(r) == pytest.approx(example["r_norm"])
    assert example["bound"] == pytest.approx(example["r_norm"], rel=1e-12)  # Lemma 3.1 is an equality
    assert example["q_norm"] >= example["r_norm"] - 1e-9  # any adversarial perturbation is longer
    assert np.sign(w @ (x + q) + b) != np.sign(example["margin"])  # q flips the label


# ------------------------------------------------------------------------------------------------
# Table 4.1 / Figure 2.1
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "softplus", "relu"])
def test_numeric_derivative_bounds_match_the_analytic_suprema(name):
    numeric = activations.numeric_derivative_bounds(name, -20.0, 20.0, 40001)
    first, second = activations.ANALYTIC_BOUNDS[name]
    assert numeric["first"] == pytest.approx(first, abs=1e-7)
    assert numeric["second"] == pytest.approx(second, abs=1e-9)


def test_table_4_1_flags_the_printed_tanh_entry():
    settings_ = {"names": ["sigmoid", "tanh", "softplus", "relu"], "grid": {"low": -20, "high": 20, "points": 20001}}
    table = activations.table_4_1(settings_, ACTIVATION_DERIVATIVE_BOUNDS, relu_second_derivative=1.0)
    assert list(table.columns) == list(activations.TABLE_4_1_COLUMNS)
    assert activations.mismatches(table, "Thesis - numeric", 1e-6) == ["tanh"]
    tanh = table.set_index("Activation").loc["tanh"]
    assert tanh["Second-order (numeric)"] == pytest.approx(2 * tanh["Second-order (thesis)"], rel=1e-9)
    relu = table.set_index("Activation").loc["ReLU"]
    assert relu["Second-order (used)"] == 1.0 and relu["Second-order (numeric)"] == 0.0
    # the bounds engine never under-estimates a derivative bound (M would be too small)
    assert (table["Used - numeric"] >= -1e-6).all()


def test_activation_curves():
    curves = activations.activation_curves(["tanh", "relu"], -2, 2, 5)
    assert len(curves) == 2 * 3 * 5
    tanh1 = curves[(curves["activation"] == "tanh") & (curves["order"] == 1)]["value"].to_numpy()
    np.testing.assert_allclose(tanh1, 1 - np.tanh(np.linspace(-2, 2, 5)) ** 2)


# ------------------------------------------------------------------------------------------------
# Chapter 4
# ------------------------------------------------------------------------------------------------


def test_random_mlp_test_frame_and_table_4_2():
    spec = mlp_spec()
    frame = mlp.random_mlp_test_frame(spec, number=3, seed=5, activation="tanh", attack=SearchSettings(eps_max=10.0, tol=1e-6),
                                      reference_attack=SearchSettings(eps_max=1.0, tol=1e-6))
    assert list(frame.columns) == list(mlp_summary.RANDOM_SAMPLE_COLUMNS) + list(mlp_summary.REFERENCE_COLUMNS)
    assert len(frame) == 12 and frame["M"].gt(0).all()
    flipped = frame["fgs_flipped"]
    assert (frame.loc[flipped, "deviation"] >= 0).all()
    # the reference search has M = 1: every epsilon it reports is within it, and its bound is the same
    assert (frame.loc[frame["ref_flipped"], "ref_eps"] <= 1.0).all()
    assert (frame.loc[frame["ref_flipped"], "ref_deviation"] >= 0).all()
    table = mlp_summary.table_4_2([spec], [frame], atol=1e-9)
    assert list(table.columns) == list(mlp_summary.TABLE_4_2_COLUMNS)
    row = table.iloc[0]
    assert row["Violations"] == 0 and row["Layers"] == 2 and row["Units"] == 6
    assert row["Flipped"] == f"{int(flipped.sum())}/12"
    averages = mlp_summary.mlp_average_deviations(frame)
    assert set(averages.columns) == {"test", "mlp", "kind", "mean_deviation"}
    assert set(averages["kind"]) <= {mlp_summary.KIND_SEARCH, mlp_summary.KIND_REFERENCE}


def test_random_mlp_eps_max_override():
    spec = mlp_spec(eps_max=1e-6)
    frame = mlp.random_mlp_test_frame(spec, number=1, seed=5, activation="tanh", attack=SearchSettings(eps_max=10.0, tol=1e-9))
    assert not frame["fgs_flipped"].any()  # nothing flips within 1e-6: reported, not hidden
    table = mlp_summary.table_4_2([spec], [frame], atol=1e-9)
    assert table.iloc[0]["Flipped"] == "0/12" and math.isnan(table.iloc[0]["Mean"])


@pytest.fixture(scope="module")
def trained_blobs():
    data = blobs()
    model, kwargs, metrics = mlp.train_mlp(data, hidden=[5, 3], activation="tanh",
                                           training=TrainingSettings(optimizer="adam", lr=0.02, batch_size=16,
                                                                     iterations=150, seed=mlp.model_seed(1, "blobs")),
                                           device="cpu")
    return data, model, metrics, kwargs


def test_train_mlp_and_accuracy_table(trained_blobs):
    data, model, metrics, kwargs = trained_blobs
    assert kwargs == {"in_dim": 4, "hidden": [5, 3], "n_classes": 3, "activation": "tanh"}
    assert metrics.test_accuracy > 0.8
    assert metrics.details["n_test"] == len(data["x_test"]) and metrics.details["n_val"] == len(data["x_val"])
    table = mlp_summary.accuracy_table({"iris": metrics}, {"iris": [5, 3]})
    assert list(table.columns) == list(mlp_summary.ACCURACY_COLUMNS)
    assert table.iloc[0]["Dataset"] == "Iris" and table.iloc[0]["Hidden"] == "(5, 3)"
    assert 0 <= table.iloc[0]["Test accuracy"] <= 1


def test_trained_mlp_frame_and_table_4_3(trained_blobs):
    data, model, _, _ = trained_blobs
    frame = mlp.trained_mlp_frame(model, data, dataset="wine", split="test", attack=SearchSettings(eps_max=100.0, tol=1e-6),
                                  reference_attack=SearchSettings(eps_max=1.0, tol=1e-6))
    assert len(frame) == len(data["x_test"])
    assert (frame["true_label"].to_numpy() == data["y_test"].numpy()).all()
    assert (frame.loc[frame["fgs_flipped"], "deviation"] >= 0).all()
    table = mlp_summary.table_4_3({"wine": frame}, atol=1e-9)
    assert list(table.columns) == list(mlp_summary.TABLE_4_3_COLUMNS)
    assert table.iloc[0]["Dataset"] == "Wine" and table.iloc[0]["Violations"] == 0


def test_split_data_all_concatenates_every_split():
    data = blobs()
    x, y = mlp.split_data(data, "all")
    assert len(x) == len(data["x_train"]) + len(data["x_val"]) + len(data["x_test"])
    with pytest.raises(KeyError):
        mlp.split_data({"x_train": data["x_train"], "y_train": data["y_train"]}, "test")


def test_regularization_point_at_zero_retrains_the_plain_model(trained_blobs):
    data, _, metrics, _ = trained_blobs
    training = TrainingSettings(optimizer="adam", lr=0.02, batch_size=16, iterations=150,
                                seed=mlp.model_seed(1, "blobs"))
    point = mlp.regularization_point(data, dataset="iris", ell=0.0, hidden=[5, 3], activation="tanh", training=training,
                                     attack=SearchSettings(eps_max=1.0, tol=1e-3))
    assert set(point) == set(mlp_summary.REGULARIZATION_COLUMNS)
    assert point["test_accuracy"] == metrics.test_accuracy
    for key in ("accuracy", "fgs_error_rate", "fgv_error_rate"):
        assert 0.0 <= point[key] <= 1.0
    assert point["samples"] == 120
    frame = mlp_summary.regularization_frame([point, {**point, "ell": -1.0}])
    assert list(frame["ell"]) == [-1.0, 0.0]


# ------------------------------------------------------------------------------------------------
# plotting
# ------------------------------------------------------------------------------------------------


def test_figures_render(tmp_path):
    from advbounds.artifacts import save_figure, use_style
    from advbounds.plotting import chapters34

    use_style()
    example = linear.figure_3_1_example(sample_interval=[-1, 1], param_interval=[-1, 1],
                                        attack=SearchSettings(eps_max=100.0, tol=1e-9), seed=2)
    save_figure(chapters34.figure_3_1(example), [tmp_path / "f31.png"])
    curves = activations.activation_curves(["sigmoid", "tanh"], -3, 3, 31)
    save_figure(chapters34.figure_2_1(curves), [tmp_path / "f21.png"])
    frame = pd.DataFrame({"test": [1, 1, 2, 2], "value": [0.1, 0.2, 0.3, 0.5]})
    save_figure(chapters34.deviation_boxplots(frame, x="test", y="value", xlabel="t", ylabel="v"), [tmp_path / "box.pdf"])
    sweep = pd.DataFrame({"dataset": ["iris"] * 3, "ell": [0.0, 0.1, 1.0], "accuracy": [1.0, 0.9, 0.3],
                          "fgs_error_rate": [0.9, 0.5, 0.0], "fgv_error_rate": [0.95, 0.5, 0.0],
                          "fgs_norm_median": [0.5, 0.7, math.nan], "fgv_norm_median": [0.4, 0.6, math.nan],
                          "bound_mean": [0.1, 0.2, 1.0]})
    save_figure(chapters34.figure_4_3(sweep, mlp_summary.DATASET_NAMES), [tmp_path / "f43.png"])
    assert all((tmp_path / name).stat().st_size > 0 for name in ("f31.png", "f21.png", "box.pdf", "f43.png"))


def test_the_chapter_4_tables_import_without_torch():
    """mlp_summary (and the deviation statistics it uses) only summarise frames: no torch there."""
    code = "import sys, advbounds.experiments.mlp_summary; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
