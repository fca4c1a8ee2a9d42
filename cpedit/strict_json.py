"""JSON that cpedit reads back from its own files, parsed as a stranger's: standard JSON only, bounded nesting.

Every reader of a file cpedit wrote earlier (``sweep.json``, the images manifest, the positions
file's header) takes it from disk, where anyone may have changed it. Python's ``json`` accepts
``NaN`` and ``Infinity`` (not JSON; a number check then passes them on) and recurses without a
bound. :func:`loads` refuses both with a :class:`JsonProblem` that says what is wrong, so each
reader can name its file and field.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["JsonProblem", "depth", "loads"]


class JsonProblem(ValueError):
    """Why a text is not the JSON a reader accepts (the message says it, without the file's name).

    Attributes:
        syntax: The text is not JSON at all (a syntax error, such as a line a killed writer left
            half-written), as opposed to JSON that breaks a rule (``NaN``, nesting).
    """

    def __init__(self, message: str, *, syntax: bool = False) -> None:
        super().__init__(message)
        self.syntax = syntax


def _no_constant(name: str) -> Any:
    raise JsonProblem(f"{name} is not a number JSON allows")


def depth(value: Any, *, limit: int) -> int:
    """How deeply ``value`` nests (a scalar is 1), counted without recursion and up to ``limit + 1`` at most."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if level > limit:
            break
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, level + 1) for child in children)
    return deepest


def loads(text: str | bytes, *, max_depth: int) -> Any:
    """Parse ``text`` as standard JSON nested at most ``max_depth`` levels.

    Raises:
        JsonProblem: Not UTF-8, not JSON (``syntax``), ``NaN``/``Infinity``,
            or nested deeper than ``max_depth``.
    """
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except JsonProblem:
        raise
    except RecursionError:
        raise JsonProblem(f"nested deeper than {max_depth} levels") from None
    except json.JSONDecodeError as exc:
        raise JsonProblem(f"not JSON ({exc})", syntax=True) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise JsonProblem(f"not JSON ({exc})") from None
    if depth(data, limit=max_depth) > max_depth:
        raise JsonProblem(f"nested deeper than {max_depth} levels")
    return data
