"""Chapter 5: the model runs of the convolutional networks (LeNet-5, LeNet-LRN1/2/3, CIFAR-NIN).

Everything here runs a network (torch); the tables and figure data that summarise its per-sample
frames are in :mod:`advbounds.experiments.cnn_summary` (pandas only).

* :func:`train_cnn` trains one network on its data set (Sections 5.3 and 5.4.1);
* :func:`bounds_frame` computes the per-sample theoretical bound and every layer's kappa
  (Algorithm 5.1) on a whole test set;
* :func:`attack_frame` runs the minimal-epsilon FGS search (Algorithm 2.1) on a whole test set;
* :func:`adversarial_images`, :func:`pick_sample`, :func:`measured_kernel_scaling` and
  :func:`iterative_sequence` run the networks for the figures.

Units: MNIST and CIFAR-10 inputs stay in raw pixel units [0, 255]; every bound, epsilon and norm is
in those units. The choices the thesis leaves open are documented in ``docs/chapter5.md``.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from advbounds.attacks import iterative_perturbation, minimal_epsilon_search
from advbounds.bounds import model_bounds
from advbounds.config import first_samples
from advbounds.data import n_classes_of
from advbounds.frames import CERTIFIED_RADIUS, CORRECTED_BOUND, SOUND_KAPPA_PREFIX
from advbounds.metrics import ModelMetrics
from advbounds.models import build_model
from advbounds.progress import progress_bar
from advbounds.settings import SearchSettings, TrainingSettings
from advbounds.training import predict, train_classifier
from advbounds.verify import UnsupportedLayerError, certified_radius

from .cnn_summary import kernel_scaling_gain

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------


def image_shape(data: Mapping[str, Any]) -> tuple[int, int, int]:
    """``(C, H, W)`` of the images of a prepared data set (square images are required)."""
    x = data["x_test"] if len(data.get("x_test", [])) else data["x_train"]
    if x.dim() != 4:
        raise ValueError(f"expected images [N, C, H, W], got shape {tuple(x.shape)}")
    c, h, w = (int(v) for v in x.shape[1:])
    if h != w:
        raise ValueError(f"the Chapter 5 networks need square images, got {h}x{w}")
    return c, h, w


def model_kwargs(data: Mapping[str, Any], architecture: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Builder kwargs: the input geometry and class count read from the data, then the config's
    ``architecture`` entries (which may not contradict the data)."""
    c, h, _ = image_shape(data)
    kwargs: dict[str, Any] = {"in_channels": c, "image_size": h, "n_classes": n_classes_of(data)}
    for key, value in dict(architecture or {}).items():
        if key in kwargs and kwargs[key] != value:
            raise ValueError(f"architecture.{key} = {value!r} contradicts the data ({kwargs[key]!r})")
        kwargs[key] = list(value) if isinstance(value, tuple) else value
    return kwargs


def train_cnn(
    builder: str,
    data: Mapping[str, Any],
    architecture: Mapping[str, Any] | None,
    training: TrainingSettings,
    *,
    device: torch.device | str,
    checkpoint_path: str | None = None,
    code_version: str = "",
    progress: bool = True,
) -> tuple[nn.Sequential, dict[str, Any], ModelMetrics]:
    """Build registry model ``builder`` for ``data`` and train it.

    ``architecture``: builder kwargs from one model's config entry; ``training``: its ``training``
    block (Caffe iterations are minibatches). The initial weights and the training order depend
    only on ``training.seed``. Returns ``(model, kwargs, metrics)``.
    """
    kwargs = model_kwargs(data, architecture)
    model = build_model(builder, seed=training.seed, **kwargs)
    metrics = train_classifier(model, data, training, device, progress=progress, checkpoint_path=checkpoint_path,
                               code_version=code_version)
    metrics = metrics.with_details(builder=builder, n_parameters=int(sum(p.numel() for p in model.parameters())))
    return model, kwargs, metrics


# ------------------------------------------------------------------------------------------------
# Per-sample bounds and attacks on a whole test set
# ------------------------------------------------------------------------------------------------


def _batches(n: int, batch_size: int | None):
    step = n if not batch_size else int(batch_size)
    for start in range(0, n, max(1, step)):
        yield slice(start, min(n, start + step))


def bounds_frame(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    device: torch.device | str = "cpu",
    batch_size: int | None = 500,
    relu_second_derivative: float = 1.0,
    modes: Sequence[str] = ("thesis",),
    certify: CertifyConfig | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Per-sample theoretical bound (Algorithm 5.1) and every layer's kappa, one row per sample.

    ``modes``: the bound modes to compute (``advbounds.bounds.BOUND_MODES``). ``thesis`` gives the
    columns below; ``corrected`` (the sound rules, docs/findings.md) adds ``bound_corrected`` and
    ``sound_kappa_<layer>`` for the same steps. ``certify`` adds ``radius_certified`` (CROWN,
    ``advbounds.verify``) for the first samples it names, NaN for the others and for every sample
    of a network with a layer the verifier does not support (LRN): "not certified", never a guess.

    Columns: ``sample`` (index in the test set), ``true_label``, ``pred_label``, ``bound`` (the
    input-level bound, pixel units), ``kappa_<layer>`` for each step label of
    ``advbounds.bounds.model_bounds``, ordered input -> output (LeNet-5: ``scale, conv1, pool1,
    conv2, pool2, flatten, ip1, ip2``; ``bound == kappa_scale``) and, for a network with an MLP
    tail, ``jacobian_norm`` (``||J(x)||`` of Theorem 4.2).
    """
    model = model.to(device).eval()
    rows: list[pd.DataFrame] = []
    for part in progress_bar(list(_batches(len(x), batch_size)), desc="bounds", disable=not progress):
        xb = x[part].to(device=device, dtype=torch.float32)
        # model_bounds sizes its own inner chunks from the activations (about 512 MiB)
        result = model_bounds(model, xb, relu_second_derivative=relu_second_derivative, mode="thesis")
        frame = result.to_frame(first_sample=part.start)
        frame.insert(1, "true_label", y[part].cpu().numpy().astype(int))
        if "corrected" in modes:
            sound = model_bounds(model, xb, mode="corrected")
            frame[CORRECTED_BOUND] = sound.bound.detach().double().cpu().numpy()
            for label, kappa in sound.kappas.items():
                frame[f"{SOUND_KAPPA_PREFIX}{label}"] = kappa.detach().double().cpu().numpy()
        rows.append(frame)
    frame = pd.concat(rows, ignore_index=True)
    if certify is not None:
        frame[CERTIFIED_RADIUS] = certified_radii(model, x, certify, device=device, progress=progress)
    return frame


@dataclass(frozen=True)
class CertifyConfig:
    """Config ``chapter5.bounds.certify``: ``samples`` (the first n test images, by device type;
    ``None`` = all), the verifier's ``method`` (``crown`` or ``ibp``) and, for CROWN, how the
    intermediate layers are bounded (``crown``: tightest, about 90 s per LeNet-5 image on one CPU
    core; ``ibp``: CROWN-IBP, about 0.5 s, looser; docs/certify.md)."""

    samples: Mapping[str, int | None]
    method: str = "crown"
    intermediate: str = "crown"

    def __post_init__(self) -> None:
        if self.method not in ("crown", "ibp") or self.intermediate not in ("crown", "ibp"):
            raise ValueError(f"certify: method and intermediate must be crown or ibp, got {self}")

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None) -> CertifyConfig | None:
        if section is None:
            return None
        return cls(samples=dict(section["samples"]), method=section["method"],
                   intermediate=section.get("intermediate", "crown"))

    def sample_count(self, device: torch.device | str, available: int) -> int:
        return first_samples(self.samples, device, available)


def certified_radii(model: nn.Module, x: torch.Tensor, config: CertifyConfig, *,
                    device: torch.device | str = "cpu", progress: bool = False) -> np.ndarray:
    """``radius_certified`` per sample of ``x`` (pixel units): the certified L2 radius for the first
    ``config.sample_count`` samples, NaN for the rest, all NaN (with a warning) when the model has a
    layer the verifier does not support."""
    radii = np.full(len(x), np.nan)
    n = config.sample_count(device, len(x))
    try:
        result = certified_radius(model, x[:n].to(device=device, dtype=torch.float32), method=config.method,
                                  intermediate=config.intermediate if config.method == "crown" else None,
                                  progress=progress)
    except UnsupportedLayerError as error:
        log.warning("not certified: %s", error)
        return radii
    radii[:n] = result.radius.detach().double().cpu().numpy()
    return radii






def attack_frame(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    settings: SearchSettings,
    *,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> pd.DataFrame:
    """Minimal FGS epsilon (Algorithm 2.1) for every sample, one row per sample.

    ``settings``: the config's ``attack`` block. Columns: ``sample``,
    ``true_label``, then every field of ``advbounds.attacks.AttackResult.to_frame()``: ``eps``
    (NaN when not flipped), ``eps_lower``, ``perturbation_norm`` (``eps * ||sign(grad)||_2``),
    ``orig_label``, ``adv_label``, ``flipped``, ``flips_at_eps_max``, ``consistent``,
    ``direction_norm``.
    """
    model = model.to(device).eval()
    labels = y.to(device) if settings.loss_label == "true" else None
    result = minimal_epsilon_search(model, x.to(dtype=torch.float32), settings, labels=labels, progress=progress)
    frame = result.to_frame()
    frame.insert(0, "true_label", y.cpu().numpy().astype(int))
    frame.insert(0, "sample", np.arange(len(x)))
    frame["flipped"] = frame["flipped"].astype(bool)
    return frame






















# ------------------------------------------------------------------------------------------------
# Model runs behind the figures
# ------------------------------------------------------------------------------------------------








def adversarial_images(
    model: nn.Module, x: torch.Tensor, settings: SearchSettings, *, device: torch.device | str = "cpu",
    y: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Rebuild the FGS adversarial images of chosen samples (Figures 5.8, 5.9).

    Runs the same minimal-epsilon search as :func:`attack_frame` on just these samples (the search
    is elementwise, so a sample's result does not depend on its batch) and returns ``adversarial``
    (``x + eps * sign(grad)`` as the model saw it, not clipped unless ``settings.clip``),
    ``perturbation``, ``eps``, ``orig_label``, ``adv_label`` and ``flipped``, all on the CPU.
    """
    model = model.to(device).eval()
    labels = y.to(device) if settings.loss_label == "true" and y is not None else None
    x = x.to(dtype=torch.float32)
    result = minimal_epsilon_search(model, x, settings, labels=labels, return_adversarial=True)
    adversarial = result.adversarial.detach().cpu().float()
    return {
        "adversarial": adversarial,
        "perturbation": adversarial - x.cpu(),
        "eps": result.eps.detach().cpu(),
        "orig_label": result.orig_label.detach().cpu(),
        "adv_label": result.adv_label.detach().cpu(),
        "flipped": result.flipped.detach().cpu(),
    }




def subsample(x: torch.Tensor, n: int | None, seed: int) -> torch.Tensor:
    """``n`` seeded-random rows of ``x`` (all of them, in order, when ``n`` is None or >= len)."""
    if n is None or n >= len(x):
        return x
    index = torch.from_numpy(np.sort(np.random.default_rng(seed).choice(len(x), size=int(n), replace=False)))
    return x[index]


def pick_sample(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, seed: int, device: torch.device | str = "cpu",
                sample: int | None = None) -> int:
    """The test sample of Figure 2.5: ``sample`` if given, else a seeded random correctly
    classified one ("a random sample X from the dataset", Section 2.7)."""
    if sample is not None:
        return int(sample)
    correct = torch.nonzero(predict(model.to(device), x, device) == y.to(x.device)).flatten().cpu().numpy()
    pool = correct if len(correct) else np.arange(len(x))
    return int(np.random.default_rng(seed).choice(pool))






def conv_layer_names(model: nn.Sequential) -> list[str]:
    """Names of the ``nn.Conv2d`` children, input -> output."""
    return [name for name, layer in model.named_children() if isinstance(layer, nn.Conv2d)]


def scaled_copy(model: nn.Sequential, layer_names: Sequence[str], factor: float) -> nn.Sequential:
    """A deep copy of ``model`` whose named convolution kernels (weights only, as in Section 5.4)
    are multiplied by ``factor``."""
    clone = copy.deepcopy(model)
    modules = dict(clone.named_children())
    with torch.no_grad():
        for name in layer_names:
            modules[name].weight.mul_(float(factor))
    return clone


def measured_kernel_scaling(
    model: nn.Sequential, x: torch.Tensor, *, epsilon: float, device: torch.device | str = "cpu",
    batch_size: int | None = 500, relu_second_derivative: float = 1.0,
) -> pd.DataFrame:
    """Figure 5.12 on a trained network: scale the first ``n`` convolution kernels (input side
    first) by ``1 - epsilon`` for ``n = 0 .. number of convolutions`` and recompute the input-level
    bound. Unlike the thesis's analysis, the later layers' kappas are recomputed too (the scaled
    kernels change the activations that the MLP tail sees).

    Returns one row per (sample, n): ``n``, ``sample``, ``bound``, ``ratio`` (bound / unscaled bound),
    ``analytic`` (``(1 - epsilon) ** -n``) and ``same_prediction`` (the scaled network still predicts
    what the original did).
    """
    names = conv_layer_names(model)
    y = torch.zeros(len(x), dtype=torch.long)
    base_pred = predict(model.to(device), x, device).cpu()
    base = None
    frames = []
    for n in range(len(names) + 1):
        scaled = scaled_copy(model, names[:n], 1.0 - float(epsilon)) if n else model
        frame = bounds_frame(scaled, x, y, device=device, batch_size=batch_size,
                             relu_second_derivative=relu_second_derivative)
        if base is None:
            base = frame["bound"].to_numpy()
        frames.append(pd.DataFrame({
            "n": n,
            "sample": frame["sample"],
            "bound": frame["bound"],
            "ratio": frame["bound"].to_numpy() / base,
            "analytic": float(kernel_scaling_gain([n], epsilon)[0]),
            "same_prediction": frame["pred_label"].to_numpy() == base_pred.numpy(),
        }))
    return pd.concat(frames, ignore_index=True)












def iterative_sequence(
    model: nn.Module, x: torch.Tensor, settings: SearchSettings, *, steps: int, device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Section 2.7 / Figure 2.5: apply the minimal-epsilon search (``settings``) ``steps`` times to
    one image.

    Returns ``images`` ``[steps+1, C, H, W]`` (X_0 .. X_n), ``labels`` (prediction of each),
    ``eps`` (the epsilon of each step) and ``perturbations`` ``[steps+1, C, H, W]`` as the thesis
    draws them: the first is ``X_n - X_0``, the others ``X_i - X_{i-1}``.
    """
    model = model.to(device).eval()
    x = x.to(device=device, dtype=torch.float32)
    if x.dim() == 3:
        x = x[None]
    result = iterative_perturbation(model, x, steps, settings)
    images = result.images.detach().cpu().reshape(-1, *x.shape[1:])
    steps_done = images[1:] - images[:-1]
    first = (images[-1] - images[0])[None]
    return {
        "images": images,
        "labels": result.labels.detach().cpu().reshape(-1).long(),
        "eps": result.eps.detach().cpu().reshape(-1),
        "perturbations": torch.cat([first, steps_done]),
    }


__all__ = [
    "CertifyConfig",
    "adversarial_images",
    "attack_frame",
    "bounds_frame",
    "certified_radii",
    "conv_layer_names",
    "image_shape",
    "iterative_sequence",
    "measured_kernel_scaling",
    "model_kwargs",
    "pick_sample",
    "scaled_copy",
    "subsample",
    "train_cnn",
]
