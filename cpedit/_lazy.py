"""Lazy exports (PEP 562): a package names its public API without importing the modules behind it.

Importing :mod:`cpedit` or one of its packages stays cheap (no torch, no diffusers): each public
name is imported from its module the first time it is used.

Example (in a package's ``__init__.py``)::

    _EXPORTS = {"prune": "cpedit.edit.prune", "Recipe": "cpedit.recipes.format"}
    __all__ = sorted(_EXPORTS)
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package`` that import each name of ``exports`` on first use.

    Args:
        package: The package's ``__name__``.
        exports: Public name -> the module that defines it.

    Returns:
        ``(__getattr__, __dir__)`` to assign in the package's namespace. A name, once imported, is
        stored in the package so later look-ups skip ``__getattr__``.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    return __getattr__, __dir__
