"""The robustness sandwich's bookkeeping (advbounds.experiments.sandwich) and its figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from advbounds.settings import SearchSettings
from advbounds.experiments import sandwich


def frame(**overrides) -> pd.DataFrame:
    base = dict(
        bound_thesis=[1e-3, 2e-3, 1e-3, 5e-3],
        bound_corrected=[0.5, 0.8, 0.4, 0.9],
        radius_certified=[0.9, np.nan, 0.7, 1.0],
        attack_fgs=[4.0, 5.0, np.nan, 6.0],
        attack_deepfool=[2.0, 2.5, 3.0, 3.5],
        attack_ddn=[1.9, 2.6, 2.9, np.nan],
    )
    base.update(overrides)
    return sandwich.frame_from_parts(range(4), **base)


def test_best_attack_is_the_per_sample_minimum_of_the_attacks():
    f = frame()
    assert list(f["best_attack"]) == [1.9, 2.5, 2.9, 3.5]


def test_a_clean_chain_has_no_violations_and_a_broken_sound_one_is_counted():
    assert not sandwich.sound_violations(frame())
    broken = frame(bound_corrected=[0.5, 3.0, 0.4, 0.9])  # above the best attack on sample 1
    assert sandwich.sound_violations(broken) == {"bound_corrected <= best_attack": 1}


def test_a_thesis_violation_is_a_finding_not_a_bug():
    f = frame(bound_thesis=[10.0, 2e-3, 1e-3, 5e-3])
    assert sandwich.violations(f)["bound_thesis <= best_attack"] == 1
    assert not sandwich.sound_violations(f)
    assert "a finding" in sandwich.describe("x", f) and "a bug" not in sandwich.describe("x", f)


def test_rounding_within_the_tolerance_is_no_violation():
    best = 1.9
    f = frame(bound_corrected=[best * (1 + sandwich.RTOL / 2), 0.8, 0.4, 0.9])
    assert not sandwich.sound_violations(f)


def test_summary_has_medians_ratios_and_counts():
    row = sandwich.summary_row("lenet5", frame())
    assert row["median best_attack"] == pytest.approx(np.median([1.9, 2.5, 2.9, 3.5]))
    ratios = frame()["best_attack"] / frame()["attack_fgs"]
    assert row["median best_attack / attack_fgs"] == pytest.approx(ratios.dropna().median())
    assert row["violations bound_corrected <= best_attack"] == 0
    assert row["median optimality attack_ddn"] == pytest.approx(
        (frame()["best_attack"] / frame()["attack_ddn"]).dropna().median())
    table = sandwich.summary_table({"a": frame(), "b": frame()})
    assert list(table["experiment"]) == ["a", "b"]


def test_optimality_is_one_for_the_best_attack():
    opt = sandwich.optimality(frame())
    assert opt.loc[0, "attack_ddn"] == 1.0 and opt.loc[0, "attack_deepfool"] == pytest.approx(1.9 / 2.0)


def test_the_figure_draws_one_curve_per_known_quantity():
    from advbounds.plotting.sandwich import sandwich_figure

    fig = sandwich_figure(frame(), "test")
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert {"thesis bound (Alg. 5.1)", "sound bound (corrected rules)", "certified radius (verifier)",
            "best attack", "FGS", "deepfool", "ddn"} <= set(labels)
    assert ax.get_yscale() == "log"


def test_strong_attacks_and_the_cnn_sandwich_on_a_small_lenet():
    """Every attack's norm is of a perturbation that flips the caller's model, and every sound
    lower bound lies below it."""
    import torch

    from advbounds.bounds import model_bounds
    from advbounds.experiments.strong import StrongAttackConfig, cnn_sandwich_frame, strong_attack_frame
    from advbounds.models import build_model

    model = build_model("lenet5", seed=0).eval()
    x = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 255
    config = StrongAttackConfig.from_config({"samples": {"cpu": 4, "cuda": None},
                                             "attacks": {"deepfool": {"steps": 20}, "ddn": {"steps": 20}}})
    strong = strong_attack_frame(model, x, config)
    assert list(strong["sample"]) == [0, 1, 2, 3]
    assert strong["attack_deepfool"].notna().any()
    thesis, sound = model_bounds(model, x, mode="thesis"), model_bounds(model, x, mode="corrected")
    bounds = pd.DataFrame({"sample": range(6), "bound": thesis.bound.double().numpy(),
                           "bound_corrected": sound.bound.double().numpy()})
    fgs = pd.DataFrame({"sample": range(6), "perturbation_norm": [np.nan] * 6})
    frame = cnn_sandwich_frame(bounds, fgs, strong)
    assert list(frame.columns[:4]) == ["sample", "bound_thesis", "bound_corrected", "attack_fgs"]
    assert len(frame) == 4
    assert not sandwich.sound_violations(frame)
    assert (frame["best_attack"].dropna() > 0).all()


def test_bounds_frame_adds_the_sound_bound_and_the_certified_radius_of_the_first_samples():
    import torch

    from advbounds.experiments.cnn import CertifyConfig, bounds_frame
    from advbounds.models import build_model

    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 255
    y = torch.zeros(5, dtype=torch.long)
    certify = CertifyConfig(samples={"cpu": 2, "cuda": None}, method="ibp")  # CROWN: tests/test_verify.py
    frame = bounds_frame(build_model("lenet5", seed=0), x, y, modes=("thesis", "corrected"), certify=certify)
    assert frame["bound_corrected"].gt(0).all() and frame["radius_certified"].iloc[:2].gt(0).all()
    assert frame["radius_certified"].iloc[2:].isna().all()
    assert {c for c in frame.columns if c.startswith("sound_kappa_")}
    # LRN has no bound operator in the verifier: "not certified" (NaN), never a guess
    lrn = bounds_frame(build_model("lenet_lrn1", seed=0), x, y, modes=("thesis",), certify=certify)
    assert lrn["radius_certified"].isna().all() and "bound_corrected" not in lrn


# ------------------------------------------------------------------------------------------------
# Chapters 3-4 (advbounds.experiments.sandwich34)
# ------------------------------------------------------------------------------------------------

SMALL_ATTACKS = {"samples": {"cpu": 5, "cuda": 5},
                 "attacks": {"deepfool": {"steps": 20}, "ddn": {"steps": 40}, "fmn": {"steps": 40}}}


def _random_linear(seed: int, classes: int, dim: int, batch: int):
    import torch

    g = torch.Generator().manual_seed(seed)
    W = torch.rand(classes, dim, generator=g, dtype=torch.float64) * 2 - 1
    b = torch.rand(classes, generator=g, dtype=torch.float64) * 2 - 1
    x = torch.rand(batch, dim, generator=g, dtype=torch.float64) * 2 - 1
    return W, b, x


def test_the_linear_closed_form_equals_the_least_distance_qps_and_a_brute_force_search():
    """Two independent checks of rho(x) = min_j (f_c - f_j) / ||w_c - w_j||: the QP solver of
    advbounds.attacks (minimum over target cells) and, in the plane, the exit time of the class-c
    cell along 200,000 directions, whose minimum approaches rho from above."""
    import torch

    from advbounds.attacks import exact_minimal_perturbation_linear
    from advbounds.experiments.sandwich34 import linear_exact_minimum

    for classes, dim in ((5, 2), (50, 2), (5, 20), (2, 3)):
        W, b, x = _random_linear(classes + dim, classes, dim, 16)
        rho = linear_exact_minimum(W, b, x)
        qp = exact_minimal_perturbation_linear(W, b, x).norm
        torch.testing.assert_close(rho, qp, rtol=1e-9, atol=0.0)
    W, b, x = _random_linear(7, 6, 2, 8)
    rho = linear_exact_minimum(W, b, x)
    angles = torch.linspace(0, 2 * np.pi, 200_001, dtype=torch.float64)[:-1]
    u = torch.stack([angles.cos(), angles.sin()], dim=1)  # [U, 2]
    logits = x @ W.T + b
    c = logits.argmax(dim=1)
    gap = logits.gather(1, c[:, None]) - logits  # [B, C]
    slope = torch.einsum("bcd,ud->buc", W[c][:, None, :] - W[None, :, :], u)  # d/dt g_j(x + t u)
    exit_time = torch.where(slope < 0, gap[:, None, :] / -slope, torch.full_like(slope, np.inf)).amin(dim=2)
    brute = exit_time.amin(dim=1)
    assert (rho <= brute * (1 + 1e-12)).all()
    assert (brute <= rho * (1 + 1e-6)).all()
    # the minimiser changes the label just past the boundary: rho is attained, not only a bound
    j = torch.where(gap > 0, gap / (W[c][:, None, :] - W[None]).norm(dim=2), torch.full_like(gap, np.inf)).argmin(1)
    direction = W[j] - W[c]
    step = x + (rho * (1 + 1e-9))[:, None] * direction / direction.norm(dim=1, keepdim=True)
    assert ((step @ W.T + b).argmax(dim=1) != c).all()
    # leading dimensions broadcast: K classifiers at once
    Ws, bs, xs = zip(*(_random_linear(s, 4, 3, 5) for s in range(3)))
    stacked = linear_exact_minimum(torch.stack(Ws), torch.stack(bs), torch.stack(xs))
    torch.testing.assert_close(stacked, torch.stack([linear_exact_minimum(*t) for t in zip(Ws, bs, xs)]))
    with pytest.raises(ValueError, match="need weight"):
        linear_exact_minimum(W, b[:-1], x)


def _random_test(kind: str, spec: dict, activation: str = "tanh"):
    from advbounds.experiments import linear, mlp, sandwich34

    settings = sandwich34.Chapters34Sandwich.from_settings(
        {"kind": kind, "strong_attacks": SMALL_ATTACKS, "number": 1, "spec": spec, "activation": activation,
         "dtype": "float64"})
    attack = SearchSettings(eps_max=100.0, tol=1e-6)
    if kind == "linear":
        per_sample = linear.linear_test_frame(spec, number=1, seed=settings.test_seed(0), attack=attack)
    else:
        per_sample = mlp.random_mlp_test_frame(spec, number=1, seed=settings.test_seed(0), activation=activation,
                                               attack=attack)
    return per_sample, settings


def _assert_exact_chain(frame: pd.DataFrame) -> None:
    """No attack below the exact minimum; every sound lower bound at or below it."""
    assert frame["exact_min"].notna().all() and frame["best_attack"].notna().all()
    assert (frame["best_attack"] >= frame["exact_min"] * (1 - sandwich.RTOL)).all()
    for lower in ("bound_corrected", "radius_certified"):
        if lower in frame:
            assert (frame[lower] <= frame["exact_min"] * (1 + sandwich.RTOL)).all(), lower
    assert not sandwich.sound_violations(frame)


def test_a_linear_tests_sandwich_has_the_exact_minimum_and_the_thesis_bound_equals_it():
    from advbounds.experiments import sandwich34

    spec = {"classifiers": 2, "samples": 3, "dim": 2, "classes": 5, "sample_interval": [-1, 1],
            "param_interval": [-1, 1]}
    per_sample, settings = _random_test("linear", spec)
    frame = sandwich34.random_test_sandwich_frame(per_sample, settings, base_seed=0)
    assert list(frame["classifier"]) == [0, 0, 0, 1, 1] and list(frame["sample"]) == [0, 1, 2, 0, 1]
    assert {"bound_thesis", "exact_min", "attack_fgs", "attack_deepfool", "attack_ddn", "attack_fgs",
            "best_attack"} <= set(frame) and "bound_corrected" not in frame
    _assert_exact_chain(frame)
    # Lemma 3.5 is exact for a linear classifier: the thesis bound is the minimum (float rounding apart)
    np.testing.assert_allclose(frame["bound_thesis"], frame["exact_min"], rtol=1e-9)
    # DeepFool's linearisation is the classifier itself: within its overshoot of the exact minimum
    assert (frame["attack_deepfool"] <= frame["exact_min"] * 1.03).all()
    # another seed draws other classifiers: the run stops instead of comparing them
    with pytest.raises(RuntimeError, match="redrawn classifiers"):
        sandwich34.random_test_sandwich_frame(per_sample, settings, base_seed=1)


def test_a_tiny_relu_mlps_sandwich_stays_on_the_right_side_of_the_exact_minimum():
    """ReLU, 2-D input, 2 x 8 hidden units: the exact reference applies; Theorem 4.2 does not, so the
    corrected bound is the product of operator norms."""
    from advbounds.experiments import sandwich34

    spec = {"samples": 5, "dim": 2, "mlps": 1, "hidden": [8, 8], "classes": 3, "sample_interval": [-1, 1],
            "param_interval": [-1, 1]}
    per_sample, settings = _random_test("random_mlp", spec, activation="relu")
    frame = sandwich34.random_test_sandwich_frame(per_sample, settings, base_seed=0)
    assert {"bound_corrected", "radius_certified", "exact_min"} <= set(frame)
    _assert_exact_chain(frame)
    near = sandwich.attack_within(frame, sandwich.EXACT_CLOSE_RTOL)
    assert near[1] == len(frame) and near[0] >= len(frame) // 2 + 1  # "on most samples"
    assert "orders of magnitude" in sandwich.describe("tiny", frame)


def test_a_tanh_mlps_sandwich_is_certified_but_has_no_exact_minimum():
    from advbounds.experiments import sandwich34

    spec = {"samples": 4, "dim": 2, "mlps": 2, "hidden": [10, 10, 10], "classes": 5, "sample_interval": [-1, 1],
            "param_interval": [-1, 1]}
    per_sample, settings = _random_test("random_mlp", spec)
    frame = sandwich34.random_test_sandwich_frame(per_sample, settings, base_seed=0)
    assert "exact_min" not in frame and len(frame) == 5
    assert frame["radius_certified"].gt(0).all() and frame["bound_corrected"].gt(0).all()
    assert not sandwich.sound_violations(frame)
    assert np.isfinite(sandwich.gap_closed(frame))


def test_a_trained_mlps_sandwich_reads_the_split_of_its_per_sample_frame():
    import torch

    from advbounds.experiments import mlp, sandwich34
    from advbounds.models import build_model

    g = torch.Generator().manual_seed(3)
    data = {"x_test": torch.randn(7, 4, generator=g), "y_test": torch.randint(0, 3, (7,), generator=g)}
    model = build_model("mlp", seed=0, in_dim=4, hidden=[5], n_classes=3, activation="tanh").eval()
    per_sample = mlp.trained_mlp_frame(model, data, dataset="iris", split="test",
                                       attack=SearchSettings(eps_max=100.0, tol=1e-6))
    settings = sandwich34.Chapters34Sandwich.from_settings(
        {"kind": "trained_mlp", "strong_attacks": SMALL_ATTACKS, "split": "test", "dtype": "float64"})
    frame = sandwich34.trained_mlp_sandwich_frame(per_sample, model, data["x_test"], settings)
    assert list(frame["sample"]) == [0, 1, 2, 3, 4]
    assert frame["radius_certified"].gt(0).all() and not sandwich.sound_violations(frame)
    with pytest.raises(ValueError, match="not its split"):
        sandwich34.trained_mlp_sandwich_frame(per_sample, model, data["x_test"][:3], settings)
    with pytest.raises(ValueError, match="needs the split"):
        sandwich34.Chapters34Sandwich.from_settings({"kind": "trained_mlp", "strong_attacks": SMALL_ATTACKS})


def test_experiment_names_come_from_the_config_once():
    import smoke_support as sm

    from advbounds.config import chapters34_sandwiches, sandwich_experiments, sandwich_models

    config = sm.load_smoke_config()
    names = [e.name for e in chapters34_sandwiches(config)]
    assert names[:2] == ["table_3_1_test1", "table_3_1_test2"]
    assert len(names) == len(config["chapter3"]["tests"]) + len(config["chapter4"]["random_mlp"]["tests"]) + 3
    assert names[-3:] == ["mlp_iris", "mlp_wine", "mlp_spambase"]
    assert sandwich_experiments(config) == names + sandwich_models(config)
    # a chapter without strong_attacks gets no sandwiches
    without = {**config, "chapter3": {k: v for k, v in config["chapter3"].items() if k != "strong_attacks"}}
    assert not any(e.chapter == 3 for e in chapters34_sandwiches(without))


def test_each_chapter34_sandwich_job_reads_its_own_test_or_model():
    import smoke_support as sm

    from advbounds.config import chapters34_sandwich_settings

    config = sm.load_smoke_config()
    linear = chapters34_sandwich_settings(config, "table_3_1_test2")
    assert (linear["kind"], linear["number"], linear["spec"]) == ("linear", 2, config["chapter3"]["tests"][1])
    assert linear["strong_attacks"] == config["chapter3"]["strong_attacks"]
    random_mlp = chapters34_sandwich_settings(config, "table_4_2_test1")
    assert random_mlp["spec"] == config["chapter4"]["random_mlp"]["tests"][0]
    assert random_mlp["activation"] == config["chapter4"]["random_mlp"]["activation"]
    trained = chapters34_sandwich_settings(config, "mlp_wine")
    assert (trained["kind"], trained["split"]) == ("trained_mlp", config["chapter4"]["trained"]["split"])
    with pytest.raises(KeyError):
        chapters34_sandwich_settings(config, "table_9_9_test1")


def test_the_paragraph_gives_the_median_per_sample_ratio_to_fgs_not_a_ratio_of_medians():
    # per-sample best/FGS ratios 0.5, 0.1, 0.667: their median is 0.5, the ratio of the medians 0.1
    f = sandwich.frame_from_parts(range(3), attack_deepfool=[1.0, 10.0, 100.0], attack_fgs=[2.0, 100.0, 150.0])
    text = sandwich.describe("x", f)
    assert "median per-sample ratio to FGS 0.50x" in text and "0.10x" not in text
