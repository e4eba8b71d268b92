"""Chapter 5 experiment logic (advbounds.experiments.cnn), its figures (advbounds.plotting.chapter5)
and the Caffe "inv" learning-rate policy it added to advbounds.training."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from advbounds import training
from advbounds.experiments import cnn, cnn_summary
from advbounds.frames import BOUND_COLUMNS
from advbounds.models import build_model
from advbounds.settings import SearchSettings, TrainingSettings

CPU = torch.device("cpu")
ATTACK = SearchSettings(method="fgs", eps_max=100.0, tol=1e-4, clip=None, loss_label="predicted",
                        search="bisection", batch_size=64)


def digits(n: int = 96, seed: int = 0, size: int = 28, channels: int = 1, n_classes: int = 4) -> dict:
    """Images in [0, 255] whose class is which quadrant is bright, plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % n_classes
    x = torch.rand(n, channels, size, size, generator=g) * 60
    h = size // 2
    for i, c in enumerate(y.tolist()):
        r, s = divmod(c, 2)
        x[i, :, r * h:(r + 1) * h, s * h:(s + 1) * h] += 180
    split = int(0.75 * n)
    return {"x_train": x[:split], "y_train": y[:split], "x_val": x[:0], "y_val": y[:0],
            "x_test": x[split:], "y_test": y[split:], "classes": [f"c{i}" for i in range(n_classes)]}


TINY_LENET = {"conv_channels": [4, 6], "hidden": 16}
TRAIN = TrainingSettings(optimizer="adam", lr=0.003, batch_size=16, iterations=60)


@pytest.fixture(scope="module")
def trained_lenet():
    data = digits()
    model, kwargs, metrics = cnn.train_cnn("lenet5", data, TINY_LENET, TRAIN.replace(seed=3), device=CPU,
                                           progress=False)
    return model, data, kwargs, metrics


# ------------------------------------------------------------------------------------------------
# Caffe's "inv" learning-rate policy (added to advbounds.training for the LeNet-5 solver)
# ------------------------------------------------------------------------------------------------


def test_inv_policy_matches_caffe_formula():
    s = TrainingSettings(iterations=10, lr=0.01, lr_policy="inv", lr_gamma=1e-4, lr_power=0.75)
    for it in (0, 1, 500, 9999):
        assert training._lr_at(s, it) == pytest.approx(0.01 * (1 + 1e-4 * it) ** -0.75, rel=1e-12)
    # lenet_solver.prototxt's rate after 10,000 iterations is 0.01 * 2^-0.75 (to 4 digits)
    assert training._lr_at(s, 10000) == pytest.approx(0.005946, abs=1e-6)
    # the default stays the multistep policy, unaffected
    plain = TrainingSettings(iterations=10, lr=0.1)
    assert plain.lr_policy == "multistep" and training._lr_at(plain, 9) == 0.1


@pytest.mark.parametrize("bad", [
    {"lr_policy": "inv", "lr_power": 0.75},  # gamma left at the multistep default
    {"lr_policy": "inv", "lr_gamma": 1e-4},  # no power
    {"lr_policy": "inv", "lr_gamma": 1e-4, "lr_power": 0.75, "lr_milestones": [5]},
    {"lr_policy": "exp"},
])
def test_inv_policy_needs_explicit_gamma_and_power(bad):
    with pytest.raises(ValueError):
        TrainingSettings.from_config({"iterations": 10, **bad})


def test_training_uses_the_inv_rate(monkeypatch):
    seen = []
    original = training._lr_at
    monkeypatch.setattr(training, "_lr_at", lambda s, i: seen.append(original(s, i)) or seen[-1])
    data = digits(32)
    model = build_model("lenet5", seed=0, **cnn.model_kwargs(data, TINY_LENET))
    settings = TrainingSettings(optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4, lr_policy="inv",
                                lr_gamma=0.1, lr_power=0.75, batch_size=8, iterations=5)
    training.train_classifier(model, data, settings, CPU, progress=False)
    assert seen == pytest.approx([0.01 * (1 + 0.1 * i) ** -0.75 for i in range(5)])


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------


def test_model_kwargs_reads_geometry_from_the_data():
    data = digits(8, size=32, channels=3)
    assert cnn.model_kwargs(data, {"width": 0.1}) == {"in_channels": 3, "image_size": 32, "n_classes": 4, "width": 0.1}
    with pytest.raises(ValueError, match="contradicts"):
        cnn.model_kwargs(data, {"in_channels": 1})
    assert cnn.image_shape(data) == (3, 32, 32)


def test_train_cnn_learns_and_reports(trained_lenet):
    model, data, kwargs, metrics = trained_lenet
    assert kwargs == {"in_channels": 1, "image_size": 28, "n_classes": 4, **TINY_LENET}
    assert metrics.test_accuracy >= 0.9 and metrics.iterations == 60
    assert metrics.details["builder"] == "lenet5"
    assert metrics.details["n_parameters"] == sum(p.numel() for p in model.parameters())
    # same seed -> same weights
    again, _, _ = cnn.train_cnn("lenet5", data, TINY_LENET, TRAIN.replace(seed=3), device=CPU, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_train_cnn_builds_a_tiny_nin():
    data = digits(32, size=8, channels=3)
    model, kwargs, metrics = cnn.train_cnn("cifar_nin", data, {"width": 0.05, "dropout": 0.5},
                                           TRAIN.replace(iterations=3, seed=0), device=CPU, progress=False)
    assert kwargs["image_size"] == 8 and model(data["x_test"][:2]).shape == (2, 4)
    assert 0 <= metrics.test_accuracy <= 1


# ------------------------------------------------------------------------------------------------
# Tables (hand-built frames)
# ------------------------------------------------------------------------------------------------


def attack_rows(eps, flipped, norm=None, orig=None, adv=None) -> pd.DataFrame:
    eps = np.asarray(eps, dtype=float)
    flipped = np.asarray(flipped, dtype=bool)
    n = len(eps)
    return pd.DataFrame({
        "sample": np.arange(n), "true_label": np.zeros(n, int),
        "eps": np.where(flipped, eps, np.nan),
        "perturbation_norm": np.where(flipped, eps if norm is None else norm, np.nan),
        "orig_label": np.zeros(n, int) if orig is None else orig,
        "adv_label": np.ones(n, int) if adv is None else adv,
        "flipped": flipped,
    })


def test_epsilon_statistics_use_flipped_samples_only():
    attacks = attack_rows([1.0, 2.0, 4.0, 99.0], [True, True, True, False])
    stats = cnn_summary.epsilon_statistics(attacks)
    assert stats == pytest.approx({"min": 1.0, "max": 4.0, "mean": 7 / 3, "median": 2.0,
                                   "std": float(np.std([1, 2, 4], ddof=1))})
    assert cnn_summary.flip_rate(attacks) == 0.75
    assert all(math.isnan(v) for v in cnn_summary.epsilon_statistics(attack_rows([1.0], [False])).values())


def test_table_5_1_gives_both_normalizations_and_reproduces_the_published_cifar_value():
    # CIFAR: every gradient sign nonzero, so norm = eps * sqrt(3 * 32 * 32); mean eps = 5.783 (Table 5.2)
    eps = np.array([5.783 - 1.0, 5.783, 5.783 + 1.0])
    cifar = attack_rows(np.append(eps, 0.0), [True, True, True, False], norm=np.append(eps, 0.0) * math.sqrt(3072))
    bounds = pd.DataFrame({"sample": [0, 1, 2, 3], "bound": [2e-14, 3e-14, 4e-14, 5e-14]})
    table = cnn_summary.table_5_1([{"name": "CIFAR-NIN", "bounds": bounds, "attacks": cifar, "shape": (3, 32, 32)}])
    row = table.iloc[0]
    # the published 0.3129927 is the per-pixel normalization (H*W), not the C*H*W the text states
    assert row["normalized_empirical_bound_per_pixel"] == pytest.approx(0.3129927, rel=1e-4)
    assert row["normalized_empirical_bound_per_input"] == pytest.approx(0.3129927 / 3, rel=1e-4)
    assert row["normalized_theoretical_bound_per_pixel"] == pytest.approx(3.5e-14 / 1024)
    assert row["normalized_theoretical_bound_per_input"] == pytest.approx(3.5e-14 / 3072)
    assert row["rate"] == 0.75 and row["n_flipped"] == 3 and row["input"] == "3x32x32"
    # single channel: the two normalizations agree
    mnist = cnn_summary.table_5_1([{"name": "LeNet-5", "bounds": bounds, "attacks": cifar, "shape": (1, 28, 28)}]).iloc[0]
    assert mnist["normalized_empirical_bound_per_pixel"] == mnist["normalized_empirical_bound_per_input"]


def test_tables_5_2_and_5_3():
    attacks = attack_rows([0.5, 1.5, 3.0], [True, True, False], norm=[0.5 * 28, 1.5 * 28, 0])
    t2 = cnn_summary.table_5_2([{"name": "LeNet-5", "attacks": attacks}])
    assert list(t2.columns[:6]) == ["network", "min", "max", "mean", "median", "std"]
    assert t2.iloc[0]["min_perturbation_norm"] == pytest.approx(14.0) and t2.iloc[0]["n_flipped"] == 2
    t3 = cnn_summary.table_5_3([{"name": "LeNet-LRN1", "attacks": attacks, "accuracy": 0.98,
                         "bounds": pd.DataFrame({"sample": [0, 1], "bound": [1.0, 3.0]})}])
    assert t3.iloc[0][["accuracy", "mean", "rate", "mean_theoretical_bound"]].tolist() == pytest.approx(
        [0.98, 1.0, 2 / 3, 2.0])


# ------------------------------------------------------------------------------------------------
# Figure data
# ------------------------------------------------------------------------------------------------


def test_transition_counts_put_unflipped_samples_on_the_diagonal():
    attacks = attack_rows([1, 1, 1, 1], [True, True, False, True], orig=[0, 0, 2, 1], adv=[1, 1, 2, 0])
    counts = cnn_summary.transition_counts(attacks, 3)
    assert counts.tolist() == [[0, 2, 0], [1, 0, 0], [0, 0, 1]]
    long = cnn_summary.transitions_long(counts, "X", ["a", "b", "c"])
    assert len(long) == 9 and long["count"].sum() == 4
    assert long.query("orig_class == 'a' and adv_class == 'b'")["count"].item() == 2


def test_select_examples_prefers_distinct_classes_and_is_seeded():
    attacks = attack_rows(np.ones(8), [True] * 7 + [False], orig=[0, 0, 0, 1, 1, 2, 2, 3])
    chosen = cnn_summary.select_examples(attacks, 3, seed=1)
    assert len(chosen) == 3 and 7 not in chosen
    assert len({int(attacks.loc[i, "orig_label"]) for i in chosen}) == 3
    assert chosen == cnn_summary.select_examples(attacks, 3, seed=1)
    assert len(cnn_summary.select_examples(attacks, 20, seed=1)) == 7
    assert cnn_summary.select_examples(attack_rows([1.0], [False]), 3, seed=0) == []


def test_analytic_curves_match_the_thesis():
    gain = cnn_summary.kernel_scaling_gain([0, 4, 7], 0.1)
    assert gain[0] == 1.0
    assert gain[1] == pytest.approx(1.524, abs=5e-4)  # "about 1.5" for four kernels
    assert gain[2] == pytest.approx(2.09, abs=5e-3)  # "a factor of 2" for seven
    L = np.arange(1, 8)
    closed = cnn_summary.layer_robustness_gain(L, alpha=0.01, delta=0.1, kappa_L=2.0)
    explicit = [1 + 0.1 / 2.0 * sum(0.01 ** -l for l in range(n)) for n in L]
    assert closed == pytest.approx(explicit, rel=1e-12)
    assert closed[0] == pytest.approx(1 + 0.1 / 2.0)


def test_measured_layer_gain_is_eq_5_13_on_the_kappas():
    bounds = pd.DataFrame({"sample": [0, 1], "bound": [1e-3, 2e-3], "kappa_a": [1e-3, 2e-3],
                           "kappa_b": [0.1, 0.4], "kappa_c": [2.0, 4.0]})
    m = cnn_summary.measured_layer_gain(bounds, delta=0.1)
    top = m[m["L"] == 1].sort_values("sample")
    assert top["layer"].tolist() == ["c", "c"] and top["gain"].tolist() == pytest.approx([1.05, 1.025])
    full = m[m["L"] == 3].sort_values("sample")
    assert full["gain"].tolist() == pytest.approx([1 + 0.1 * (1e3 + 10 + 0.5), 1 + 0.1 * (500 + 2.5 + 0.25)])
    assert full["alpha"].tolist() == pytest.approx([1e-2, 5e-3])
    data = cnn_summary.figure_5_13_data(bounds, alpha=0.01, delta=0.1, kappa_L=2.0, max_L=5)
    assert len(data["analytic"]) == 5 and data["table"]["L"].tolist() == [1, 2, 3, 4, 5]
    assert data["table"]["fitted_kappa_L"].iloc[0] == pytest.approx(3.0)
    assert data["table"]["gain_median"].isna().tolist() == [False, False, False, True, True]
    picked = cnn_summary.figure_5_13_data(bounds, alpha=0.01, delta=0.1, kappa_L=2.0, max_L=2, layers=["b", "c"])
    assert picked["summary"]["layer"].tolist() == ["c", "b"]


def test_default_gain_layers_skip_the_input_scale_and_identity_steps():
    bounds = pd.DataFrame({"sample": [0, 1], "bound": [1.0, 2.0], "kappa_scale": [1.0, 2.0],
                           "kappa_conv1": [0.01, 0.02], "kappa_flatten": [0.5, 0.6], "kappa_ip1": [0.5, 0.6],
                           "kappa_ip2": [3.0, 4.0]})
    assert cnn_summary.default_gain_layers(bounds) == ["conv1", "ip1", "ip2"]
    with pytest.raises(ValueError, match="no kappa column"):
        cnn_summary.figure_5_13_data(bounds, alpha=0.01, delta=0.1, kappa_L=2.0, max_L=3, layers=["pool9"])


def test_bound_violations_count_flipped_samples_whose_bound_exceeds_the_fgs_norm():
    attacks = attack_rows([1.0, 2.0, 3.0], [True, True, False], norm=[10.0, 20.0, 0.0])
    bounds = pd.DataFrame({"sample": [0, 1, 2], "bound": [11.0, 5.0, 99.0]})
    assert cnn_summary.bound_violations(bounds, attacks) == 1
    assert math.isnan(cnn_summary.bound_violations(None, attacks))


def test_scaled_copy_scales_only_the_named_kernels(trained_lenet):
    model = trained_lenet[0]
    assert cnn.conv_layer_names(model) == ["conv1", "conv2"]
    scaled = cnn.scaled_copy(model, ["conv1"], 0.9)
    torch.testing.assert_close(scaled.conv1.weight, 0.9 * model.conv1.weight)
    torch.testing.assert_close(scaled.conv1.bias, model.conv1.bias)
    torch.testing.assert_close(scaled.conv2.weight, model.conv2.weight)


def test_subsample_and_pick_sample(trained_lenet):
    model, data = trained_lenet[0], trained_lenet[1]
    x = torch.arange(10.0)
    assert torch.equal(cnn.subsample(x, None, 0), x) and torch.equal(cnn.subsample(x, 50, 0), x)
    part = cnn.subsample(x, 4, seed=2)
    assert len(part) == 4 and torch.equal(part, cnn.subsample(x, 4, seed=2)) and bool((part.diff() > 0).all())
    i = cnn.pick_sample(model, data["x_test"], data["y_test"], seed=0)
    assert int(training.predict(model, data["x_test"][i:i + 1], CPU)) == int(data["y_test"][i])
    assert cnn.pick_sample(model, data["x_test"], data["y_test"], seed=0, sample=5) == 5


# ------------------------------------------------------------------------------------------------
# Attacks and bounds on a trained network
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lenet_results(trained_lenet):
    model, data = trained_lenet[0], trained_lenet[1]
    attacks = cnn.attack_frame(model, data["x_test"], data["y_test"], ATTACK, device=CPU)
    return attacks


def test_attack_frame(trained_lenet, lenet_results):
    attacks = lenet_results
    assert list(attacks.columns[:2]) == ["sample", "true_label"]
    assert set(cnn_summary.ATTACK_COLUMNS) <= set(attacks.columns)
    flipped = attacks["flipped"]
    assert flipped.any()
    assert (attacks.loc[flipped, "eps"] <= 100).all() and (attacks.loc[flipped, "eps"] > 0).all()
    assert (attacks.loc[flipped, "adv_label"] != attacks.loc[flipped, "orig_label"]).all()
    # FGS: ||eps * sign(grad)||_2 = eps * sqrt(#nonzero signs) <= eps * sqrt(784)
    ratio = attacks.loc[flipped, "perturbation_norm"] / attacks.loc[flipped, "eps"]
    assert np.allclose(ratio, attacks.loc[flipped, "direction_norm"])
    assert (ratio <= 28 + 1e-9).all()
    with pytest.raises(ValueError, match="unknown attack settings"):
        SearchSettings.from_config({"eps_max": 100.0, "tol": 1e-4, "epsilon": 1})


def test_adversarial_images_reproduce_the_attack_csv(trained_lenet, lenet_results):
    model, data = trained_lenet[0], trained_lenet[1]
    chosen = cnn_summary.select_examples(lenet_results, 3, seed=0)
    adv = cnn.adversarial_images(model, data["x_test"][chosen], ATTACK, device=CPU)
    assert cnn_summary.check_reproduced(lenet_results.set_index("sample").loc[chosen], adv, atol=ATTACK.tol)
    labels = training.predict(model, adv["adversarial"], CPU)
    assert torch.equal(labels, adv["adv_label"])
    expected = (adv["eps"].view(-1, 1, 1, 1) * adv["perturbation"].sign()).float()
    torch.testing.assert_close(adv["perturbation"], expected, atol=1e-3, rtol=1e-5)
    tampered = lenet_results.set_index("sample").loc[chosen].copy()
    tampered["eps"] *= 2
    assert not cnn_summary.check_reproduced(tampered, adv, atol=ATTACK.tol)


def test_bounds_frame_is_a_valid_lower_bound(trained_lenet, lenet_results):
    pytest.importorskip("advbounds.bounds")
    model, data = trained_lenet[0], trained_lenet[1]
    bounds = cnn.bounds_frame(model, data["x_test"], data["y_test"], device=CPU, batch_size=7)
    assert list(bounds.columns[:4]) == list(BOUND_COLUMNS) and len(bounds) == len(data["x_test"])
    kappas = cnn_summary.kappa_columns(bounds)
    assert kappas and np.isfinite(bounds[kappas].to_numpy()).all()
    assert (bounds["bound"] > 0).all()
    # batching does not change anything
    whole = cnn.bounds_frame(model, data["x_test"], data["y_test"], device=CPU, batch_size=None)
    pd.testing.assert_frame_equal(bounds, whole, rtol=1e-6)
    # the theoretical bound never exceeds the perturbation FGS found (Section 5.3)
    flipped = lenet_results["flipped"].to_numpy()
    assert (bounds["bound"].to_numpy()[flipped] <= lenet_results["perturbation_norm"].to_numpy()[flipped]).all()
    assert (bounds["pred_label"] == lenet_results["orig_label"]).all()


def test_measured_kernel_scaling(trained_lenet):
    pytest.importorskip("advbounds.bounds")
    model, data = trained_lenet[0], trained_lenet[1]
    measured = cnn.measured_kernel_scaling(model, data["x_test"][:5], epsilon=0.1, device=CPU)
    assert sorted(measured["n"].unique()) == [0, 1, 2] and len(measured) == 15
    assert np.allclose(measured.loc[measured["n"] == 0, "ratio"], 1.0)
    assert measured.loc[measured["n"] == 2, "analytic"].iloc[0] == pytest.approx(1 / 0.81)
    table, analytic = cnn_summary.figure_5_12_table(measured, epsilon=0.1, max_n=4)
    assert table["n"].tolist() == [0, 1, 2, 3, 4] and table["ratio_median"].notna().tolist() == [True] * 3 + [False] * 2
    assert table["analytic_gain"].tolist() == pytest.approx(list(analytic["gain"]))


def test_iterative_sequence(trained_lenet):
    model, data = trained_lenet[0], trained_lenet[1]
    seq = cnn.iterative_sequence(model, data["x_test"][0], ATTACK, steps=3, device=CPU)
    assert seq["images"].shape == (4, 1, 28, 28) and seq["perturbations"].shape == (4, 1, 28, 28)
    assert len(seq["labels"]) == 4 and len(seq["eps"]) == 3
    torch.testing.assert_close(seq["perturbations"][0], seq["images"][-1] - seq["images"][0])
    torch.testing.assert_close(seq["perturbations"][2], seq["images"][2] - seq["images"][1])
    assert int(seq["labels"][1]) != int(seq["labels"][0])  # the first step flips the label


# ------------------------------------------------------------------------------------------------
# Plotting
# ------------------------------------------------------------------------------------------------


def test_figures_draw(trained_lenet, lenet_results):
    from advbounds.artifacts import use_style
    from advbounds.plotting import chapter5 as plots

    use_style()
    import matplotlib.pyplot as plt

    data = trained_lenet[1]
    figs = [
        plots.dataset_samples(data["x_test"], data["y_test"], data["classes"], per_class=2, seed=0),
        plots.dataset_samples(torch.rand(8, 3, 8, 8) * 255, torch.arange(8) % 4, list("abcd"), per_class=1),
        plots.adversarial_grid(data["x_test"][:2], data["x_test"][:2], data["x_test"][:2] - 100, [0, 1], [1, 2],
                               [0.5, 1.5], data["classes"]),
        plots.adversarial_grid([], [], [], [], [], [], data["classes"]),
        plots.transition_heatmaps({"A": (np.eye(4, dtype=int) + 1, data["classes"]),
                                   "B": (np.ones((4, 4), int), data["classes"])}),
        plots.epsilon_boxplots({"A": lenet_results["eps"].to_numpy(), "B": np.array([np.nan])}),
        plots.kernel_scaling_figure(pd.DataFrame({"n": [0, 1, 2], "gain": [1, 1.1, 1.2]}),
                                    pd.DataFrame({"n": [0, 0, 1, 1], "ratio": [1, 1, 1.1, 1.2]}), epsilon=0.1),
        plots.layer_gain_figure(pd.DataFrame({"L": [1, 2], "gain": [1.05, 6.0]}),
                                pd.DataFrame({"L": [1], "gain_median": [2.0], "gain_q1": [1.5], "gain_q3": [3.0]}),
                                fitted=pd.DataFrame({"L": [1, 2], "gain": [1.1, 3.0]})),
        plots.iterative_figure(torch.rand(3, 1, 8, 8) * 255, torch.randn(3, 1, 8, 8), [0, 1, 0], [1.0, 0.5],
                               data["classes"]),
    ]
    assert [len(f.axes) for f in figs][:4] == [2 * 4, 4, 6, 1]
    assert len(figs[4].axes) == 4  # two heatmaps, two colour bars
    for fig in figs:
        plt.close(fig)


def test_tables_5_1_and_5_3_carry_the_scaled_unit_and_the_sound_bounds():
    bounds = pd.DataFrame({"sample": [0, 1], "bound": [2.56, 5.12], "kappa_scale": [2.56, 5.12],
                           "kappa_conv1": [0.01, 0.02], "bound_corrected": [10.0, 20.0],
                           "radius_certified": [1.0, np.nan]})
    attacks = pd.DataFrame({"sample": [0, 1], "flipped": [True, True], "perturbation_norm": [300.0, 400.0],
                            "eps": [10.0, 20.0]})
    row = cnn_summary.table_5_1([{"name": "LeNet-5", "bounds": bounds, "attacks": attacks, "shape": (1, 28, 28)}]).iloc[0]
    assert row["normalized_theoretical_bound_per_pixel_scaled"] == pytest.approx(0.015 / 784)
    assert row["normalized_theoretical_bound_per_pixel"] == pytest.approx(3.84 / 784)
    assert row["mean_corrected_bound"] == 15.0 and row["mean_certified_radius"] == 1.0 and row["n_certified"] == 1
    no_cert = bounds.assign(radius_certified=np.nan)
    t3 = cnn_summary.table_5_3([{"name": "LeNet-LRN1", "attacks": attacks, "accuracy": 0.98, "bounds": no_cert}]).iloc[0]
    assert np.isnan(t3["mean_certified_radius"]) and t3["n_certified"] == 0 and t3["mean_corrected_bound"] == 15.0


def test_the_tables_and_figure_data_import_without_torch():
    """cnn_summary only summarises frames: it must stay importable (and testable) without torch."""
    code = "import sys, advbounds.experiments.cnn_summary; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
