"""Exceptions raised by cpedit.

Every error a user can cause derives from :class:`CpeditError`, so a front end can show
it as one clear message (no traceback). Errors carry fields (the path, repo id, reason, and
the library argument they are about) so that front ends can add their own hints: the
library's messages never name a command-line flag; the CLI maps :attr:`CpeditError.argument`
to its option (``out`` -> ``--out``).
"""

from __future__ import annotations


class CpeditError(Exception):
    """Base class for errors caused by user input, models or the environment.

    Attributes:
        path: The file or folder the error is about, when there is one.
        repo_id: The Hub repo the error is about, when there is one.
        reason: A short machine-readable cause (``exists``, ``not_found``, ``gated``, ...), or None.
        argument: The library argument at fault (``out``, ``revision``, ``prompts``,
            ``batch_size``, ``device``, ...), so a front end can name its own option for it.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        repo_id: str | None = None,
        reason: str | None = None,
        argument: str | None = None,
    ) -> None:
        super().__init__(message)
        self.path = path
        self.repo_id = repo_id
        self.reason = reason
        self.argument = argument


class RecipeError(CpeditError):
    """A recipe file is invalid.

    Attributes:
        path: The recipe file (or ``"<recipe>"`` for an in-memory mapping).
        headline: What went wrong in a few words (``invalid recipe``, ``recipe not found``).
        problems: One ``(field, message)`` pair per problem found; ``field`` is a dotted
            path such as ``prune.skill_ratio`` or ``""`` for the whole file.
    """

    def __init__(self, path: str, problems: list[tuple[str, str]], *, headline: str = "invalid recipe") -> None:
        from cpedit.text import escape_unsafe

        problems = [(escape_unsafe(str(field)), escape_unsafe(message)) for field, message in problems]
        self.headline = headline
        self.problems = problems
        lines = [f"{escape_unsafe(path)}: {headline} ({len(problems)} problem{'s' if len(problems) != 1 else ''})"]
        for field, message in problems:
            lines.append(f"  - {field}: {message}" if field else f"  - {message}")
        super().__init__("\n".join(lines), path=path, reason=headline.replace(" ", "_"), argument="recipes")


class ModelLoadError(CpeditError):
    """A model could not be found, downloaded or loaded."""


class UnsafeFileError(ModelLoadError):
    """A model or output folder holds a file cpedit refuses to read, copy or upload.

    ``path`` is the offending entry; ``reason`` is ``link_outside`` (a symbolic link to
    something outside the folder), ``link_to_folder``, ``link_loop``, ``dangling_link``,
    ``not_regular`` (a FIFO, device or socket) or ``truncated`` (a safetensors file whose
    header or data is cut short or malformed).
    """


class CpeditWarning(UserWarning):
    """Something suspicious that does not stop the work (a prompt cut short, nothing pruned).

    The library never prints: it reports these with :func:`warnings.warn`; front ends show them.
    """


class UnsupportedModelError(CpeditError):
    """The model loaded, but cpedit cannot edit it (for example: no feed-forward blocks)."""


class OutputExistsError(CpeditError):
    """The output folder exists and overwriting was not requested."""


class Cancelled(CpeditError):
    """The work was cancelled through its ``cancel`` event; nothing was written.

    Attributes:
        step: What was going on when the cancel was seen (``during calibration``, ...).
    """

    def __init__(self, message: str, *, step: str = "") -> None:
        super().__init__(message, reason="cancelled")
        self.step = step
