"""Lazy package exports (PEP 562): a package names what it offers, and each name is imported on
first use, so importing one submodule does not load its siblings (and torch)."""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package` that imports `exports[name]` (a module path) on first
    access to `name` and caches it in the package.

    Example:
        >>> __getattr__ = lazy_exports(__name__, {"load": "graftkit.deploy.predictor"})  # doctest: +SKIP
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(importlib.import_module(package), name, value)
        return value

    return __getattr__
