"""Device selection: CUDA when present, else the CPU, overridable from config."""

from __future__ import annotations

import warnings

import torch

VALID_DEVICES = ("auto", "cpu", "cuda")


def resolve_device(requested: str = "auto") -> torch.device:
    """Map the config's ``device`` value to a torch device.

    ``auto`` picks CUDA when available. ``cuda`` on a machine without a GPU falls back to the CPU
    with a warning instead of crashing, so a GPU config still runs (slowly) on a laptop or in CI.
    """
    name = str(requested).lower()
    base = name.split(":", 1)[0]
    if base not in VALID_DEVICES:
        raise ValueError(f"device must be one of {VALID_DEVICES} (optionally cuda:N), got {requested!r}")
    if base == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if base == "cuda" and not torch.cuda.is_available():
        warnings.warn(
            f"device {requested!r} was requested but no CUDA device is available; running on the CPU",
            RuntimeWarning,
            stacklevel=2,
        )
        return torch.device("cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch from the config's single ``seed``."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
