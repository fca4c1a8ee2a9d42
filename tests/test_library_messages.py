"""Library messages never name a CLI flag: the CLI adds the flag in its hint (cpedit/cli/hints.py).

Scans the string literals of cpedit/ outside cpedit/cli for ``--word`` in the calls that build
an error or a warning (``CpeditError(...)``, ``warnings.warn(...)``, any ``...Error(...)`` /
``...Warning(...)``), so a message such as "give --prompts" cannot come back.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import cpedit

ROOT = Path(cpedit.__file__).parent
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def _is_message_call(node: ast.Call) -> bool:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return name.endswith(("Error", "Warning", "Exception")) or name in ("warn", "Cancelled")


def _flags_in(node: ast.AST) -> list[str]:
    found: list[str] = []
    for child in ast.walk(node):
        if isinstance(child, ast.Constant) and isinstance(child.value, str):
            found += FLAG.findall(child.value)
    return found


def library_messages_naming_flags() -> list[str]:
    """``file:line: --flag`` for every error or warning message of the library that names a flag."""
    hits = []
    for path in sorted(ROOT.rglob("*.py")):
        if "cli" in path.relative_to(ROOT).parts[:1]:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _is_message_call(node):
                hits += [f"{path.relative_to(ROOT)}:{node.lineno}: {flag}" for flag in _flags_in(node)]
    return hits


def test_no_library_error_or_warning_names_a_cli_flag() -> None:
    assert library_messages_naming_flags() == []


def test_the_scan_finds_a_flag_in_a_message() -> None:
    tree = ast.parse('raise CpeditError(f"give {x} --prompts FILE", argument="prompts")')
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call))
    assert _is_message_call(call) and _flags_in(call) == ["--prompts"]
    assert _flags_in(ast.parse('CpeditError("a well-known -- dash, or x--y")')) == []
