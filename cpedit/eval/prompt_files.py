"""The bounds of a prompt file or Hub prompt set, and its one bounded, streaming line reader.

A prompt file comes from anyone (a colleague's ``.txt``, a Hub dataset). Read whole and
unbounded, a 1 GiB one-line file grew to 23 GB of memory and a 5.5 MB prompt went into the
image manifest. So every prompt file is read line by line through :func:`numbered_lines` and
refused, naming the file (and the line), when it exceeds one of these bounds:

- :data:`MAX_PROMPT_FILE_BYTES`: the file's size (checked before reading, and while reading);
- :data:`MAX_LINE_BYTES`: one line (a CSV or JSON Lines row holds a prompt and its settings);
- :data:`MAX_PROMPT_CHARS`: one prompt (:func:`check_prompt`; text encoders read 77 tokens);
- :data:`MAX_PROMPTS`: the prompts of a file or set (:func:`check_prompt_count`).

A Parquet file is checked from its footer (rows, uncompressed size) before its data is read
(:func:`check_parquet`).
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cpedit.durable import format_bytes
from cpedit.errors import CpeditError

MAX_PROMPT_FILE_BYTES = 64 * 2**20
"""A prompt file's size at most (64 MiB: far beyond the largest published prompt sets, I2P's 4,703 rows)."""
MAX_LINE_BYTES = 65_536
"""One line of a prompt file at most (bytes; a CSV or JSON Lines row holds a prompt and its settings)."""
MAX_PROMPT_CHARS = 4_096
"""One prompt at most (characters): CLIP reads 77 tokens, so a longer prompt is a mistake or an attack."""
MAX_PROMPTS = 100_000
"""Prompts in one file or prompt set at most."""

Rows = list[tuple[int, dict[str, Any]]]
"""The rows of a prompt file, each with the number of its (last) line."""

__all__ = [
    "MAX_LINE_BYTES",
    "MAX_PROMPTS",
    "MAX_PROMPT_CHARS",
    "MAX_PROMPT_FILE_BYTES",
    "check_parquet",
    "check_size",
    "check_prompt",
    "check_prompt_count",
    "numbered_lines",
    "read_rows",
]


def _refuse(shown: str, path: Path, message: str, reason: str) -> CpeditError:
    return CpeditError(f"{shown}: {message}", path=str(path), reason=reason, argument="prompts")


def _too_big(shown: str, path: Path) -> CpeditError:
    return _refuse(
        shown,
        path,
        f"the file is larger than {format_bytes(MAX_PROMPT_FILE_BYTES)}, the most cpedit reads as prompts; "
        "split it, or choose fewer prompts",
        "too_large",
    )


def check_size(path: Path, *, shown_as: str | None = None) -> None:
    """Refuse a prompt file that is not a regular file, or is larger than :data:`MAX_PROMPT_FILE_BYTES`.

    Raises:
        CpeditError: ``reason`` ``not_regular`` (a folder, FIFO or device), ``too_large`` or ``unreadable``.
    """
    shown = shown_as or str(path)
    try:
        info = os.stat(path)
    except OSError as exc:
        raise _refuse(shown, path, f"cannot read the prompts ({exc.strerror or exc})", "unreadable") from None
    if not stat.S_ISREG(info.st_mode):
        raise _refuse(shown, path, "not a regular file", "not_regular")
    if info.st_size > MAX_PROMPT_FILE_BYTES:
        raise _too_big(shown, path)


def numbered_lines(path: str | os.PathLike[str], *, shown_as: str | None = None) -> Iterator[tuple[int, str]]:
    """The lines of a UTF-8 prompt file (a leading BOM dropped), numbered from 1, read one at a time.

    Lines end at ``\n`` and keep their ending (``\r\n`` too), as the csv module needs. At most
    :data:`MAX_LINE_BYTES` bytes of a line are ever held in memory; each line is decoded on its
    own, so an encoding error names its line.

    Raises:
        CpeditError: ``argument="prompts"``; the file is too large, not regular or unreadable
            (:func:`check_size`), a line is too long (``reason="too_long"``) or not UTF-8
            (``malformed``); the message names the file and the line.
    """
    file = Path(path)
    shown = shown_as or str(file)
    check_size(file, shown_as=shown)
    read = 0
    try:
        with open(file, "rb") as handle:
            for number in itertools.count(1):
                raw = handle.readline(MAX_LINE_BYTES + 1)
                if not raw:
                    return
                where = f"{shown}:{number}"
                if len(raw) > MAX_LINE_BYTES:
                    raise _refuse(
                        where,
                        file,
                        f"the line is longer than {format_bytes(MAX_LINE_BYTES)}; "
                        "a prompt file holds one prompt (or one row) a line",
                        "too_long",
                    )
                read += len(raw)
                if read > MAX_PROMPT_FILE_BYTES:  # the file grew while it was read
                    raise _too_big(shown, file)
                try:
                    line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError as exc:
                    raise _refuse(where, file, f"not UTF-8 text ({exc.reason})", "malformed") from None
                yield number, line
    except OSError as exc:
        raise _refuse(shown, file, f"cannot read the prompts ({exc.strerror or exc})", "unreadable") from None


def read_rows(
    path: str | os.PathLike[str], *, shown_as: str | None = None
) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    """The columns and the numbered rows of a ``.txt`` (one ``prompt`` a line), ``.csv`` or ``.jsonl`` prompt file.

    Blank lines are skipped; at most :data:`MAX_PROMPTS` rows are read (through :func:`numbered_lines`).

    Raises:
        CpeditError: As :func:`numbered_lines`; a CSV or JSON error, a JSON line that is not an
            object, too many rows (each with ``FILE:LINE``); an unknown suffix.
    """
    file = Path(path)
    shown = shown_as or str(file)
    suffix = file.suffix.lower()
    lines = numbered_lines(file, shown_as=shown)
    rows: Rows = []

    def add(number: int, row: dict[str, Any]) -> None:
        rows.append((number, row))
        check_prompt_count(len(rows), where=f"{shown}:{number}", path=file)

    if suffix == ".txt":
        for number, line in lines:
            if line.strip():
                add(number, {"prompt": line.strip()})
        return ["prompt"], rows
    if suffix == ".csv":
        at = [0]  # the number of the last line the csv module took (a quoted cell spans lines)

        def source() -> Iterator[str]:
            for number, line in lines:
                at[0] = number
                yield line

        reader = csv.DictReader(source())
        try:
            columns = list(reader.fieldnames or [])
            for row in reader:
                add(reader.line_num, row)
        except csv.Error as exc:
            detail, reason = f"not valid CSV ({exc})", "malformed"
            if "field limit" in str(exc):  # a quoted cell over many lines: the csv module's own bound
                limit = csv.field_size_limit()
                detail, reason = f"a cell is longer than {limit:,} characters, the most a CSV cell may hold", "too_long"
            raise _refuse(f"{shown}:{at[0]}", file, detail, reason) from None
        return columns, rows
    if suffix != ".jsonl":
        raise _refuse(shown, file, "a prompt file must be .txt, .csv or .jsonl", "suffix")
    columns_seen: dict[str, None] = {}
    for number, line in lines:
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise _refuse(f"{shown}:{number}", file, f"not JSON ({exc})", "malformed") from None
        if not isinstance(row, dict):
            raise _refuse(f"{shown}:{number}", file, "expected a JSON object", "malformed")
        columns_seen.update(dict.fromkeys(row))
        add(number, row)
    return list(columns_seen), rows


def check_prompt(prompt: str, *, where: str, path: Path) -> None:
    """Refuse a prompt longer than :data:`MAX_PROMPT_CHARS` (``where``: ``FILE:LINE``)."""
    if len(prompt) > MAX_PROMPT_CHARS:
        raise CpeditError(
            f"{where}: the prompt is {len(prompt):,} characters long; at most {MAX_PROMPT_CHARS:,} are accepted "
            "(the text encoder reads only the first 77 tokens)",
            path=str(path),
            reason="too_long",
            argument="prompts",
        )


def check_prompt_count(count: int, *, where: str, path: Path) -> None:
    """Refuse the prompt that makes a file or set hold more than :data:`MAX_PROMPTS` (``where``: where it is)."""
    if count > MAX_PROMPTS:
        raise CpeditError(
            f"{where}: more than {MAX_PROMPTS:,} prompts, the most cpedit reads from one prompt set; "
            "split it, or choose fewer prompts",
            path=str(path),
            reason="too_many",
            argument="prompts",
        )


def check_parquet(path: Path, *, shown_as: str | None = None) -> None:
    """Refuse a Parquet prompt set whose footer says it is too large, before any of its data is read.

    Raises:
        CpeditError: Too large on disk or once decompressed, more than :data:`MAX_PROMPTS` rows, or
            the footer is unreadable.
    """
    import pyarrow.parquet as pq

    shown = shown_as or str(path)
    check_size(path, shown_as=shown)
    try:
        metadata = pq.ParquetFile(path).metadata
        rows = metadata.num_rows
        size = sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds for a bad file
        raise _refuse(shown, path, f"cannot read the Parquet file ({exc})", "unreadable") from None
    if size > MAX_PROMPT_FILE_BYTES:
        raise _too_big(shown, path)
    check_prompt_count(rows, where=shown, path=path)
