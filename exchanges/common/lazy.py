"""Names a package re-exports from its submodules, resolved on first use (PEP 562).

A venue package's `__init__` names what other code imports from it; importing the submodules
eagerly there would make every submodule import the whole venue (and a cycle).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, MutableMapping
from typing import Any


def lazy_exports(
    package: str, namespace: MutableMapping[str, Any], exports: dict[str, tuple[str, str]]
) -> Callable[[str], Any]:
    """A module `__getattr__` for `package`: `exports` maps a name to (module, attribute);
    the value found is kept in `namespace` (the package's globals) for next time."""

    def resolve(name: str) -> Any:
        found = exports.get(name)
        if found is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, attribute = found
        value = getattr(importlib.import_module(module), attribute)
        namespace[name] = value
        return value

    return resolve
