"""What belongs to an output folder (what ``push`` publishes) and what only lies in it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cpedit.output.contents import output_contents
from cpedit.output.record import RecordError


def test_images_folders_and_folders_no_component_names_are_not_the_output(tmp_path: Path) -> None:
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "X", "unet": ["diffusers", "U"]}))
    files = {
        "unet/config.json": "{}",
        "LICENSE": "l",
        "README.md": "replaced by the card",
        ".hidden": "h",
        "conceptprune/report.json": "{}",
        "conceptprune/eval/nudity.json": "{}",
        "conceptprune/eval/images/nudity/edited/a.png": "p",  # the default images folder, before its manifest
        "my-images/manifest.jsonl": "",
        "my-images/edited/a.png": "p",
        "unet/cache/manifest.rank-0.jsonl": "",
        "scheduler/config.json": "{}",  # no component of this index names it
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    contents = output_contents(tmp_path)
    assert contents.files == [
        "LICENSE",
        "conceptprune/eval/nudity.json",
        "conceptprune/report.json",
        "model_index.json",
        "unet/config.json",
    ]
    assert contents.not_output == ["conceptprune/eval/images/", "my-images/", "scheduler/", "unet/cache/"]


def test_an_unreadable_model_index_is_a_record_error(tmp_path: Path) -> None:
    (tmp_path / "model_index.json").write_text("[1, 2")
    with pytest.raises(RecordError, match="model_index.json cannot be read") as info:
        output_contents(tmp_path)
    assert info.value.reason == "malformed"
