"""Certified robustness: sound lower bounds on the minimal L2 adversarial perturbation.

- :func:`certified_radius`: per-sample certified L2 radius by CROWN (linear relaxation,
  back-substitution; Zhang et al. 2018) or IBP, found by a batched search over eps.
- :func:`margin_lower_bounds`: lower bounds on ``z_y - z_j`` over an L2 ball.
- :func:`exact_minimal_perturbation_relu` (:mod:`.exact`): the exact minimal L2 adversarial
  perturbation of a tiny ReLU MLP (region enumeration + least-distance QPs), a test oracle.
- :mod:`.operators`: one bound operator per layer type, ``OPERATORS`` (type -> class) and
  ``OPERATOR_NAMES`` (name -> class); unsupported layers raise :class:`UnsupportedLayerError`.

What is verified, how, and the limits: ``docs/certify.md``.
"""

from .crown import BoundEngine, MarginBounds, prefix_row_norms
from .exact import ExactReluResult, exact_minimal_perturbation_relu
from .operators import OPERATOR_NAMES, OPERATORS, BoundOperator, UnsupportedLayerError, compile_model, operator_for
from .radius import METHODS, CertifyResult, certified_radius, margin_lower_bounds

__all__ = [
    "BoundEngine",
    "BoundOperator",
    "CertifyResult",
    "ExactReluResult",
    "METHODS",
    "MarginBounds",
    "OPERATORS",
    "OPERATOR_NAMES",
    "UnsupportedLayerError",
    "certified_radius",
    "compile_model",
    "exact_minimal_perturbation_relu",
    "margin_lower_bounds",
    "operator_for",
    "prefix_row_norms",
]
