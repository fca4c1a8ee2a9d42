"""Recipes shared through the Hub: ``hub:NAMESPACE/NAME/path/to/recipe.yaml[@REVISION]``.

A Hub recipe is downloaded (into the standard Hub cache, by :func:`cpedit.hub.download.fetch_file`)
and validated exactly like a local file; every message names the ``hub:`` reference. The
reference itself is a :class:`cpedit.hub.refs.HubRef` (``kind="recipe"``).
"""

from __future__ import annotations

from cpedit.errors import RecipeError
from cpedit.recipes.format import MAX_RECIPE_BYTES, Recipe, parse_recipe


def load_hub_recipe(ref: str) -> Recipe:
    """Download and validate a recipe from the Hub.

    Args:
        ref: ``hub:NAMESPACE/NAME/path.yaml[@REVISION]``.

    Returns:
        The validated recipe; its ``source`` is the ``hub:`` reference.

    Raises:
        RecipeError: The reference is malformed (``malformed Hub recipe reference``: what is wrong
            and how to write one), the file cannot be had (``recipe not available``: the Hub's
            reason and what to do), it is too large, or it is not a valid recipe; always naming ``ref``.
    """
    from cpedit.hub.download import fetch_file
    from cpedit.hub.errors import HubError
    from cpedit.hub.refs import HubRef, HubRefError

    try:
        parsed = HubRef.parse(ref, kind="recipe")
    except HubRefError as exc:
        raise RecipeError(
            ref, [("", exc.problem), ("", f"write {exc.form}")], headline="malformed Hub recipe reference"
        ) from None
    assert parsed.path is not None  # a recipe reference names its file
    try:
        file = fetch_file(parsed.repo_id, parsed.path, revision=parsed.revision, instead="a local recipe file")
    except HubError as exc:
        raise RecipeError(ref, [("", str(exc))], headline="recipe not available") from None
    if file.stat().st_size > MAX_RECIPE_BYTES:
        raise RecipeError(ref, [("", f"the file is larger than {MAX_RECIPE_BYTES // 1024} KiB; not a recipe")])
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(ref, [("", f"cannot read the downloaded file ({exc})")]) from None
    return parse_recipe(text, source=str(parsed))
