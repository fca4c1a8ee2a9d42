"""Writing recipes: a recipe object (or a form's fields) as YAML text that ``cpedit recipes validate`` accepts.

:mod:`cpedit.recipes.format` reads and validates recipe files; this module goes the other way, for
front ends that change a recipe's settings (an edit session, the terminal app's queue) or
compose a new one from a form. Every function returns a :class:`~cpedit.recipes.format.Recipe`
parsed back from the text it wrote, so what a front end saves is exactly what a later
``cpedit prune --recipe FILE`` reads, validated by the same rules (problems come out as a
:class:`~cpedit.errors.RecipeError` naming each field). No torch is imported.

Example:
    >>> from cpedit.recipes.writer import compose_recipe, with_settings
    >>> recipe = compose_recipe(name="no-cats", concept="cat", kind="object",
    ...                         target="a photo of a cat {subject}", base="a photo of an animal {subject}",
    ...                         subjects=["on a sofa", "in a garden"])
    >>> stronger = with_settings(recipe, prune={"skill_ratio": 0.02})
    >>> stronger.prune.skill_ratio
    0.02
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from cpedit.durable import write_bytes_atomically
from cpedit.errors import CpeditError, RecipeError
from cpedit.recipes.format import FORMAT_VERSION, PruneSettings, Recipe, SamplingSettings, parse_recipe

__all__ = ["compose_recipe", "dump_recipe", "recipe_as_used", "recipe_data", "with_settings", "write_recipe_file"]


def recipe_data(recipe: Recipe) -> dict[str, Any]:
    """The YAML mapping of a recipe object (prompts as the expanded, paired lists)."""
    data: dict[str, Any] = {
        "cpedit": FORMAT_VERSION,
        "name": recipe.name,
        "concept": recipe.concept,
        "kind": recipe.kind,
        "description": recipe.description,
        "prompts": {"target": list(recipe.targets), "base": list(recipe.bases)},
        "prune": {f.name: getattr(recipe.prune, f.name) for f in dataclasses.fields(PruneSettings)},
        "sampling": _sampling_data(recipe.sampling),
    }
    if recipe.preview_prompts:
        data["preview"] = {"prompts": list(recipe.preview_prompts)}
    return data


def _sampling_data(sampling: SamplingSettings) -> dict[str, Any]:
    """The ``sampling:`` mapping: set fields only, and ``pair_seeds`` (a list) instead of ``seed`` when given."""
    data = {k: v for k, v in dataclasses.asdict(sampling).items() if v is not None}
    if sampling.pair_seeds is not None:
        del data["seed"]
        data["pair_seeds"] = list(sampling.pair_seeds)
    return data


_EXCLUSIVE = {"seed": "pair_seeds", "pair_seeds": "seed"}
"""Sampling settings that replace each other: a recipe gives one seed for all prompts, or one per pair."""


def dump_recipe(data: Mapping[str, Any], *, note: str | None = None) -> str:
    """YAML text of a recipe mapping, with ``note`` as a leading comment (one ``#`` line per line)."""
    header = "".join(f"# {line}\n" for line in note.splitlines()) if note else ""
    return header + yaml.safe_dump(dict(data), sort_keys=False, allow_unicode=True)


def with_settings(
    recipe: Recipe,
    *,
    prune: Mapping[str, Any] | None = None,
    sampling: Mapping[str, Any] | None = None,
    note: str | None = None,
) -> Recipe:
    """A copy of ``recipe`` with some prune and sampling settings changed, validated like a file.

    The copy's text is the recipe's own YAML mapping with only those settings changed when
    its text still describes it (prompt templates and subjects kept; YAML comments are not),
    else YAML written from the object; ``note`` (default: what changed) becomes a leading comment.

    Args:
        recipe: The recipe to copy.
        prune: New values by field (``skill_ratio``, ``timesteps``, ``select_ratio``, ``target``, ``stream``).
        sampling: New values by field (``steps``, ``guidance_scale``, ``seed``, ``pair_seeds``, ``height``,
            ``width``); a new ``seed`` replaces the recipe's ``pair_seeds`` and the other way round.
        note: The comment to put first.

    Raises:
        RecipeError: A value is invalid or an unknown field is given (each problem with its field).
    """
    changes = {"prune": dict(prune or {}), "sampling": dict(sampling or {})}
    problems = [
        (f"{section}.{key}", f"unknown setting; use one of {', '.join(f.name for f in dataclasses.fields(kind))}")
        for section, kind in (("prune", PruneSettings), ("sampling", SamplingSettings))
        for key in changes[section]
        if key not in {f.name for f in dataclasses.fields(kind)}
    ]
    if problems:
        raise RecipeError(recipe.source, problems)
    data = _own_data(recipe)
    for section, values in changes.items():
        merged = dict(data.get(section) or {})
        for key, value in values.items():
            if value is None:
                merged.pop(key, None)
                continue
            merged[key] = list(value) if isinstance(value, tuple) else value
            if section == "sampling" and key in _EXCLUSIVE and _EXCLUSIVE[key] not in values:
                merged.pop(_EXCLUSIVE[key], None)
        data[section] = merged
    if note is None:
        changed = ", ".join(f"{section}.{k} = {v}" for section, vals in changes.items() for k, v in vals.items())
        note = f"A copy of {recipe.source} with {changed or 'no change'}"
    return parse_recipe(dump_recipe(data, note=note), source=recipe.source)


def recipe_as_used(recipe: Recipe, settings: PruneSettings) -> Recipe:
    """The recipe as an edit used it, for ``conceptprune/recipes/``: its text verbatim when that is what ran.

    Otherwise (settings chosen in an edit session, or a :class:`Recipe` changed or built in code) a
    copy that says so in a comment: the file's own text with its whole ``prune`` section replaced
    when only the prune settings differ, else YAML written from the recipe object itself.
    """
    used = dataclasses.replace(recipe, prune=settings)
    try:
        written = parse_recipe(recipe.text, source=recipe.source) if recipe.text.strip() else None
    except RecipeError:
        written = None
    if written is not None and dataclasses.replace(written, text=recipe.text) == used:
        return recipe
    prune = {f.name: getattr(settings, f.name) for f in dataclasses.fields(PruneSettings)}
    if written is not None and dataclasses.replace(written, prune=settings, text=recipe.text) == used:
        data = yaml.safe_load(recipe.text)
        data["prune"] = prune
        was = ", ".join(f"{f.name} {getattr(written.prune, f.name)}" for f in dataclasses.fields(PruneSettings))
        note = f"Prune settings chosen in a cpedit edit session; the recipe file ({recipe.source}) had: {was}"
    else:
        data = recipe_data(used)
        note = f"Written by cpedit from the recipe as it ran (built or changed in code; source: {recipe.source})"
    return parse_recipe(dump_recipe(data, note=note), source=recipe.source)


def _own_data(recipe: Recipe) -> dict[str, Any]:
    """The recipe's own YAML mapping when its text still describes it, else the object's mapping."""
    if recipe.text.strip():
        try:
            written = parse_recipe(recipe.text, source=recipe.source)
        except RecipeError:
            written = None
        if written is not None and dataclasses.replace(written, text=recipe.text) == recipe:
            data = yaml.safe_load(recipe.text)
            if isinstance(data, dict):
                return data
    return recipe_data(recipe)


def compose_recipe(
    *,
    name: str,
    concept: str,
    kind: str,
    target: str | Sequence[str],
    base: str | Sequence[str],
    subjects: Sequence[str] = (),
    description: str = "",
    prune: Mapping[str, Any] | None = None,
    sampling: Mapping[str, Any] | None = None,
    preview: Sequence[str] = (),
    source: str = "<new recipe>",
) -> Recipe:
    """A new recipe from a form's fields: templates (with ``{subject}``) and subjects, or prompt lists.

    Args:
        name: The recipe name (a slug, also its file name).
        concept: The concept erased, in words.
        kind: One of :data:`cpedit.recipes.format.KINDS`.
        target: The target prompt template (or list of prompts) showing the concept.
        base: The base template (or list) without it, paired with ``target``.
        subjects: What fills ``{subject}`` in the templates (empty: none).
        description: What the recipe is for.
        prune: Prune settings (default: the paper's).
        sampling: Sampling settings (default: the paper's).
        preview: Preview prompts.
        source: A name for messages.

    Raises:
        RecipeError: The fields do not make a valid recipe (each problem with its field).
    """
    prompts: dict[str, Any] = {}
    if subjects:
        prompts["subjects"] = [s for s in subjects]
    prompts["target"] = target if isinstance(target, str) else list(target)
    prompts["base"] = base if isinstance(base, str) else list(base)
    data: dict[str, Any] = {
        "cpedit": FORMAT_VERSION,
        "name": name,
        "concept": concept,
        "kind": kind,
    }
    if description:
        data["description"] = description
    data["prompts"] = prompts
    if prune:
        data["prune"] = dict(prune)
    if sampling:
        data["sampling"] = dict(sampling)
    if preview:
        data["preview"] = {"prompts": list(preview)}
    return parse_recipe(dump_recipe(data), source=source)


def write_recipe_file(recipe: Recipe, folder: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write ``recipe``'s text to ``FOLDER/NAME.yaml`` atomically (see :func:`cpedit.durable.write_bytes_atomically`).

    Raises:
        RecipeError: The file exists and ``overwrite`` is False, or it cannot be written.
    """
    path = Path(folder) / f"{recipe.name}.yaml"
    if path.exists() and not overwrite:
        raise RecipeError(str(path), [("", "a recipe file of that name exists; choose another name")])
    try:
        write_bytes_atomically(path, recipe.text.encode("utf-8"), what="the recipe file")
    except CpeditError as exc:
        raise RecipeError(str(path), [("", str(exc))]) from None
    return path
