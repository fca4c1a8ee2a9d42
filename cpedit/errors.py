"""Exceptions raised by cpedit.

Every error a user can cause derives from :class:`CpeditError`, so a front end can show
it as one clear message (no traceback). Errors carry fields (the path, repo id, reason, and
the library argument they are about) so that front ends can add their own hints: the
library's messages never name a command-line flag; the CLI maps :attr:`CpeditError.argument`
to its option (``out`` -> ``--out``).
"""

from __future__ import annotations

REASONS: dict[str, str] = {
    "ambiguous": "a name matches more than one thing (a recipe, a column)",
    "auth": "the Hub refused the token, or a token is needed",
    "builtin": "the path is the built-in model's own folder",
    "cancelled": "the cancel flag was set; nothing was written",
    "concealed": "the edit is concealed: its fill cannot be rebuilt from what it records",
    "conflict": "two settings or inputs contradict each other",
    "contains_base": "the output folder would contain the base model's folder",
    "current_folder": "the output is the current folder or one above it",
    "custom_code": "the model needs its own code (trust_remote_code), which cpedit never runs",
    "dangling_link": "a symbolic link points at nothing",
    "different_sweep": "an output folder holds another sweep's points",
    "distributed_environment": "the torchrun/accelerate environment variables are missing or inconsistent",
    "distributed_init": "the process group could not start",
    "empty": "a file, folder or list has nothing in it",
    "entry": "a repo or folder has no such file",
    "exists": "the output exists already (overwrite not asked for)",
    "failed_on_main": "rank 0 failed; the other ranks report its error",
    "forbidden": "the Hub forbids this operation for this token",
    "gated": "the Hub repo is gated and access was not granted",
    "http": "another HTTP error from the Hub",
    "hub_cache": "the path is the Hub cache",
    "images_missing": "images a result names are not in the images folder",
    "incomplete": "a file or folder was not written to the end (interrupted)",
    "invalid": "a value is out of its range or of the wrong form",
    "link": "the path itself is a symbolic link",
    "link_loop": "symbolic links form a loop",
    "link_outside": "a symbolic link leads out of the folder",
    "link_to_folder": "a symbolic link stands where a file must be",
    "local": "a Hub-only option was given for a local model",
    "malformed": "a file cannot be parsed (JSON, YAML, CSV, UTF-8, safetensors header) or has the wrong structure",
    "mismatch": "two things that must agree do not (shapes, digests, bases)",
    "missing": "a required input was not given",
    "missing_component": "a pipeline component the model index names is not there",
    "missing_dependency": "an optional package is not installed",
    "mixed_families": "recipes or models of different families in one run",
    "needs_cuda": "the option needs a CUDA device",
    "network": "the Hub cannot be reached",
    "no_base": "the output does not record its base model",
    "no_categories": "a prompt set has no category column to filter by",
    "no_column": "a prompt set has no prompt column",
    "no_layers": "the model has no layer of the hook target",
    "no_placeholder": "a template has no placeholder to fill",
    "no_positions": "the output has no pruned positions",
    "no_prompts": "nothing to prompt with",
    "no_safetensors": "weights exist only as pickle files, which cpedit never loads",
    "no_space": "not enough free disk space",
    "not_finite": "a number is NaN or infinite",
    "not_folder": "a folder was expected",
    "not_found": "no such file, folder, repo or revision",
    "not_on_hub": "the model does not come from the Hub",
    "not_ours": "cpedit did not write it, so it will not delete or replace it",
    "not_output": "the folder is not a cpedit output",
    "not_pipeline": "not a diffusers text-to-image pipeline",
    "not_regular": "not a regular file (a device, FIFO or socket)",
    "offline": "offline mode, and the cache lacks what is needed",
    "out_of_memory": "the device ran out of memory",
    "revision": "the repo has no such revision",
    "suffix": "the file's suffix says a format cpedit does not read",
    "too_large": "a file or value is over cpedit's bound",
    "too_long": "a line or prompt is over cpedit's bound",
    "too_many": "more items than cpedit's bound",
    "truncated": "a file is shorter than its header says",
    "unavailable": "the device, model, classifier or recipe cannot be had here",
    "unknown": "a name cpedit does not know (device, benchmark, attack set, concept, family)",
    "unreadable": "a file cannot be read (permissions, I/O)",
    "unsafe": "unsafe content (pickle weights, paths out of a folder)",
    "unsupported": "a model, pipeline class or family cpedit does not edit",
    "unwritable": "the output cannot be written (read-only, permissions)",
    "wrong_type": "a value or object of the wrong type",
}
"""Every :attr:`CpeditError.reason`, with what it means: one enumerated set, so front ends can rely on them
(tests/test_errors.py keeps the code and this table in step)."""


class CpeditError(Exception):
    """Base class for errors caused by user input, models or the environment.

    Attributes:
        path: The file or folder the error is about, when there is one.
        repo_id: The Hub repo the error is about, when there is one.
        reason: A short machine-readable cause, one of :data:`REASONS` (``exists``, ``not_found``,
            ``gated``, ...), or None.
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
        if reason is not None and reason not in REASONS:  # a programming error: add it to REASONS
            raise ValueError(f"unknown error reason {reason!r}: every reason is one of cpedit.errors.REASONS")
        super().__init__(message)
        self.path = path
        self.repo_id = repo_id
        self.reason = reason
        self.argument = argument


_RECIPE_REASONS = {
    "invalid recipe": "invalid",
    "recipe not found": "not_found",
    "recipe not available": "unavailable",
    "malformed Hub recipe reference": "malformed",
}
"""A recipe error's reason by its headline."""


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
        reason = _RECIPE_REASONS.get(headline, "invalid")
        super().__init__("\n".join(lines), path=path, reason=reason, argument="recipes")


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
