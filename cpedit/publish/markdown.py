"""Text from recipes, results and the Hub, escaped for the model card (Markdown, HTML and YAML front matter).

The card is published as the repo's README.md, which the Hub renders as Markdown with raw
HTML. A recipe's ``description``, an evaluation's metric names or protocol values, a layer
name in a tampered report or a license from the base card are written by other people: put
in the card as they are, they could add headings, links, images or ``<script>`` to it, or
close a fenced block early. Every such value goes into the card through one of these
functions, one per kind of place:

- :func:`md_text`: running text, a table cell, a heading: one line, every character that
  could start Markdown or HTML structure backslash-escaped;
- :func:`md_code`: an inline code span whose backtick fence is longer than any run inside;
- :func:`md_fenced`: a fenced block (a recipe's YAML) whose fence no line of the text can
  close, however it is indented;
- :func:`md_link`: a link whose label is escaped text and whose address is percent-encoded;
- :func:`front_matter`: the YAML metadata, dumped with ``safe_dump`` from cleaned strings.

Control, bidi and invisible characters are dropped everywhere (:func:`cpedit.text.strip_unsafe`).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import yaml

from cpedit.text import strip_unsafe

__all__ = ["front_matter", "md_code", "md_fenced", "md_link", "md_text"]

_ESCAPED = re.compile(r"([\\`*\[\]<>!&|~$]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")
"""What can start inline structure on a line: code, emphasis (``_`` only at a word's edge: ``clip_score``
stays as it is), links and images, HTML tags and autolinks, entities, table cells, strikethrough, math.
Block structure (headings, lists, quotes, fences) starts only at a line's start, where no such text goes."""
_SPACE = re.compile(r"\s+")
_BACKTICKS = re.compile(r"`+")


def _one_line(text: str) -> str:
    """``text`` without unsafe characters, every run of white space (newlines too) one space."""
    return _SPACE.sub(" ", strip_unsafe(str(text), keep_newlines=True)).strip()


def md_text(text: Any) -> str:
    """``text`` as literal Markdown text on one line: no element (heading, list, link, image, HTML, table cell
    break, emphasis, entity) can come out of it; it renders as the characters it holds."""
    return _ESCAPED.sub(r"\\\1", _one_line(text))


def md_code(text: Any, *, in_table: bool = False) -> str:
    """``text`` as an inline code span (with its backticks), on one line.

    The fence is one backtick longer than the longest run inside, so no backtick in ``text``
    closes it; ``in_table`` also escapes ``|`` (GitHub's tables split cells on it even in code).
    """
    line = _one_line(text)
    longest = max((len(run) for run in _BACKTICKS.findall(line)), default=0)
    fence = "`" * (longest + 1)
    if line.startswith("`") or line.endswith("`") or not line:
        line = f" {line} "
    if in_table:
        line = line.replace("|", "\\|")
    return f"{fence}{line}{fence}"


def md_fenced(text: str, *, info: str = "") -> str:
    """``text`` as a fenced code block (``info``: cpedit's own language name, ``yaml``): a backtick fence
    (at least 3) longer than any backtick run in it.

    A closing fence must be at least as long as the opening one, so no line of ``text``,
    indented or not, can end the block early and turn what follows into Markdown.
    """
    body = strip_unsafe(text, keep_newlines=True).rstrip("\n")
    longest = max((len(run) for run in _BACKTICKS.findall(body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{body}\n{fence}"


def md_link(label: Any, url: str) -> str:
    """A Markdown link: ``label`` escaped as text, ``url`` percent-encoded (no ``()<>`` or space to end it)."""
    return f"[{md_text(label)}]({quote(strip_unsafe(url), safe=':/?#@!$&*+,;=%~')})"


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return _one_line(value)
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def front_matter(metadata: dict[str, Any]) -> str:
    """The card's YAML metadata block (``---`` lines included): strings on one line, safe characters only,
    dumped with ``yaml.safe_dump`` (quoted where needed), so no value can end the block."""
    return "---\n" + yaml.safe_dump(_clean(metadata), sort_keys=False, allow_unicode=True) + "---\n"
