"""What the attack benchmarks share: the device, timing, synthetic MNIST, a short training loop, the summary file.

The scripts import it as a sibling module (``python benchmarks/bench_x.py`` puts this folder first on
``sys.path``); it puts ``src`` there too, so that the scripts run from a checkout without an install.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from advbounds.io import write_text  # noqa: E402

T = TypeVar("T")


def resolve_device(name: str) -> torch.device:
    """``--device``: ``auto`` is CUDA where there is one, else the CPU; anything else as torch reads it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def sync(device: torch.device) -> None:
    """Wait for the device's queued kernels, so that a wall-clock time covers them."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fastest(run: Callable[[], T], repeat: int, device: torch.device) -> tuple[T, float]:
    """(the last result, the best wall time) over ``repeat`` runs (at least one): the minimum is the
    run least disturbed by other processes, as timeit reports it."""
    best, result = math.inf, None
    for _ in range(max(1, repeat)):
        sync(device)
        start = time.perf_counter()
        result = run()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return result, best


def synthetic_mnist(n: int, generator: torch.Generator,
                    templates: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST-shaped 10-class data in [0, 255]: a fixed smooth template per class plus noise. The
    templates are drawn from ``templates`` (default: ``generator``), labels and noise from ``generator``."""
    base = torch.rand(10, 1, 7, 7, generator=generator if templates is None else templates)
    shapes = nn.functional.interpolate(base, size=(28, 28), mode="bilinear", align_corners=False)
    y = torch.randint(0, 10, (n,), generator=generator)
    x = shapes[y] + 0.35 * torch.rand(n, 1, 28, 28, generator=generator)
    return (x - x.amin()) / (x.amax() - x.amin()) * 255.0, y


def train_steps(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, steps: int,
                batch_size: int, generator: torch.Generator) -> None:
    """``steps`` cross-entropy steps on random batches of ``(x, y)`` (drawn with ``generator``, on the
    CPU); the model is left in eval mode."""
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (batch_size,), generator=generator).to(x.device)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


def write_summary(summary: dict[str, Any], path: Path | None) -> None:
    """``--json``: the summary as indented JSON, atomically; nothing without a path."""
    if path is not None:
        write_text(json.dumps(summary, indent=2), path)
