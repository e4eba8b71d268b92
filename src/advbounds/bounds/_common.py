"""Small helpers shared by the bound rules.

Conventions used throughout ``advbounds.bounds``
------------------------------------------------
* A *kappa* is a per-sample lower bound ``[B]`` on the Euclidean (Frobenius) norm of any
  perturbation of a layer's *input* that changes the model's label. Rules run backwards: a rule
  receives the next layer's kappa and returns the kappa at its own input (Algorithm 5.1).
* Every rule computes in float64 on the input's device (bounds are sums and ratios of numbers of
  very different size; float32 would lose digits needlessly) and returns float64 tensors.
  ``model_bounds`` casts the final results back to the input's floating dtype.
"""

from __future__ import annotations

import torch

#: dtype in which all bound arithmetic is done
BOUND_DTYPE = torch.float64

#: unit roundoff of float64, used for the rigorous rounding slack of certified spectral norms
UNIT_ROUNDOFF_F64 = 2.0**-53


class UnsupportedLayerError(TypeError):
    """A layer (or layer arrangement) for which the thesis gives no bound rule."""


def as_bound_tensor(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float64 on its own device (no copy when it already is)."""
    return x.to(dtype=BOUND_DTYPE)


def per_sample_norm(x: torch.Tensor) -> torch.Tensor:
    """Frobenius norm of each sample of a batch ``[B, ...] -> [B]``."""
    return torch.linalg.vector_norm(x.reshape(x.shape[0], -1), dim=1)


def kappa_like(kappa_next: torch.Tensor | float, batch: int, device: torch.device) -> torch.Tensor:
    """The next layer's kappa as a float64 tensor ``[B]`` (scalars are broadcast)."""
    k = torch.as_tensor(kappa_next, dtype=BOUND_DTYPE, device=device)
    if k.dim() == 0:
        k = k.expand(batch)
    if k.shape != (batch,):
        raise ValueError(f"kappa_next must be a scalar or have shape [{batch}], got {tuple(k.shape)}")
    return k
