"""Minimal-L2 attacks, batched over samples: DeepFool (L2), DDN and FMN (L2).

Every attack is a :class:`MinimizationAttack`: a callable object built from a typed, frozen
settings dataclass. ``attack(model, x, labels=None) -> MinimalAttackResult``. The base class's
``__call__`` owns the steps every attack shares, in this order:

1. the model goes to eval mode (every module's flag is restored afterwards) and float32 runs in
   IEEE precision (no TF32, see :func:`.direction.fp32_precision`);
2. ``x`` is moved to the model's device and dtype, ``f(x)`` is computed; the attacked label is
   ``labels`` if given, else ``f(x)``. Samples already misclassified w.r.t. ``labels`` are their own
   adversarial (norm 0) and are not attacked;
3. the subclass's ``_run`` searches, batched over the samples (in chunks of ``batch_size``);
4. a SEPARATE verification forward pass in the caller's model on exactly the returned tensor: a
   sample counts only if ``argmax model(x + delta) != label``; its norm is
   ``||(x + delta) - x||_2`` computed in float64 from the tensor the model saw (model dtype) and the
   clean input in the model's dtype. A sample that fails gets ``norm = inf``, ``flipped = False``
   and ``adversarial = x``.

Inside the attacks, a candidate counts as adversarial only if the best rival beats the label by a
margin of ``margin_ulps * finfo(dtype).eps * max|z|`` (:func:`.search.flip_verdict`), so that the
final argmax check (and any later re-run in another batch composition, or one at a time) does not
depend on floating-point accumulation order.

Input scale. The published attacks assume inputs in ``[0, 1]``. Here every step size and initial
norm is relative to a per-sample scale ``s``: ``input_scale`` if set, else the clip range
``high - low`` if ``clip`` is set, else the sample's own value range ``max(x) - min(x)`` (255 for an
MNIST digit in pixel units; ``max|x|``, then 1, for a constant sample). A setting quoted as "1.0"
below therefore means one full input range, as 1.0 does in ``[0, 1]``.

``clip`` is off by default (the thesis's setting: Algorithm 2.1 does not clip); ``(0, 255)`` keeps
pixels in range.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, fields
from typing import ClassVar, final

import torch
from torch import nn

from advbounds.settings import DEFAULT_VERIFY_MARGIN_ULPS

from .direction import eval_mode, fp32_precision, loss_logit_weights, model_device_dtype, prepare_model
from .search import AttackResult, caller_memory_format, flip_verdict

__all__ = [
    "AttackSettings",
    "BestAttackResult",
    "DDN",
    "DDNSettings",
    "DeepFool",
    "DeepFoolSettings",
    "FMN",
    "FMNSettings",
    "MinimalAttackResult",
    "MinimizationAttack",
    "attack_optimality",
    "best_attack",
    "median_optimality",
]


# ------------------------------------------------------------------------------------------------
# Settings
# ------------------------------------------------------------------------------------------------


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_positive(name: str, value, *, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or (
        value < 0 if allow_zero else value <= 0
    ):
        raise ValueError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0, got {value!r}")


@dataclass(frozen=True)
class AttackSettings:
    """Settings every minimal-L2 attack has.

    - ``steps``: iterations (DeepFool: at most; it stops per sample once adversarial).
    - ``clip``: ``None`` (no clipping, the thesis's setting) or ``(low, high)``.
    - ``batch_size``: samples per chunk (``None``: all at once).
    - ``input_scale``: the scale ``s`` of step sizes and initial norms (``None``: from ``clip`` or
      each sample's range; see the module docstring).
    - ``margin_ulps``: the margin an iterate needs to count as adversarial inside the attack.
    - ``channels_last``: run the attack's own passes on a channels-last copy of the model (``None``:
      on the CPU for conv nets, 2-3x faster there); the verification pass always uses the caller's
      model and layout.
    """

    steps: int = 100
    clip: tuple[float, float] | None = None
    batch_size: int | None = None
    input_scale: float | None = None
    margin_ulps: float = DEFAULT_VERIFY_MARGIN_ULPS
    channels_last: bool | None = None

    def __post_init__(self) -> None:
        _check_int("steps", self.steps, 1)
        if self.channels_last not in (None, True, False):
            raise ValueError(f"channels_last must be None, True or False, got {self.channels_last!r}")
        if self.clip is not None:
            if len(self.clip) != 2:
                raise ValueError(f"clip must be (low, high), got {self.clip!r}")
            low, high = (float(v) for v in self.clip)
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise ValueError(f"clip must be (low, high) with finite low < high, got {self.clip!r}")
            object.__setattr__(self, "clip", (low, high))
        if self.batch_size is not None:
            _check_int("batch_size", self.batch_size, 1)
        if self.input_scale is not None:
            _check_positive("input_scale", self.input_scale)
        _check_positive("margin_ulps", self.margin_ulps, allow_zero=True)


@dataclass(frozen=True)
class DeepFoolSettings(AttackSettings):
    """DeepFool L2 (Moosavi-Dezfooli et al. 2016), multi-class.

    - ``steps`` (default 50): maximum number of linearisation steps.
    - ``overshoot`` (0.02): the accumulated step is scaled by ``1 + overshoot``.
    - ``candidates`` (10): classes considered, the top-``candidates`` of ``f(x)``'s logits (the
      attacked label always included); ``None``: all classes.
    - ``push`` (1e-4): added to each step's length, times the input scale (the original's
      numerical-stability term, 1e-4 in [0, 1] units).
    """

    steps: int = 50
    overshoot: float = 0.02
    candidates: int | None = 10
    push: float = 1e-4

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_positive("overshoot", self.overshoot, allow_zero=True)
        _check_positive("push", self.push, allow_zero=True)
        if self.candidates is not None:
            _check_int("candidates", self.candidates, 2)


@dataclass(frozen=True)
class DDNSettings(AttackSettings):
    """Decoupled Direction and Norm (Rony et al. 2019).

    - ``steps`` (100); ``gamma`` (0.05): the norm ``eps`` shrinks by ``1 - gamma`` after an
      adversarial iterate and grows by ``1 + gamma`` otherwise.
    - ``init_norm`` (1.0): initial ``eps``, times the input scale.
    - ``step_size`` (1.0) to ``final_step_size`` (0.01): the normalised gradient step, cosine
      annealed over the steps, times the input scale.
    """

    gamma: float = 0.05
    init_norm: float = 1.0
    step_size: float = 1.0
    final_step_size: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (isinstance(self.gamma, (int, float)) and 0 < self.gamma < 1):
            raise ValueError(f"gamma must lie in (0, 1), got {self.gamma!r}")
        _check_positive("init_norm", self.init_norm)
        _check_positive("step_size", self.step_size)
        _check_positive("final_step_size", self.final_step_size)
        if self.final_step_size > self.step_size:
            raise ValueError(f"final_step_size ({self.final_step_size}) must not exceed step_size ({self.step_size})")


@dataclass(frozen=True)
class FMNSettings(AttackSettings):
    """Fast Minimum-Norm attack, L2 (Pintor et al. 2021).

    - ``steps`` (100); ``gamma`` (0.05) cosine annealed to ``final_gamma`` (0.001): the factor the
      norm constraint ``eps`` shrinks by after an adversarial iterate (and grows by otherwise, once
      an adversarial has been found; before that ``eps`` is the linearised distance to the boundary).
    - ``step_size`` (1.0) cosine annealed to ``final_step_size`` (``None``: ``step_size / 100``):
      the normalised gradient step on the logit margin, times the input scale.
    """

    gamma: float = 0.05
    final_gamma: float = 0.001
    step_size: float = 1.0
    final_step_size: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (isinstance(self.gamma, (int, float)) and 0 < self.gamma < 1):
            raise ValueError(f"gamma must lie in (0, 1), got {self.gamma!r}")
        if not (isinstance(self.final_gamma, (int, float)) and 0 <= self.final_gamma <= self.gamma):
            raise ValueError(f"final_gamma must lie in [0, gamma], got {self.final_gamma!r}")
        _check_positive("step_size", self.step_size)
        if self.final_step_size is not None:
            _check_positive("final_step_size", self.final_step_size)
            if self.final_step_size > self.step_size:
                raise ValueError(
                    f"final_step_size ({self.final_step_size}) must not exceed step_size ({self.step_size})")


# ------------------------------------------------------------------------------------------------
# Result
# ------------------------------------------------------------------------------------------------


@dataclass
class MinimalAttackResult:
    """Per-sample result of a :class:`MinimizationAttack` (tensors of length B on x's device).

    - ``norm``: ``||adversarial - x||_2`` in float64 (``x`` in the model's dtype), ``inf`` where
      not flipped.
    - ``adversarial``: the input the verification pass fed the model (model dtype); ``x`` itself
      where not flipped.
    - ``adv_label``: the model's label at ``adversarial`` (the verification pass's argmax).
    - ``orig_label``: the attacked label (``labels`` if given, else ``f(x)``).
    - ``flipped``: ``adv_label != orig_label``, checked by the separate verification pass.
    """

    norm: torch.Tensor
    adversarial: torch.Tensor
    adv_label: torch.Tensor
    orig_label: torch.Tensor
    flipped: torch.Tensor

    def __len__(self) -> int:
        return int(self.norm.shape[0])

    def perturbation(self, x: torch.Tensor) -> torch.Tensor:
        """``adversarial - x`` in float64 (``x`` rounded to the adversarial's dtype first, as the
        model saw it)."""
        x = x.to(device=self.adversarial.device, dtype=self.adversarial.dtype)
        return self.adversarial.to(torch.float64) - x.to(torch.float64)

    def to_frame(self, prefix: str = ""):
        """One row per sample: ``<prefix>norm, <prefix>adv_label, <prefix>orig_label, <prefix>flipped``."""
        import pandas as pd

        return pd.DataFrame(
            {
                f"{prefix}{f.name}": getattr(self, f.name).detach().cpu().numpy()
                for f in fields(self)
                if f.name != "adversarial"
            }
        )

    @staticmethod
    def concatenate(parts: list[MinimalAttackResult]) -> MinimalAttackResult:
        return MinimalAttackResult(**{f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(MinimalAttackResult)})


# ------------------------------------------------------------------------------------------------
# Base class
# ------------------------------------------------------------------------------------------------


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``v[B]`` viewed to broadcast against ``like[B, ...]``."""
    return v.view((-1,) + (1,) * (like.dim() - 1))


def _l2(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1)


def _cosine(start: float, end: float, k: int, steps: int) -> float:
    """Cosine annealing from ``start`` (k = 0) to ``end`` (k = steps - 1)."""
    if steps <= 1:
        return start
    return end + (start - end) * (1 + math.cos(math.pi * k / (steps - 1))) / 2


class MinimizationAttack(abc.ABC):
    """A minimal-L2 attack: ``attack(model, x, labels=None) -> MinimalAttackResult``.

    Subclasses set ``name``, ``settings_type`` and implement :meth:`_run`; ``__call__`` is final
    (see the module docstring for what it does around ``_run``).
    """

    name: ClassVar[str]
    settings_type: ClassVar[type[AttackSettings]]

    def __init__(self, settings: AttackSettings | None = None):
        if settings is None:
            settings = self.settings_type()
        if not isinstance(settings, self.settings_type):
            raise TypeError(f"{type(self).__name__} takes {self.settings_type.__name__}, got {type(settings).__name__}")
        self.settings = settings

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings!r})"

    @final
    def __call__(self, model: nn.Module, x: torch.Tensor, labels: torch.Tensor | None = None) -> MinimalAttackResult:
        if not isinstance(x, torch.Tensor) or x.dim() < 2 or x.shape[0] == 0:
            raise ValueError(f"x must be a non-empty batch [B, ...], got {getattr(x, 'shape', type(x))}")
        if labels is not None and (labels.dim() != 1 or labels.shape[0] != x.shape[0]):
            raise ValueError(f"labels must have shape [{x.shape[0]}], got {tuple(labels.shape)}")
        device, dtype = model_device_dtype(model, x)
        s = self.settings
        chunk = s.batch_size or x.shape[0]
        # The attack's own passes may run a channels-last copy (CPU conv nets, as the FGS search);
        # the verification pass always runs the caller's model on the caller's layout.
        work_model, work_format = prepare_model(model, x, s.channels_last)
        caller_format = caller_memory_format(x)
        parts = []
        with eval_mode(model), eval_mode(work_model), fp32_precision(False):
            for start in range(0, x.shape[0], chunk):
                xc = x[start : start + chunk].to(device=device, dtype=dtype).contiguous(memory_format=caller_format)
                yc = None if labels is None else labels[start : start + chunk].to(device=device, dtype=torch.int64)
                parts.append(self._attack_chunk(model, work_model, work_format, xc, yc))
        out = MinimalAttackResult.concatenate(parts)
        return MinimalAttackResult(**{f.name: getattr(out, f.name).to(x.device) for f in fields(out)})

    def _attack_chunk(self, model, work_model, work_format, x, labels) -> MinimalAttackResult:
        s = self.settings
        with torch.no_grad():
            logits = model(x)
        predicted = logits.argmax(dim=1)
        label = predicted if labels is None else labels
        if label.min() < 0 or label.max() >= logits.shape[1]:
            raise ValueError(f"labels must be class indices in [0, {logits.shape[1]})")
        candidate = x.clone()
        todo = (predicted == label).nonzero().squeeze(1)  # the others are adversarial already
        if todo.numel():
            xt = x[todo].contiguous(memory_format=work_format)
            found = self._run(work_model, xt, label[todo], self._scale(xt))
            if s.clip is not None:
                found = found.clamp(*s.clip)
            candidate[todo] = found.to(x.dtype)
        # The separate verification pass, on exactly the tensor that is returned.
        with torch.no_grad():
            adv_label = model(candidate).argmax(dim=1)
        flipped = adv_label != label
        adversarial = torch.where(_bcast(flipped, x), candidate, x)
        norm = _l2(adversarial.to(torch.float64) - x.to(torch.float64))
        norm = torch.where(flipped, norm, torch.full_like(norm, math.inf))
        return MinimalAttackResult(
            norm=norm, adversarial=adversarial, adv_label=torch.where(flipped, adv_label, label),
            orig_label=label, flipped=flipped,
        )

    def _scale(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample input scale ``s`` (float64 ``[B]``), see the module docstring."""
        s = self.settings
        n = x.shape[0]
        f64 = dict(dtype=torch.float64, device=x.device)
        if s.input_scale is not None:
            return torch.full((n,), float(s.input_scale), **f64)
        if s.clip is not None:
            return torch.full((n,), s.clip[1] - s.clip[0], **f64)
        flat = x.detach().flatten(1).to(torch.float64)
        scale = flat.amax(dim=1) - flat.amin(dim=1)
        scale = torch.where(scale > 0, scale, flat.abs().amax(dim=1))
        return torch.where(scale > 0, scale, torch.ones_like(scale))

    def _clip(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.settings.clip is None else x.clamp(*self.settings.clip)

    def _is_adversarial(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return flip_verdict(logits, label, self.settings.margin_ulps)

    def _keep_smallest(self, logits, xa, x64, label, best_norm, best):
        """Take the iterate ``xa`` (whose ``logits`` are given) as the new ``best`` of the samples where it
        is adversarial and closer to ``x64`` than ``best_norm``. Returns ``(adversarial, ||xa - x||,
        best_norm, best)``, the last two updated."""
        adv = self._is_adversarial(logits, label)
        norm = _l2(xa.to(torch.float64) - x64)
        improved = adv & (norm < best_norm)
        return adv, norm, torch.where(improved, norm, best_norm), torch.where(_bcast(improved, xa), xa, best)

    def _with_last_iterate(self, model, point, x64, label, best_norm, best):
        """``best`` after the final iterate ``point`` (float64, before clipping) is checked too."""
        xa = self._clip(point).to(best.dtype)
        with torch.no_grad():
            logits = model(xa)
        return self._keep_smallest(logits, xa, x64, label, best_norm, best)[3]

    @abc.abstractmethod
    def _run(self, model: nn.Module, x: torch.Tensor, label: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """The candidate adversarials ``[B, ...]`` for inputs ``x`` (model device/dtype) that the model
        classifies as ``label``; ``scale[B]`` is the input scale. Model in eval mode already."""


# ------------------------------------------------------------------------------------------------
# DeepFool
# ------------------------------------------------------------------------------------------------


class DeepFool(MinimizationAttack):
    """DeepFool, L2, multi-class (Moosavi-Dezfooli, Fawzi and Frossard, CVPR 2016).

    Per step, for the current point ``x_k`` and each candidate class ``j``: ``f_j = z_j - z_y``
    (negative while not adversarial) and ``w_j = grad f_j``. The closest linearised boundary is
    ``l = argmin_j |f_j| / ||w_j||`` and the step ``r = (|f_l| / ||w_l|| + push * s) w_l / ||w_l||``; the steps
    accumulate in ``r_tot`` and ``x_{k+1} = x + (1 + overshoot) r_tot``. A sample stops as soon as its
    iterate is adversarial (by the margin); only the samples still running are evaluated, and one
    backward pass per candidate class serves all of them.
    Scale-free: the step comes from the linearisation, in whatever units the input has (``push`` is
    relative to the input scale ``s``).
    """

    name = "deepfool"
    settings_type = DeepFoolSettings

    def _run(self, model, x, label, scale):
        s: DeepFoolSettings = self.settings
        with torch.no_grad():
            z0 = model(x)
        n_classes = z0.shape[1]
        k = n_classes if s.candidates is None else min(s.candidates, n_classes)
        # candidate classes: the label first, then the (k - 1) highest other logits of f(x)
        others = z0.detach().scatter(1, label.view(-1, 1), -math.inf).argsort(dim=1, descending=True)[:, : k - 1]
        classes = torch.cat([label.view(-1, 1), others], dim=1)
        x64 = x.to(torch.float64)
        r_tot = torch.zeros_like(x64)
        current = x.clone()
        live = torch.arange(x.shape[0], device=x.device)
        for _ in range(s.steps):
            xr = current[live].detach().requires_grad_(True)
            with torch.enable_grad():
                z = model(xr)
                zc = z.gather(1, classes[live])
                diffs = zc[:, 1:] - zc[:, :1]  # f_j, [L, k-1]
                grads = []
                for j in range(k - 1):
                    (g,) = torch.autograd.grad(diffs[:, j].sum(), xr, retain_graph=j < k - 2)
                    grads.append(g.to(torch.float64))
            adv = self._is_adversarial(z.detach(), label[live])
            live_next = live[~adv]
            if not live_next.numel():
                break
            keep = ~adv
            f = diffs.detach().to(torch.float64)[keep]  # [L', k-1]
            w = torch.stack([g[keep] for g in grads], dim=1)  # [L', k-1, ...]
            w_norm = w.flatten(2).norm(dim=2).clamp_min(torch.finfo(torch.float64).tiny)
            dist = f.abs() / w_norm
            best = dist.argmin(dim=1)
            w_l = w[torch.arange(w.shape[0], device=x.device), best]
            f_l = f.gather(1, best.view(-1, 1)).squeeze(1)
            wn_l = w_norm.gather(1, best.view(-1, 1)).squeeze(1)
            # the linearised distance plus a push of push * s along the unit direction (the
            # original's "+1e-4" in [0, 1] units): without it an iterate whose steps are cut by
            # clipping approaches the boundary geometrically and may never cross it
            length = f_l.abs() / wn_l + s.push * scale[live_next]
            step = _bcast(length / wn_l, w_l) * w_l
            r_tot[live_next] = r_tot[live_next] + step
            moved = x64[live_next] + (1 + s.overshoot) * r_tot[live_next]
            current[live_next] = self._clip(moved).to(x.dtype)
            live = live_next
        return current


# ------------------------------------------------------------------------------------------------
# DDN
# ------------------------------------------------------------------------------------------------


class DDN(MinimizationAttack):
    """Decoupled Direction and Norm (Rony et al., CVPR 2019), untargeted.

    ``delta <- eps * (delta + alpha g / ||g||) / ||delta + alpha g / ||g|| ||`` with ``g`` the
    cross-entropy gradient at ``x + delta`` and ``eps`` multiplied by ``1 - gamma`` after an
    adversarial iterate, by ``1 + gamma`` otherwise; ``alpha`` cosine annealed. Returns the smallest
    adversarial iterate seen. The gradient's direction is computed without softmax saturation
    (:func:`.direction.loss_logit_weights`: the exact direction of ``grad L`` even where float32's
    softmax rounds ``p_y`` to 1).
    """

    name = "ddn"
    settings_type = DDNSettings

    def _run(self, model, x, label, scale):
        s: DDNSettings = self.settings
        x64 = x.to(torch.float64)
        delta = torch.zeros_like(x64)
        eps = s.init_norm * scale
        best_norm = torch.full_like(scale, math.inf)
        best = x.clone()
        tiny = torch.finfo(torch.float64).tiny
        for k in range(s.steps):
            alpha = _cosine(s.step_size, s.final_step_size, k, s.steps) * scale
            xa = self._clip(x64 + delta).to(x.dtype)
            xr = xa.detach().requires_grad_(True)
            with torch.enable_grad():
                z = model(xr)
                weights, _ = loss_logit_weights(z, label)
                (g,) = torch.autograd.grad(z, xr, grad_outputs=weights.to(z.dtype))
            adv, norm, best_norm, best = self._keep_smallest(z.detach(), xa, x64, label, best_norm, best)
            g = g.to(torch.float64)
            g = g / _bcast(_l2(g).clamp_min(tiny), g)
            eps = torch.where(adv, eps * (1 - s.gamma), eps * (1 + s.gamma))
            delta = delta + _bcast(alpha, g) * g
            delta = delta * _bcast(eps / _l2(delta).clamp_min(tiny), delta)
            delta = self._clip(x64 + delta) - x64
        return self._with_last_iterate(model, x64 + delta, x64, label, best_norm, best)


# ------------------------------------------------------------------------------------------------
# FMN
# ------------------------------------------------------------------------------------------------


class FMN(MinimizationAttack):
    """Fast Minimum-Norm attack, L2 (Pintor et al., NeurIPS 2021), untargeted.

    Loss: the logit margin ``L = z_y - max_{j != y} z_j`` (adversarial when negative). Per step:
    the norm constraint ``eps`` becomes ``min(eps (1 - gamma), ||delta_best||)`` after an adversarial
    iterate; otherwise ``max(||delta|| + L / ||grad L||, eps) (1 + gamma)`` (the linearised distance
    to the boundary, overshot by ``1 + gamma`` and never shrinking: our change, without it an iterate
    on a linear boundary never crosses it, nor one whose steps clipping cuts short) while no
    adversarial has been found, ``eps (1 + gamma)`` afterwards. Then
    ``delta <- delta - alpha grad L / ||grad L||``, projected onto the ball ``||delta|| <= eps`` and
    into ``clip``. ``gamma`` and ``alpha`` are cosine annealed. Returns the smallest adversarial
    iterate seen.
    """

    name = "fmn"
    settings_type = FMNSettings

    def _run(self, model, x, label, scale):
        s: FMNSettings = self.settings
        final_step = s.step_size / 100 if s.final_step_size is None else s.final_step_size
        x64 = x.to(torch.float64)
        delta = torch.zeros_like(x64)
        eps = torch.full_like(scale, math.inf)
        best_norm = torch.full_like(scale, math.inf)
        best = x.clone()
        tiny = torch.finfo(torch.float64).tiny
        for k in range(s.steps):
            gamma = _cosine(s.gamma, s.final_gamma, k, s.steps)
            alpha = _cosine(s.step_size, final_step, k, s.steps) * scale
            xa = self._clip(x64 + delta).to(x.dtype)
            xr = xa.detach().requires_grad_(True)
            with torch.enable_grad():
                z = model(xr)
                own = z.gather(1, label.view(-1, 1)).squeeze(1)
                rival = z.scatter(1, label.view(-1, 1), -math.inf).amax(dim=1)
                margin = own - rival
                (g,) = torch.autograd.grad(margin.sum(), xr)
            adv, norm, best_norm, best = self._keep_smallest(z.detach(), xa, x64, label, best_norm, best)
            g = g.to(torch.float64)
            g_norm = _l2(g).clamp_min(tiny)
            found = torch.isfinite(best_norm)
            m = margin.detach().to(torch.float64)
            # linearised distance to the boundary, overshot by (1 + gamma): the estimate itself lies
            # on the (linearised) boundary, where the label does not flip (a linear classifier
            # would stay there for good)
            # and never below the previous radius: with clipping the linear estimate falls short
            # of the boundary, and the radius must still grow until an adversarial is found
            linear = (norm + m.clamp_min(0) / g_norm) * (1 + gamma)
            linear = torch.maximum(linear, torch.where(torch.isfinite(eps), eps * (1 + gamma), torch.zeros_like(eps)))
            eps = torch.where(
                adv,
                torch.minimum(eps * (1 - gamma), best_norm),
                torch.where(found, eps * (1 + gamma), linear),
            )
            delta = delta - _bcast(alpha / g_norm, g) * g
            shrink = (eps / _l2(delta).clamp_min(tiny)).clamp(max=1.0)
            delta = delta * _bcast(shrink, delta)
            delta = self._clip(x64 + delta) - x64
        return self._with_last_iterate(model, x64 + delta, x64, label, best_norm, best)


# ------------------------------------------------------------------------------------------------
# Best of several attacks, optimality
# ------------------------------------------------------------------------------------------------


def _norms_of(name: str, result) -> torch.Tensor:
    """Per-sample L2 norms (float64, ``inf`` where not flipped) of one attack's result."""
    if isinstance(result, MinimalAttackResult):
        norm = result.norm.to(torch.float64)
        return torch.where(result.flipped.to(norm.device), norm, torch.full_like(norm, math.inf))
    if isinstance(result, AttackResult):
        norm = result.perturbation_norm.to(torch.float64)
        ok = result.flipped.to(norm.device) & ~norm.isnan()
        return torch.where(ok, norm, torch.full_like(norm, math.inf))
    if isinstance(result, torch.Tensor):
        if result.dim() != 1 or not result.is_floating_point():
            raise ValueError(f"{name!r}: norms must be a floating tensor [B], got {result.dtype} {tuple(result.shape)}")
        norm = result.to(torch.float64)
        if (norm < 0).any():
            raise ValueError(f"{name!r}: norms must be >= 0 (NaN or inf for 'not found')")
        return torch.where(norm.isnan(), torch.full_like(norm, math.inf), norm)
    raise TypeError(f"{name!r}: expected a MinimalAttackResult, an AttackResult or a tensor of norms, "
                    f"got {type(result).__name__}")


@dataclass
class BestAttackResult:
    """Per-sample best of several attacks (:func:`best_attack`).

    - ``norm``: the smallest norm any attack found (float64, ``inf`` where none flipped the sample).
    - ``attack``: index into ``names`` of the attack that found it (the first in ``names`` on ties;
      -1 where none did).
    - ``names``: the attacks, in the order given.
    - ``flipped``: some attack flipped the sample.
    - ``norms``: every attack's norms (``inf`` = not found) plus ``"best"``.
    """

    norm: torch.Tensor
    attack: torch.Tensor
    names: tuple[str, ...]
    flipped: torch.Tensor
    norms: dict[str, torch.Tensor]

    def __len__(self) -> int:
        return int(self.norm.shape[0])

    @property
    def attack_names(self) -> list[str | None]:
        """The winning attack's name per sample (``None`` where none flipped it)."""
        return [self.names[i] if i >= 0 else None for i in self.attack.tolist()]

    def to_frame(self, prefix: str = "best_"):
        """One row per sample: ``<prefix>norm``, ``<prefix>attack`` (name or None), ``<prefix>flipped``."""
        import pandas as pd

        return pd.DataFrame({
            f"{prefix}norm": self.norm.detach().cpu().numpy(),
            f"{prefix}attack": self.attack_names,
            f"{prefix}flipped": self.flipped.detach().cpu().numpy(),
        })


def best_attack(results: dict[str, MinimalAttackResult | AttackResult | torch.Tensor]) -> BestAttackResult:
    """The per-sample minimum over several attacks' L2 norms, named ``"best"`` in ``norms``.

    Values may be :class:`MinimalAttackResult` (``norm``), :class:`~.search.AttackResult` from
    :func:`~.search.minimal_epsilon_search` (``perturbation_norm``: FGS / FGV) or tensors of norms
    ``[B]`` (NaN or inf = not found). Not-flipped samples never win.
    """
    if not results:
        raise ValueError("best_attack needs at least one attack")
    if "best" in results:
        raise ValueError('"best" is the name of the result; rename that attack')
    names = tuple(results)
    norms = {name: _norms_of(name, results[name]) for name in names}
    sizes = {name: int(v.shape[0]) for name, v in norms.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"attacks cover different numbers of samples: {sizes}")
    device = next(iter(norms.values())).device
    stacked = torch.stack([norms[name].to(device) for name in names])  # [A, B]
    best, index = stacked.min(dim=0)
    flipped = torch.isfinite(best)
    index = torch.where(flipped, index, torch.full_like(index, -1))
    return BestAttackResult(norm=best, attack=index, names=names, flipped=flipped, norms={**norms, "best": best})


def attack_optimality(norms: dict[str, torch.Tensor | MinimalAttackResult | AttackResult]) -> dict[str, torch.Tensor]:
    """Per-sample optimality of each attack (AttackBench-style): ``best / norm``, where ``best`` is
    the smallest norm any of the given attacks found for that sample.

    1 = this attack found the best perturbation; 0 = it found none (``norm = inf``); NaN = no
    attack found one (``best = inf``). ``best = norm = 0`` (already misclassified) gives 1. Values
    may be anything :func:`best_attack` takes.
    """
    if not norms:
        raise ValueError("attack_optimality needs at least one attack")
    values = {name: _norms_of(name, v) for name, v in norms.items()}
    sizes = {name: int(v.shape[0]) for name, v in values.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"attacks cover different numbers of samples: {sizes}")
    best = torch.stack(list(values.values())).min(dim=0).values
    out = {}
    for name, norm in values.items():
        ratio = best / norm
        ratio = torch.where(norm == 0, torch.ones_like(ratio), ratio)  # best = norm = 0
        ratio = torch.where(torch.isinf(norm) & torch.isfinite(best), torch.zeros_like(ratio), ratio)
        out[name] = torch.where(torch.isinf(best), torch.full_like(ratio, math.nan), ratio)
    return out


def median_optimality(optimality: dict[str, torch.Tensor]) -> dict[str, float]:
    """Median over samples of each attack's :func:`attack_optimality` (NaN samples ignored)."""
    return {name: float(v.nanmedian()) if (~v.isnan()).any() else math.nan for name, v in optimality.items()}
