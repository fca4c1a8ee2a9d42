"""``cpedit``: the command-line entry point.

Commands follow ``cpedit <verb>`` / ``cpedit <noun> <verb>`` with kebab-case options.
Errors the user can fix are printed as one message (no traceback) with exit status 1;
Ctrl-C exits with 130 and leaves nothing half-written.

Start-up is kept short: each command's module is imported only when that command runs
(``cpedit --help`` lists them from :data:`COMMANDS` without importing any), so commands that
load no model (``recipes``, ``card``, ``--help``) never import torch or diffusers.
"""

from __future__ import annotations

import copy
import functools
import importlib
from typing import Any, NamedTuple

import click

from cpedit import __version__
from cpedit.cli.guard import KEPT_ON_INTERRUPT
from cpedit.errors import CpeditError


class CommandEntry(NamedTuple):
    """Where a top-level command lives, and what ``cpedit --help`` says about it."""

    module: str
    attribute: str
    short_help: str
    loads_models: bool = False
    """Whether it loads models: then :func:`cpedit.cli.libraries.quiet_libraries` runs before it."""


COMMANDS: dict[str, CommandEntry] = {
    "apply": CommandEntry(
        "cpedit.cli.apply",
        "apply_command",
        "Rebuild an edited model from REPO_OR_DIR (an edit from `cpedit push --edit-only`) and its base.",
    ),
    "audit": CommandEntry(
        "cpedit.cli.audit",
        "audit_command",
        "Show what an attacker without the base model learns from DIR, a `cpedit prune` output.",
        loads_models=True,
    ),
    "card": CommandEntry(
        "cpedit.cli.card",
        "card_command",
        "Generate the model card (README.md) that `cpedit push` would publish for DIR.",
    ),
    "eval": CommandEntry(
        "cpedit.cli.eval",
        "eval_group",
        "Measure how well an edit erased its concepts and what it preserved.",
        loads_models=True,
    ),
    "export": CommandEntry(
        "cpedit.cli.export",
        "export_command",
        "Export DIR, a `cpedit prune` output, as one single-file checkpoint for ComfyUI, A1111 and Forge.",
    ),
    "models": CommandEntry(
        "cpedit.cli.models", "models_group", "Search the Hub for models cpedit can edit, and inspect one."
    ),
    "prune": CommandEntry(
        "cpedit.cli.prune",
        "prune_command",
        "Erase concepts from MODEL (a Hub id or a local pipeline folder) and save the result.",
        loads_models=True,
    ),
    "push": CommandEntry(
        "cpedit.cli.push",
        "push_command",
        "Publish DIR (a `cpedit prune` output) to the Hub in one commit, with a generated model card.",
    ),
    "recipes": CommandEntry(
        "cpedit.cli.recipes",
        "recipes_group",
        "Validate, list, show and share concept recipes (YAML files, one concept each).",
    ),
    "sweep": CommandEntry(
        "cpedit.cli.sweep",
        "sweep_command",
        "Measure a grid of prune settings on MODEL: erasure against preservation, with the Pareto front.",
        loads_models=True,
    ),
    "tune": CommandEntry(
        "cpedit.cli.sweep",
        "tune_command",
        "Find the least pruning that meets an erasure goal within a preservation budget.",
        loads_models=True,
    ),
    "tui": CommandEntry(
        "cpedit.cli.tui",
        "tui_command",
        "Open the terminal app: pick MODEL, queue recipes, run, tune, preview, save and push.",
    ),
    "sample": CommandEntry(
        "cpedit.cli.sample",
        "sample_command",
        "Render seeded images from MODEL_OR_DIR into one grid.",
        loads_models=True,
    ),
}
"""Top-level command name -> its module, attribute and short help (imported when it runs)."""


class UserError(click.ClickException):
    """A :class:`CpeditError` shown as ``Error: ...`` with exit status 1, control characters written as escapes."""

    def __init__(self, message: str) -> None:
        from cpedit.text import escape_unsafe

        super().__init__(escape_unsafe(message))


def _wrapped(command: click.Command, *, quiet: bool) -> click.Command:
    """A copy of ``command`` whose leaf callbacks give library errors the CLI's hint (``quiet``: libraries first).

    A :class:`CpeditError` names the library argument at fault; the wrapper knows the running
    command, so the hint names that command's option for it (see :mod:`cpedit.cli.hints`).
    The command objects of the modules are left as they are: the wrapping belongs to ``cpedit``'s
    own group, and a caller that invokes a module's command directly sees the library error.
    """
    clone = copy.copy(command)
    if isinstance(command, click.Group):
        group = clone
        assert isinstance(group, click.Group)
        group.commands = {name: _wrapped(sub, quiet=quiet) for name, sub in command.commands.items()}
        lookup = command.get_command  # the original's: a group may add its subcommands lazily

        def get_command(ctx: click.Context, cmd_name: str) -> click.Command | None:
            known = group.commands.get(cmd_name)
            if known is not None:
                return known
            sub = lookup(ctx, cmd_name)
            if sub is None:
                return None
            group.commands[cmd_name] = wrapped = _wrapped(sub, quiet=quiet)
            return wrapped

        group.get_command = get_command  # type: ignore[method-assign]
        return group
    callback = command.callback
    if callback is None:
        return clone

    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        if quiet:
            from cpedit.cli.libraries import quiet_libraries

            quiet_libraries()
        try:
            return callback(*args, **kwargs)
        except CpeditError as exc:
            from cpedit.cli.hints import message_with_hint

            raise UserError(message_with_hint(exc, clone)) from None

    run._cpedit_quiet = quiet  # type: ignore[attr-defined]
    clone.callback = run
    return clone


class CpeditGroup(click.Group):
    """A click group that imports its commands lazily and turns library errors and Ctrl-C into clean exits."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = self.commands.get(cmd_name)
        if command is not None:
            return command
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        command = _wrapped(getattr(importlib.import_module(entry.module), entry.attribute), quiet=entry.loads_models)
        self.add_command(command, cmd_name)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list, from :data:`COMMANDS` for commands not imported yet (importing none)."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            command = self.commands.get(name) or click.Command(name, help=COMMANDS[name].short_help)
            if not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CpeditError as exc:
            raise UserError(str(exc)) from None
        except KeyboardInterrupt:
            kept = ctx.meta.get(KEPT_ON_INTERRUPT)
            click.echo(f"\nInterrupted; {kept or 'nothing was written'}.", err=True)
            raise click.exceptions.Exit(130) from None


@click.group(cls=CpeditGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cpedit")
def cli() -> None:
    """Erase concepts from text-to-image diffusion models by pruning skilled FFN weights.

    \b
    Examples:
      cpedit recipes list
      cpedit prune CompVis/stable-diffusion-v1-4 --recipe van-gogh --out sd14-no-van-gogh
      cpedit sample sd14-no-van-gogh --compare --out grid.png
      cpedit models search "stable diffusion"
      cpedit push sd14-no-van-gogh --repo alice/sd14-no-van-gogh
    """


def main() -> None:
    """Console-script entry point."""
    cli()


if __name__ == "__main__":
    main()
