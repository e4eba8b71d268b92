"""The robustness sandwich of Chapters 3-4: every Table 3.1 test, every Table 4.2 test and every
trained MLP of Table 4.3, per sample (``results/sandwich/<name>.csv``, columns of
:mod:`.sandwich`).

What each kind of experiment gets, and why:

* **Linear classifiers (Table 3.1).** ``bound_thesis`` (Lemma 3.5's delta, from the test's own
  per-sample frame), ``exact_min`` (:func:`linear_exact_minimum`, a closed form), FGS and the
  strong attacks. No ``bound_corrected``: the sound output rule (``advbounds.bounds.sound``) is
  Lemma 3.5's formula rounded down, so it differs from the thesis bound by rounding only, and both
  equal the exact minimum (the closed form below *is* delta). No certified radius either: for one
  Linear layer CROWN's margin bound is exact, so it would be the same number once more.
* **MLPs (Tables 4.2 and 4.3).** ``bound_thesis`` (Theorem 4.2, from the per-sample frame),
  ``bound_corrected`` (``model_bounds(mode="corrected")``: for tanh, sigmoid and softplus tails
  the larger of the product of certified operator norms and Theorem 4.2 with Algorithm 4.1's M,
  valid there because those activations are twice differentiable; for a ReLU tail the product of
  norms only, since Theorem 4.2 needs ReLU'' and is false for ReLU, docs/findings.md F5),
  ``radius_certified`` (CROWN with CROWN intermediate bounds, which covers Linear, ReLU, tanh,
  sigmoid and softplus; an activation without a bound operator raises ``UnsupportedLayerError``
  and the column is left out, "not certified", never guessed), ``exact_min`` only for a tiny
  ReLU network (2-D input, at most ``advbounds.verify.exact.MAX_HIDDEN_UNITS`` hidden units) that
  ``exact_minimal_perturbation_relu`` can solve. None of the thesis's MLPs is one: they are all
  tanh, and the smallest random MLP has 3 x 10 hidden units; so the thesis run has no
  ``exact_min`` for Chapter 4 (a ReLU config of that size gets one, as the tests show).

The samples are the first ``n`` rows of the experiment's per-sample frame (classifier-major for
the random tests), ``n`` from the chapter's ``strong_attacks.samples``. The random classifiers
are redrawn from the test's seed (``experiments.stacked.draw_random_test``, as the test did);
their predictions must equal the frame's ``pred_label``, else the run stops: a sandwich of other
classifiers than the table's would compare nothing. Everything runs on the CPU in the chapter's
``dtype`` (the networks are tiny; a GPU would not help).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from advbounds.bounds import model_bounds
from advbounds.data import load_prepared
from advbounds.experiments import linear, mlp
from advbounds.experiments.stacked import draw_random_test, interval, resolve_dtype
from advbounds.experiments.sandwich import with_best_attack
from advbounds.experiments.strong import STRONG_ATTACKS, StrongAttackConfig
from advbounds.verify import UnsupportedLayerError, certified_radius, exact_minimal_perturbation_relu
from advbounds.verify.exact import MAX_HIDDEN_UNITS

#: the per-sample frame's classifier column, by kind of random test
CLASSIFIER_COLUMN = {"linear": "classifier", "random_mlp": "mlp"}
KINDS = (*CLASSIFIER_COLUMN, "trained_mlp")
#: largest input dimension of a network that gets the exact ReLU minimum (region enumeration)
EXACT_RELU_MAX_DIM = 2


@dataclass(frozen=True)
class Chapters34Sandwich:
    """What one Chapter 3-4 sandwich reads (the settings of rule ``sandwich_chapters34``, typed once):
    ``kind`` (``linear``, ``random_mlp``, ``trained_mlp``), the chapter's ``strong`` attacks and
    sample count, its ``dtype``; for a random test its ``number`` and ``spec`` (one entry of
    ``chapter3.tests`` / ``chapter4.random_mlp.tests``) and ``activation``; for a trained MLP the
    ``split`` its per-sample frame covers."""

    kind: str
    strong: StrongAttackConfig
    dtype: str = "float64"
    number: int | None = None
    spec: Mapping[str, Any] | None = None
    activation: str = "tanh"
    split: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.kind == "trained_mlp" and self.split is None:
            raise ValueError("a trained MLP's sandwich needs the split of its per-sample frame")
        if self.kind != "trained_mlp" and (self.number is None or self.spec is None):
            raise ValueError(f"a {self.kind} test's sandwich needs its number and spec")

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Chapters34Sandwich:
        return cls(kind=settings["kind"], strong=StrongAttackConfig.from_config(settings["strong_attacks"]),
                   dtype=settings.get("dtype", "float64"), number=settings.get("number"), spec=settings.get("spec"),
                   activation=settings.get("activation", "tanh"), split=settings.get("split"))

    def test_seed(self, base_seed: int) -> int:
        """The seed the test's own rule drew its classifiers with."""
        return (linear if self.kind == "linear" else mlp).test_seed(base_seed, self.number)

    def split_inputs(self, data_path: str) -> torch.Tensor:
        """The inputs of the trained MLP's split, in the order of its per-sample frame."""
        return mlp.split_data(load_prepared(data_path), self.split)[0]


@torch.no_grad()
def linear_exact_minimum(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The exact minimal L2 perturbation that changes the label of ``f(x) = argmax(W x + b)``, in
    closed form, batched: ``weight[..., C, d]``, ``bias[..., C]``, ``x[..., B, d]`` (the leading
    dimensions, e.g. K stacked classifiers, broadcast); returns float64 ``[..., B]``::

        rho(x) = min_{j != c} (f_c(x) - f_j(x)) / ||w_c - w_j||,   c = f(x),   f_k(x) = w_k . x + b_k,

    with the term ``+inf`` where ``w_j = w_c`` (class j then never overtakes c).

    Proof. The set of inputs classified c is ``P = {y : f_c(y) >= f_j(y) for all j}`` (up to ties,
    which do not move an infimum), an intersection of the half-spaces ``H_j = {g_j(y) >= 0}`` with
    ``g_j = f_c - f_j`` affine, gradient ``w_c - w_j``. A perturbation r changes the label iff
    ``x + r`` lies outside P, i.e. in some complement ``{g_j < 0}``; so ``rho(x)`` is the minimum over
    j of the distance from x to ``{g_j <= 0}`` (closure; same infimum). For ``w_c != w_j`` that set
    is a half-space whose boundary hyperplane lies at distance ``g_j(x) / ||w_c - w_j||`` from x
    (``g_j(x) >= 0`` since c = f(x)); the projection ``x - g_j(x) (w_c - w_j) / ||w_c - w_j||^2``
    attains it. For ``w_c = w_j``, ``g_j`` is the constant ``b_c - b_j`` and the set is empty
    (``+inf``) or everything (distance 0, the tie ``g_j = 0``). The minimum of the per-j distances
    is the distance to their union. This is Lemma 3.5's ``delta`` (eq. 3.12): for a linear
    classifier the thesis's bound is exact, and it equals the least-distance QP of
    ``advbounds.attacks.exact_minimal_perturbation_linear``, which minimises over the target cells
    instead (the union of the other cells is the same complement of P).
    """
    W = weight.detach().to(torch.float64)
    b = bias.detach().to(torch.float64)
    x64 = x.detach().to(torch.float64)
    if W.dim() < 2 or b.shape != W.shape[:-1] or x64.shape[-1] != W.shape[-1]:
        raise ValueError(f"need weight [..., C, d], bias [..., C], x [..., B, d]; got {tuple(W.shape)}, "
                         f"{tuple(b.shape)}, {tuple(x64.shape)}")
    logits = x64 @ W.transpose(-1, -2) + b.unsqueeze(-2)  # [..., B, C]
    c = logits.argmax(dim=-1, keepdim=True)  # [..., B, 1]
    gap = logits.gather(-1, c) - logits  # g_j(x) >= 0
    # ||w_c - w_j|| from direct differences (no Gram-matrix cancellation): [..., C, C]
    distances = torch.linalg.vector_norm(W.unsqueeze(-2) - W.unsqueeze(-3), dim=-1)
    # the row of f(x) = c of that matrix, per sample: [..., B, C]
    denominator = torch.gather(distances.unsqueeze(-3).expand(*logits.shape[:-1], *distances.shape[-2:]), -2,
                               c.unsqueeze(-1).expand(*c.shape[:-1], 1, distances.shape[-1])).squeeze(-2)
    ratio = torch.where(denominator > 0, gap / denominator.clamp_min(torch.finfo(torch.float64).tiny),
                        torch.full_like(gap, float("inf")))
    ratio = ratio.scatter(-1, c, float("inf"))
    return ratio.min(dim=-1).values


# ------------------------------------------------------------------------------------------------
# Per-network quantities
# ------------------------------------------------------------------------------------------------


def _attack_norms(model: nn.Module, x: torch.Tensor, strong: StrongAttackConfig,
                  input_scale: float | None) -> dict[str, np.ndarray]:
    """``attack_<name>``: each strong attack's verified norm, NaN where it did not flip. Step sizes
    are relative to ``input_scale`` unless the attack's settings set their own."""
    out = {}
    for name, settings in strong.attacks.items():
        if input_scale is not None and settings.input_scale is None:
            settings = dataclasses.replace(settings, input_scale=float(input_scale))
        result = STRONG_ATTACKS[name][0](settings)(model, x)
        norm = result.norm.detach().double().cpu().numpy()
        out[f"attack_{name}"] = np.where(result.flipped.cpu().numpy(), norm, np.nan)
    return out


def exact_relu_applies(model: nn.Sequential, dim: int) -> bool:
    """Whether ``exact_minimal_perturbation_relu`` is a fit: a ReLU MLP with a 2-D input and few
    hidden units (the region count grows like 2^units)."""
    layers = list(model)
    activations = [m for m in layers if not isinstance(m, nn.Linear)]
    hidden = sum(m.out_features for m in layers[:-1] if isinstance(m, nn.Linear))
    return (all(isinstance(m, nn.ReLU) for m in activations) and dim <= EXACT_RELU_MAX_DIM
            and hidden <= MAX_HIDDEN_UNITS)


def mlp_quantities(model: nn.Sequential, x: torch.Tensor, strong: StrongAttackConfig, *,
                   input_scale: float | None = None) -> dict[str, np.ndarray]:
    """Per sample of ``x[B, d]``: ``bound_corrected``, ``radius_certified`` (where the verifier has
    every layer), ``exact_min`` (where :func:`exact_relu_applies`) and every strong attack's norm."""
    model = model.eval()
    out = {"bound_corrected": model_bounds(model, x, mode="corrected").bound.double().cpu().numpy()}
    try:
        radius = certified_radius(model, x, method="crown", intermediate="crown")
        out["radius_certified"] = radius.radius.double().cpu().numpy()
    except UnsupportedLayerError:
        pass  # not certified: the column stays absent (module docstring)
    if exact_relu_applies(model, x.shape[1]):
        out["exact_min"] = exact_minimal_perturbation_relu(model, x).norm.double().cpu().numpy()
    return out | _attack_norms(model, x, strong, input_scale)


# ------------------------------------------------------------------------------------------------
# Experiment frames
# ------------------------------------------------------------------------------------------------


def _fgs_norm(per_sample: pd.DataFrame) -> np.ndarray:
    """FGS's perturbation norm where Algorithm 2.1 flipped the sample, NaN elsewhere."""
    return np.where(per_sample["fgs_flipped"].astype(bool), per_sample["fgs_norm"], np.nan)


def _check_predictions(expected: pd.Series, found: torch.Tensor, what: str) -> None:
    if not np.array_equal(expected.to_numpy(dtype=int), found.cpu().numpy().astype(int)):
        raise RuntimeError(f"{what}: the redrawn classifiers predict other labels than the per-sample frame; "
                           "it was written with another seed, spec or dtype: rerun its rule")


def _frame(per_sample: pd.DataFrame, ids: Mapping[str, Any], columns: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """The sandwich frame: identifying columns, the thesis bound, the lower side, FGS, the attacks
    and ``best_attack`` (columns of :mod:`.sandwich`)."""
    lower = [c for c in ("bound_corrected", "radius_certified", "exact_min") if c in columns]
    attacks = [c for c in columns if c.startswith("attack_")]
    frame = pd.DataFrame({**ids, "bound_thesis": per_sample["bound"].to_numpy(),
                          **{c: columns[c] for c in lower}, "attack_fgs": _fgs_norm(per_sample),
                          **{c: columns[c] for c in attacks}})
    return with_best_attack(frame)


def random_test_sandwich_frame(per_sample: pd.DataFrame, settings: Chapters34Sandwich, *,
                               base_seed: int) -> pd.DataFrame:
    """The sandwich of one Table 3.1 (kind ``linear``) or Table 4.2 (kind ``random_mlp``) test on the
    first ``settings.strong.sample_count`` rows of its per-sample frame
    (``results/linear/test_<k>.csv``, ``results/random_mlp/test_<k>.csv``). The classifiers are
    redrawn as the test drew them: from its spec, activation, dtype and the seed
    ``settings.test_seed(base_seed)``. Columns: ``classifier``, ``sample``, then those of
    :mod:`.sandwich`. DDN's and FMN's step sizes are relative to the width of the test's sample
    interval."""
    kind, spec, strong = settings.kind, settings.spec, settings.strong
    if kind not in CLASSIFIER_COLUMN:
        raise ValueError(f"not a random test: {kind!r}")
    n = strong.sample_count("cpu", len(per_sample))
    rows = per_sample.iloc[:n]
    column = CLASSIFIER_COLUMN[kind]
    hidden = [] if kind == "linear" else list(spec["hidden"])
    models, x = draw_random_test(
        n_models=spec["classifiers" if kind == "linear" else "mlps"], n_samples=spec["samples"], dim=spec["dim"],
        n_classes=spec["classes"], hidden=hidden, sample_interval=spec["sample_interval"],
        param_interval=spec["param_interval"], activation=settings.activation, seed=settings.test_seed(base_seed),
        dtype=resolve_dtype(settings.dtype),
    )
    low, high = interval(spec["sample_interval"])
    classifier = rows[column].to_numpy(dtype=int)
    sample = rows["sample"].to_numpy(dtype=int)
    xs = x[torch.tensor(classifier), torch.tensor(sample)]  # [n, d]
    used = list(dict.fromkeys(classifier.tolist()))  # classifier-major: each model's rows are contiguous
    parts: list[dict[str, np.ndarray]] = []
    predictions = []
    for k in used:
        block = torch.tensor(classifier == k)
        with torch.no_grad():
            predictions.append(models[k](xs[block]).argmax(dim=1))
        if kind == "linear":
            layer = models[k][0]
            parts.append({"exact_min": linear_exact_minimum(layer.weight, layer.bias, xs[block]).cpu().numpy(),
                          **_attack_norms(models[k], xs[block], strong, high - low)})
        else:
            parts.append(mlp_quantities(models[k], xs[block], strong, input_scale=high - low))
    _check_predictions(rows["pred_label"], torch.cat(predictions), f"test {int(rows['test'].iloc[0])}")
    columns = {c: np.concatenate([p[c] for p in parts]) for c in parts[0]}
    if kind == "linear" and not np.allclose(columns["exact_min"], rows["exact_norm"], rtol=1e-9, atol=0.0):
        # two independent exact solutions (closed form here, QPs in the test): they must agree
        raise RuntimeError(f"test {int(rows['test'].iloc[0])}: the closed-form exact minimum and the "
                           "per-sample frame's exact_norm (least-distance QPs) disagree")
    return _frame(rows, {"classifier": classifier, "sample": sample}, columns)


def trained_mlp_sandwich_frame(per_sample: pd.DataFrame, model: nn.Sequential, x: torch.Tensor,
                               settings: Chapters34Sandwich) -> pd.DataFrame:
    """The sandwich of one trained MLP (Table 4.3) on the first ``settings.strong.sample_count`` rows
    of its per-sample frame (``results/mlp/<dataset>.csv``); ``x``: the inputs of the frame's split,
    in its order (``settings.split_inputs``). The model runs in ``settings.dtype`` as the frame's
    bounds and FGS did (a float64 copy of the float32 model is the same function). Columns:
    ``sample``, then those of :mod:`.sandwich`."""
    strong = settings.strong
    n = strong.sample_count("cpu", len(per_sample))
    rows = per_sample.iloc[:n]
    if len(x) != len(per_sample):
        raise ValueError(f"{len(x)} inputs for a per-sample frame of {len(per_sample)} rows: not its split")
    torch_dtype = resolve_dtype(settings.dtype)
    model = copy.deepcopy(model).to(torch_dtype).requires_grad_(False).eval()
    xs = x[torch.tensor(rows["sample"].to_numpy(dtype=int))].to(torch_dtype)
    with torch.no_grad():
        _check_predictions(rows["pred_label"], model(xs).argmax(dim=1), f"dataset {rows['dataset'].iloc[0]}")
    columns = mlp_quantities(model, xs, strong)
    return _frame(rows, {"sample": rows["sample"].to_numpy(dtype=int)}, columns)


#: the thesis's bound in the legend of ``figures/sandwich_<name>``, by kind of experiment
THESIS_BOUND_LABELS = {"linear": "thesis bound (Lemma 3.5)", "random_mlp": "thesis bound (Theorem 4.2)",
                       "trained_mlp": "thesis bound (Theorem 4.2)"}


def figure_title(name: str) -> str:
    """The title of ``figures/sandwich_<name>``."""
    return f"{name}: lower bounds and attacks per sample"


def figure_labels(kind: str) -> dict[str, str]:
    """Legend labels of ``figures/sandwich_<name>`` that differ from the CNNs' (``plotting.sandwich``)."""
    return {"bound_thesis": THESIS_BOUND_LABELS[kind]}

