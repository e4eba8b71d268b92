"""Algorithm 2.1, batched: flips at the returned epsilon, agreement with the naive per-sample loop,
the non-monotone policies, chunking, reporting and argument handling."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from advbounds.attacks import (
    AttackResult,
    attack_direction,
    bisection_steps,
    minimal_epsilon_search,
    naive_minimal_epsilon_search,
    perturb,
)
from advbounds.attacks.direction import fp32_precision
from advbounds.attacks.search import flip_verdict
from advbounds.models.layers import Scale
from advbounds.settings import SearchSettings



FIELDS = ["eps", "eps_lower", "perturbation_norm", "orig_label", "adv_label", "flipped",
          "flips_at_eps_max", "consistent", "direction_norm", "verify_steps"]


def small_cnn(seed: int, dtype=torch.float32) -> nn.Sequential:
    """A LeNet-shaped toy (pixel inputs, Scale, conv, max pool, dense) small enough for the tests."""
    torch.manual_seed(seed)
    return nn.Sequential(
        Scale(1 / 256), nn.Conv2d(1, 4, 3), nn.MaxPool2d(2, 2), nn.Conv2d(4, 6, 3), nn.ReLU(),
        nn.Flatten(), nn.Linear(6 * 2 * 2, 16), nn.Tanh(), nn.Linear(16, 5),
    ).to(dtype)


def small_mlp(seed: int, dtype=torch.float64, d=8, classes=4) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 12), nn.Tanh(), nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, classes)).to(dtype)


def pixels(n: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, 10, 10, generator=g) * 255).to(dtype)


def assert_same(a: AttackResult, b: AttackResult) -> None:
    """Same branches taken: identical epsilons, labels and flags. The norms use the direction, whose
    last bits depend on whether the gradient was computed for a batch or a single sample (BLAS
    accumulation order), so they agree to float64 rounding."""
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        if name in ("perturbation_norm", "direction_norm"):
            torch.testing.assert_close(x, y, rtol=1e-12, atol=0, equal_nan=True, msg=name)
        elif x.is_floating_point():
            assert torch.equal(x.isnan(), y.isnan()), name
            assert torch.equal(x[~x.isnan()], y[~y.isnan()]), name
        else:
            assert torch.equal(x, y), name


def labels_at(model, x, direction, eps, clip=None):
    """A separate forward pass at x + eps d, independent of the search's own bookkeeping."""
    with torch.no_grad(), fp32_precision():
        return model.eval()(perturb(x.to(torch.float64), direction, eps, clip, x.dtype)).argmax(1)


@pytest.mark.parametrize("search", ["bisection", "regula_falsi"])
@pytest.mark.parametrize("method", ["fgs", "fgv"])
@pytest.mark.parametrize("make", ["cnn32", "mlp64"])
def test_label_flips_at_eps_and_not_at_eps_minus_tol(method, make, search):
    if make == "cnn32":
        model, x, eps_max, tol = small_cnn(0), pixels(64, 1), 100.0, 1e-3
    else:
        model = small_mlp(0)
        x = torch.randn(64, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        eps_max, tol = 20.0, 1e-6
    # FGV with a unit-norm gradient, so that epsilon is an L2 distance of a sensible size.
    extra = dict(fgv_normalize=True) if method == "fgv" else {}
    if method == "fgv":
        eps_max = eps_max * math.sqrt(x[0].numel())
        # An L2 step of 1e-3 on 255-valued pixels moves the logits by about float32's noise;
        # the verdict at the bracket ends is then a property of the exact kernels, not the model.
        tol = tol * 10 if x.dtype == torch.float32 else tol
    # The independent check below runs the model in the default layout; so does the search here.
    # verify_margin_ulps=0: the final verification judges by plain argmax, so that "eps - tol keeps
    # the label" holds to the grid step (with the default margin, eps is the first grid point that
    # flips *by a margin*: test_verified_points_flip_with_the_margin).
    res = minimal_epsilon_search(model, x, SearchSettings(method=method, eps_max=eps_max, tol=tol, channels_last=False,
                                                          search=search, verify_margin_ulps=0, **extra))
    assert (res.verify_steps[res.flipped] == 0).all()  # same model, layout and batch as the search
    assert res.flipped.float().mean() > 0.8
    _, direction = attack_direction(model.eval(), x, method=method, **extra)
    f = res.flipped
    at_eps = labels_at(model, x[f], direction[f], res.eps[f])
    below = labels_at(model, x[f], direction[f], (res.eps[f] - tol).clamp_min(0))
    assert (at_eps != res.orig_label[f]).all()
    if x.dtype == torch.float64:  # in float32 the layout of the search's model copy may break near-ties
        assert torch.equal(at_eps, res.adv_label[f])
    assert (below == res.orig_label[f]).all()
    assert (res.eps[f] - res.eps_lower[f] <= tol * (1 + 1e-12)).all()
    assert (res.eps[f] <= eps_max).all() and (res.eps[f] > 0).all()


@pytest.mark.parametrize("search", ["bisection", "grid"])
@pytest.mark.parametrize("method", ["fgs", "fgv"])
def test_batched_equals_naive_loop_float64(method, search):
    """In float64 the two implementations take the same branches, so every field is identical."""
    model = small_mlp(3)
    x = torch.randn(40, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    kw = dict(method=method, eps_max=30.0 if method == "fgs" else 500.0, tol=1e-5, search=search, grid_points=16)
    batched = minimal_epsilon_search(model, x, SearchSettings(batch_size=16, **kw))
    naive = naive_minimal_epsilon_search(model, x, SearchSettings(**kw))
    assert_same(batched, naive)


def test_batched_equals_naive_with_clip_and_true_labels():
    model = small_cnn(4, dtype=torch.float64)
    x = pixels(24, 6, dtype=torch.float64)
    y = torch.randint(0, 5, (24,), generator=torch.Generator().manual_seed(7))
    kw = dict(eps_max=100.0, tol=1e-4, clip=(0.0, 255.0), loss_label="true")
    assert_same(minimal_epsilon_search(model, x, SearchSettings(batch_size=10, **kw), labels=y),
                naive_minimal_epsilon_search(model, x, SearchSettings(**kw), labels=y))


def test_batched_agrees_with_naive_on_float32_cnn():
    """float32 kernels round differently at batch size 1, so allow rare boundary cases to differ."""
    model, x = small_cnn(2), pixels(48, 9)
    kw = dict(eps_max=100.0, tol=1e-3)
    batched = minimal_epsilon_search(model, x, SearchSettings(**kw))
    naive = naive_minimal_epsilon_search(model, x, SearchSettings(**kw))
    assert torch.equal(batched.orig_label, naive.orig_label)
    assert (batched.flipped == naive.flipped).float().mean() >= 0.95
    both = batched.flipped & naive.flipped
    close = (batched.eps[both] - naive.eps[both]).abs() <= 1e-3
    assert close.float().mean() >= 0.95


def test_chunking_does_not_change_results():
    model = small_mlp(10)
    x = torch.randn(37, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(11))
    kw = dict(eps_max=25.0, tol=1e-6)
    assert_same(minimal_epsilon_search(model, x, SearchSettings(batch_size=5, **kw)),
                minimal_epsilon_search(model, x, SearchSettings(**kw)))


def test_number_of_steps_matches_algorithm_2_1():
    assert bisection_steps(100.0, 100.0) == 0
    assert bisection_steps(100.0, 50.0) == 1
    assert bisection_steps(100.0, 1e-3) == 17  # 100 / 2**17 = 7.6e-4 <= 1e-3 < 100 / 2**16
    with pytest.raises(ValueError):
        bisection_steps(1.0, 0.0)


def tent_model() -> nn.Sequential:
    """1-D classifier whose label is 1 only on (0.1, 1.9): flipping is not monotone along the ray.

    logit_1 = relu(x) - 2 relu(x - 1) + relu(x - 2) (a tent on [0, 2]), logit_0 = 0.1.
    """
    first = nn.Linear(1, 3)
    second = nn.Linear(3, 2)
    with torch.no_grad():
        first.weight.copy_(torch.tensor([[1.0], [1.0], [1.0]]))
        first.bias.copy_(torch.tensor([0.0, -1.0, -2.0]))
        second.weight.copy_(torch.tensor([[0.0, 0.0, 0.0], [1.0, -2.0, 1.0]]))
        second.bias.copy_(torch.tensor([0.1, 0.0]))
    return nn.Sequential(first, nn.ReLU(), second).double()


def test_non_monotone_flip_policies():
    model = tent_model()
    x = torch.tensor([[0.05]], dtype=torch.float64)  # label 0, gradient pushes towards the tent
    # eps_max = 10 does not flip and neither does any bisection midpoint: plain bisection misses it.
    plain = minimal_epsilon_search(model, x, SearchSettings(eps_max=10.0, tol=1e-6))
    assert not plain.flipped.item() and math.isnan(plain.eps.item())
    assert not plain.flips_at_eps_max.item() and plain.consistent.item()
    # The grid scan finds the first crossing at 0.05 and reports the flip back (inconsistent).
    grid = minimal_epsilon_search(model, x, SearchSettings(eps_max=10.0, tol=1e-6, search="grid", grid_points=100))
    assert grid.flipped.item() and abs(grid.eps.item() - 0.05) <= 1e-6
    assert not grid.flips_at_eps_max.item() and not grid.consistent.item()
    # With eps_max = 3 the first midpoint (1.5) flips although 3 does not: bisection follows it.
    short = minimal_epsilon_search(model, x, SearchSettings(eps_max=3.0, tol=1e-6))
    assert short.flipped.item() and abs(short.eps.item() - 0.05) <= 1e-6
    assert not short.flips_at_eps_max.item() and not short.consistent.item()
    for kw in (dict(eps_max=10.0), dict(eps_max=10.0, search="grid", grid_points=100), dict(eps_max=3.0)):
        batched = minimal_epsilon_search(model, x, SearchSettings(tol=1e-6, **kw))
        assert_same(batched, naive_minimal_epsilon_search(model, x, SearchSettings(tol=1e-6, **kw)))


def count_evaluations(model: nn.Module) -> list[int]:
    """Attach a counter of evaluated samples (forward passes times batch size) to ``model``."""
    counter = [0]
    model.register_forward_pre_hook(lambda module, args: counter.__setitem__(0, counter[0] + args[0].shape[0]))
    return counter


def linear_model(seed: int, d: int = 20, classes: int = 10) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, classes)).double()


@pytest.mark.parametrize("make", ["linear", "mlp", "cnn"])
def test_regula_falsi_ends_in_the_cell_bisection_ends_in(make):
    """Both policies end on a "no flip" / "flip" pair of adjacent points of the same grid. With one
    crossing along the ray there is only one such pair, so they can differ only where the ray
    crosses more than once, and then each one's result witnesses it against the other's: a flip
    below a no-flip point. Checked with separate forward passes. Linear classifiers cross once."""
    if make == "linear":
        model = linear_model(0)
        x = torch.randn(200, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        kw = dict(eps_max=10.0, tol=1e-6)
    elif make == "mlp":
        model = small_mlp(5)
        x = torch.randn(200, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
        kw = dict(eps_max=30.0, tol=1e-6)
    else:
        model, x = small_cnn(0, dtype=torch.float64), pixels(100, 1, dtype=torch.float64)
        kw = dict(eps_max=100.0, tol=1e-5)
    bisection = minimal_epsilon_search(model, x, SearchSettings(**kw))
    falsi = minimal_epsilon_search(model, x, SearchSettings(search="regula_falsi", **kw))
    assert torch.equal(falsi.flipped, bisection.flipped) and torch.equal(falsi.orig_label, bisection.orig_label)
    assert bisection.flipped.float().mean() >= 0.9
    same = (falsi.eps == bisection.eps) | (falsi.eps.isnan() & bisection.eps.isnan())
    assert torch.equal(same, falsi.eps_lower == bisection.eps_lower)
    assert same.float().mean() >= (1.0 if make == "linear" else 0.9)
    for name in ("adv_label", "perturbation_norm"):
        a, b = getattr(falsi, name)[same], getattr(bisection, name)[same]
        assert torch.equal(a.isnan(), b.isnan()) and torch.equal(a[~a.isnan()], b[~b.isnan()]), name
    differ = ~same
    if differ.any():
        _, direction = attack_direction(model.eval(), x[differ])
        first_flip = torch.minimum(falsi.eps[differ], bisection.eps[differ])
        last_kept = torch.maximum(falsi.eps_lower[differ], bisection.eps_lower[differ])
        orig = bisection.orig_label[differ]
        assert (first_flip < last_kept).all()
        assert (labels_at(model, x[differ], direction, first_flip) != orig).all()
        assert (labels_at(model, x[differ], direction, last_kept) == orig).all()


def test_regula_falsi_needs_far_fewer_forward_passes():
    model = linear_model(2)
    x = torch.randn(100, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    counts = {}
    for search in ("bisection", "regula_falsi"):
        counter = count_evaluations(model)
        minimal_epsilon_search(model, x, SearchSettings(eps_max=100.0, tol=1e-6, search=search))
        counts[search] = counter[0] / len(x)
        model._forward_pre_hooks.clear()
    # bisection: direction + eps_max + 27 halvings + the verification pass in the caller's model
    # (float64: every point passes it, no step up); a linear margin is found in a few steps
    assert counts["bisection"] == 2 + bisection_steps(100.0, 1e-6) + 1
    assert counts["regula_falsi"] <= 8 + 1, counts


def test_naive_reference_refuses_regula_falsi():
    with pytest.raises(ValueError, match="regula_falsi"):
        naive_minimal_epsilon_search(small_mlp(0), torch.randn(2, 8, dtype=torch.float64), SearchSettings(eps_max=1.0, tol=0.1, search="regula_falsi"))


def test_regula_falsi_bisects_samples_that_do_not_flip_at_eps_max():
    """No bracket to interpolate: such samples follow the thesis's bisection, flip-back included."""
    model = tent_model()
    x = torch.tensor([[0.05]], dtype=torch.float64)
    for eps_max in (3.0, 10.0):
        kw = dict(eps_max=eps_max, tol=1e-6)
        assert_same(minimal_epsilon_search(model, x, SearchSettings(search="regula_falsi", **kw)),
                    minimal_epsilon_search(model, x, SearchSettings(**kw)))
    # eps_max = 1 flips (1.05 lies on the tent): interpolation then finds the first crossing at 0.05
    falsi = minimal_epsilon_search(model, x, SearchSettings(eps_max=1.0, tol=1e-6, search="regula_falsi"))
    assert falsi.flipped.item() and abs(falsi.eps.item() - 0.05) <= 1e-6 and falsi.consistent.item()


def test_unflipped_samples_are_reported_as_such():
    model, x = small_cnn(4), pixels(16, 13)
    res = minimal_epsilon_search(model, x, SearchSettings(eps_max=1e-3, tol=1e-4))
    assert not res.flipped.any()
    assert res.eps.isnan().all() and res.perturbation_norm.isnan().all()
    assert torch.equal(res.adv_label, res.orig_label)
    frame = res.to_frame()
    assert list(frame.columns) == FIELDS and len(frame) == 16
    assert frame["flipped"].mean() == 0.0  # the thesis's "rate"


def test_perturbation_norm_is_eps_times_sqrt_nonzero_signs():
    model, x = small_cnn(0), pixels(32, 15)
    res = minimal_epsilon_search(model, x, SearchSettings(eps_max=100.0, tol=1e-3))
    _, direction = attack_direction(model.eval(), x)
    nonzero = (direction != 0).flatten(1).sum(1).to(torch.float64)
    f = res.flipped
    torch.testing.assert_close(res.perturbation_norm[f], res.eps[f] * nonzero[f].sqrt(), rtol=1e-12, atol=0)
    torch.testing.assert_close(res.direction_norm, nonzero.sqrt(), rtol=1e-12, atol=0)


def test_clip_keeps_pixels_in_range_and_measures_the_clipped_perturbation():
    model, x = small_cnn(2), pixels(32, 17)
    res = minimal_epsilon_search(model, x, SearchSettings(eps_max=100.0, tol=1e-3, clip=(0, 255)), return_adversarial=True)
    assert res.adversarial.min() >= 0 and res.adversarial.max() <= 255
    f = res.flipped
    actual = (res.adversarial[f].double() - x[f].double()).flatten(1).norm(dim=1)
    # The reported norm is the real-number one; the adversarial is rounded once to float32.
    torch.testing.assert_close(res.perturbation_norm[f], actual, rtol=1e-4, atol=1e-3)
    assert (res.perturbation_norm[f] <= res.eps[f] * res.direction_norm[f] + 1e-9).all()


def test_model_state_is_restored_and_not_modified():
    model, x = small_cnn(4), pixels(8, 19)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    minimal_epsilon_search(model, x, SearchSettings(eps_max=100.0, tol=1e-2, channels_last=True))
    naive_minimal_epsilon_search(model, x[:2], SearchSettings(eps_max=100.0, tol=1e-2))
    assert all(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]) and v.is_contiguous()


def test_channels_last_gives_the_same_answers_in_float64():
    model, x = small_cnn(0, dtype=torch.float64), pixels(20, 21, dtype=torch.float64)
    kw = dict(eps_max=100.0, tol=1e-4)
    a = minimal_epsilon_search(model, x, SearchSettings(channels_last=True, **kw))
    b = minimal_epsilon_search(model, x, SearchSettings(channels_last=False, **kw))
    assert torch.equal(a.flipped, b.flipped)
    torch.testing.assert_close(a.eps, b.eps, equal_nan=True, rtol=0, atol=1e-4)


def test_tf32_setting_is_restored():
    conv = torch.backends.cudnn.conv
    before = conv.fp32_precision
    with fp32_precision(allow_tf32=False):
        assert conv.fp32_precision == "ieee"
    assert conv.fp32_precision == before


def test_progress_bar_and_return_adversarial(capsys):
    model, x = small_cnn(0), pixels(6, 23)
    res = minimal_epsilon_search(model, x, SearchSettings(eps_max=100.0, tol=1e-2), progress=True, return_adversarial=True)
    assert res.adversarial.shape == x.shape and res.adversarial.dtype == x.dtype
    f = res.flipped
    with torch.no_grad():
        assert torch.equal(model.eval()(res.adversarial[f]).argmax(1), res.adv_label[f])
    assert len(res) == 6


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(method="lbfgs"), "method"),
        (dict(eps_max=0.0), "eps_max"),
        (dict(tol=-1.0), "tol"),
        (dict(search="linear"), "search"),
        (dict(clip=(1.0, 0.0)), "clip"),
        (dict(loss_label="true"), "labels"),
        (dict(loss_label="target", labels=torch.zeros(4, dtype=torch.long)), "loss_label"),
        (dict(search="grid", grid_points=0), "grid_points"),
        (dict(verify_margin_ulps=-1.0), "verify_margin_ulps"),
    ],
)
def test_invalid_arguments_are_rejected(kwargs, message):
    base = dict(eps_max=1.0, tol=1e-2)
    base.update(kwargs)
    labels = base.pop("labels", None)
    with pytest.raises(ValueError, match=message):
        minimal_epsilon_search(small_mlp(0), torch.randn(4, 8, dtype=torch.float64), SearchSettings(**base), labels=labels)


def trained_lenet_like(seed: int = 0, steps: int = 60) -> tuple[nn.Sequential, torch.Tensor]:
    """A LeNet-5-shaped conv net on 16x16 pixel inputs [0, 255], trained briefly (seeded) on
    synthetic class templates so that its logits are as large as a trained net's (~10)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(
        Scale(1 / 256), nn.Conv2d(1, 6, 5), nn.MaxPool2d(2, 2, ceil_mode=True), nn.Conv2d(6, 12, 3),
        nn.MaxPool2d(2, 2, ceil_mode=True), nn.Flatten(), nn.Linear(12 * 2 * 2, 32), nn.ReLU(), nn.Linear(32, 5),
    )
    templates = torch.rand(5, 1, 16, 16, generator=g) * 255
    y = torch.randint(0, 5, (512,), generator=g)
    x = (templates[y] * 0.7 + torch.rand(512, 1, 16, 16, generator=g) * 76).clamp(0, 255)
    x[:, :, :3] = 0.0  # zero-valued rows, as MNIST's border: there tiny steps are representable
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        idx = torch.randint(0, 512, (64,), generator=g)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), x[:96].clone()


@pytest.mark.parametrize("search", ["bisection", "regula_falsi"])
def test_returned_adversarials_flip_in_the_callers_model_batched_and_one_at_a_time(search):
    """tol = 1e-6 is below float32's spacing at pixel 255 (1.5e-5): the search's own verdicts (on a
    channels-last copy) flicker there. Every returned adversarial must still flip when the caller's
    model is re-run on it: on the whole batch, in other batch sizes and one at a time."""
    model, x = trained_lenet_like()
    with torch.no_grad():
        assert model(x).abs().amax() > 3  # logits of a trained net's size, not a random init's
    res = minimal_epsilon_search(model, x, SearchSettings(eps_max=100.0, tol=1e-6, search=search, channels_last=True), return_adversarial=True)
    f = res.flipped
    assert f.float().mean() >= 0.9
    adv = res.adversarial
    assert adv.is_contiguous() and adv.dtype == x.dtype  # the caller's layout and dtype
    with torch.no_grad(), fp32_precision():
        whole = model(adv).argmax(1)
        single = torch.cat([model(adv[i : i + 1]).argmax(1) for i in range(len(x))])
        sevens = torch.cat([model(adv[i : i + 7]).argmax(1) for i in range(0, len(x), 7)])
        reversed_ = model(adv.flip(0)).argmax(1).flip(0)
    for name, labels in [("batched", whole), ("one at a time", single), ("chunks of 7", sevens),
                         ("reversed", reversed_)]:
        assert (labels[f] != res.orig_label[f]).all(), name
        assert torch.equal(labels[f], res.adv_label[f]), name
    # eps and the adversarial describe the same point: x + eps d rounded once to float32
    actual = (adv[f].double() - x[f].double()).flatten(1).norm(dim=1)
    torch.testing.assert_close(actual, res.perturbation_norm[f], rtol=1e-5, atol=1e-4)
    # the verification moved eps only upwards, by whole grid steps
    assert (res.verify_steps[f] >= 0).all() and (res.verify_steps[~f] == -1).all()
    step = 100.0 / 2 ** bisection_steps(100.0, 1e-6)
    assert (res.eps[f] - res.eps_lower[f] <= step * (res.verify_steps[f] + 1).double() * (1 + 1e-9)).all()


def test_verified_points_flip_with_the_margin():
    model, x = trained_lenet_like(seed=1)
    res = minimal_epsilon_search(model, x, SearchSettings(eps_max=100.0, tol=1e-6, search="regula_falsi"), return_adversarial=True)
    f = res.flipped
    with torch.no_grad():
        z = model(res.adversarial[f]).double()
    own = z.gather(1, res.orig_label[f].view(-1, 1)).squeeze(1)
    rival = z.scatter(1, res.orig_label[f].view(-1, 1), -math.inf).amax(1)
    # the verification asks for half the search's margin (DEFAULT_VERIFY_MARGIN_ULPS = 64)
    tau = 32 * torch.finfo(torch.float32).eps * z.abs().amax(1)
    assert (rival - own >= tau).all()


def test_flip_verdict_ties():
    """argmax takes the first maximal class: with margin 0 an exact tie is a flip iff the rival has
    the lower index; with a margin a tie never is."""
    z = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [2.0, 1.0, 0.0]])
    labels = torch.tensor([1, 0, 1])
    assert flip_verdict(z, labels, 0).tolist() == [True, False, True]
    assert flip_verdict(z, labels, 64).tolist() == [False, False, True]


@pytest.mark.parametrize("eps_max, tol", [(1e30, 1e-30), (1e300, 1e-300)])
def test_regula_falsi_handles_grids_beyond_int64(eps_max, tol):
    """eps_max / tol > 2**63 overflowed int64 grid positions (and > 2**1024 a float64 scale)."""
    model = linear_model(4)
    x = torch.randn(30, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    falsi = minimal_epsilon_search(model, x, SearchSettings(eps_max=eps_max, tol=tol, search="regula_falsi"))
    bisection = minimal_epsilon_search(model, x, SearchSettings(eps_max=eps_max, tol=tol))
    assert falsi.flipped.all() and torch.equal(falsi.flipped, bisection.flipped)
    torch.testing.assert_close(falsi.eps, bisection.eps, rtol=1e-13, atol=0)
    _, direction = attack_direction(model.eval(), x)
    assert (labels_at(model, x, direction, falsi.eps) != falsi.orig_label).all()
    # the bracket closed down to float64's resolution (tol is far below it)
    assert (falsi.eps - falsi.eps_lower <= 1e-12 * falsi.eps).all()
    assert (falsi.eps_lower > 0).all()
