"""One option vocabulary: an option name means the same thing, with the same short flag, in every command.

The test walks the whole click command tree (every group, lazily added commands included)
and compares each long option that two or more commands share: short flags always; type,
help text and default unless :data:`DIFFERS` names the aspect with the reason it differs.
"""

from __future__ import annotations

import importlib
from collections import defaultdict
from typing import Any

import click
import pytest

from cpedit.cli.main import COMMANDS

DIFFERS: dict[str, dict[str, str]] = {
    "--out": {
        "type": "a folder for prune, sweep, tune and tui; a PNG file for sample; a Markdown file for card",
        "help": "says what the command writes there",
    },
    "--format": {"help": "says what the JSON of each command holds"},
    "--collapse-check": {"help": "prune warns about its one edit; sweep and tune mark each collapsed point as failed"},
    "--recipe": {"help": "repeatable where several concepts are erased together (prune, sweep, tui); tune tunes one"},
    "--base-model": {
        "help": "card and push need the base's Hub id for the card; audit loads the base, apply rebuilds on it "
        "(a folder too)"
    },
    "--revision": {"help": "of the Hub model the command reads: apply's is the edit's repo (REPO_OR_DIR)"},
    "--repo": {"help": "card only names the repo in the usage snippet; push and recipes push commit to it"},
    "--eval": {
        "type": "audit measures the attack's revival on the shapes world only",
        "help": "audit's measures the attack's revival; sweep's and tune's every point",
    },
    "--images": {"default": "how many models a command measures: each command's help says why"},
    "--image-batch-size": {"default": "the image size: 32x32 shapes images (64), full-size images (4), sweeps (16)"},
    "--steps": {"default": "25 for the shapes benchmark (its measured setting), 30 for full-size models"},
    "--seed": {"help": "says what the seed draws: every image (sample), prompts without a seed, the shapes prompts"},
    "--limit": {
        "type": "models search caps the results at 1000",
        "help": "results of a search; prompts of a set (classify: per concept)",
        "default": "models search lists 20 results by default",
    },
    "--prompts": {
        "type": "classify reads a file of prompt templates (it must exist)",
        "help": "prompt sets for the image benchmarks, templates for classify, both for sweep and tune",
        "default": "eval nudity defaults to I2P",
    },
    "--overwrite": {"help": "prune replaces its output folder, tune its OUT/model"},
    "--preview": {"help": "prune renders the preview into its output, push only when the folder has none"},
    "--select-ratio": {"type": "sweep takes a comma-separated grid axis, tune one value", "help": "the same"},
    "--target": {"type": "sweep takes a comma-separated grid axis, tune one value", "help": "the same"},
    "--timesteps": {"type": "sweep and tune take a list of taus, tui the one tau to calibrate for", "help": "same"},
}
"""Option -> aspect (type, help, default) -> why it differs between commands."""


def leaf_commands(command: click.Command | None = None, path: tuple[str, ...] = ()) -> list[tuple[str, click.Command]]:
    """Every command that runs (no group), with its path such as ``eval shapes``.

    The top level is read from :data:`COMMANDS` (importing each module), not through ``cli``,
    which would wrap the commands' callbacks for every later test that calls one directly.
    """
    if command is None:
        found = []
        for name, entry in sorted(COMMANDS.items()):
            found += leaf_commands(getattr(importlib.import_module(entry.module), entry.attribute), (name,))
        return found
    if isinstance(command, click.Group):
        context = click.Context(command)
        found = []
        for name in command.list_commands(context):
            sub = command.get_command(context, name)
            assert sub is not None, name
            found += leaf_commands(sub, (*path, name))
        return found
    return [(" ".join(path), command)]


def describe_type(kind: click.ParamType) -> str:
    """A type by what it accepts (click's Path has no useful repr)."""
    if isinstance(kind, click.Path):
        return f"Path(file_okay={kind.file_okay}, dir_okay={kind.dir_okay}, exists={kind.exists})"
    if isinstance(kind, click.Choice):
        return f"Choice({sorted(kind.choices)})"
    return repr(kind)


def shared_options() -> dict[str, list[tuple[str, click.Option]]]:
    """Long option name -> (command, option) for every visible option of two or more commands."""
    by_name: dict[str, list[tuple[str, click.Option]]] = defaultdict(list)
    for path, command in leaf_commands():
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden and param.name != "help":
                long = max((o for o in param.opts if o.startswith("--")), key=len)
                by_name[long].append((path, param))
    return {name: uses for name, uses in by_name.items() if len(uses) > 1}


def default(option: click.Option) -> Any:
    """The default, None for a required option or one without a default."""
    value = option.default
    return None if option.required or value is None or "UNSET" in repr(value) else value


def aspects(option: click.Option, *, first_sentence: bool = False) -> dict[str, Any]:
    """What must agree; ``first_sentence``: only the help's first sentence (the rest says why the default is)."""
    help_text = option.help or ""
    return {
        "short flags": sorted(o for o in option.opts + option.secondary_opts if not o.startswith("--")),
        "negation": sorted(option.secondary_opts),
        "type": describe_type(option.type),
        "flag": option.is_flag,
        "help": help_text.split(". ")[0] if first_sentence else help_text,
        "default": default(option),
    }


def test_the_vocabulary_covers_the_commands() -> None:
    shared = shared_options()
    paths = {path for path, _ in leaf_commands()}
    assert {"prune", "sweep", "tune", "sample", "eval shapes", "eval classify", "audit", "recipes push"} <= paths
    for name in ("--recipe", "--out", "--dtype", "--device", "--batch-size", "--image-batch-size", "--images"):
        assert name in shared, name
    assert set(DIFFERS) <= set(shared), "DIFFERS names an option no two commands share"


@pytest.mark.parametrize("name", sorted(shared_options()))
def test_a_shared_option_means_the_same_everywhere(name: str) -> None:
    uses = shared_options()[name]
    differs = DIFFERS.get(name, {})
    first_path, first = uses[0]
    first_sentence = "default" in differs  # the help may go on to say why this command's default differs
    expected = aspects(first, first_sentence=first_sentence)
    for path, option in uses[1:]:
        found = aspects(option, first_sentence=first_sentence)
        for aspect, value in found.items():
            if aspect in differs:
                continue
            assert value == expected[aspect], f"{name}: {aspect} of `{path}` differs from `{first_path}`"


def test_defaults_that_differ_are_explained_in_the_help() -> None:
    for name, uses in shared_options().items():
        if "default" not in DIFFERS.get(name, {}):
            continue
        for path, option in uses:
            if default(option) is not None:
                assert option.show_default or "default" in (option.help or "").lower(), f"{path} {name}"
    for path, command in leaf_commands():
        for param in command.params:
            if isinstance(param, click.Option) and "--images" in param.opts and not param.hidden:
                assert param.type.name == "integer range", path
                assert f"Default {param.default}:" in (param.help or ""), f"{path}: say why --images is {param.default}"


def test_sweep_and_tune_take_prunes_short_flags_and_dtype_names() -> None:
    from click.testing import CliRunner

    for command in ("sweep", "tune"):
        options = {max(p.opts, key=len): p for p in dict(leaf_commands())[command].params}
        assert "-r" in options["--recipe"].opts and "-o" in options["--out"].opts
        assert {"fp32", "bf16", "float16"} <= set(options["--dtype"].type.choices)  # type: ignore[attr-defined]
    help_text = CliRunner().invoke(dict(leaf_commands())["tune"], ["--help"]).output
    assert "--image-batch-size" in help_text and "--eval-batch-size" not in help_text


def test_renamed_options_are_gone_and_click_points_to_the_new_name(tmp_path: Any) -> None:
    from click.testing import CliRunner

    commands = dict(leaf_commands())  # invoked directly: through `cli` they would stay wrapped for later tests
    result = CliRunner().invoke(commands["eval shapes"], [str(tmp_path), "--batch-size", "4"])
    assert result.exit_code == 2 and "--batch-size" in result.output
    result = CliRunner().invoke(commands["audit"], [str(tmp_path), "--base", "builtin:shapes"])
    assert result.exit_code == 2 and "--base-model" in result.output


def test_library_errors_get_the_renamed_options_in_their_hints() -> None:
    from cpedit.cli.hints import message_with_hint
    from cpedit.errors import CpeditError

    commands = dict(leaf_commands())
    out_of_memory = CpeditError("not enough memory", reason="out_of_memory", argument="batch_size")
    for path in ("eval shapes", "eval clip-score", "sweep", "tune"):  # images per call, not calibration prompts
        assert message_with_hint(out_of_memory, commands[path]).endswith("hint: use a smaller --image-batch-size")
    no_preserve = CpeditError("the nudity benchmark measures no preservation", argument="preserve")
    assert "--preserve clip-score --preserve-prompts" in message_with_hint(no_preserve, commands["tune"])
    assert "--base-model" in message_with_hint(CpeditError("no base", argument="base"), commands["audit"])
