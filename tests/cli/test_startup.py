"""Start-up: commands that load no model never import torch or diffusers.

Each check runs in a fresh interpreter (``subprocess``): ``import cpedit``, ``import
cpedit.cli.main``, and the CLI entry point with an argv, reporting at the end which heavy
libraries ended up in ``sys.modules``. Also: the lazy command table matches the commands, and
the lazy exports of :mod:`cpedit` resolve.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from support.paths import REPO_ROOT

from cpedit.models.compute import ComputeOptions

HEAVY = ("torch", "diffusers", "transformers")
RECIPES_DIR = REPO_ROOT / "recipes"
MARK = "@@cpedit-startup@@"

_RUN_CLI = f"""
import json, sys
argv = json.loads(sys.argv[1])
from cpedit.cli.main import cli
import cpedit.models
import cpedit.recipes
try:
    cli.main(argv, prog_name="cpedit")
    code = 0
except SystemExit as exc:
    code = exc.code
sys.stdout.flush()
heavy = sorted(m for m in {list(HEAVY)!r} if m in sys.modules)
sys.stderr.write("{MARK}" + json.dumps({{"code": code, "heavy": heavy}}))
"""


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300, env=env)


def run_cli(*argv: str) -> tuple[int, list[str], str]:
    """Run ``cpedit ARGV`` in a fresh interpreter: (exit status, heavy modules imported, stdout)."""
    code, heavy, out, _ = run_cli_full(*argv)
    return code, heavy, out


def run_cli_full(*argv: str) -> tuple[int, list[str], str, str]:
    """Like :func:`run_cli`, with stderr (less the report) too."""
    done = run_python(_RUN_CLI, json.dumps(list(argv)))
    assert MARK in done.stderr, done.stderr
    err, report_text = done.stderr.rsplit(MARK, 1)
    report: dict[str, Any] = json.loads(report_text)
    return report["code"], report["heavy"], done.stdout, err


def heavy_after(statement: str) -> list[str]:
    done = run_python(
        f"import json, sys\n{statement}\nprint(json.dumps(sorted(m for m in {list(HEAVY)!r} if m in sys.modules)))"
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "statement",
    [
        "import cpedit",
        "import cpedit; cpedit.__version__; cpedit.load_recipe; cpedit.list_recipes; cpedit.RecipeError",
        "import cpedit.cli.main",
        "import cpedit.hub",
        "import cpedit.models.details, cpedit.publish.card, cpedit.publish.push, cpedit.recipes.hub",
        "import cpedit.models.support; cpedit.models.support.text_to_image_refusal({})",
        "import cpedit.cli.options",
    ],
)
def test_import_is_light(statement: str) -> None:
    assert heavy_after(statement) == []


def test_help_is_light() -> None:
    code, heavy, out = run_cli("--help")
    assert (code, heavy) == (0, [])
    for name in ("card", "eval", "models", "prune", "push", "recipes", "sample"):
        assert f"  {name} " in out, out
    assert "Erase concepts from MODEL" in out


def test_recipes_list_is_light() -> None:
    code, heavy, out = run_cli("recipes", "list")
    assert (code, heavy) == (0, [])
    assert "van-gogh" in out


def test_recipes_show_is_light() -> None:
    code, heavy, out = run_cli("recipes", "show", "van-gogh")
    assert (code, heavy) == (0, [])
    assert "a cat in the style of Van Gogh" in out


def test_recipes_validate_is_light() -> None:
    code, heavy, out = run_cli("recipes", "validate", str(RECIPES_DIR / "shapes" / "shapes-striped.yaml"), "van-gogh")
    assert (code, heavy) == (0, [])
    assert out.count("✓") == 2


def test_help_of_model_free_groups_is_light() -> None:
    for argv in (["recipes", "--help"], ["models", "--help"], ["card", "--help"]):
        code, heavy, _ = run_cli(*argv)
        assert (code, heavy) == (0, []), argv


@pytest.fixture(scope="module")
def pruned_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real prune output of the built-in model (a few seconds on a CPU)."""
    import cpedit

    out = tmp_path_factory.mktemp("startup") / "out"
    cpedit.prune("builtin:shapes", ["shapes-striped"], out=out, compute=ComputeOptions(device="cpu"))
    return out


def test_card_is_light(pruned_output: Path) -> None:
    code, heavy, out = run_cli("card", str(pruned_output))
    assert (code, heavy) == (0, [])
    assert "shapes-striped" in out


def test_errors_still_exit_1_without_a_traceback(tmp_path: Path) -> None:
    code, heavy, _, err = run_cli_full("card", str(tmp_path))
    assert (code, heavy) == (1, [])
    assert "Error: " in err and "not a cpedit output" in err and "Traceback" not in err


# --- the lazy command table ------------------------------------------------------------


def test_command_table_matches_the_commands() -> None:
    import importlib

    from cpedit.cli.main import COMMANDS, cli

    for name, entry in COMMANDS.items():
        command = getattr(importlib.import_module(entry.module), entry.attribute)
        assert isinstance(command, click.Command)
        assert command.name == name
        assert command.get_short_help_str(limit=1000) == entry.short_help, name
    assert sorted(cli.list_commands(click.Context(cli))) == sorted(COMMANDS)


def test_recipes_push_short_help_matches() -> None:
    from cpedit.cli.recipes import PUSH_SHORT_HELP, recipes_group

    push = recipes_group.get_command(click.Context(recipes_group), "push")
    assert push is not None and push.get_short_help_str(limit=1000) == PUSH_SHORT_HELP


def test_model_commands_quiet_the_libraries_first(monkeypatch: pytest.MonkeyPatch) -> None:
    import cpedit.cli.libraries
    from cpedit.cli.main import COMMANDS, cli

    calls: list[str] = []
    monkeypatch.setattr(cpedit.cli.libraries, "quiet_libraries", lambda: calls.append("quiet"))
    ctx = click.Context(cli)
    for name, entry in COMMANDS.items():
        command = cli.get_command(ctx, name)
        leaves = list(command.commands.values()) if isinstance(command, click.Group) else [command]
        for leaf in leaves:
            assert getattr(leaf.callback, "_cpedit_quiet", False) is entry.loads_models, (name, leaf.name)
    assert {n for n, e in COMMANDS.items() if e.loads_models} == {"prune", "sample", "eval", "audit", "sweep", "tune"}


def test_quiet_libraries_turns_hub_progress_bars_off() -> None:
    code = (
        "from cpedit.cli.libraries import quiet_libraries\n"
        "import huggingface_hub.utils as u\n"
        "u.enable_progress_bars(); quiet_libraries(); print(u.are_progress_bars_disabled())\n"
    )
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "True"


def test_dtype_choices_match_loading() -> None:
    from cpedit.cli.options import DTYPE_ALIASES, DTYPE_NAMES
    from cpedit.models.loading import DTYPE_ALIASES as LOADING_ALIASES
    from cpedit.models.loading import DTYPES

    assert DTYPE_NAMES == tuple(DTYPES)
    assert DTYPE_ALIASES == tuple(LOADING_ALIASES)


# --- lazy exports ----------------------------------------------------------------------


def test_every_export_resolves() -> None:
    done = run_python(
        "import cpedit\n"
        "missing = [n for n in cpedit.__all__ if getattr(cpedit, n, None) is None]\n"
        "print(missing, sorted(cpedit.__all__) == sorted({*cpedit._EXPORTS, '__version__'}))\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[] True"


def test_exports_are_the_modules_own_objects() -> None:
    import cpedit
    import cpedit.errors
    import cpedit.models.support
    import cpedit.recipes.sources

    assert cpedit.models.describe_support is cpedit.models.support.describe_support
    assert cpedit.models.SupportInfo is cpedit.models.support.SupportInfo
    assert cpedit.list_recipes is cpedit.recipes.sources.list_recipes
    assert cpedit.recipes.RecipeEntry is cpedit.recipes.sources.RecipeEntry
    assert cpedit.Cancelled is cpedit.errors.Cancelled
    assert "prune" in dir(cpedit)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        cpedit.nope  # noqa: B018


def test_hub_exports_resolve() -> None:
    import cpedit.hub

    for name in cpedit.hub.__all__:
        assert getattr(cpedit.hub, name) is not None, name


def test_the_cli_leaves_the_modules_commands_as_they_are() -> None:
    """Only ``cpedit``'s own group turns library errors into CLI errors: a module's command object,
    invoked directly (as tests and embedding programs do), still raises the library error, whatever
    ran before."""
    from cpedit.cli.eval import eval_group
    from cpedit.cli.eval_attack import eval_attack_command
    from cpedit.cli.main import cli

    before = eval_attack_command.callback
    ctx = click.Context(cli)
    wrapped_group = cli.get_command(ctx, "eval")
    assert isinstance(wrapped_group, click.Group) and wrapped_group is not eval_group
    wrapped = wrapped_group.get_command(click.Context(wrapped_group), "attack")
    assert wrapped is not None and wrapped is not eval_attack_command
    assert wrapped.callback is not before and getattr(wrapped.callback, "_cpedit_quiet", None) is True
    assert eval_attack_command.callback is before and eval_group.get_command(ctx, "attack") is eval_attack_command
