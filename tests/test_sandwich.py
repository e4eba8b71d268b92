"""The robustness sandwich's bookkeeping (advbounds.experiments.sandwich) and its figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

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
