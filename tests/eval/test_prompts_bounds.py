"""Prompt files and Hub prompt sets are read streaming and bounded: size, line length, prompt length and
count; a file over a bound is refused naming the file and the line, without reading it whole."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cpedit.eval.prompt_files as prompt_files
from cpedit.errors import CpeditError
from cpedit.eval.engine import load_prompts
from cpedit.eval.prompt_files import MAX_LINE_BYTES, MAX_PROMPT_CHARS, MAX_PROMPT_FILE_BYTES
from cpedit.eval.prompt_sets import read_prompt_table


def _readers(suffix: str) -> list:
    """The two prompt readers: any prompt file's, and the Hub prompt sets' (.csv, .jsonl, .parquet)."""
    return [load_prompts] if suffix == ".txt" else [load_prompts, read_prompt_table]


def _sparse(path: Path, size: int, *, head: bytes = b"") -> Path:
    """A file of ``size`` bytes written in an instant: ``head`` then a hole (NUL bytes)."""
    with open(path, "wb") as handle:
        handle.write(head)
        handle.truncate(size)
    return path


@pytest.mark.parametrize("suffix", [".txt", ".csv", ".jsonl"])
def test_a_file_just_over_the_size_cap_is_refused_before_reading(tmp_path: Path, suffix: str) -> None:
    huge = _sparse(tmp_path / f"huge{suffix}", MAX_PROMPT_FILE_BYTES + 1, head=b"prompt\n")
    for read in _readers(suffix):
        with pytest.raises(CpeditError, match="larger than 67.1 MB") as info:
            read(huge)
        assert info.value.path == str(huge) and info.value.reason == "too_large" and info.value.argument == "prompts"


def test_a_huge_line_is_refused_at_its_line_without_reading_it_whole(tmp_path: Path) -> None:
    one_line = _sparse(tmp_path / "one-line.txt", 32 * 2**20, head=b"a cat\na dog\n")  # then 32 MiB without a newline
    tracemalloc.start()
    try:
        with pytest.raises(CpeditError, match=r"one-line.txt:3: the line is longer than 65.5 kB") as info:
            load_prompts(one_line)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.reason == "too_long"
    assert peak < 4 * MAX_LINE_BYTES + 2**20  # a line's worth, not the file


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("p.txt", "a cat\n\n{long}\n"),
        ("p.csv", "prompt,seed\na cat,1\n{long},2\n"),
        ("p.jsonl", '{{"prompt": "a cat"}}\n\n{{"prompt": "{long}"}}\n'),
    ],
)
def test_an_over_long_prompt_is_refused_naming_file_and_line(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text.format(long="x" * (MAX_PROMPT_CHARS + 1)), encoding="utf-8")
    for read in _readers(path.suffix):
        with pytest.raises(CpeditError, match=rf"{name}:3: the prompt is 4,097 characters long") as info:
            read(path)
        assert info.value.reason == "too_long"
    path.write_text(text.format(long="x" * MAX_PROMPT_CHARS), encoding="utf-8")
    assert len(load_prompts(path)[1].prompt) == MAX_PROMPT_CHARS  # the cap itself is accepted


def test_too_many_prompts_are_refused_at_the_first_one_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prompt_files, "MAX_PROMPTS", 5)
    path = tmp_path / "p.jsonl"
    path.write_text("".join(f'{{"prompt": "p{i}"}}\n\n' for i in range(7)), encoding="utf-8")
    for read in (load_prompts, read_prompt_table):
        with pytest.raises(CpeditError, match=r"p.jsonl:11: more than 5 prompts") as info:
            read(path)
        assert info.value.reason == "too_many"
    path.write_text("".join(f'{{"prompt": "p{i}"}}\n' for i in range(5)), encoding="utf-8")
    assert len(load_prompts(path)) == 5


def test_bad_bytes_and_special_files_name_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_bytes(b"\xef\xbb\xbfa cat\n" + b"x" * 10_000 + b"\na \xff dog\n")
    with pytest.raises(CpeditError, match=r"p.txt:3: not UTF-8 text") as info:
        load_prompts(path)
    assert info.value.reason == "malformed"
    path.write_bytes(b"\xef\xbb\xbfa cat\r\na dog")
    assert [p.prompt for p in load_prompts(path)] == ["a cat", "a dog"]  # BOM dropped, CRLF and no last newline
    fifo = tmp_path / "fifo.txt"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.txt"
    folder.mkdir()
    for special in (fifo, folder):
        with pytest.raises(CpeditError, match="not a regular file"):
            load_prompts(special)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400), suffix=st.sampled_from([".txt", ".csv", ".jsonl"]))
def test_any_bytes_give_prompts_or_cpedits_own_error(tmp_path: Path, data: bytes, suffix: str) -> None:
    path = tmp_path / f"random{suffix}"
    path.write_bytes(data)
    for read in _readers(suffix):
        try:
            prompts = read(path)
        except CpeditError as exc:
            assert exc.argument in ("prompts", "category") and exc.path == str(path)
            continue
        specs = prompts if isinstance(prompts, list) else prompts[0]
        assert all(0 < len(p.prompt) <= MAX_PROMPT_CHARS for p in specs)
