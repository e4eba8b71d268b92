"""The public names of a package whose ``__init__`` re-exports its submodules' API."""

from __future__ import annotations

import inspect
from collections.abc import Mapping


def public_names(namespace: Mapping[str, object]) -> list[str]:
    """``__all__`` for a package ``__init__``: every public name it imported, sorted.

    The import statements are then the one list of the package's API; the submodules themselves
    (bound as attributes once imported) and private names are left out.
    """
    return sorted(name for name, value in namespace.items() if not name.startswith("_") and not inspect.ismodule(value))
