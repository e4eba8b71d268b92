"""Training loop, Section 4.4 regulariser, checkpoint/resume and model files of advbounds.training."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advbounds import training
from advbounds.metrics import ModelMetrics
from advbounds.models import build_model
from advbounds.settings import TrainingSettings
from advbounds.training import (
    evaluate_accuracy,
    load_model,
    load_model_record,
    output_layer_delta,
    predict,
    save_model,
    train_classifier,
)

CPU = torch.device("cpu")



def blobs(n_per_class: int = 60, dim: int = 4, n_classes: int = 3, seed: int = 0, spread: float = 0.5) -> dict:
    """Well separated Gaussian blobs split 60/20/20."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.eye(n_classes, dim) * 4
    x = torch.cat([centres[c] + spread * torch.randn(n_per_class, dim, generator=g) for c in range(n_classes)])
    y = torch.arange(n_classes).repeat_interleave(n_per_class)
    perm = torch.randperm(len(x), generator=g)
    x, y = x[perm], y[perm]
    a, b = int(0.6 * len(x)), int(0.8 * len(x))
    return {"x_train": x[:a], "y_train": y[:a], "x_val": x[a:b], "y_val": y[a:b], "x_test": x[b:], "y_test": y[b:]}


def tiny_images(n: int = 48, seed: int = 0) -> dict:
    """8x8 RGB images in [0, 255] whose class is the brightest channel."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.rand(n, 3, 8, 8, generator=g) * 100
    x[torch.arange(n), y] += 150
    return {"x_train": x, "y_train": y, "x_val": x[:0], "y_val": y[:0], "x_test": x[:16], "y_test": y[:16]}


def mlp(seed: int = 0) -> nn.Sequential:
    return build_model("mlp", seed=seed, in_dim=4, hidden=[8], n_classes=3)


def tiny_nin(seed: int = 0) -> nn.Sequential:
    return build_model("cifar_nin", seed=seed, width=0.1, image_size=8, n_classes=3)


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


SETTINGS = TrainingSettings(optimizer="adam", lr=0.01, batch_size=16, iterations=200, seed=1)


def test_mlp_learns_a_separable_problem():
    data = blobs()
    model = mlp()
    metrics = train_classifier(model, data, SETTINGS, CPU, progress=False)
    assert metrics.train_accuracy >= 0.97
    assert metrics.test_accuracy >= 0.95
    assert metrics.val_accuracy >= 0.9
    assert metrics.final_loss < 0.2
    assert metrics.iterations == 200 and metrics.resumed_from == 0
    assert metrics.device == "cpu" and metrics.seed == 1
    assert metrics.loss_curve[0][0] == 100 and metrics.loss_curve[-1][0] == 200
    assert metrics.loss_curve[-1][1] < metrics.loss_curve[0][1] + 1e-9 or metrics.final_loss < 0.05
    assert not model.training  # returned in eval mode


def test_tiny_nin_learns_a_colour_problem():
    data = tiny_images(n=96)
    metrics = train_classifier(tiny_nin(), data, TrainingSettings(lr=3e-3, batch_size=16, iterations=100, seed=0),
                               CPU, progress=False)
    assert metrics.train_accuracy >= 0.95 and metrics.test_accuracy >= 0.9


def test_sgd_with_momentum_and_epochs():
    data = blobs()
    settings = TrainingSettings(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=32, epochs=20, seed=0,
                                lr_milestones=[200], lr_gamma=0.5)
    metrics = train_classifier(mlp(), data, settings, CPU, progress=False)
    assert metrics.iterations == 20 * math.ceil(len(data["x_train"]) / 32)
    assert metrics.epochs == pytest.approx(20)
    assert metrics.test_accuracy >= 0.95


def test_training_is_deterministic_for_a_seed():
    data = blobs()
    a, b, c = mlp(), mlp(), mlp()
    train_classifier(a, data, SETTINGS.replace(iterations=50), CPU, progress=False)
    train_classifier(b, data, SETTINGS.replace(iterations=50), CPU, progress=False)
    train_classifier(c, data, SETTINGS.replace(iterations=50, seed=2), CPU, progress=False)
    assert same_weights(a, b)
    assert not same_weights(a, c)  # the seed drives the shuffling


def test_training_with_dropout_is_deterministic_and_leaves_the_global_rng_alone():
    data = tiny_images()
    settings = TrainingSettings(lr=0.003, batch_size=8, iterations=12, seed=0)
    a, b = tiny_nin(), tiny_nin()
    state = torch.get_rng_state()
    train_classifier(a, data, settings, CPU, progress=False)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(12345)  # the dropout masks depend on settings.seed, not on the caller's RNG
    train_classifier(b, data, settings, CPU, progress=False)
    assert same_weights(a, b)


class Interrupt(Exception):
    pass


def interrupt_at(monkeypatch, stop_iteration: int) -> None:
    """Make the training loop die at ``stop_iteration`` (as a killed job would)."""
    original = training._lr_at

    def lr_at(settings, iteration):
        if iteration == stop_iteration:
            raise Interrupt
        return original(settings, iteration)

    monkeypatch.setattr(training, "_lr_at", lr_at)


@pytest.mark.parametrize("make_model, data_fn, settings", [
    (mlp, blobs, SETTINGS.replace(iterations=60, checkpoint_every=20)),
    # dropout + Adam: the checkpoint must restore the RNG and the optimizer moments
    (tiny_nin, tiny_images, TrainingSettings(lr=0.003, batch_size=8, iterations=15, checkpoint_every=5, seed=0)),
])
def test_resume_from_checkpoint_matches_an_uninterrupted_run(tmp_path, monkeypatch, make_model, data_fn, settings):
    data = data_fn()
    reference = make_model()
    train_classifier(reference, data, settings, CPU, progress=False)

    checkpoint = tmp_path / "ckpt.pt"
    total, every = settings.iterations, settings.checkpoint_every
    with monkeypatch.context() as patch:
        interrupt_at(patch, total - every // 2)
        with pytest.raises(Interrupt):
            train_classifier(make_model(), data, settings, CPU, progress=False, checkpoint_path=checkpoint)
    assert checkpoint.exists()
    assert not list(tmp_path.glob(".*.tmp")) and not list(tmp_path.glob(".ckpt*"))  # no partial files

    resumed = make_model()
    metrics = train_classifier(resumed, data, settings, CPU, progress=False, checkpoint_path=checkpoint)
    assert metrics.resumed_from == total - every
    assert same_weights(resumed, reference)


def test_corrupt_or_foreign_checkpoints_are_never_used(tmp_path):
    data = blobs()
    settings = SETTINGS.replace(iterations=30, checkpoint_every=10)
    reference = mlp()
    train_classifier(reference, data, settings, CPU, progress=False)

    checkpoint = tmp_path / "ckpt.pt"
    checkpoint.write_bytes(b"\x80\x02 truncated garbage")
    model = mlp()
    with pytest.warns(RuntimeWarning, match="unreadable"):
        metrics = train_classifier(model, data, settings, CPU, progress=False, checkpoint_path=checkpoint)
    assert metrics.resumed_from == 0 and same_weights(model, reference)

    # a valid checkpoint of another run (different lr) is ignored as well
    other = settings.replace(lr=0.02, iterations=10, checkpoint_every=5)
    checkpoint.unlink()
    train_classifier(mlp(), data, other.replace(iterations=20), CPU, progress=False, checkpoint_path=checkpoint)
    model = mlp()
    with pytest.warns(RuntimeWarning, match="different"):
        metrics = train_classifier(model, data, settings, CPU, progress=False, checkpoint_path=checkpoint)
    assert metrics.resumed_from == 0 and same_weights(model, reference)


def test_output_layer_delta_matches_a_hand_computed_value():
    weight = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    bias = torch.tensor([0.0, 0.0, 0.5])
    h = torch.tensor([[2.0, 1.0], [0.0, 3.0]])
    # sample 1: logits (2, 1, -1.5), class 0: min(|1-2| / sqrt(2), |-1.5-2| / 2) = 1/sqrt(2)
    # sample 2: logits (0, 3, 0.5), class 1: min(|0-3| / sqrt(2), |0.5-3| / sqrt(2)) = 2.5/sqrt(2)
    expected = torch.tensor([1 / math.sqrt(2), 2.5 / math.sqrt(2)])
    torch.testing.assert_close(output_layer_delta(h, weight, bias), expected)


def test_output_layer_delta_is_differentiable():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(output_layer_delta, (h, w, b))


def test_output_layer_delta_agrees_with_the_bounds_package():
    try:
        from advbounds.bounds import linear_output_bound
    except ImportError:
        pytest.skip("advbounds.bounds.linear_output_bound is not available")
    g = torch.Generator().manual_seed(1)
    w, b, h = (torch.randn(4, 6, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64),
               torch.randn(10, 6, generator=g, dtype=torch.float64))
    torch.testing.assert_close(output_layer_delta(h, w, b), linear_output_bound(w, b, h).to(torch.float64))


def test_regularized_loss_is_cross_entropy_minus_l_delta():
    data = blobs()
    model = mlp(seed=5)
    initial = mlp(seed=5)
    ell = 0.3
    # one iteration on the whole training set: the recorded loss is the loss at the initial weights
    settings = TrainingSettings(lr=1e-3, batch_size=len(data["x_train"]), iterations=1, regularization=ell)
    metrics = train_classifier(model, data, settings, CPU, progress=False)
    x, y = data["x_train"], data["y_train"]
    with torch.no_grad():
        hidden = initial[:-1](x)
    last = initial[-1].requires_grad_(False)
    # delta(h_L; f) of eq. 3.12 by brute force over the classes
    logits = last(hidden)
    c = logits.argmax(1)
    delta = torch.tensor([
        min(abs(float((last.weight[k] - last.weight[c[i]]) @ hidden[i] + last.bias[k] - last.bias[c[i]]))
            / float((last.weight[k] - last.weight[c[i]]).norm())
            for k in range(3) if k != c[i])
        for i in range(len(x))
    ])
    expected = F.cross_entropy(logits, y).item() - ell * delta.mean().item()
    assert metrics.final_loss == pytest.approx(expected, rel=1e-5)


def test_regularization_increases_the_output_margin():
    data = blobs()
    plain, regular = mlp(), mlp()
    settings = SETTINGS.replace(iterations=150)
    train_classifier(plain, data, settings, CPU, progress=False)
    train_classifier(regular, data, settings.replace(regularization=1.0), CPU, progress=False)

    def mean_delta(model):
        with torch.no_grad():
            return output_layer_delta(model[:-1](data["x_test"]), model[-1].weight, model[-1].bias).mean()

    assert mean_delta(regular) > 1.5 * mean_delta(plain)


def test_regularization_needs_a_linear_output_layer():
    with pytest.raises(ValueError, match="Linear"):
        train_classifier(tiny_nin(), tiny_images(), TrainingSettings(iterations=1, regularization=0.1), CPU, progress=False)


@pytest.mark.parametrize("bad", [
    {"iterations": 10, "epochs": 1},
    {},
    {"iterations": 10, "learning_rate": 0.1},
    {"iterations": 10, "optimizer": "rmsprop"},
    {"iterations": 0},
    {"iterations": 10, "lr_policy": "cosine"},
    {"iterations": 10, "lr_policy": "inv", "lr_gamma": 1e-4},  # inv needs an explicit power
])
def test_invalid_settings_are_rejected(bad):
    with pytest.raises(ValueError):
        TrainingSettings.from_config(bad)


def test_predict_and_evaluate_accuracy():
    model = build_model("linear", in_dim=2, n_classes=2)
    with torch.no_grad():
        model.fc1.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        model.fc1.bias.zero_()
    x = torch.tensor([[2.0, 1.0], [0.0, 1.0], [3.0, 4.0], [5.0, -1.0], [1.0, 0.0]])
    assert predict(model, x, CPU, batch_size=2).tolist() == [0, 1, 1, 0, 0]
    assert evaluate_accuracy(model, x, torch.tensor([0, 1, 0, 0, 1]), CPU, batch_size=3) == pytest.approx(0.6)


def test_save_load_round_trip(tmp_path):
    kwargs = {"conv_channels": (4, 6), "hidden": 12, "lrn_alpha": 1e-3}
    model = build_model("lenet_lrn3", seed=0, **kwargs)
    path = tmp_path / "models" / "lenet_lrn3.pt"
    save_model(model, "lenet_lrn3", kwargs, path, {"test_accuracy": 0.5})
    loaded = load_model(path)
    assert isinstance(loaded, nn.Sequential) and not loaded.training
    assert same_weights(model, loaded)
    assert str(loaded) == str(model)
    x = torch.rand(3, 1, 28, 28) * 255
    torch.testing.assert_close(loaded(x), model.eval()(x))
    record = load_model_record(path)
    assert record["name"] == "lenet_lrn3" and record["kwargs"]["hidden"] == 12
    assert record["metrics"] == {"test_accuracy": 0.5}


def test_save_model_refuses_kwargs_that_would_not_rebuild_it(tmp_path):
    model = build_model("mlp", in_dim=4, hidden=[8], n_classes=3)
    with pytest.raises(RuntimeError):
        save_model(model, "mlp", {"in_dim": 4, "hidden": [9], "n_classes": 3}, tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()


def test_each_epoch_reshuffles_reproducibly():
    first, second = training._epoch_permutation(3, 0, 50), training._epoch_permutation(3, 1, 50)
    assert sorted(first.tolist()) == list(range(50))
    assert not torch.equal(first, second)
    assert torch.equal(first, training._epoch_permutation(3, 0, 50))


def test_multistep_learning_rate_schedule():
    s = TrainingSettings(iterations=10, lr=0.1, lr_milestones=[5, 2], lr_gamma=0.5)
    assert [training._lr_at(s, i) for i in (0, 1, 2, 4, 5, 9)] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
    # Caffe's LeNet solver: base_lr 0.01, lr_policy "inv", gamma 1e-4, power 0.75
    s = TrainingSettings(iterations=10, lr=0.01, lr_policy="inv", lr_gamma=1e-4, lr_power=0.75)
    assert training._lr_at(s, 0) == pytest.approx(0.01)
    assert training._lr_at(s, 10_000) == pytest.approx(0.01 * 2 ** -0.75)
    assert training._lr_at(TrainingSettings(iterations=10), 10_000) == TrainingSettings.lr  # no schedule


RESUMABLE = SETTINGS.replace(iterations=30, checkpoint_every=10)


def interrupted_run(monkeypatch, checkpoint, code_version: str = "") -> None:
    """Train ``RESUMABLE`` until iteration 25, leaving the checkpoint of iteration 20 behind."""
    with monkeypatch.context() as patch:
        interrupt_at(patch, 25)
        with pytest.raises(Interrupt):
            train_classifier(mlp(), blobs(), RESUMABLE, CPU, progress=False, checkpoint_path=checkpoint,
                             code_version=code_version)


def test_a_checkpoint_of_other_code_is_not_resumed(tmp_path, monkeypatch):
    """``--forcerun`` after a library change must retrain, not resume the old code's run."""
    data, settings, checkpoint = blobs(), RESUMABLE, tmp_path / "ckpt.pt"
    interrupted_run(monkeypatch, checkpoint, code_version="old")
    with pytest.warns(RuntimeWarning, match="different"):
        metrics = train_classifier(mlp(), data, settings, CPU, progress=False, checkpoint_path=checkpoint,
                                   code_version="new")
    assert metrics.resumed_from == 0
    # the same code resumes
    interrupted_run(monkeypatch, checkpoint, code_version="new")
    metrics = train_classifier(mlp(), data, settings, CPU, progress=False, checkpoint_path=checkpoint,
                               code_version="new")
    assert metrics.resumed_from == 20


def test_equal_weights_give_a_byte_identical_model_file(tmp_path):
    """Run metadata (wall time, resume point) differs between two runs with equal weights; it goes
    to the metrics JSON, not the model file, so a reproduced retrain reruns nothing downstream."""
    files = []
    for run in range(2):
        model = mlp()
        metrics = train_classifier(model, blobs(), SETTINGS.replace(iterations=20), CPU, progress=False)
        assert "wall_time_s" in metrics.to_dict() and "resumed_from" in metrics.to_dict()
        path = tmp_path / f"run{run}.pt"
        save_model(model, "mlp", {"in_dim": 4, "hidden": [8], "n_classes": 3}, path, metrics)
        files.append(path.read_bytes())
    assert files[0] == files[1]
    assert not set(training.RUN_METADATA_KEYS) & set(load_model_record(tmp_path / "run0.pt")["metrics"])


def test_training_log_names_the_settings_the_resume_point_and_the_final_accuracy(tmp_path, monkeypatch, caplog):
    data, settings, checkpoint = blobs(), RESUMABLE, tmp_path / "ckpt.pt"
    interrupted_run(monkeypatch, checkpoint)
    with caplog.at_level("INFO", logger="advbounds.training"):
        metrics = train_classifier(mlp(), data, settings, CPU, progress=False, checkpoint_path=checkpoint)
    text = caplog.text
    assert "lr=0.01" in text and "batch_size=16" in text and "iterations=30" in text
    assert "resumed from checkpoint" in text and "at iteration 20 of 30" in text
    assert f"test {metrics.test_accuracy:.4f}" in text and "final accuracy" in text


def test_model_metrics_round_trip_and_refuse_incomplete_files(tmp_path):
    metrics = train_classifier(mlp(), blobs(), SETTINGS.replace(iterations=20), CPU, progress=False)
    assert metrics.settings == SETTINGS.replace(iterations=20).to_dict()
    described = metrics.with_details(dataset="blobs", n_test=3)
    assert list(described.to_dict())[-2:] == ["dataset", "n_test"]
    path = tmp_path / "m.metrics.json"
    described.to_json(path)
    assert ModelMetrics.from_json(path) == described
    with pytest.raises(ValueError, match="measured"):
        metrics.with_details(test_accuracy=1.0)  # a detail never overwrites what training measured
    path.write_text('{"test_accuracy": 0.9}')
    with pytest.raises(ValueError, match="lacks the training metrics"):
        ModelMetrics.from_json(path)
