"""Column names of the per-sample bounds frames (``BoundResult.to_frame`` and the Chapter 5 bounds
CSV built on it), in one torch-free place: the bounds code writes them, and the pandas-only table
code (``advbounds.experiments.cnn_summary``) reads them without importing torch."""

from __future__ import annotations

#: prefix of the per-step kappa columns, ordered input -> output (``kappa_conv1``, ...)
KAPPA_PREFIX = "kappa_"
#: columns every Chapter 5 bounds frame starts with; the ``kappa_<layer>`` columns follow
BOUND_COLUMNS = ("sample", "true_label", "pred_label", "bound")
#: the sound ``corrected`` bound and its per-step kappas (``kappa_`` columns are the thesis's)
CORRECTED_BOUND = "bound_corrected"
SOUND_KAPPA_PREFIX = "sound_kappa_"
#: the certified L2 radius (NaN: not certified)
CERTIFIED_RADIUS = "radius_certified"

__all__ = ["BOUND_COLUMNS", "CERTIFIED_RADIUS", "CORRECTED_BOUND", "KAPPA_PREFIX", "SOUND_KAPPA_PREFIX"]
