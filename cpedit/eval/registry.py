"""The benchmarks cpedit knows, by name: one entry each, read by the CLI, ``sweep``/``tune`` and the app.

An entry names the benchmark's class (``module:Class``) and its role, so that listing the
names (a command's choices, the app's list) imports nothing heavy; the class is imported when
the benchmark is used. Adding a benchmark is a module with a :class:`~cpedit.eval.benchmark.Benchmark`
subclass and one line in :data:`BUILTIN` (or a call to :func:`register` for one of your own),
as mergekit's ``merge_methods/registry.py`` and lm-evaluation-harness' task registry do.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cpedit.errors import CpeditError

if TYPE_CHECKING:
    from cpedit.eval.benchmark import Benchmark, Role

__all__ = ["BUILTIN", "BenchmarkEntry", "benchmark_names", "get_benchmark", "register", "unregister"]


@dataclass(frozen=True)
class BenchmarkEntry:
    """A registered benchmark: its name, role and class (``module:Class``, or the instance itself)."""

    name: str
    role: Role
    target: str | Benchmark


BUILTIN = (
    BenchmarkEntry("shapes", "erasure", "cpedit.eval.shapes:ShapesBenchmark"),
    BenchmarkEntry("classify", "erasure", "cpedit.eval.classify:ClassifyBenchmark"),
    BenchmarkEntry("nudity", "erasure", "cpedit.eval.nudity:NudityBenchmark"),
    BenchmarkEntry("attack", "erasure", "cpedit.eval.attack:AttackBenchmark"),
    BenchmarkEntry("clip-score", "preservation", "cpedit.eval.clip_score:ClipScoreBenchmark"),
    BenchmarkEntry("fid", "preservation", "cpedit.eval.fid:FidBenchmark"),
)
"""cpedit's own benchmarks, in the order front ends list them."""

_entries: dict[str, BenchmarkEntry] = {entry.name: entry for entry in BUILTIN}
_loaded: dict[str, Benchmark] = {}


def register(benchmark: Benchmark, *, replace: bool = False) -> Benchmark:
    """Add a benchmark (an instance of a :class:`~cpedit.eval.benchmark.Benchmark` subclass) under its name.

    Raises:
        CpeditError: A benchmark of that name is registered already (and not ``replace``), or
            the object is not a benchmark.
    """
    from cpedit.eval.benchmark import Benchmark

    if not isinstance(benchmark, Benchmark):
        raise CpeditError(f"{benchmark!r} is not a Benchmark", argument="benchmark", reason="wrong_type")
    if benchmark.name in _entries and not replace:
        raise CpeditError(
            f"a benchmark named {benchmark.name!r} is registered already", argument="benchmark", reason="exists"
        )
    _entries[benchmark.name] = BenchmarkEntry(benchmark.name, benchmark.role, benchmark)
    _loaded[benchmark.name] = benchmark
    return benchmark


def unregister(name: str) -> None:
    """Remove a benchmark added by :func:`register` (cpedit's own come back)."""
    _entries.pop(name, None)
    _loaded.pop(name, None)
    for entry in BUILTIN:
        if entry.name == name:
            _entries[name] = entry


def benchmark_names(role: Role | None = None) -> tuple[str, ...]:
    """The registered benchmarks' names (of one role), cpedit's own first; imports none of them."""
    return tuple(name for name, entry in _entries.items() if role is None or entry.role == role)


def get_benchmark(name: str) -> Benchmark:
    """The benchmark registered as ``name`` (its module imported on first use).

    Raises:
        CpeditError: No benchmark of that name (``reason="unknown"``, ``argument="benchmark"``).
    """
    found = _loaded.get(name)
    if found is not None:
        return found
    entry = _entries.get(name)
    if entry is None:
        raise CpeditError(
            f"unknown benchmark {name!r}; choose one of {', '.join(benchmark_names())}",
            argument="benchmark",
            reason="unknown",
        )
    if not isinstance(entry.target, str):
        found = entry.target
    else:
        module, _, attribute = entry.target.partition(":")
        found = getattr(importlib.import_module(module), attribute)()
    _loaded[name] = found
    return found
