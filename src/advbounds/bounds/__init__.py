"""Lower bounds on the L2 norm of the smallest label-changing perturbation (thesis Chapters 3-5).

Public API (docs/CONTRACTS.md, section ``advbounds.bounds``):

* ``linear_output_bound(weight, bias, x)`` -- ``delta(x; f)`` of eq. (3.12) (Lemma 3.5, Theorem 3.6)
* ``binary_linear_bound(w, b, x)`` -- Lemma 3.1 (exact)
* ``ACTIVATION_DERIVATIVE_BOUNDS`` -- Table 4.1; ``second_derivative_bound`` -- Algorithm 4.1
* ``mlp_bound(model, x)`` -- Theorem 4.2
* ``model_bounds(model, x)`` -> ``BoundResult`` -- Algorithm 5.1 over any model of supported layers
* ``BOUND_RULES`` -- the registry layer type -> rule; ``UnsupportedLayerError``
* ``model_bounds(model, x, mode="corrected")`` -- the same composition over ``SOUND_RULES``
  (``advbounds.bounds.sound``): rules that are provably valid, with certified Lipschitz constants
  from ``advbounds.bounds.operator_norms``; ``BOUND_MODES`` maps each mode to its registry

Which thesis inequalities hold and which do not is recorded in each rule's docstring and in
docs/findings.md. The thesis-mode formulas are the thesis's (this is a replication); the corrected
mode sits beside them and changes none of them.
"""

from advbounds._exports import public_names as _public_names

from ._common import UnsupportedLayerError
from .compose import (
    BOUND_MODES,
    BOUND_RULES,
    LOGITS_LABEL,
    BoundResult,
    Step,
    find_rule,
    model_bounds,
    plan_model,
    rule_registry,
)
from .layers import (
    avg_pool_rule,
    batch_norm_deltas,
    batch_norm_rule,
    conv_rule,
    dense_rule,
    identity_rule,
    lp_pool_rule,
    lrn_rule,
    lrn_second_derivative_bound,
    lrn_terms,
    max_pool_rule,
    relu_rule,
    scale_rule,
    smooth_activation_rule,
)
from .linear import OutputClassifier, binary_linear_bound, identity_output_bound, linear_output_bound, output_rule
from .mlp import (
    ACTIVATION_DERIVATIVE_BOUNDS,
    RELU_SECOND_DERIVATIVE_PRACTICAL,
    TABLE_4_1_PRINTED_TANH_SECOND,
    MLPTail,
    activation_derivative_bounds,
    mlp_bound,
    mlp_tail_rule,
    second_derivative_bound,
    split_mlp,
    theorem_4_2,
)
from .operator_norms import (
    certified_lambda_max,
    conv2d_operator_norm,
    dense_conv_matrix,
    lrn_lipschitz_constant,
    matrix_operator_norm,
    pool_lipschitz_constant,
    round_down,
    round_up,
)
from .sound import (
    SOUND_RULES,
    activation_lipschitz_constant,
    batch_norm_lipschitz_constant,
    softplus_switch,
    sound_batch_norm_rule,
    sound_conv_rule,
    sound_dense_rule,
    sound_identity_rule,
    sound_lipschitz_activation_rule,
    sound_lrn_rule,
    sound_mlp_tail_rule,
    sound_output_rule,
    sound_pool_rule,
    sound_relu_rule,
    sound_scale_rule,
    sound_softplus_rule,
)
from .spectral import JACOBIAN_NORM_METHODS, jacobian_spectral_norm

#: the names imported above, which are the package's API
__all__ = _public_names(globals())
