"""Beyond the thesis, upper side: the strongest minimal-L2 attacks on a model's test samples, and
the per-sample sandwich frame that sets them beside every lower bound.

Which attacks and how many samples come from the config slice ``chapter5.strong_attacks``, read
into :class:`StrongAttackConfig` (typed, validated once). The samples are the first ``n`` of the
test set, ``n`` depending on the device (all of them on a GPU, a subset on a CPU, where the
attacks cost minutes per thousand images); the certified radius uses the same first samples, so
the sandwich compares like with like.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from advbounds.attacks import DDN, FMN, DDNSettings, DeepFool, DeepFoolSettings, FMNSettings, MinimizationAttack
from advbounds.config import first_samples
from advbounds.frames import CERTIFIED_RADIUS, CORRECTED_BOUND
from advbounds.experiments.sandwich import with_best_attack

#: name -> (attack class, its settings class): every strong attack the pipeline can run
STRONG_ATTACKS: dict[str, tuple[type[MinimizationAttack], type]] = {
    "deepfool": (DeepFool, DeepFoolSettings),
    "ddn": (DDN, DDNSettings),
    "fmn": (FMN, FMNSettings),
}


@dataclass(frozen=True)
class StrongAttackConfig:
    """``samples``: how many test samples (the first ones) by device type, ``None`` = all;
    ``attacks``: name -> settings of each attack to run."""

    samples: Mapping[str, int | None]
    attacks: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> StrongAttackConfig:
        unknown = sorted(set(section["attacks"]) - set(STRONG_ATTACKS))
        if unknown:
            raise ValueError(f"unknown strong attacks {unknown}; valid: {', '.join(STRONG_ATTACKS)}")
        attacks = {name: STRONG_ATTACKS[name][1](**{k: tuple(v) if k == "clip" and v is not None else v
                                                     for k, v in (options or {}).items()})
                   for name, options in section["attacks"].items()}
        return cls(samples=dict(section["samples"]), attacks=attacks)

    def sample_count(self, device: torch.device | str, available: int) -> int:
        return first_samples(self.samples, device, available)


def strong_attack_frame(model: nn.Module, x: torch.Tensor, config: StrongAttackConfig, *,
                        device: torch.device | str = "cpu") -> pd.DataFrame:
    """One row per attacked sample (the first ``config.sample_count`` of ``x``): ``sample`` and,
    per attack, ``attack_<name>`` (the verified perturbation's L2 norm, NaN where the attack did
    not flip the sample) and ``<name>_adv_label``. Labels attacked: the model's predictions."""
    n = config.sample_count(device, len(x))
    model = model.to(device).eval()
    xs = x[:n].to(device=device, dtype=torch.float32)
    frame = pd.DataFrame({"sample": np.arange(n)})
    for name, settings in config.attacks.items():
        attack = STRONG_ATTACKS[name][0](settings)
        result = attack(model, xs)
        norm = result.norm.detach().double().cpu().numpy()
        frame[f"attack_{name}"] = np.where(result.flipped.cpu().numpy(), norm, np.nan)
        frame[f"{name}_adv_label"] = result.adv_label.cpu().numpy().astype(int)
    return frame


def cnn_sandwich_frame(bounds: pd.DataFrame, fgs: pd.DataFrame, strong: pd.DataFrame) -> pd.DataFrame:
    """The sandwich of one CNN on the strongly attacked samples: the thesis bound (``bound``),
    the corrected bound and the certified radius where the bounds frame has them, FGS's
    perturbation norm and every strong attack, plus ``best_attack``."""
    # bounds-frame columns (experiments.cnn) -> sandwich columns (experiments.sandwich)
    names = {"bound": "bound_thesis", CORRECTED_BOUND: "bound_corrected", CERTIFIED_RADIUS: "radius_certified"}
    lower = bounds[["sample", *[c for c in names if c in bounds]]].rename(columns=names)
    upper = fgs[["sample", "perturbation_norm"]].rename(columns={"perturbation_norm": "attack_fgs"})
    attacks = strong[["sample", *[c for c in strong.columns if c.startswith("attack_")]]]
    frame = attacks.merge(lower, on="sample", how="left").merge(upper, on="sample", how="left")
    ordered = ["sample", *[c for c in ("bound_thesis", "bound_corrected", "radius_certified") if c in frame],
               "attack_fgs", *[c for c in attacks.columns if c != "sample"]]
    return with_best_attack(frame[ordered])
