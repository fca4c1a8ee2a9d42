"""The README's commands: what a newcomer copies must work on their machine, with the options cpedit has."""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import click

from cpedit.cli.main import COMMANDS

README = Path(__file__).resolve().parent.parent / "README.md"
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


def test_every_option_in_the_readmes_commands_exists() -> None:
    checked = 0
    for block in shell_blocks(README.read_text(encoding="utf-8")):
        for line in block.splitlines():
            for part in re.split(r"&&|\|", line.split("  #")[0]):
                words = shlex.split(part.strip(), comments=True)
                if not words or words[0] != "cpedit":
                    continue
                found = command_for(words[1:])
                assert found is not None, part
                path, command = found
                known = {o for p in command.params if isinstance(p, click.Option) for o in p.opts + p.secondary_opts}
                for word in words:
                    if word.startswith("-") and word != "-":
                        assert word.split("=")[0] in known | {"-h", "--help"}, f"`cpedit {path}` has no {word}"
                checked += 1
    assert checked > 20
