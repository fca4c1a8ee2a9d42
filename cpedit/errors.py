"""Exceptions raised by cpedit.

Every error a user can cause derives from :class:`CpeditError`, so the CLI can print
it as one clear message (no traceback) and exit with a non-zero status.
"""

from __future__ import annotations


class CpeditError(Exception):
    """Base class for errors caused by user input, models or the environment."""


class RecipeError(CpeditError):
    """A recipe file is invalid.

    Attributes:
        path: The recipe file (or ``"<recipe>"`` for an in-memory mapping).
        headline: What went wrong in a few words (``invalid recipe``, ``recipe not found``).
        problems: One ``(field, message)`` pair per problem found; ``field`` is a dotted
            path such as ``prune.skill_ratio`` or ``""`` for the whole file.
    """

    def __init__(self, path: str, problems: list[tuple[str, str]], *, headline: str = "invalid recipe") -> None:
        self.path = path
        self.problems = problems
        lines = [f"{path}: {headline} ({len(problems)} problem{'s' if len(problems) != 1 else ''})"]
        for field, message in problems:
            lines.append(f"  - {field}: {message}" if field else f"  - {message}")
        super().__init__("\n".join(lines))


class ModelLoadError(CpeditError):
    """A model could not be found, downloaded or loaded."""


class UnsupportedModelError(CpeditError):
    """The model loaded, but cpedit cannot edit it (for example: no feed-forward blocks)."""


class OutputExistsError(CpeditError):
    """The output folder exists and overwriting was not requested."""


class PruneCancelled(CpeditError):
    """The run was cancelled through its ``cancel`` event; nothing was written."""
