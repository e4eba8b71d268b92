"""Training, evaluation and (de)serialisation of the thesis's classifiers.

``train_classifier`` runs mini-batch training (Adam or SGD with momentum) on the cross-entropy
loss, optionally with the Section 4.4 regulariser ``L1 = L - l * delta(h_L(x); f)``. It is
deterministic for a given ``seed`` on the CPU (shuffling uses its own seeded generator, dropout the
forked global RNG) and resumable from an atomically written checkpoint. ``save_model`` and
``load_model`` store a model together with its registry name and builder kwargs, so a model file
rebuilds itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .io import save_torch
from .metrics import ModelMetrics
from .models import build_model
from .progress import progress_bar
from .settings import TrainingSettings

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "advbounds-train-checkpoint"
MODEL_FORMAT = "advbounds-model"
_FORMAT_VERSION = 1
#: metrics that describe one run rather than the model (they differ between two runs that give
#: bit-identical weights): kept in the metrics JSON, never in the model file, so that a retrain which
#: reproduces the weights gives a byte-identical model file and reruns nothing downstream
RUN_METADATA_KEYS = ("wall_time_s", "resumed_from")


# ------------------------------------------------------------------------------------------------
# Settings
# ------------------------------------------------------------------------------------------------


def _lr_at(s: TrainingSettings, iteration: int) -> float:
    # stateless schedules: a resumed run needs nothing but the iteration counter
    if s.lr_policy == "inv":  # Caffe: base_lr * (1 + gamma * iter) ^ (-power), iter from 0
        return s.lr * (1.0 + s.lr_gamma * iteration) ** (-s.lr_power)
    drops = sum(1 for milestone in s.lr_milestones if iteration >= milestone)
    return s.lr * s.lr_gamma ** drops


def _make_optimizer(model: nn.Module, s: TrainingSettings) -> torch.optim.Optimizer:
    if s.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)


def _epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The shuffling order of one epoch, a function of (seed, epoch) only (so resuming needs no state)."""
    derived = int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint32)[0])
    return torch.randperm(n, generator=torch.Generator().manual_seed(derived))


# ------------------------------------------------------------------------------------------------
# Section 4.4 regulariser
# ------------------------------------------------------------------------------------------------


def output_layer_delta(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Differentiable delta(h; f) of eq. (3.12) for the output layer ``f(h) = weight @ h + bias``.

    ``delta = min_{c != f(h)} |(w_c - w_f(h)) . h + b_c - b_f(h)| / ||w_c - w_f(h)||``, per sample
    ``[B]``, at the predicted class f(h). This is the training-time twin of the (non-differentiable)
    ``advbounds.bounds.linear_output_bound``; it lives here so the loss has gradients w.r.t. the
    weights and h. The distances ``||w_c - w_c'||`` come from the Gram matrix; they are clamped at
    1e-12 so that two identical class vectors give a huge (not infinite) term.
    """
    logits = h @ weight.t() + bias  # [B, C]
    predicted = logits.argmax(dim=1)  # f(h); the argmax itself carries no gradient
    numerator = (logits - logits.gather(1, predicted[:, None])).abs()  # [B, C]
    gram = weight @ weight.t()  # [C, C]
    sq_norms = gram.diagonal()
    sq_dist = (sq_norms[:, None] + sq_norms[None, :] - 2 * gram).clamp_min(1e-24)  # ||w_c - w_c'||^2
    distance = sq_dist[predicted].sqrt()  # [B, C]: ||w_c' - w_f(h)||
    ratio = numerator / distance
    ratio = ratio.masked_fill(F.one_hot(predicted, logits.shape[1]).bool(), math.inf)
    return ratio.min(dim=1).values


def _forward(model: nn.Sequential, x: torch.Tensor, want_hidden: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    if not want_hidden:
        return model(x), None
    h = x
    for layer in list(model)[:-1]:
        h = layer(h)
    return model[-1](h), h


# ------------------------------------------------------------------------------------------------
# Checkpoints
# ------------------------------------------------------------------------------------------------


def _digest_tensor(hasher, tensor: torch.Tensor) -> None:
    t = tensor.detach().to("cpu").contiguous().reshape(-1)
    hasher.update(str((t.dtype, tuple(tensor.shape))).encode())
    hasher.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def _fingerprint(model: nn.Module, s: TrainingSettings, x: torch.Tensor, y: torch.Tensor, device_type: str,
                 code_version: str = "") -> str:
    """Identifies a training run: settings that shape the trajectory, architecture, initial weights,
    training data, device type and the code that trains (``code_version``, the job's fingerprint of
    the library modules it runs). A checkpoint from any other run is never resumed."""
    hasher = hashlib.blake2b(digest_size=16)
    hasher.update(code_version.encode())
    hasher.update(repr(sorted(s.trajectory().items())).encode())
    hasher.update(device_type.encode())  # a run is resumed only on the kind of device that began it
    hasher.update(repr(model).encode())
    for key, value in model.state_dict().items():
        hasher.update(key.encode())
        _digest_tensor(hasher, value)
    _digest_tensor(hasher, x)
    _digest_tensor(hasher, y)
    return hasher.hexdigest()


def _load_checkpoint(path: Path, fingerprint: str, model: nn.Module, total: int) -> dict | None:
    """Read and validate a checkpoint; ``None`` (with a warning) when it cannot be used."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated / corrupt / not a torch file
        warnings.warn(f"ignoring unreadable checkpoint {path}: {error}", RuntimeWarning, stacklevel=3)
        return None
    problem = None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        problem = "not an advbounds training checkpoint"
    elif state.get("version") != _FORMAT_VERSION:
        problem = f"format version {state.get('version')} != {_FORMAT_VERSION}"
    elif state.get("fingerprint") != fingerprint:
        problem = "it belongs to a different model, data set or settings"
    elif not isinstance(state.get("iteration"), int) or not 0 < state["iteration"] <= total:
        problem = f"iteration {state.get('iteration')!r} outside 1..{total}"
    else:
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        found = {k: tuple(v.shape) for k, v in state.get("model", {}).items()}
        if expected != found:
            problem = "its parameter names or shapes differ from the model's"
        elif not all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point()):
            problem = "it holds non-finite weights"
    if problem:
        warnings.warn(f"ignoring checkpoint {path}: {problem}", RuntimeWarning, stacklevel=3)
        return None
    return state


@contextlib.contextmanager
def _deterministic_cudnn() -> Iterator[None]:
    previous = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------


def train_classifier(
    model: nn.Sequential,
    data: Mapping[str, torch.Tensor],
    settings: TrainingSettings,
    device: torch.device | str,
    progress: bool = True,
    checkpoint_path: str | os.PathLike | None = None,
    code_version: str = "",
) -> ModelMetrics:
    """Train ``model`` in place on ``data['x_train'], data['y_train']`` and return its metrics.

    ``settings``: :class:`advbounds.settings.TrainingSettings`. An epoch is
    one pass over a fresh permutation of the training set in batches of ``batch_size`` (the last one
    may be smaller); ``epochs=E`` means ``E * ceil(N / batch_size)`` iterations. With
    ``regularization = l != 0`` the loss is Section 4.4's ``L - l * mean_batch delta(h_L(x); f)``,
    which needs the model's last layer to be ``nn.Linear``.

    With ``checkpoint_path``, model, optimizer, iteration and RNG state are written there atomically
    every ``checkpoint_every`` iterations, and a valid checkpoint of the same run (same settings,
    architecture, initial weights and training data) is resumed; the resumed run ends with the same
    weights as an uninterrupted one. Any other checkpoint is ignored with a warning; so is one written
    by other code (``code_version``: pass the job's code fingerprint, so that a retrain after a
    library change starts afresh instead of resuming the old code's run). The final model
    is the caller's to save (``save_model``); the checkpoint is left in place.

    Returns the run's :class:`advbounds.metrics.ModelMetrics` (accuracies per split, loss curve,
    iterations, resume point, wall time, device, seed, training-set size and the settings).
    """
    if not isinstance(settings, TrainingSettings):
        raise TypeError(f"settings must be a TrainingSettings, got {type(settings).__name__}")
    s = settings
    device = torch.device(device)
    x_cpu, y_cpu = data["x_train"], data["y_train"]
    if len(x_cpu) != len(y_cpu) or len(x_cpu) == 0:
        raise ValueError(f"x_train and y_train must be non-empty and equally long ({len(x_cpu)} vs {len(y_cpu)})")
    regularize = s.regularization != 0.0
    if regularize and not isinstance(model[-1], nn.Linear):
        raise ValueError("the Section 4.4 regularizer needs a model whose last layer is nn.Linear, "
                         f"got {type(model[-1]).__name__}")

    n_train = len(x_cpu)
    batch_size = s.batch_size
    batches_per_epoch = math.ceil(n_train / batch_size)
    total = s.iterations if s.iterations is not None else s.epochs * batches_per_epoch
    device = torch.device(device)
    fingerprint = _fingerprint(model, s, x_cpu, y_cpu, device.type, code_version) if checkpoint_path is not None else ""
    log.info("training %d iterations on %d samples (%s): %s", total, n_train, device,
             ", ".join(f"{k}={v}" for k, v in s.to_dict().items()))

    start_time = time.perf_counter()
    model.to(device)
    x_train = x_cpu.to(device=device, dtype=torch.float32)
    y_train = y_cpu.to(device=device, dtype=torch.long)
    optimizer = _make_optimizer(model, s)
    start, losses, loss_curve = 0, [], []

    cuda_devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices), _deterministic_cudnn():
        torch.manual_seed(s.seed)  # dropout masks; the caller's RNG state is restored afterwards
        checkpoint = None
        if checkpoint_path is not None and Path(checkpoint_path).exists():
            checkpoint = _load_checkpoint(Path(checkpoint_path), fingerprint, model, total)
        if checkpoint is not None:
            model.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            torch.set_rng_state(checkpoint["rng_cpu"])
            if cuda_devices and checkpoint.get("rng_cuda") is not None:
                torch.cuda.set_rng_state(checkpoint["rng_cuda"], device)
            start = checkpoint["iteration"]
            log.info("resumed from checkpoint %s at iteration %d of %d", checkpoint_path, start, total)
            losses = list(checkpoint["recent_losses"])
            loss_curve = [list(point) for point in checkpoint["loss_curve"]]

        bar = progress_bar(total=total, initial=start, disable=not progress, desc="train", unit="it")
        permutation, permutation_epoch = None, -1
        pending: list[torch.Tensor] = []
        model.train()
        for iteration in range(start, total):
            epoch, position = divmod(iteration, batches_per_epoch)
            if epoch != permutation_epoch:
                permutation, permutation_epoch = _epoch_permutation(s.seed, epoch, n_train).to(device), epoch
            index = permutation[position * batch_size:(position + 1) * batch_size]
            xb, yb = x_train[index], y_train[index]

            for group in optimizer.param_groups:
                group["lr"] = _lr_at(s, iteration)
            logits, hidden = _forward(model, xb, regularize)
            loss = F.cross_entropy(logits, yb)
            if regularize:
                loss = loss - s.regularization * output_layer_delta(hidden, model[-1].weight, model[-1].bias).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

            # losses stay on the device and are read every 50 iterations (no host sync per step)
            pending.append(loss.detach())
            done = iteration + 1
            checkpoint_now = checkpoint_path is not None and done % s.checkpoint_every == 0 and done < total
            if done % 50 == 0 or done == total or checkpoint_now:
                values = torch.stack(pending).double().cpu().tolist()
                pending.clear()
                if not all(math.isfinite(v) for v in values):
                    bar.close()
                    raise FloatingPointError(f"training loss became non-finite before iteration {done}; "
                                             "lower lr or regularization")
                losses.extend(values)
                del losses[:-100]
                bar.set_postfix(loss=f"{np.mean(losses):.4f}", refresh=False)
            if done % 100 == 0 or done == total:
                loss_curve.append([done, float(np.mean(losses))])
            bar.update(1)
            if checkpoint_now:
                save_torch({
                    "format": CHECKPOINT_FORMAT,
                    "version": _FORMAT_VERSION,
                    "fingerprint": fingerprint,
                    "iteration": done,
                    "model": {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()},
                    "optimizer": optimizer.state_dict(),
                    "rng_cpu": torch.get_rng_state(),
                    "rng_cuda": torch.cuda.get_rng_state(device) if cuda_devices else None,
                    "recent_losses": list(losses),
                    "loss_curve": loss_curve,
                }, checkpoint_path)
        bar.close()
    model.eval()

    def split_accuracy(split: str) -> float | None:
        x, y = data.get(f"x_{split}"), data.get(f"y_{split}")
        if x is None or y is None or len(x) == 0:
            return None
        return evaluate_accuracy(model, x, y, device, batch_size=s.eval_batch_size)

    accuracies = {split: split_accuracy(split) for split in ("train", "val", "test")}
    final_loss = float(np.mean(losses)) if losses else None
    log.info("final accuracy: %s; final loss %s", ", ".join(
        f"{split} {'n/a' if acc is None else f'{acc:.4f}'}" for split, acc in accuracies.items()),
        "n/a" if final_loss is None else f"{final_loss:.4f}")
    return ModelMetrics(
        train_accuracy=accuracies["train"],
        val_accuracy=accuracies["val"],
        test_accuracy=accuracies["test"],
        final_loss=final_loss,
        loss_curve=loss_curve,
        iterations=total,
        epochs=total / batches_per_epoch,
        resumed_from=start,
        wall_time_s=time.perf_counter() - start_time,
        device=str(device),
        seed=s.seed,
        n_train=n_train,
        settings=s.to_dict(),
    )


# ------------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------------


@torch.no_grad()
def predict_logits(
    model: nn.Module, x: torch.Tensor, device: torch.device | str, batch_size: int = 1000
) -> torch.Tensor:
    """Logits ``[B, C]`` of ``model`` (in eval mode) for ``x``, batched on ``device``; on ``x``'s device."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    try:
        outputs = [model(x[i:i + batch_size].to(device=device, dtype=torch.float32)).to(x.device)
                   for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    if not outputs:
        raise ValueError("cannot predict on an empty input")
    return torch.cat(outputs)


def predict(model: nn.Module, x: torch.Tensor, device: torch.device | str, batch_size: int = 1000) -> torch.Tensor:
    """Predicted labels ``[B]`` (argmax of the logits), on ``x``'s device."""
    return predict_logits(model, x, device, batch_size).argmax(dim=1)


def evaluate_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device | str,
                      batch_size: int = 1000) -> float:
    """Fraction of samples whose predicted label equals ``y``."""
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length ({len(x)} vs {len(y)})")
    return float((predict(model, x, device, batch_size) == y.to(x.device)).double().mean())


# ------------------------------------------------------------------------------------------------
# Model files
# ------------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """Builder kwargs as plain python (tuples -> lists) so a model file loads with weights_only."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return value


def save_model(model: nn.Module, name: str, kwargs: Mapping[str, Any], path: str | os.PathLike,
               metrics: ModelMetrics | Mapping[str, Any] | None = None) -> None:
    """Write ``model`` atomically as a self-describing file: registry ``name``, builder ``kwargs``,
    CPU ``state_dict``, ``metrics`` (less ``RUN_METADATA_KEYS``) and versions. Checks first that
    ``build_model(name, **kwargs)`` rebuilds a model the state dict fits. Equal weights give equal
    bytes."""
    import advbounds

    kwargs = _plain(dict(kwargs))
    if isinstance(metrics, ModelMetrics):
        metrics = metrics.to_dict()
    state_dict = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    build_model(name, **kwargs).load_state_dict(state_dict)  # raises if the file would not reload
    save_torch({
        "format": MODEL_FORMAT,
        "version": _FORMAT_VERSION,
        "name": name,
        "kwargs": kwargs,
        "state_dict": state_dict,
        "metrics": _plain({k: v for k, v in (metrics or {}).items() if k not in RUN_METADATA_KEYS}),
        "torch_version": str(torch.__version__),
        "advbounds_version": advbounds.__version__,
    }, path)


def load_model_record(path: str | os.PathLike) -> dict[str, Any]:
    """The raw contents of a model file written by ``save_model`` (name, kwargs, metrics, ...)."""
    record = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(record, dict) or record.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path} is not an advbounds model file")
    return record


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu") -> nn.Sequential:
    """Rebuild the model stored by ``save_model`` at ``path``, in eval mode on ``device``."""
    record = load_model_record(path)
    model = build_model(record["name"], **record["kwargs"])
    model.load_state_dict(record["state_dict"])
    return model.to(device).eval()


__all__ = [
    "TrainingSettings",
    "evaluate_accuracy",
    "load_model",
    "load_model_record",
    "output_layer_delta",
    "predict",
    "predict_logits",
    "save_model",
    "train_classifier",
]
