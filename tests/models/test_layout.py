"""The module layout: no import cycles among cpedit's modules, and the light modules stay light.

The import graph is read from the source (``ast``), not by importing anything: an edge is a
module-level import (also inside top-level ``if``/``try``/``with`` blocks and class bodies, which
run at import time); imports inside functions and under ``if TYPE_CHECKING:`` do not count.
Importing ``a.b.c`` also imports the packages ``a`` and ``a.b``, so those are edges too.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.paths import REPO_ROOT

PACKAGE_DIR = REPO_ROOT / "cpedit"
LIGHT_MODULES = (
    "cpedit.recipes.format",
    "cpedit.recipes.targets",
    "cpedit.recipes.sources",
    "cpedit.errors",
    "cpedit.progress",
)
HEAVY = ("torch", "diffusers", "transformers")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def cpedit_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def module_level_imports(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements that run when the module is imported."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from module_level_imports(node.body)
            yield from module_level_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, *(h.body for h in node.handlers), node.orelse, node.finalbody):
                yield from module_level_imports(block)
        elif isinstance(node, (ast.With, ast.ClassDef, ast.For, ast.While)):
            yield from module_level_imports(node.body)


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def imported_names(name: str, path: Path) -> set[str]:
    """Every module a module imports at module level (with the packages each implies)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in module_level_imports(ast.parse(path.read_text(encoding="utf-8")).body):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.update(_with_parents(alias.name))
            continue
        base = node.module or ""
        if node.level:
            package = name if is_package else name.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = f"{package}.{base}" if base else package
        found.update(_with_parents(base))
        found.update(f"{base}.{alias.name}" for alias in node.names)  # a submodule, when it is one
    return found


def import_graph() -> dict[str, set[str]]:
    modules = cpedit_modules()
    return {name: imported_names(name, path) for name, path in modules.items()}


def cpedit_edges() -> dict[str, set[str]]:
    graph = import_graph()
    return {name: {m for m in imports if m in graph and m != name} for name, imports in graph.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (as a path that returns to its start), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def test_the_graph_is_read() -> None:
    edges = cpedit_edges()
    assert {"cpedit", "cpedit.recipes.format", "cpedit.models.support", "cpedit.cli.main", "cpedit.recipes.hub"} <= set(
        edges
    )
    assert "cpedit.recipes.format" in edges["cpedit.recipes.sources"]
    assert "cpedit.recipes.targets" in edges["cpedit.recipes.format"]
    assert "cpedit.hub" in edges["cpedit.models.details"]  # importing cpedit.hub.errors runs cpedit/hub/__init__.py


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles() -> None:
    cycle = find_cycle(cpedit_edges())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_hub_recipes_imports_only_the_recipe_format_and_errors() -> None:
    edges = cpedit_edges()
    assert edges["cpedit.recipes.hub"] <= {
        "cpedit",
        "cpedit.hub",
        "cpedit.recipes",
        "cpedit.recipes.format",
        "cpedit.errors",
    }
    assert "cpedit.recipes.sources" not in edges["cpedit.recipes.format"]


def test_package_inits_import_nothing_at_module_level() -> None:
    """Every package exports lazily: importing one module does not import the others (only the helper)."""
    edges = cpedit_edges()
    packages = [name for name, path in cpedit_modules().items() if path.name == "__init__.py"]
    assert {"cpedit", "cpedit.hub", "cpedit.recipes", "cpedit.edit", "cpedit.eval"} <= set(packages)
    for package in packages:
        assert edges[package] <= {"cpedit", "cpedit._lazy"}, package


def closure(start: str, graph: dict[str, set[str]]) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(m for m in graph.get(name, ()) if m.startswith("cpedit"))
    return {m for name in seen for m in graph.get(name, ())} | seen


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_light_modules_import_no_torch_statically(module: str) -> None:
    imported = closure(module, import_graph())
    heavy = sorted(m for m in imported if m.split(".")[0] in HEAVY)
    assert not heavy, f"{module} imports {heavy} at module level (directly or through cpedit modules)"


def test_light_modules_import_no_torch_when_run() -> None:
    code = (
        "import json, sys\n"
        f"for m in {list(LIGHT_MODULES)!r}: __import__(m)\n"
        f"print(json.dumps(sorted(m for m in {list(HEAVY)!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(out.stdout) == []


def test_support_and_targets_are_where_they_belong() -> None:
    import cpedit.models.architectures
    import cpedit.models.details
    import cpedit.models.support
    import cpedit.recipes.format
    import cpedit.recipes.targets

    assert cpedit.recipes.format.TARGETS is cpedit.recipes.targets.TARGETS is cpedit.models.architectures.TARGETS
    assert cpedit.recipes.format.STREAMS is cpedit.recipes.targets.STREAMS
    assert cpedit.models.details.editability is cpedit.models.support.editability
    assert cpedit.models.details.text_to_image_refusal is cpedit.models.support.text_to_image_refusal
    for gone in ("describe_support", "require_support", "SupportInfo"):
        assert not hasattr(cpedit.models.architectures, gone), gone
    for gone in ("resolve_recipe", "builtin_recipe_files", "builtin_recipes_dir"):
        assert not hasattr(cpedit.recipes.format, gone), gone
