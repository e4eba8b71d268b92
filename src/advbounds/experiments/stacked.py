"""Many small MLPs (or linear classifiers) evaluated in one batched pass.

The randomized tests of Tables 3.1 and 4.2 draw 10-100 tiny classifiers with 10-100 samples each.
Running Algorithm 2.1 once per classifier would cost one Python-level forward pass per bisection step
per classifier. :class:`StackedMLP` instead holds the K classifiers' weights as ``[K, out, in]``
tensors and evaluates sample block ``k`` (rows ``k*N .. (k+1)*N - 1`` of the input) with classifier
``k`` through batched matrix products, so :func:`advbounds.attacks.minimal_epsilon_search` runs the
search for all K*N samples at once, one forward pass per bisection step.

Samples do not interact: row ``b``'s logits (and therefore its loss gradient, FGS direction and
bisection path) depend only on row ``b`` and on classifier ``b // N``. The result is the per-model
search up to floating-point summation order (checked in ``tests/test_experiments_ch34.py``).

The module needs every forward pass to see the whole stacked batch, which is what the search does
with ``search="bisection"`` and ``batch_size >= K*N`` (:func:`stacked_search` sets both); any other
batch shape raises instead of silently pairing samples with the wrong classifier.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from advbounds.attacks import AttackResult, minimal_epsilon_search
from advbounds.models import random_uniform_mlp
from advbounds.settings import SearchSettings

DTYPES = {"float64": torch.float64, "float32": torch.float32}


def resolve_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {name!r}") from None


def interval(value: Sequence[float]) -> tuple[float, float]:
    low, high = (float(v) for v in value)
    if not low < high:
        raise ValueError(f"an interval needs low < high, got {list(value)}")
    return low, high


def draw_random_test(
    *,
    n_models: int,
    n_samples: int,
    dim: int,
    n_classes: int,
    hidden: Sequence[int],
    sample_interval: Sequence[float],
    param_interval: Sequence[float],
    activation: str = "tanh",
    seed: int,
    dtype: torch.dtype = torch.float64,
) -> tuple[list[nn.Sequential], torch.Tensor]:
    """The classifiers and samples of one randomized test (Sections 3.3 and 4.3).

    Every weight and bias is i.i.d. ``U(param_interval)`` (``advbounds.models.random_uniform_mlp``),
    every sample component i.i.d. ``U(sample_interval)``; each classifier gets its own ``n_samples``
    samples. One ``torch.Generator`` seeded with ``seed`` draws the classifiers first, then the samples
    ``[n_models, n_samples, dim]``, so a test is reproducible from its seed alone.
    """
    p_low, p_high = interval(param_interval)
    s_low, s_high = interval(sample_interval)
    generator = torch.Generator().manual_seed(int(seed))
    models = []
    for _ in range(int(n_models)):
        model = random_uniform_mlp(int(dim), list(hidden), int(n_classes), p_low, p_high,
                                   activation=activation, generator=generator)
        models.append(model.to(dtype).requires_grad_(False).eval())
    x = torch.empty(int(n_models), int(n_samples), int(dim), dtype=torch.float64)
    x.uniform_(s_low, s_high, generator=generator)
    return models, x.to(dtype)


def _layers(model: nn.Sequential) -> tuple[list[nn.Linear], list[nn.Module]]:
    """Linear layers and the activation modules between them of ``Sequential(Linear, act, ..., Linear)``."""
    children = list(model)
    linears = [m for m in children[0::2]]
    activations = [m for m in children[1::2]]
    if not children or not all(isinstance(m, nn.Linear) for m in linears) or len(linears) != len(activations) + 1:
        raise ValueError("expected Sequential(Linear, activation, ..., Linear), got " + repr(model))
    return linears, activations


class StackedMLP(nn.Module):
    """K MLPs with one architecture; row block ``k`` of the input goes through MLP ``k``."""

    def __init__(self, models: Sequence[nn.Sequential], samples_per_model: int):
        super().__init__()
        if not models:
            raise ValueError("need at least one model")
        first_linears, first_acts = _layers(models[0])
        shapes = [tuple(m.weight.shape) for m in first_linears]
        kinds = [type(a) for a in first_acts]
        weights: list[list[torch.Tensor]] = [[] for _ in shapes]
        biases: list[list[torch.Tensor]] = [[] for _ in shapes]
        for model in models:
            linears, acts = _layers(model)
            if [tuple(m.weight.shape) for m in linears] != shapes or [type(a) for a in acts] != kinds:
                raise ValueError("all stacked models must share one architecture")
            for i, layer in enumerate(linears):
                weights[i].append(layer.weight.detach())
                biases[i].append(layer.bias.detach())
        self.n_models = len(models)
        self.samples_per_model = int(samples_per_model)
        for i, (w, b) in enumerate(zip(weights, biases)):
            self.register_buffer(f"weight{i}", torch.stack(w))  # [K, out, in]
            self.register_buffer(f"bias{i}", torch.stack(b))  # [K, out]
        self.n_linear = len(shapes)
        self.activations = nn.ModuleList(first_acts)

    @property
    def batch_size(self) -> int:
        return self.n_models * self.samples_per_model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[0] != self.batch_size:
            raise ValueError(
                f"StackedMLP of {self.n_models} models x {self.samples_per_model} samples needs input "
                f"[{self.batch_size}, d], got {tuple(x.shape)} (run the search with search='bisection' "
                f"and batch_size >= {self.batch_size})"
            )
        h = x.reshape(self.n_models, self.samples_per_model, x.shape[1])
        for i in range(self.n_linear):
            w, b = getattr(self, f"weight{i}"), getattr(self, f"bias{i}")
            h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
            if i < self.n_linear - 1:
                h = self.activations[i](h)
        return h.reshape(self.batch_size, -1)


def stacked_search(models: Sequence[nn.Sequential], x: torch.Tensor, settings: SearchSettings, *,
                   progress: bool = False) -> AttackResult:
    """:func:`advbounds.attacks.minimal_epsilon_search` for ``x[K, N, d]``: sample ``x[k, n]`` against
    ``models[k]``, with ``settings`` less its search policy and chunk size (plain bisection over all
    ``K*N`` samples in one chunk, which the stacked model needs). Returns the :class:`AttackResult`
    of the flattened ``[K*N]`` samples (model-major)."""
    if x.dim() != 3 or x.shape[0] != len(models):
        raise ValueError(f"x must have shape [K={len(models)}, N, d], got {tuple(x.shape)}")
    stacked = StackedMLP(models, x.shape[1]).to(dtype=x.dtype)
    settings = settings.replace(search="bisection", batch_size=stacked.batch_size)
    return minimal_epsilon_search(stacked, x.reshape(-1, x.shape[2]), settings, progress=progress)
