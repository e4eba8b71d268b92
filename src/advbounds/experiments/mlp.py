"""Chapter 4: the model runs behind the robustness of MLPs (Tables 4.2 and 4.3, Figures 4.1-4.3).

* :func:`random_mlp_test_frame`: one randomized test of Table 4.2 (Section 4.3.2): K random MLPs
  with N uniform samples each; per sample the bound of Theorem 4.2 (``advbounds.bounds.mlp_bound``,
  M from Algorithm 4.1) and the minimal FGS perturbation of Algorithm 2.1, searched for all K*N
  samples at once (:mod:`.stacked`).
* :func:`train_mlp` trains the Iris / Wine / Spambase MLPs of Section 4.3.2;
  :func:`trained_mlp_frame` evaluates bound and FGS per sample.
* :func:`regularization_point`: one point of the Section 4.4 sweep (Figure 4.3): an MLP trained
  with ``L1 = L - l * delta(h_L(x); f)``, its accuracy, FGS and FGV adversarial error rates and
  minimal perturbations on the entire data set.

The tables and figure data that summarise these frames are in :mod:`.mlp_summary` (pandas only).
Every choice the thesis leaves open is a config value; see ``docs/chapters34.md``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from advbounds.attacks import minimal_epsilon_search
from advbounds.bounds import linear_output_bound, mlp_bound, second_derivative_bound
from advbounds.data import n_classes_of
from advbounds.metrics import ModelMetrics
from advbounds.models import ACTIVATIONS, build_model
from advbounds.settings import SearchSettings, TrainingSettings
from advbounds.training import train_classifier

from .deviations import derive_seed, summarize, with_spec_eps_max
from .mlp_summary import RANDOM_SAMPLE_COLUMNS, TRAINED_SAMPLE_COLUMNS, float_or_nan
from .stacked import draw_random_test, resolve_dtype, stacked_search

#: chapter number mixed into every seed of this module
CHAPTER = 4


def test_seed(base_seed: int, number: int) -> int:
    """Seed of test ``number`` (1-based) of Table 4.2."""
    return derive_seed(base_seed, CHAPTER, int(number))


def _hidden_and_output(model: nn.Sequential, x: torch.Tensor) -> tuple[torch.Tensor, nn.Linear]:
    with torch.no_grad():
        return model[:-1](x), model[-1]


def _model_parts(model: nn.Sequential) -> tuple[list[nn.Linear], list[str]]:
    """The hidden Linear layers and activation names (``advbounds.models.ACTIVATIONS`` keys)."""
    names = {cls: name for name, cls in ACTIVATIONS.items()}
    children = list(model)
    linears = [m for m in children[:-1:2]]
    activations = [names[type(m)] for m in children[1::2]]
    return linears, activations


def second_derivative_constant(model: nn.Sequential, relu_second_derivative: float) -> float:
    """M of Algorithm 4.1 for ``model`` (through ``advbounds.bounds.second_derivative_bound``)."""
    linears, activations = _model_parts(model)
    return float(second_derivative_bound(linears, activations, relu_second_derivative=relu_second_derivative))


def bound_parts(model: nn.Sequential, x: torch.Tensor, relu_second_derivative: float) -> dict[str, Any]:
    """Per-sample bound of Theorem 4.2 and its ingredients ``M`` and ``delta(h_L(x); f)``."""
    with torch.no_grad():
        bound = mlp_bound(model, x, relu_second_derivative=relu_second_derivative)
        hidden, output = _hidden_and_output(model, x)
        delta = linear_output_bound(output.weight, output.bias, hidden)
    return {
        "bound": bound.detach().double().cpu().numpy(),
        "M": second_derivative_constant(model, relu_second_derivative),
        "delta_hidden": delta.detach().double().cpu().numpy(),
    }


# ------------------------------------------------------------------------------------------------
# Randomized tests (Table 4.2, Figure 4.1)
# ------------------------------------------------------------------------------------------------


def random_mlp_test_frame(spec: Mapping[str, Any], *, number: int, seed: int, activation: str,
                          attack: SearchSettings, reference_attack: SearchSettings | None = None,
                          relu_second_derivative: float = 1.0, dtype: str = "float64",
                          progress: bool = False) -> pd.DataFrame:
    """Per-sample results of one Table 4.2 test (``spec``: one entry of ``chapter4.random_mlp.tests``;
    its optional ``eps_max`` overrides ``attack``'s). With ``reference_attack`` a second FGS search
    with that M adds the ``ref_*`` columns."""
    torch_dtype = resolve_dtype(dtype)
    models, x = draw_random_test(
        n_models=spec["mlps"], n_samples=spec["samples"], dim=spec["dim"], n_classes=spec["classes"],
        hidden=spec["hidden"], sample_interval=spec["sample_interval"], param_interval=spec["param_interval"],
        activation=activation, seed=seed, dtype=torch_dtype,
    )
    fgs = stacked_search(models, x, with_spec_eps_max(attack, spec), progress=progress)
    reference = stacked_search(models, x, reference_attack) if reference_attack is not None else None
    parts = [bound_parts(model, xs, relu_second_derivative) for model, xs in zip(models, x)]
    n_models, n_samples = x.shape[:2]
    frame = pd.DataFrame({
        "test": int(number),
        "mlp": np.repeat(np.arange(n_models), n_samples),
        "sample": np.tile(np.arange(n_samples), n_models),
        "pred_label": fgs.orig_label.cpu().numpy(),
        "bound": np.concatenate([p["bound"] for p in parts]),
        "M": np.repeat([p["M"] for p in parts], n_samples),
        "delta_hidden": np.concatenate([p["delta_hidden"] for p in parts]),
    })
    frame = pd.concat([frame, fgs.to_frame(prefix="fgs_")], axis=1)
    frame["deviation"] = frame["fgs_norm"] - frame["bound"]
    return _with_reference(frame[list(RANDOM_SAMPLE_COLUMNS)], reference)


def _with_reference(frame: pd.DataFrame, reference) -> pd.DataFrame:
    if reference is None:
        return frame
    ref = reference.to_frame(prefix="ref_")
    frame = pd.concat([frame, ref[["ref_eps", "ref_norm", "ref_flipped"]]], axis=1)
    frame["ref_deviation"] = frame["ref_norm"] - frame["bound"]
    return frame


# ------------------------------------------------------------------------------------------------
# Trained MLPs (Section 4.3.2: Table 4.3, Figure 4.2, accuracies)
# ------------------------------------------------------------------------------------------------


def split_data(data: Mapping[str, Any], split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and labels of one split (``train``, ``val``, ``test``) or of ``all`` of them together
    (the "entire dataset" of Section 4.4), in the order train, val, test."""
    splits = ("train", "val", "test") if split == "all" else (split,)
    xs, ys = [], []
    for name in splits:
        if f"x_{name}" not in data:
            raise KeyError(f"the prepared data has no split {name!r}")
        if len(data[f"x_{name}"]):
            xs.append(data[f"x_{name}"])
            ys.append(data[f"y_{name}"])
    if not xs:
        raise ValueError(f"split {split!r} is empty")
    return torch.cat(xs).float(), torch.cat(ys).long()


def model_seed(base_seed: int, dataset: str) -> int:
    """Seed of the trained MLP of ``dataset`` (initial weights and shuffling). The regularization sweep
    uses the same seed, so its ``l = 0`` point retrains exactly the Table 4.3 model."""
    return derive_seed(base_seed, CHAPTER, dataset)


def model_kwargs(data: Mapping[str, Any], hidden: Sequence[int], activation: str) -> dict[str, Any]:
    return {"in_dim": int(data["x_train"].shape[1]), "hidden": [int(h) for h in hidden],
            "n_classes": n_classes_of(data), "activation": activation}


def train_mlp(data: Mapping[str, Any], *, hidden: Sequence[int], activation: str, training: TrainingSettings,
              device: torch.device | str, progress: bool = False) -> tuple[nn.Sequential, dict[str, Any], ModelMetrics]:
    """Build ``mlp(in_dim, hidden, n_classes, activation)`` (initial weights from ``training.seed``,
    which also seeds the shuffling) and train it with ``advbounds.training.train_classifier``
    (``training.regularization`` = the l of Section 4.4). Returns ``(model, builder kwargs,
    metrics)``, the order of :func:`advbounds.experiments.cnn.train_cnn`."""
    kwargs = model_kwargs(data, hidden, activation)
    model = build_model("mlp", seed=training.seed, **kwargs)
    metrics = train_classifier(model, data, training, device, progress=progress)
    metrics = metrics.with_details(n_val=len(data.get("x_val", [])), n_test=len(data.get("x_test", [])))
    model.to("cpu").eval()
    return model, kwargs, metrics


def trained_mlp_frame(model: nn.Sequential, data: Mapping[str, Any], *, dataset: str, split: str,
                      attack: SearchSettings, reference_attack: SearchSettings | None = None,
                      relu_second_derivative: float = 1.0, dtype: str = "float64",
                      progress: bool = False) -> pd.DataFrame:
    """Per-sample bound (Theorem 4.2) and minimal FGS perturbation (Algorithm 2.1) of a trained MLP on
    ``split``, computed in ``dtype`` (a float64 copy of the float32 model is the same function)."""
    torch_dtype = resolve_dtype(dtype)
    x, y = split_data(data, split)
    model = _as_dtype(model, torch_dtype)
    x = x.to(torch_dtype)
    fgs = minimal_epsilon_search(model, x, attack, progress=progress)
    reference = minimal_epsilon_search(model, x, reference_attack) if reference_attack is not None else None
    parts = bound_parts(model, x, relu_second_derivative)
    frame = pd.DataFrame({
        "dataset": dataset,
        "split": split,
        "sample": np.arange(len(x)),
        "true_label": y.numpy(),
        "pred_label": fgs.orig_label.cpu().numpy(),
        "bound": parts["bound"],
        "M": parts["M"],
        "delta_hidden": parts["delta_hidden"],
    })
    frame = pd.concat([frame, fgs.to_frame(prefix="fgs_")], axis=1)
    frame["correct"] = frame["pred_label"] == frame["true_label"]
    frame["deviation"] = frame["fgs_norm"] - frame["bound"]
    return _with_reference(frame[list(TRAINED_SAMPLE_COLUMNS)], reference)


def _as_dtype(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    return copy.deepcopy(model).to(dtype).requires_grad_(False).eval()


# ------------------------------------------------------------------------------------------------
# Section 4.4: regularizing the output layer (Figure 4.3)
# ------------------------------------------------------------------------------------------------


def regularization_point(data: Mapping[str, Any], *, dataset: str, ell: float, hidden: Sequence[int],
                         activation: str, training: TrainingSettings, attack: SearchSettings,
                         split: str = "all", relu_second_derivative: float = 1.0, dtype: str = "float64",
                         device: torch.device | str = "cpu", progress: bool = False) -> dict[str, Any]:
    """Train with ``L1 = L - ell * delta(h_L(x); f)`` (``training`` with its regularization set to
    ``ell``) and measure, on ``split`` ("all" = the entire data set, as in Section 4.4): accuracy,
    the FGS and FGV adversarial error rates (fraction of samples whose label Algorithm 2.1 changes
    within ``eps_max``) and the minimal perturbation norms.

    FGS (``attack``) searches ``eps`` (L-infinity) in ``[0, eps_max]``. FGV uses the normalized
    gradient (``fgv_normalize=True``) so that its ``eps`` is the L2 norm, searched in
    ``[0, eps_max * sqrt(d)]``: the L2 norm of the largest FGS perturbation, so both attacks get the
    same L2 budget.
    """
    model, _, metrics = train_mlp(data, hidden=hidden, activation=activation,
                                  training=training.replace(regularization=float(ell)), device=device,
                                  progress=progress)
    torch_dtype = resolve_dtype(dtype)
    x, y = split_data(data, split)
    model64 = _as_dtype(model, torch_dtype)
    x = x.to(torch_dtype)
    fgs = minimal_epsilon_search(model64, x, attack.replace(method="fgs"))
    fgv = minimal_epsilon_search(model64, x, attack.replace(
        method="fgv", fgv_normalize=True, eps_max=attack.eps_max * math.sqrt(x.shape[1])))
    parts = bound_parts(model64, x, relu_second_derivative)
    fgs_norm = fgs.perturbation_norm.double().cpu().numpy()
    fgv_norm = fgv.perturbation_norm.double().cpu().numpy()
    return {
        "dataset": dataset,
        "ell": float(ell),
        "accuracy": float((fgs.orig_label.cpu() == y).double().mean()),
        "fgs_error_rate": float(fgs.flipped.double().mean()),
        "fgv_error_rate": float(fgv.flipped.double().mean()),
        "fgs_norm_mean": summarize(fgs_norm)["mean"],
        "fgs_norm_median": summarize(fgs_norm)["median"],
        "fgv_norm_mean": summarize(fgv_norm)["mean"],
        "fgv_norm_median": summarize(fgv_norm)["median"],
        "bound_mean": summarize(parts["bound"])["mean"],
        "delta_hidden_mean": summarize(parts["delta_hidden"])["mean"],
        "samples": int(len(x)),
        "test_accuracy": float_or_nan(metrics.test_accuracy),
    }


