"""The empirical side of the thesis: adversarial perturbations to compare the bounds against.

- :func:`minimal_epsilon_search`: Algorithm 2.1 (FGS, eq. 2.8) and the same search for FGV
  (eq. 2.10), batched: every sample keeps its own bracket, one forward pass per step per chunk.
- :func:`exact_minimal_perturbation_linear`: exact minimal L2 perturbation of a linear classifier
  (Lemma 3.1 in closed form; a least-distance QP per target class otherwise).
- :func:`iterative_perturbation`: Section 2.7 / Figure 2.5.
- :mod:`.reference`: the naive per-sample loop the batched search is checked and timed against.
- :mod:`.minimal_l2`: strong minimal-L2 attacks (:class:`DeepFool`, :class:`DDN`, :class:`FMN`), batched,
  with a separate verification pass; :func:`best_attack` and :func:`attack_optimality` compare them
  (and FGS / FGV) per sample.

The choices the thesis leaves open, and their defaults, are documented in ``docs/attacks.md``.
"""

from advbounds._exports import public_names as _public_names

from .direction import attack_direction, loss_logit_weights, perturb, perturbation_norm
from .iterative import IterativeResult, iterative_perturbation
from .minimal_l2 import (
    DDN,
    FMN,
    AttackSettings,
    BestAttackResult,
    DDNSettings,
    DeepFool,
    DeepFoolSettings,
    FMNSettings,
    MinimalAttackResult,
    MinimizationAttack,
    attack_optimality,
    best_attack,
    median_optimality,
)
from .linear import ExactResult, binary_minimal_perturbation, exact_minimal_perturbation_linear, min_norm_polyhedron
from .reference import naive_minimal_epsilon, naive_minimal_epsilon_search
from advbounds.settings import DEFAULT_VERIFY_MARGIN_ULPS, SEARCH_POLICIES, SearchSettings

from .search import (
    DEFAULT_BATCH_SIZE,
    THESIS_EPS_MAX_PIXELS,
    AttackResult,
    bisection_steps,
    flip_verdict,
    minimal_epsilon_search,
)

#: the names imported above, which are the package's API
__all__ = _public_names(globals())
