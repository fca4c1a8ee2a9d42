"""Recipes shared through the Hub: ``hub:NAMESPACE/NAME/path/to/recipe.yaml[@REVISION]``.

A Hub recipe is downloaded (into the standard Hub cache) and validated exactly like a local
file; every message names the ``hub:`` reference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cpedit.errors import RecipeError
from cpedit.recipes.format import MAX_RECIPE_BYTES, Recipe, parse_recipe

HUB_PREFIX = "hub:"
_REF = re.compile(r"^hub:(?P<repo>[^/@\s]+/[^/@\s]+)/(?P<path>[^@\s]+\.ya?ml)(?:@(?P<revision>[^@\s]+))?$")


@dataclass(frozen=True)
class HubRecipeRef:
    """A parsed ``hub:`` recipe reference."""

    repo_id: str
    path: str
    revision: str | None = None

    def __str__(self) -> str:
        return f"{HUB_PREFIX}{self.repo_id}/{self.path}" + (f"@{self.revision}" if self.revision else "")


def is_hub_ref(ref: object) -> bool:
    """Whether ``ref`` is a string starting with ``hub:``."""
    return isinstance(ref, str) and ref.startswith(HUB_PREFIX)


def parse_hub_ref(ref: str) -> HubRecipeRef:
    """Split ``hub:NAMESPACE/NAME/path.yaml[@REVISION]``.

    Raises:
        RecipeError: The reference is malformed (named in the message).
    """
    match = _REF.match(ref)
    if match is None or ".." in match.group("path").split("/"):
        raise RecipeError(
            ref,
            [("", "a Hub recipe is hub:NAMESPACE/NAME/path/to/recipe.yaml, optionally with @REVISION")],
            headline="malformed Hub recipe reference",
        )
    return HubRecipeRef(repo_id=match.group("repo"), path=match.group("path"), revision=match.group("revision"))


def load_hub_recipe(ref: str) -> Recipe:
    """Download and validate a recipe from the Hub.

    Args:
        ref: ``hub:NAMESPACE/NAME/path.yaml[@REVISION]``.

    Returns:
        The validated recipe; its ``source`` is the ``hub:`` reference.

    Raises:
        RecipeError: The reference is malformed, the file cannot be had (the Hub's reason and
            what to do), it is too large, or it is not a valid recipe; always naming ``ref``.
    """
    from huggingface_hub import hf_hub_download

    from cpedit.hub.errors import describe_hub_error

    parsed = parse_hub_ref(ref)
    try:
        local = hf_hub_download(parsed.repo_id, parsed.path, revision=parsed.revision)
    except Exception as exc:  # noqa: BLE001 - mapped to a message naming the reference
        described = describe_hub_error(exc, repo_id=parsed.repo_id, revision=parsed.revision, filename=parsed.path)
        if described is None:
            raise
        raise RecipeError(ref, [("", described[1])], headline="recipe not available") from None
    file = Path(local)
    if file.stat().st_size > MAX_RECIPE_BYTES:
        raise RecipeError(ref, [("", f"the file is larger than {MAX_RECIPE_BYTES // 1024} KiB; not a recipe")])
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(ref, [("", f"cannot read the downloaded file ({exc})")]) from None
    return parse_recipe(text, source=str(parsed))
