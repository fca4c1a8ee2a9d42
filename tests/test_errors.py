"""Error reasons are one enumerated set (cpedit.errors.REASONS): the code uses no other, and every entry is used."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from cpedit.errors import _RECIPE_REASONS, REASONS, CpeditError, RecipeError

LIBRARY = Path(__file__).resolve().parent.parent / "cpedit"
REASON_TAKERS = {"refuse", "_refuse"}
"""Helpers that take a reason as their last positional argument."""


def reasons_in_code() -> dict[str, str]:
    """Every string literal the library gives as an error reason, with where (file:line)."""
    found: dict[str, str] = {}

    def add(node: ast.AST, where: Path) -> None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.setdefault(node.value, f"{where.relative_to(LIBRARY.parent)}:{node.lineno}")
        elif isinstance(node, ast.IfExp):
            add(node.body, where)
            add(node.orelse, where)

    for path in sorted(LIBRARY.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.keyword) and node.arg == "reason":
                add(node.value, path)
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = [t.id if isinstance(t, ast.Name) else getattr(t, "attr", None) for t in targets]
                if "reason" in names and node.value is not None:
                    add(node.value, path)
            elif isinstance(node, ast.Call) and node.args:
                function = node.func
                name = function.id if isinstance(function, ast.Name) else getattr(function, "attr", "")
                if name in REASON_TAKERS:
                    add(node.args[-1], path)
            elif isinstance(node, ast.Return) and path.name == "errors.py" and isinstance(node.value, ast.Tuple):
                if len(node.value.elts) == 2:  # describe_hub_error: (reason, message)
                    add(node.value.elts[0], path)
    return found


def test_the_library_gives_no_reason_outside_the_set() -> None:
    found = reasons_in_code()
    assert len(found) > 40  # the scan sees the library's reasons
    unknown = {reason: where for reason, where in found.items() if reason not in REASONS}
    assert not unknown, f"reasons missing from cpedit.errors.REASONS: {unknown}"


def test_every_reason_in_the_set_is_used() -> None:
    sources = "\n".join(p.read_text(encoding="utf-8") for p in LIBRARY.rglob("*.py"))
    table = re.search(r"^REASONS: dict\[str, str\] = \{\n.*?^\}\n", sources, flags=re.S | re.M)
    assert table is not None
    sources = sources.replace(table.group(0), "")  # the table itself does not count
    used = set(re.findall(r"[\"']([a-z_]+)[\"']", sources)) | set(_RECIPE_REASONS.values())
    assert not sorted(set(REASONS) - used), "reasons no code gives"


def test_an_unknown_reason_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="missing_package"):
        CpeditError("x", reason="missing_package")  # the synonym of missing_dependency that was merged
    assert CpeditError("x", reason="missing_dependency").reason == "missing_dependency"


@pytest.mark.parametrize("headline", sorted(_RECIPE_REASONS))
def test_recipe_errors_have_reasons_of_the_set(headline: str) -> None:
    error = RecipeError("r.yaml", [("prune", "bad")], headline=headline)
    assert error.reason in REASONS and error.argument == "recipes"
