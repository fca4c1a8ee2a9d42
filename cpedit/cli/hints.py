"""Turning library errors into CLI messages: the library names its arguments, the CLI names its flags.

Library errors (:class:`cpedit.errors.CpeditError`) carry ``argument`` (the library argument
at fault, such as ``out``) and ``reason``; they never mention a command-line flag. The CLI
finds the option of the running command that sets that argument and adds a hint naming it.
"""

from __future__ import annotations

import click

from cpedit.errors import CpeditError

SPECIFIC: dict[tuple[str, str | None], str] = {
    ("out", "exists"): "pass --overwrite to replace it, or choose another {flag}",
    ("out", "contains_base"): "choose another {flag}",
    ("out", "not_folder"): "choose another {flag}",
    ("out", "not_output"): "choose another {flag} (a new folder name)",
    ("out", None): "choose another {flag}",
    ("device", "unavailable"): "choose another {flag} (e.g. {flag} cpu)",
    ("offload", "needs_cuda"): "drop {flag}, or add --device cuda on a GPU machine",
    ("offload", "missing_dependency"): "install accelerate (pip install accelerate), or drop {flag}",
    ("revision", "local"): "drop {flag}: it applies to Hub models only",
    ("revision", "revision"): "check {flag} (a branch, tag or commit of the repo)",
    ("prompts", None): "give {flag} TEXT",
    ("recipes", None): "check {flag} (see `cpedit recipes list`)",
    ("prompts", "missing"): "give {flag} FILE|hub:ID, or a known --attack-set",
    ("preserve_prompts", None): "give {flag} FILE|hub:ID",
    ("preserve", None): "add {flag} clip-score --preserve-prompts FILE|hub:ID, or {flag} fid",
    ("image_batch_size", "out_of_memory"): "use a smaller {flag}",
    ("memory_check", "out_of_memory"): (
        "use --dtype float16 (or bfloat16), --offload on a GPU, or a smaller --batch-size; "
        "or pass --no-memory-check to go ahead anyway"
    ),
    ("clip_model", None): "give {flag} ID|FOLDER",
    ("base", None): "give {flag} MODEL (the Hub id or folder the edit was made on; its report names it)",
}
"""(argument, reason) -> the hint, with ``{flag}`` for the command's option; reason None matches any."""

CLI_ARGUMENT: dict[tuple[str, str | None], str] = {
    ("batch_size", "out_of_memory"): "image_batch_size",
}
"""(argument, reason) -> the command's parameter that sets it, where its name differs: the library's
``batch_size`` of image rendering is ``--image-batch-size`` (``--batch-size`` is calibration's)."""


def flag_for(command: click.Command, argument: str) -> str | None:
    """The command-line spelling of the option (or argument) that sets ``argument`` in ``command``."""
    for param in command.params:
        if param.name == argument:
            if isinstance(param, click.Option):
                return max(param.opts, key=len)  # the long form: --out rather than -o
            return param.human_readable_name
    return None


def message_with_hint(exc: CpeditError, command: click.Command | None) -> str:
    """``exc``'s message, plus a ``hint:`` line naming the option of ``command`` it is about, if any."""
    message = str(exc)
    if command is None or not exc.argument:
        return message
    argument = CLI_ARGUMENT.get((exc.argument, exc.reason), exc.argument)
    flag = flag_for(command, argument)
    if flag is None:
        return message
    template = SPECIFIC.get((argument, exc.reason)) or SPECIFIC.get((argument, None)) or "see {flag}"
    return f"{message}\nhint: {template.format(flag=flag)}"
