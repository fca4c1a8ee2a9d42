"""Finding recipes: the shipped ones, files, folders of them, and ``hub:`` references.

:mod:`cpedit.recipes.format` is the format (parse and validate); this module says where a recipe
comes from. :func:`resolve_recipe` turns whatever a user wrote (a path, a shipped name such
as ``van-gogh``, ``hub:NAMESPACE/NAME/path.yaml``) into a validated :class:`Recipe`;
:func:`list_recipes` lists a folder of recipes, a bad file among them included, with its
error. No torch is imported.

Example:
    >>> from cpedit.recipes.sources import list_recipes
    >>> entry = next(e for e in list_recipes() if e.name == "van-gogh")
    >>> entry.recipe.concept, entry.error
    ('Van Gogh', None)
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cpedit.errors import CpeditError, RecipeError
from cpedit.hub.refs import is_hub_ref
from cpedit.recipes.format import Recipe, load_recipe

__all__ = [
    "RecipeEntry",
    "builtin_recipe_files",
    "builtin_recipes_dir",
    "list_recipes",
    "resolve_recipe",
    "user_recipes_dir",
]


def builtin_recipes_dir() -> Path:
    """The folder of recipes shipped with cpedit (inside the wheel, or ``recipes/`` in a checkout)."""
    packaged = Path(__file__).resolve().parent / "shipped"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "recipes"


def user_recipes_dir() -> Path:
    """The user's own recipe folder: ``$XDG_CONFIG_HOME/cpedit/recipes`` (default ``~/.config/cpedit/recipes``).

    Front ends list it beside the shipped recipes and save new recipes there; it may not exist yet.
    """
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(config) / "cpedit" / "recipes"


def builtin_recipe_files() -> dict[str, Path]:
    """Map each shipped recipe's name (its file stem) to its file."""
    root = builtin_recipes_dir()
    if not root.is_dir():
        return {}
    return {p.stem: p for p in sorted(root.rglob("*.yaml"))}


@dataclass(frozen=True)
class RecipeEntry:
    """One recipe file found by :func:`list_recipes`.

    Attributes:
        name: The name to use it by: the file stem (for a shipped recipe, the NAME
            :func:`resolve_recipe` accepts).
        path: The file.
        recipe: The validated recipe, or None when the file is invalid.
        error: Why the file is invalid (every problem, naming the file), or None.
    """

    name: str
    path: Path
    recipe: Recipe | None = None
    error: RecipeError | None = None

    @property
    def valid(self) -> bool:
        """Whether the file is a valid recipe."""
        return self.error is None


def list_recipes(folders: Sequence[str | os.PathLike[str]] | None = None) -> list[RecipeEntry]:
    """Every ``*.yaml`` recipe under ``folders`` (recursively), each loaded and validated.

    A bad file does not hide the others: it is an entry with its :class:`RecipeError`.

    Args:
        folders: Folders to search, in order (a ``.yaml`` file given directly is listed
            as is). Default: the shipped recipes (:func:`builtin_recipes_dir`).

    Returns:
        One :class:`RecipeEntry` per file; within a folder, sorted by path.

    Raises:
        CpeditError: A given folder does not exist.
    """
    if folders is None:
        root = builtin_recipes_dir()
        files = sorted(root.rglob("*.yaml")) if root.is_dir() else []
    else:
        files = []
        for folder in folders:
            path = Path(folder)
            if path.is_dir():
                files.extend(sorted(path.rglob("*.yaml")))
            elif path.is_file():
                files.append(path)
            else:
                raise CpeditError(f"{folder}: no such folder of recipes", path=str(folder), reason="not_found")
    return [_entry(file) for file in files]


def _entry(file: Path) -> RecipeEntry:
    try:
        return RecipeEntry(name=file.stem, path=file, recipe=load_recipe(file))
    except RecipeError as exc:
        return RecipeEntry(name=file.stem, path=file, error=exc)


def resolve_recipe(ref: str | os.PathLike[str] | Recipe) -> Recipe:
    """Load a recipe from a file path, the name of a shipped recipe, or the Hub.

    Args:
        ref: A path to a YAML file, the name of a shipped recipe (``van-gogh``), a Hub
            reference ``hub:NAMESPACE/NAME/path.yaml[@REVISION]`` (downloaded and validated
            like a file), or an already loaded :class:`Recipe` (returned as is).

    Raises:
        RecipeError: The file is invalid, no file or shipped recipe has that name, or the
            Hub recipe cannot be had; the message names the reference.
    """
    if isinstance(ref, Recipe):
        return ref
    if is_hub_ref(ref):
        from cpedit.recipes.hub import load_hub_recipe

        return load_hub_recipe(ref)
    path = Path(ref)
    if path.exists() and not path.is_dir():  # a device or FIFO too: load_recipe says it is not a regular file
        return load_recipe(path)
    builtin = builtin_recipe_files()
    if str(ref) in builtin:
        return load_recipe(builtin[str(ref)])
    close = difflib.get_close_matches(str(ref), list(builtin), n=3)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise RecipeError(
        str(ref),
        [("", f"no such file or shipped recipe; {hint}see `cpedit recipes list`")],
        headline="recipe not found",
    )
