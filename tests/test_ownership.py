"""cpedit deletes or replaces only what it can prove it wrote (:mod:`cpedit.ownership`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import cpedit.ownership
from cpedit.durable import temporary_name
from cpedit.ownership import (
    NotOursError,
    check_replaceable_file,
    chosen_by_this_process,
    remove_folder,
    set_aside,
)

MARKERS = ("conceptprune/report.json", "model_index.json")


def _output(folder: Path) -> Path:
    (folder / "conceptprune").mkdir(parents=True)
    (folder / "conceptprune" / "report.json").write_text("{}")
    (folder / "model_index.json").write_text("{}")
    (folder / "unet.bin").write_bytes(b"w")
    return folder


def test_a_marked_folder_is_removed_and_a_foreign_one_is_refused(tmp_path: Path) -> None:
    ours = _output(tmp_path / "ours")
    assert remove_folder(ours, markers=MARKERS) and not ours.exists()
    assert not list(tmp_path.iterdir())  # no temporary left either
    assert remove_folder(tmp_path / "missing", markers=MARKERS) is False
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("years of work")
    half = _output(tmp_path / "half")
    (half / "model_index.json").unlink()  # one marker is not enough
    for folder in (foreign, half):
        with pytest.raises(NotOursError, match="not written by cpedit") as info:
            remove_folder(folder, markers=MARKERS, argument="out")
        assert info.value.path == str(folder) and info.value.reason == "not_ours" and info.value.argument == "out"
        assert "--" not in str(info.value)  # the library names no CLI flag
    assert (foreign / "thesis.tex").read_text() == "years of work" and (half / "unet.bin").exists()


def test_links_are_never_proof(tmp_path: Path) -> None:
    target = _output(tmp_path / "real")
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(NotOursError):
        remove_folder(link, markers=MARKERS)
    linked_marker = tmp_path / "linked-marker"
    linked_marker.mkdir()
    (linked_marker / "conceptprune").symlink_to(target / "conceptprune")
    (linked_marker / "model_index.json").write_text("{}")
    with pytest.raises(NotOursError):
        remove_folder(linked_marker, markers=MARKERS)
    assert link.is_symlink() and (target / "unet.bin").exists() and (linked_marker / "model_index.json").exists()


def test_a_temporary_name_of_this_process_needs_no_marker(tmp_path: Path) -> None:
    mine = tmp_path / temporary_name("out")
    mine.mkdir()
    (mine / "x").write_text("x")
    assert chosen_by_this_process(mine)
    other = tmp_path / f".out.partial-{os.getpid() + 1}-0123abcd"
    other.mkdir()
    assert not chosen_by_this_process(other) and not chosen_by_this_process(tmp_path / ".out.partial")
    assert remove_folder(mine) and not mine.exists()
    with pytest.raises(NotOursError):
        remove_folder(other)
    assert other.is_dir()


def test_an_empty_folder_may_be_set_aside_only_when_allowed(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NotOursError):
        set_aside(empty, markers=MARKERS)
    moved = set_aside(empty, markers=MARKERS, allow_empty=True)
    assert moved is not None and chosen_by_this_process(moved) and not empty.exists()


def test_a_kill_during_removal_leaves_only_a_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ours = _output(tmp_path / "point")

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cpedit.ownership.shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        remove_folder(ours, markers=MARKERS)
    # never a half-deleted folder under the real name: the leftover is a recognisable temporary
    assert not ours.exists()
    (leftover,) = tmp_path.iterdir()
    assert leftover.name.startswith(".point.old-") and (leftover / "conceptprune" / "report.json").exists()


def test_a_file_is_replaceable_only_with_its_first_line_marker(tmp_path: Path) -> None:
    check_replaceable_file(tmp_path / "missing.yaml", marker="tuned by cpedit tune")
    ours = tmp_path / "ours.yaml"
    ours.write_text("# r, tuned by cpedit tune (shapes)\nname: r\n")
    check_replaceable_file(ours, marker="tuned by cpedit tune")
    for name, text in (("plain.yaml", "name: r\n# tuned by cpedit tune\n"), ("nocomment.yaml", "tuned by cpedit tune")):
        (tmp_path / name).write_text(text)
        with pytest.raises(NotOursError, match="first line") as info:
            check_replaceable_file(tmp_path / name, marker="tuned by cpedit tune", argument="out")
        assert info.value.path == str(tmp_path / name)
    link = tmp_path / "link.yaml"
    link.symlink_to(ours)
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    for path in (link, folder):
        with pytest.raises(NotOursError):
            check_replaceable_file(path, marker="tuned by cpedit tune")
