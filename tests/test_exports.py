"""Package ``__all__`` lists derived from the ``__init__`` imports (``advbounds._exports``)."""

from __future__ import annotations

import inspect
import math

import pytest

import advbounds.attacks
import advbounds.bounds
from advbounds._exports import public_names


def test_public_names_are_the_imported_names_without_modules_or_private_ones():
    namespace = {"model_bounds": len, "BOUND_RULES": {}, "_public_names": public_names, "layers": math,
                 "__doc__": "text"}
    assert public_names(namespace) == ["BOUND_RULES", "model_bounds"]


@pytest.mark.parametrize("package, names", [
    (advbounds.bounds, {"BOUND_RULES", "SOUND_RULES", "model_bounds", "sound_conv_rule", "conv_rule"}),
    (advbounds.attacks, {"AttackResult", "DeepFool", "minimal_epsilon_search", "best_attack"}),
])
def test_packages_export_what_they_import(package, names):
    assert names <= set(package.__all__)
    assert package.__all__ == sorted(set(package.__all__))
    for name in package.__all__:
        assert not inspect.ismodule(getattr(package, name)), name
    # the submodules are attributes of the package once imported, but not its API
    assert "compose" not in package.__all__ and "search" not in package.__all__
