"""The commands of the README and the docs: what a reader copies must work, with the options cpedit has."""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import click

from cpedit.cli.main import COMMANDS

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
"""The README and every docs page: their ```sh blocks are checked alike."""
CPU_TORCH = "pip install torch --index-url https://download.pytorch.org/whl/cpu"


def shell_blocks(text: str) -> list[str]:
    """The ```sh code blocks of ``text``, continuation lines joined."""
    return [block.replace("\\\n", " ") for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S)]


def test_the_first_steps_offer_a_cpu_only_torch_beside_the_plain_install() -> None:
    first, second = shell_blocks(README.read_text(encoding="utf-8"))[:2]
    assert CPU_TORCH not in first and 'pip install -e ".[tui]"' in first
    # the same steps, with PyTorch's CPU build installed before cpedit pulls in torch from PyPI
    assert second.index(CPU_TORCH) < second.index('pip install -e ".[tui]"')
    assert second.replace(f"{CPU_TORCH} && ", "") == first


def command_for(words: list[str]) -> tuple[str, click.Command] | None:
    """The command a ``cpedit ...`` line runs (``eval shapes``), without going through ``cli`` (it wraps commands)."""
    entry = COMMANDS.get(words[0]) if words else None
    if entry is None:
        return None
    command = getattr(importlib.import_module(entry.module), entry.attribute)
    path = [words[0]]
    for word in words[1:]:
        if not isinstance(command, click.Group):
            break
        sub = command.get_command(click.Context(command), word)
        if sub is None:
            return None
        command, path = sub, [*path, word]
    return " ".join(path), command


def command_problems(text: str) -> tuple[int, list[str]]:
    """How many ``cpedit ...`` lines of ``text``'s ```sh blocks were checked, and what is wrong with them."""
    checked, problems = 0, []
    for block in shell_blocks(text):
        for line in block.splitlines():
            for part in re.split(r"&&|\|", line.split("  #")[0]):
                words = shlex.split(part.strip(), comments=True)
                if not words or words[0] != "cpedit":
                    continue
                found = command_for(words[1:])
                if found is None:
                    problems.append(f"no such command: {part.strip()}")
                    continue
                path, command = found
                known = {o for p in command.params if isinstance(p, click.Option) for o in p.opts + p.secondary_opts}
                for word in words:
                    if word.startswith("-") and word != "-" and word.split("=")[0] not in known | {"-h", "--help"}:
                        problems.append(f"`cpedit {path}` has no {word}")
                checked += 1
    return checked, problems


def test_the_docs_pages_are_checked_too() -> None:
    names = {page.name for page in PAGES}
    assert {"README.md", "cli.md", "evaluation.md", "tuning.md"} <= names
    # the checker finds a wrong option and a wrong command, and names them
    text = "```sh\ncpedit prune -r x --out y --no-such-flag\ncpedit frobnicate now\ncpedit sample d --compare\n```\n"
    assert command_problems(text) == (
        2,
        ["`cpedit prune` has no --no-such-flag", "no such command: cpedit frobnicate now"],
    )


def test_every_option_in_the_readmes_commands_exists() -> None:
    checked, failures = 0, []
    for page in PAGES:
        count, problems = command_problems(page.read_text(encoding="utf-8"))
        checked += count
        failures += [f"{page.relative_to(ROOT)}: {problem}" for problem in problems]
    assert not failures, "\n".join(failures)
    assert checked > 20
