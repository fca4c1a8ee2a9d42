"""cpedit: erase concepts from text-to-image diffusion models by pruning skilled FFN weights.

A training-free implementation of ConceptPrune (Chavhan, Li, Hospedales, ICLR 2025).
The public API is :func:`prune`; recipes are loaded with :func:`load_recipe`.

Importing :mod:`cpedit` is cheap (no torch): every name below is imported from its module
on first use (PEP 562), so ``cpedit.__version__`` or the recipe functions cost no model
libraries.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cpedit.api import PruneResult, prune
    from cpedit.errors import (
        Cancelled,
        CpeditError,
        ModelLoadError,
        OutputExistsError,
        PruneCancelled,
        RecipeError,
        UnsupportedModelError,
    )
    from cpedit.output import check_output_target
    from cpedit.progress import ProgressCallback, ProgressEvent
    from cpedit.recipe_sources import RecipeEntry, builtin_recipes_dir, list_recipes, resolve_recipe, user_recipes_dir
    from cpedit.recipe_writer import compose_recipe, with_settings, write_recipe_file
    from cpedit.recipes import Recipe, load_recipe, parse_recipe
    from cpedit.record import Report
    from cpedit.sampling import SampleSettings, render_preview, save_preview
    from cpedit.session import EditSession, Selection
    from cpedit.support import SupportInfo, describe_support
    from cpedit.text import strip_unsafe
    from cpedit.tuning.grid import pareto_front, read_sweep, sweep
    from cpedit.tuning.measure import plan_evaluation
    from cpedit.tuning.search import tune

__version__ = "0.1.0"

_EXPORTS = {
    "Cancelled": "cpedit.errors",
    "CpeditError": "cpedit.errors",
    "EditSession": "cpedit.session",
    "ModelLoadError": "cpedit.errors",
    "OutputExistsError": "cpedit.errors",
    "ProgressCallback": "cpedit.progress",
    "ProgressEvent": "cpedit.progress",
    "PruneCancelled": "cpedit.errors",
    "PruneResult": "cpedit.api",
    "Recipe": "cpedit.recipes",
    "RecipeEntry": "cpedit.recipe_sources",
    "RecipeError": "cpedit.errors",
    "Report": "cpedit.record",
    "SampleSettings": "cpedit.sampling",
    "Selection": "cpedit.session",
    "SupportInfo": "cpedit.support",
    "UnsupportedModelError": "cpedit.errors",
    "builtin_recipes_dir": "cpedit.recipe_sources",
    "check_output_target": "cpedit.output",
    "compose_recipe": "cpedit.recipe_writer",
    "describe_support": "cpedit.support",
    "list_recipes": "cpedit.recipe_sources",
    "load_recipe": "cpedit.recipes",
    "pareto_front": "cpedit.tuning.grid",
    "parse_recipe": "cpedit.recipes",
    "plan_evaluation": "cpedit.tuning.measure",
    "prune": "cpedit.api",
    "read_sweep": "cpedit.tuning.grid",
    "render_preview": "cpedit.sampling",
    "resolve_recipe": "cpedit.recipe_sources",
    "save_preview": "cpedit.sampling",
    "strip_unsafe": "cpedit.text",
    "sweep": "cpedit.tuning.grid",
    "tune": "cpedit.tuning.search",
    "user_recipes_dir": "cpedit.recipe_sources",
    "with_settings": "cpedit.recipe_writer",
    "write_recipe_file": "cpedit.recipe_writer",
}
"""Public name -> the module that defines it (imported when the name is first used)."""

__all__ = [
    "__version__",
    "Cancelled",
    "CpeditError",
    "EditSession",
    "ModelLoadError",
    "OutputExistsError",
    "ProgressCallback",
    "ProgressEvent",
    "PruneCancelled",
    "PruneResult",
    "Recipe",
    "RecipeEntry",
    "RecipeError",
    "Report",
    "SampleSettings",
    "Selection",
    "SupportInfo",
    "UnsupportedModelError",
    "builtin_recipes_dir",
    "check_output_target",
    "compose_recipe",
    "describe_support",
    "list_recipes",
    "load_recipe",
    "pareto_front",
    "parse_recipe",
    "plan_evaluation",
    "prune",
    "read_sweep",
    "render_preview",
    "resolve_recipe",
    "save_preview",
    "strip_unsafe",
    "sweep",
    "tune",
    "user_recipes_dir",
    "with_settings",
    "write_recipe_file",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
