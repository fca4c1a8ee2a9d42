"""``cpedit export DIR --single-file`` and ``cpedit prune ... --single-file``: the file, hints, early checks."""

from __future__ import annotations

import json

from click.testing import CliRunner
from safetensors import safe_open

from cpedit.cli.main import cli


def test_prune_writes_the_single_file_and_export_rewrites_it(tmp_path):  # type: ignore[no-untyped-def]
    runner = CliRunner()
    out, file = tmp_path / "edited", tmp_path / "edited.safetensors"
    result = runner.invoke(
        cli, ["prune", "--recipe", "shapes-striped", "--out", str(out), "--device", "cpu", "--single-file", str(file)]
    )
    assert result.exit_code == 0, result.output
    with safe_open(file, framework="pt") as handle:
        metadata = handle.metadata()
        assert "model.diffusion_model.time_embed.0.weight" in handle.keys()
    assert metadata["base_model"] == "builtin:shapes" and json.loads(metadata["recipes"]) == ["shapes-striped"]
    again = runner.invoke(cli, ["export", str(out), "--single-file", str(file), "--format", "json"])
    assert again.exit_code == 1 and "--overwrite" in again.output  # the library's "out" is --single-file here
    again = runner.invoke(
        cli,
        [
            "export",
            str(out),
            "--single-file",
            str(file),
            "--overwrite",
            "--single-file-dtype",
            "float16",
            "--format",
            "json",
        ],
    )
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["dtype"] == "float16"


def test_prune_refuses_a_foreign_single_file_before_loading(tmp_path, no_model_loading):  # type: ignore[no-untyped-def]
    file = tmp_path / "theirs.safetensors"
    file.write_bytes(b"not ours")
    result = CliRunner().invoke(
        cli, ["prune", "-r", "shapes-striped", "--out", str(tmp_path / "o"), "--single-file", str(file), "--overwrite"]
    )
    assert result.exit_code == 1
    assert "was not written by cpedit" in result.output and "--single-file" in result.output
    assert file.read_bytes() == b"not ours"
