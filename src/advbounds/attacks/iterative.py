"""Iterative perturbation (Section 2.7, Figure 2.5).

``X_0 = X`` and ``X_{i+1}`` is the minimal-epsilon FGS adversarial example of ``X_i`` (with respect
to the label ``f(X_i)``). The thesis observes that the labels then zig-zag between two classes and
that the perturbations shrink after the first step and start to look like the classes themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from advbounds.settings import SearchSettings

from .search import AttackResult, minimal_epsilon_search


@dataclass
class IterativeResult:
    """``steps`` rounds of the search on ``B`` inputs (tensors indexed ``[step, sample, ...]``).

    - ``images[steps + 1, B, ...]``: ``X_0 .. X_n`` as the model saw them (model dtype).
    - ``perturbations[steps, B, ...]``: ``X_{i+1} - X_i`` (float64); zero where step ``i`` did not flip.
    - ``labels[steps + 1, B]``: ``f(X_i)``.
    - ``eps``, ``perturbation_norm``, ``flipped`` ``[steps, B]``: from each round's search.
    - ``total_perturbation``: ``X_n - X_0`` (the first cell of Figure 2.5's bottom row).
    - ``rounds``: the :class:`AttackResult` of every round.

    A sample that does not flip at some step keeps ``X_{i+1} = X_i`` (the search is deterministic,
    so it would not flip at any later step either).
    """

    images: torch.Tensor
    perturbations: torch.Tensor
    labels: torch.Tensor
    eps: torch.Tensor
    perturbation_norm: torch.Tensor
    flipped: torch.Tensor
    rounds: list[AttackResult]

    @property
    def total_perturbation(self) -> torch.Tensor:
        return self.images[-1].to(torch.float64) - self.images[0].to(torch.float64)


def iterative_perturbation(
    model: nn.Module,
    x: torch.Tensor,
    steps: int,
    settings: SearchSettings,
) -> IterativeResult:
    """Apply the minimal-epsilon search ``steps`` times in a row to ``x[B, ...]`` (``B = 1`` in the
    thesis), each round with ``settings`` (FGS in the thesis). ``settings.loss_label`` must stay
    ``"predicted"``: after the first step there is no true label to speak of.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if settings.loss_label != "predicted":
        raise ValueError('iterative_perturbation needs loss_label="predicted"')
    current = x
    images, perts, rounds = [x], [], []
    for _ in range(steps):
        res = minimal_epsilon_search(model, current, settings, return_adversarial=True)
        adv = res.adversarial.to(device=current.device)
        keep = res.flipped.view((-1,) + (1,) * (current.dim() - 1)).to(current.device)
        nxt = torch.where(keep, adv.to(current.dtype), current)
        perts.append(nxt.to(torch.float64) - current.to(torch.float64))
        images.append(nxt)
        rounds.append(res)
        current = nxt
    labels = torch.stack([rounds[0].orig_label] + [r.adv_label for r in rounds])
    return IterativeResult(
        images=torch.stack(images),
        perturbations=torch.stack(perts),
        labels=labels,
        eps=torch.stack([r.eps for r in rounds]),
        perturbation_norm=torch.stack([r.perturbation_norm for r in rounds]),
        flipped=torch.stack([r.flipped for r in rounds]),
        rounds=rounds,
    )
