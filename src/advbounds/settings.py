"""Typed settings of the minimal-epsilon search and of training: one route from the YAML to the code.

:class:`SearchSettings` is everything :func:`advbounds.attacks.minimal_epsilon_search` (and the
naive reference, the iterative perturbation, the stacked search) needs besides the model and the
data; :class:`TrainingSettings` everything :func:`advbounds.training.train_classifier` needs. Both
are frozen and check themselves when built, and ``from_config`` turns a config block into one,
refusing any key that is not a field (a misspelt or unsupported setting stops the run with its name,
it is never dropped). The JSON schema (``workflow/schemas/config.schema.yaml``) stays the
parse-time gate of the config; ``tests/test_settings.py`` checks that its blocks name only fields.

Torch-free on purpose: the config code reads this module while Snakemake parses the workflow.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

#: the attack directions: ``fgs`` (eq. 2.8, the thesis's) and ``fgv`` (eq. 2.10)
METHODS = ("fgs", "fgv")
#: what the loss is taken against: ``f(x)`` (Algorithm 2.1) or the true label
LOSS_LABELS = ("predicted", "true")
#: how the minimal epsilon is searched along the ray (``advbounds.attacks.search``)
SEARCH_POLICIES = ("bisection", "regula_falsi", "grid")
#: Default margin of the search's final verification, in units of ``finfo(dtype).eps * max_j |z_j|``.
#: On a trained LeNet-5 in float32 (logits up to ~12) the logits of the same input differ between
#: batch sizes and memory layouts by up to ~2 such units (2.9e-6); 64 leaves a factor ~30
#: (``advbounds.attacks.search``'s module docstring).
DEFAULT_VERIFY_MARGIN_ULPS = 64.0

OPTIMIZERS = ("adam", "sgd")
LR_POLICIES = ("multistep", "inv")
#: the ``lr_gamma`` of the ``multistep`` policy when none is given (``inv`` needs an explicit one)
MULTISTEP_LR_GAMMA = 0.1


def _from_mapping(cls, section: Mapping[str, Any], what: str):
    """``cls(**section)`` after refusing every key that is not one of ``cls``'s fields."""
    if not isinstance(section, Mapping):
        raise TypeError(f"{what} must be a mapping, got {type(section).__name__}")
    valid = [f.name for f in fields(cls)]
    unknown = sorted(set(section) - set(valid))
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; valid: {', '.join(valid)}")
    return cls(**dict(section))


def _positive_int(name: str, value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < 1:
        raise ValueError(f"{what} {name!r} must be a positive integer, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class SearchSettings:
    """Settings of the minimal-epsilon search (Algorithm 2.1); the config's ``attack`` blocks.

    - ``eps_max``: ``M``, the upper end of the search (thesis: 100 in pixel units for MNIST/CIFAR-10).
    - ``tol``: the search stops once the bracket is at most ``tol`` wide (not stated in the thesis).
    - ``method``: ``"fgs"`` (eq. 2.8, the thesis's) or ``"fgv"`` (eq. 2.10).
    - ``clip``: ``None`` (Algorithm 2.1 does not clip) or ``(low, high)``, e.g. ``(0, 255)``.
    - ``loss_label``: ``"predicted"`` (``L(x, f(x))`` as in Algorithm 2.1) or ``"true"``.
    - ``search``: ``"bisection"`` (the thesis), ``"regula_falsi"`` or ``"grid"``
      (``advbounds.attacks.search``'s module docstring).
    - ``grid_points``: grid resolution of ``search="grid"``.
    - ``batch_size``: samples per chunk (``None``: a default for the model's device).
    - ``fgv_normalize``: FGV only: use ``grad / ||grad||_2`` so that epsilon is the L2 norm.
    - ``channels_last``: run a channels-last copy of the model (``None``: on the CPU for conv nets).
    - ``allow_tf32``: let cuDNN/cuBLAS use TF32 for float32 (off: it would swamp small epsilons).
    - ``verify_margin_ulps``: the margin the final verification in the caller's model requires, in
      units of the model dtype's machine epsilon times the largest |logit| (``0``: plain argmax).
    """

    eps_max: float
    tol: float
    method: str = "fgs"
    clip: tuple[float, float] | None = None
    loss_label: str = "predicted"
    search: str = "bisection"
    grid_points: int = 100
    batch_size: int | None = None
    fgv_normalize: bool = False
    channels_last: bool | None = None
    allow_tf32: bool = False
    verify_margin_ulps: float = DEFAULT_VERIFY_MARGIN_ULPS

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.loss_label not in LOSS_LABELS:
            raise ValueError(f"loss_label must be one of {LOSS_LABELS}, got {self.loss_label!r}")
        if self.search not in SEARCH_POLICIES:
            raise ValueError(f"search must be one of {SEARCH_POLICIES}, got {self.search!r}")
        for name in ("eps_max", "tol"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
            set_(self, name, float(value))
        set_(self, "grid_points", _positive_int("grid_points", self.grid_points, "search setting"))
        if self.batch_size is not None:
            set_(self, "batch_size", _positive_int("batch_size", self.batch_size, "search setting"))
        if self.clip is not None:
            low, high = (float(v) for v in self.clip)
            if not low < high:
                raise ValueError(f"clip must be (low, high) with low < high, got {self.clip!r}")
            set_(self, "clip", (low, high))
        margin = self.verify_margin_ulps
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not (math.isfinite(margin) and margin >= 0):
            raise ValueError(f"verify_margin_ulps must be a finite number >= 0, got {margin!r}")
        set_(self, "verify_margin_ulps", float(margin))
        for name in ("fgv_normalize", "allow_tf32"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.channels_last is not None and not isinstance(self.channels_last, bool):
            raise ValueError(f"channels_last must be true, false or null, got {self.channels_last!r}")

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> SearchSettings:
        """The settings of a config ``attack`` block; a key that is not a field is an error."""
        return _from_mapping(cls, section, "attack settings")

    def replace(self, **changes: Any) -> SearchSettings:
        """A copy with ``changes`` (checked like a new one)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class TrainingSettings:
    """Settings of :func:`advbounds.training.train_classifier`; the config's ``training`` blocks.

    Exactly one of ``iterations`` / ``epochs``. ``regularization`` is the l of Section 4.4 (0 = plain
    cross-entropy). ``lr_policy``: ``multistep`` (``lr`` times ``lr_gamma`` at each of
    ``lr_milestones``) or ``inv`` (Caffe's ``lr * (1 + lr_gamma * iteration) ** -lr_power``, which
    needs explicit ``lr_gamma`` and ``lr_power``). ``checkpoint_every`` and ``eval_batch_size`` do
    not change the training trajectory (:data:`NON_TRAJECTORY`).
    """

    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9  # SGD only
    weight_decay: float = 0.0  # L2 penalty coefficient, as the optimizers' weight_decay
    batch_size: int = 64
    iterations: int | None = None
    epochs: int | None = None
    seed: int = 0
    regularization: float = 0.0
    lr_policy: str = "multistep"
    lr_milestones: tuple[int, ...] = ()
    lr_gamma: float | None = None  # None: MULTISTEP_LR_GAMMA for multistep; inv needs it given
    lr_power: float | None = None
    checkpoint_every: int = 500  # iterations between checkpoints (when a checkpoint_path is given)
    eval_batch_size: int = 1000

    #: settings that do not change the training trajectory (left out of the checkpoint fingerprint)
    NON_TRAJECTORY = ("checkpoint_every", "eval_batch_size")

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        optimizer = str(self.optimizer).lower()
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        set_(self, "optimizer", optimizer)
        if (self.iterations is None) == (self.epochs is None):
            raise ValueError("give exactly one of the training settings 'iterations' and 'epochs'")
        for name in ("iterations", "epochs", "batch_size", "checkpoint_every", "eval_batch_size"):
            if getattr(self, name) is not None:
                set_(self, name, _positive_int(name, getattr(self, name), "training setting"))
        for name in ("lr", "momentum", "weight_decay", "regularization"):
            set_(self, name, float(getattr(self, name)))
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise ValueError("weight_decay must be >= 0 and momentum in [0, 1)")
        if not isinstance(self.lr_milestones, Sequence) or isinstance(self.lr_milestones, str):
            raise ValueError(f"lr_milestones must be a list of iterations, got {self.lr_milestones!r}")
        set_(self, "lr_milestones", tuple(sorted(int(m) for m in self.lr_milestones)))
        if self.lr_policy not in LR_POLICIES:
            raise ValueError(f"lr_policy must be one of {LR_POLICIES}, got {self.lr_policy!r}")
        if self.lr_policy == "inv":
            # Caffe's "inv" policy (e.g. examples/mnist/lenet_solver.prototxt: gamma 1e-4, power 0.75):
            # its gamma and power have no sensible defaults, so both must be given explicitly.
            if self.lr_gamma is None or self.lr_power is None:
                raise ValueError("lr_policy 'inv' needs explicit 'lr_gamma' and 'lr_power' settings")
            if self.lr_milestones:
                raise ValueError("lr_milestones only apply to lr_policy 'multistep'")
            set_(self, "lr_power", float(self.lr_power))
            set_(self, "lr_gamma", float(self.lr_gamma))
            if self.lr_gamma < 0 or self.lr_power < 0:
                raise ValueError("lr_policy 'inv' needs lr_gamma >= 0 and lr_power >= 0")
        else:
            set_(self, "lr_gamma", float(MULTISTEP_LR_GAMMA if self.lr_gamma is None else self.lr_gamma))
        set_(self, "seed", int(self.seed))

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> TrainingSettings:
        """The settings of a config ``training`` block; a key that is not a field is an error."""
        return _from_mapping(cls, section, "training settings")

    def replace(self, **changes: Any) -> TrainingSettings:
        """A copy with ``changes`` (checked like a new one)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form, in field order (the metrics JSON's ``settings``)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["lr_milestones"] = list(self.lr_milestones)
        return out

    def trajectory(self) -> dict[str, Any]:
        """The settings that shape the training trajectory (what a checkpoint fingerprint covers)."""
        return {k: v for k, v in self.to_dict().items() if k not in self.NON_TRAJECTORY}


__all__ = [
    "DEFAULT_VERIFY_MARGIN_ULPS",
    "LOSS_LABELS",
    "LR_POLICIES",
    "METHODS",
    "OPTIMIZERS",
    "SEARCH_POLICIES",
    "SearchSettings",
    "TrainingSettings",
]
