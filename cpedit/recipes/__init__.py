"""Recipes: the format (types, reading and strict validation), where recipes come from (files,
shipped names, ``hub:`` references, the user folder), and writing them.

The names below are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cpedit._lazy import lazy_exports

if TYPE_CHECKING:
    from cpedit.recipes.conceal import Conceal
    from cpedit.recipes.format import (
        KINDS,
        PruneSettings,
        Recipe,
        SamplingSettings,
        load_recipe,
        parse_recipe,
        read_recipe_text,
    )
    from cpedit.recipes.hub import load_hub_recipe
    from cpedit.recipes.sources import RecipeEntry, builtin_recipes_dir, list_recipes, resolve_recipe, user_recipes_dir
    from cpedit.recipes.targets import STREAMS, TARGETS
    from cpedit.recipes.writer import compose_recipe, with_settings, write_recipe_file

_EXPORTS = {
    "builtin_recipes_dir": "cpedit.recipes.sources",
    "compose_recipe": "cpedit.recipes.writer",
    "Conceal": "cpedit.recipes.conceal",
    "KINDS": "cpedit.recipes.format",
    "list_recipes": "cpedit.recipes.sources",
    "load_hub_recipe": "cpedit.recipes.hub",
    "load_recipe": "cpedit.recipes.format",
    "parse_recipe": "cpedit.recipes.format",
    "PruneSettings": "cpedit.recipes.format",
    "read_recipe_text": "cpedit.recipes.format",
    "Recipe": "cpedit.recipes.format",
    "RecipeEntry": "cpedit.recipes.sources",
    "resolve_recipe": "cpedit.recipes.sources",
    "SamplingSettings": "cpedit.recipes.format",
    "STREAMS": "cpedit.recipes.targets",
    "TARGETS": "cpedit.recipes.targets",
    "user_recipes_dir": "cpedit.recipes.sources",
    "with_settings": "cpedit.recipes.writer",
    "write_recipe_file": "cpedit.recipes.writer",
}
"""Public name -> the module that defines it (imported when the name is first used)."""

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
