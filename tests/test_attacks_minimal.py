"""Minimal-L2 attacks (DeepFool, DDN, FMN): verified flips, norms of what the model saw, exactness
on linear classifiers, comparison with the exact ReLU minimum, settings, best-of and optimality."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from advbounds.attacks import (
    DDN,
    FMN,
    DDNSettings,
    DeepFool,
    DeepFoolSettings,
    FMNSettings,
    MinimalAttackResult,
    attack_optimality,
    best_attack,
    exact_minimal_perturbation_linear,
    median_optimality,
    minimal_epsilon_search,
)
from advbounds.attacks.direction import fp32_precision
from advbounds.models.layers import Scale
from advbounds.settings import SearchSettings

FAST = {
    "deepfool": lambda **kw: DeepFool(DeepFoolSettings(**kw)),
    "ddn": lambda **kw: DDN(DDNSettings(steps=60, **kw)),
    "fmn": lambda **kw: FMN(FMNSettings(steps=60, **kw)),
}


def small_cnn(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        Scale(1 / 256), nn.Conv2d(1, 4, 3), nn.MaxPool2d(2, 2), nn.Conv2d(4, 6, 3), nn.ReLU(),
        nn.Flatten(), nn.Linear(6 * 2 * 2, 16), nn.Tanh(), nn.Linear(16, 5),
    )


def pixels(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 1, 10, 10, generator=torch.Generator().manual_seed(seed)) * 255


def relu_net(seed: int, hidden: int = 12, classes: int = 3) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, classes)).double()


@pytest.mark.parametrize("name", list(FAST))
def test_every_returned_perturbation_flips_and_its_norm_is_what_the_model_saw(name):
    model, x = small_cnn(0), pixels(24, 1)
    model.train()  # the attack runs in eval mode and restores the flags
    res = FAST[name]()(model, x)
    assert all(m.training for m in model.modules())
    model.eval()
    assert isinstance(res, MinimalAttackResult) and len(res) == 24
    assert res.flipped.float().mean() >= 0.9
    assert res.adversarial.dtype == x.dtype and res.adversarial.shape == x.shape
    f = res.flipped
    with torch.no_grad(), fp32_precision():
        batched = model(res.adversarial).argmax(1)
        single = torch.cat([model(res.adversarial[i : i + 1]).argmax(1) for i in range(len(x))])
        clean = model(x).argmax(1)
    assert torch.equal(res.orig_label, clean)
    for labels in (batched, single):
        assert (labels[f] != clean[f]).all()
        assert torch.equal(labels[f], res.adv_label[f])
    norms = (res.adversarial.double() - x.double()).flatten(1).norm(dim=1)
    assert torch.equal(res.norm[f], norms[f])  # exactly the norm of the tensor the model saw
    assert torch.isinf(res.norm[~f]).all() and torch.equal(res.adversarial[~f], x[~f])
    frame = res.to_frame(prefix=f"{name}_")
    assert list(frame.columns) == [f"{name}_{c}" for c in ("norm", "adv_label", "orig_label", "flipped")]


@pytest.mark.parametrize("name", list(FAST))
def test_clip_keeps_inputs_in_range(name):
    model, x = small_cnn(1), pixels(16, 2)
    res = FAST[name](clip=(0.0, 255.0))(model, x)
    assert res.flipped.any()
    assert res.adversarial.min() >= 0 and res.adversarial.max() <= 255


class Unverifiable(DeepFool):
    """Returns x + a perturbation that does not flip: the verification must reject it."""

    def _run(self, model, x, label, scale):
        return x + 1e-3


def test_unverified_candidates_get_inf_norm():
    model, x = small_cnn(0), pixels(8, 3)
    res = Unverifiable()(model, x)
    assert not res.flipped.any() and torch.isinf(res.norm).all()
    assert torch.equal(res.adversarial, x) and torch.equal(res.adv_label, res.orig_label)


def test_misclassified_samples_count_with_norm_zero():
    model, x = small_cnn(0), pixels(10, 4)
    with torch.no_grad():
        predicted = model(x).argmax(1)
    labels = predicted.clone()
    labels[:3] = (predicted[:3] + 1) % 5  # "true" labels the model gets wrong
    res = DeepFool()(model, x, labels)
    assert res.flipped[:3].all() and (res.norm[:3] == 0).all()
    assert torch.equal(res.orig_label, labels)


def linear_classifier(seed: int, d: int, classes: int) -> tuple[nn.Sequential, torch.Tensor]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(d, classes)).double()
    x = torch.randn(40, d, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 1))
    return model, x


@pytest.mark.parametrize("d, classes", [(20, 2), (20, 10), (5, 4)])
def test_linear_classifiers_deepfool_is_exact_and_nobody_beats_the_minimum(d, classes):
    model, x = linear_classifier(3, d, classes)
    exact = exact_minimal_perturbation_linear(model[0].weight.detach(), model[0].bias.detach(), x)
    ok = torch.isfinite(exact.norm)
    assert ok.float().mean() > 0.9
    deepfool = DeepFool(DeepFoolSettings(overshoot=1e-4, push=0.0))(model, x)
    assert deepfool.flipped[ok].all()
    ratio = deepfool.norm[ok] / exact.norm[ok]
    assert (ratio >= 1 - 1e-9).all()
    # within 1% where the nearest pairwise boundary lies in the target's cell (almost always, see
    # docs/attacks.md); DeepFool then lands on the minimiser in one step
    assert (ratio <= 1.01).float().mean() >= 0.9, ratio
    assert ratio.median() <= 1.001
    for name in ("ddn", "fmn"):
        res = FAST[name]()(model, x)
        assert res.flipped[ok].all(), name
        assert (res.norm[ok] >= exact.norm[ok] * (1 - 1e-9)).all(), name
    # FMN's annealed steps converge onto the minimiser; DDN (cross-entropy direction, fixed
    # gamma) only gets near it with several classes (docs/attacks.md)
    assert (res.norm[ok] / exact.norm[ok]).median() <= 1.001


def test_pixel_scale_inputs_give_the_same_perturbations_scaled():
    """No [0, 1] assumption: the same classifier on inputs x 255 (with a Scale(1/255) layer) gives
    the same attacks with norms x 255."""
    torch.manual_seed(7)
    unit = nn.Sequential(nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 4)).double()
    pixel = nn.Sequential(Scale(1 / 255), *unit).double()
    x = torch.rand(30, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    for name, make in FAST.items():
        a, b = make()(unit, x), make()(pixel, x * 255)
        both = a.flipped & b.flipped
        assert both.float().mean() >= 0.9, name
        torch.testing.assert_close(b.norm[both] / 255, a.norm[both], rtol=1e-3, atol=0, msg=name)


def test_tiny_relu_networks_against_the_exact_minimum():
    exact_mod = pytest.importorskip("advbounds.verify.exact")
    gen = torch.Generator().manual_seed(11)
    within, total = 0, 0
    for seed in range(3):  # 8 hidden units: the exact solver's cost grows fast with them
        model = relu_net(seed, hidden=8)
        x = torch.randn(16, 2, dtype=torch.float64, generator=gen)
        try:
            exact = exact_mod.exact_minimal_perturbation_relu(model, x)
        except NotImplementedError:
            pytest.skip("advbounds.verify.exact.exact_minimal_perturbation_relu is not implemented yet")
        # (norm, perturbation, target) as the brief had it, or a result object with those fields
        norm = exact.norm if hasattr(exact, "norm") else exact[0]
        norm = norm.to(torch.float64)
        # 200 steps: on the third network several samples need them to leave a local minimum
        results = {"deepfool": DeepFool()(model, x), "ddn": DDN(DDNSettings(steps=200))(model, x),
                   "fmn": FMN(FMNSettings(steps=200))(model, x)}
        fgs = minimal_epsilon_search(model, x, SearchSettings(eps_max=50.0, tol=1e-9))
        for name, res in results.items():
            f = res.flipped & torch.isfinite(norm)
            assert (res.norm[f] >= norm[f] * (1 - 1e-6) - 1e-12).all(), name
        f = fgs.flipped & torch.isfinite(norm)
        assert (fgs.perturbation_norm[f] >= norm[f] * (1 - 1e-6) - 1e-12).all()
        best = best_attack({**results, "fgs": fgs})
        ok = torch.isfinite(norm)  # a sample where the margin's gradient is 0 may stay unflipped
        within += int((best.norm[ok] <= norm[ok] * 1.01).sum())
        total += int(ok.sum())
    print(f"best within 1% of the exact minimum on {within} of {total}")
    assert within >= 0.75 * total, (within, total)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: DeepFoolSettings(steps=0), "steps"),
        (lambda: DeepFoolSettings(steps=2.5), "steps"),
        (lambda: DeepFoolSettings(overshoot=-0.1), "overshoot"),
        (lambda: DeepFoolSettings(candidates=1), "candidates"),
        (lambda: DeepFoolSettings(push=-1.0), "push"),
        (lambda: DDNSettings(gamma=1.0), "gamma"),
        (lambda: DDNSettings(init_norm=0.0), "init_norm"),
        (lambda: DDNSettings(step_size=0.1, final_step_size=0.5), "final_step_size"),
        (lambda: FMNSettings(final_gamma=0.1), "final_gamma"),
        (lambda: FMNSettings(step_size=math.inf), "step_size"),
        (lambda: FMNSettings(clip=(1.0, 0.0)), "clip"),
        (lambda: FMNSettings(batch_size=0), "batch_size"),
        (lambda: DDNSettings(input_scale=-1.0), "input_scale"),
        (lambda: DDNSettings(margin_ulps=-1.0), "margin_ulps"),
        (lambda: DDNSettings(channels_last="yes"), "channels_last"),
    ],
)
def test_settings_are_validated(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_settings_are_frozen_typed_and_matched_to_the_attack():
    s = DDNSettings()
    with pytest.raises(Exception):
        s.steps = 3
    with pytest.raises(TypeError):
        DDNSettings(stepz=3)
    with pytest.raises(TypeError, match="DDNSettings"):
        DDN(FMNSettings())


def test_call_argument_errors():
    model, x = small_cnn(0), pixels(4, 5)
    with pytest.raises(ValueError, match="labels"):
        DeepFool()(model, x, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="labels"):
        DeepFool()(model, x, torch.full((4,), 7, dtype=torch.long))
    with pytest.raises(ValueError, match="x"):
        DeepFool()(model, x[:0])


def test_batch_size_does_not_change_results_in_float64():
    model = relu_net(2, hidden=10, classes=4)
    x = torch.randn(20, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    for name in ("ddn", "fmn", "deepfool"):
        a = FAST[name]()(model, x)
        b = FAST[name](batch_size=7)(model, x)
        torch.testing.assert_close(a.norm, b.norm, rtol=1e-9, atol=0, msg=name)


def test_best_attack_picks_the_per_sample_minimum_fgs_included():
    inf, nan = math.inf, math.nan
    a = torch.tensor([1.0, 5.0, inf, 2.0, inf], dtype=torch.float64)
    b = torch.tensor([3.0, 4.0, 7.0, 2.0, nan])
    res = MinimalAttackResult(
        norm=torch.tensor([2.0, 0.5, inf, 9.0, inf], dtype=torch.float64), adversarial=torch.zeros(5, 3),
        adv_label=torch.tensor([1, 1, 0, 1, 0]), orig_label=torch.zeros(5, dtype=torch.long),
        flipped=torch.tensor([True, True, False, True, False]),
    )
    model = nn.Sequential(nn.Linear(3, 2)).double()
    fgs = minimal_epsilon_search(model, torch.randn(5, 3, dtype=torch.float64), SearchSettings(eps_max=1e-9, tol=1e-10))
    assert not fgs.flipped.any()  # NaN perturbation norms: never the best
    best = best_attack({"a": a, "b": b, "deepfool": res, "fgs": fgs})
    assert best.names == ("a", "b", "deepfool", "fgs")
    expected = torch.stack([a, torch.nan_to_num(b.double(), nan=inf), res.norm]).min(0).values
    assert torch.equal(best.norm, expected)
    assert best.attack.tolist() == [0, 2, 1, 0, -1]  # ties go to the first attack given
    assert best.attack_names == ["a", "deepfool", "b", "a", None]
    assert best.flipped.tolist() == [True, True, True, True, False]
    assert torch.equal(best.norms["best"], best.norm) and set(best.norms) == {"a", "b", "deepfool", "fgs", "best"}
    assert list(best.to_frame().columns) == ["best_norm", "best_attack", "best_flipped"]
    with pytest.raises(ValueError, match="different numbers"):
        best_attack({"a": a, "c": a[:3]})
    with pytest.raises(ValueError, match="best"):
        best_attack({"best": a})
    with pytest.raises(TypeError):
        best_attack({"a": [1.0, 2.0]})


def test_attack_optimality():
    inf, nan = math.inf, math.nan
    norms = {
        "x": torch.tensor([1.0, 4.0, inf, 0.0, inf], dtype=torch.float64),
        "y": torch.tensor([2.0, 2.0, 3.0, 0.0, nan], dtype=torch.float64),
    }
    opt = attack_optimality(norms)
    best = torch.stack([norms["x"], norms["y"].nan_to_num(nan=inf)]).min(0).values
    assert torch.allclose(opt["x"][:2], best[:2] / norms["x"][:2])
    assert opt["x"][:4].tolist() == [1.0, 0.5, 0.0, 1.0] and math.isnan(opt["x"][4])
    assert opt["y"][:4].tolist() == [0.5, 1.0, 1.0, 1.0] and math.isnan(opt["y"][4])
    med = median_optimality(opt)
    assert med["x"] == float(torch.tensor([1.0, 0.5, 0.0, 1.0]).median())
    assert med["y"] == float(torch.tensor([0.5, 1.0, 1.0, 1.0]).median())
    assert all(0 <= v <= 1 for t in opt.values() for v in t[~t.isnan()].tolist())
