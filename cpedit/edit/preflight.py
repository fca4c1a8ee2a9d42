"""The one preflight of an edit: refuse bad inputs before anything loads, computes or is written.

:func:`cpedit.prune` calls :func:`preflight` before loading the model, and
:meth:`cpedit.edit.session.EditSession.save` calls it before writing, so both refuse the same bad
input (recipes, conceal settings, preview, output folder) with the same error.
:meth:`~cpedit.edit.session.EditSession.open` checks its recipes through it too.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cpedit.errors import CpeditError
from cpedit.output.folder import check_free_space, check_not_inside, check_output_target, local_output_size
from cpedit.recipes.conceal import Conceal, make_conceal
from cpedit.recipes.format import SLUG, Recipe
from cpedit.recipes.sources import resolve_recipe


@dataclass(frozen=True)
class Preflight:
    """What :func:`preflight` checked.

    Attributes:
        recipes: The recipes, resolved and validated.
        out: The output folder (None when there is none).
        needed: About the bytes the output needs, when known before loading (a local or
            in-memory base; None for a Hub model not downloaded yet).
    """

    recipes: tuple[Recipe, ...]
    out: Path | None = None
    needed: int | None = None


def preflight(
    model: str | os.PathLike[str] | Any,
    recipes: Sequence[str | os.PathLike[str] | Recipe],
    *,
    out: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    preview: bool = False,
    conceal: str | Conceal | None = None,
    conceal_scale: str | None = None,
    conceal_seed: int | None = None,
) -> Preflight:
    """Check an edit's inputs, in this order: recipes, conceal settings, preview, output folder.

    Args:
        model: The base: a Hub id, a local folder, ``builtin:shapes`` or a loaded pipeline.
        recipes: Recipe files, names, ``hub:`` references or :class:`Recipe` objects.
        out: The output folder, if one is written.
        overwrite: Whether ``out`` may replace an earlier cpedit output.
        preview: Whether a preview grid is rendered into ``out``.
        conceal, conceal_scale, conceal_seed: The fill asked for (None: the recipes').

    Raises:
        RecipeError: A recipe is invalid.
        CpeditError: No recipe or two of one name; a bad conceal setting; ``preview`` without
            ``out`` or without preview prompts; ``out`` is (or contains) the base folder, a file,
            unwritable or short of space (``reason="no_space"``).
        OutputExistsError: ``out`` exists and ``overwrite`` is False.
    """
    loaded = tuple(resolve_recipe(r) for r in recipes)
    check_recipes(loaded)
    if conceal is not None or conceal_scale is not None or conceal_seed is not None:
        make_conceal(conceal or "zero", scale=conceal_scale, seed=conceal_seed)
    if preview:
        check_preview(loaded, out=out)
    if out is None:
        return Preflight(recipes=loaded)
    if isinstance(model, (str, os.PathLike)):
        check_not_inside(Path(out), model)  # first: the most specific reason to refuse
    out_path = check_output_target(out, overwrite=overwrite)
    needed = local_output_size(model) if isinstance(model, (str, os.PathLike)) else in_memory_size(model)
    if needed is not None:
        check_free_space(out_path, needed)
    return Preflight(recipes=loaded, out=out_path, needed=needed)


def check_recipes(recipes: Sequence[Recipe]) -> None:
    """At least one recipe, each named by a slug (its file name in the output), no two alike.

    Raises:
        CpeditError: ``argument="recipes"``.
    """
    if not recipes:
        raise CpeditError(
            "give at least one recipe (a file or a shipped recipe name; see `cpedit recipes list`)",
            argument="recipes",
        )
    seen: dict[str, str] = {}
    for recipe in recipes:
        if not SLUG.match(recipe.name):  # a Recipe built in code skips the file validation; the name is a file name
            raise CpeditError(
                f"recipe name {recipe.name!r} is not a slug (lowercase letters, digits, hyphens)", argument="recipes"
            )
        if recipe.name in seen:
            raise CpeditError(
                f"two recipes are named {recipe.name!r} ({seen[recipe.name]} and {recipe.source}); names must differ",
                argument="recipes",
            )
        seen[recipe.name] = recipe.source


def check_preview(recipes: Sequence[Recipe], *, out: object) -> None:
    """A preview needs an output folder and at least one recipe with preview prompts.

    Raises:
        CpeditError: ``argument="preview"``.
    """
    if out is None:
        raise CpeditError(
            "preview needs an output folder (out): the grid is saved in OUT/conceptprune/preview.png",
            argument="preview",
        )
    if not any(recipe.preview_prompts for recipe in recipes):
        raise CpeditError(
            "preview: none of the recipes has preview prompts; add `preview: {prompts: [...]}` to one",
            argument="preview",
        )


def in_memory_size(pipe: Any) -> int:
    """About the bytes ``save_pretrained`` writes for a pipeline: its modules' parameters and buffers."""
    import torch

    total = 0
    for value in vars(pipe).values():
        if isinstance(value, torch.nn.Module):
            for tensor in [*value.parameters(), *value.buffers()]:
                total += tensor.numel() * tensor.element_size()
    return total + 2**20
