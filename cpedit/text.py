"""Text from strangers, made safe to show: no terminal control or bidi characters, no megabyte messages.

Recipes, reports and model metadata are written by other people. Their text reaches the
terminal, the TUI and published model cards, where control characters (``ESC``: terminal
escape sequences) and Unicode bidirectional overrides (``U+202E``: text that reads other
than it is) could mislead. :func:`strip_unsafe` removes them from values cpedit keeps;
:func:`shown` quotes a value for an error message, escaped and cut to a bounded length.
"""

from __future__ import annotations

import reprlib
import unicodedata
from typing import Any

MAX_SHOWN = 120
"""Characters of a quoted value in messages at most (a longer one is cut with ``...``)."""

_BIDI = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"  # marks, embeddings, isolates
)


def is_unsafe_char(char: str, *, keep_newlines: bool = False) -> bool:
    """Whether ``char`` is a control, format (bidi, zero-width) or other invisible character cpedit strips."""
    if keep_newlines and char in "\n\t":
        return False
    if char in _BIDI:
        return True
    return unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn") and char != " "


def strip_unsafe(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` without control, bidi and other invisible characters (tabs and newlines kept if asked)."""
    if text.isascii() and text.isprintable():
        return text
    return "".join(c for c in text if not is_unsafe_char(c, keep_newlines=keep_newlines))


def escape_unsafe(text: str) -> str:
    """``text`` with control and bidi characters written as escapes (``\\x1b``, ``\\u202e``), for messages."""
    if text.isascii() and text.isprintable():
        return text
    out = []
    for char in text:
        if char == "\n" or not is_unsafe_char(char):
            out.append(char)
        else:
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


_REPR = reprlib.Repr()
_REPR.maxstring = MAX_SHOWN
_REPR.maxother = MAX_SHOWN
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6
_REPR.maxlevel = 3


def shown(value: Any, *, limit: int = MAX_SHOWN) -> str:
    """``repr(value)`` for a message: nested containers and long strings cut short, at most ``limit`` characters.

    Safe on values built from YAML aliases (shared, deeply nested): the cost is bounded.
    """
    try:
        text = _REPR.repr(value)
    except (RecursionError, ValueError):  # pragma: no cover - reprlib bounds depth; belt and braces
        text = f"<{type(value).__name__}>"
    text = escape_unsafe(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."
