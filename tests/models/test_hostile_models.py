"""Model folders from strangers: links out of the folder, pickles, custom code, truncated or missing files.

Each is refused by :func:`cpedit.models.loading.resolve_source` (before anything loads), with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from cpedit.errors import ModelLoadError, UnsafeFileError
from cpedit.models.loading import resolve_source
from cpedit.output.folder import copy_pipeline_folder
from cpedit.shapes.model import builtin_pipeline_path


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """A copy of the built-in pipeline folder (a few MB), to spoil."""
    folder = tmp_path / "model"
    shutil.copytree(builtin_pipeline_path(), folder)
    return folder


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text("hf_SECRETSECRETSECRET\n", encoding="utf-8")
    return path


def _refused(folder: Path, reason: str) -> UnsafeFileError | ModelLoadError:
    with pytest.raises(ModelLoadError) as info:
        resolve_source(folder)
    assert info.value.reason == reason, str(info.value)
    return info.value


def test_a_clean_copy_is_accepted(model: Path) -> None:
    assert resolve_source(model).path == model.resolve()


def test_license_linking_to_a_token_file_is_refused(model: Path, secret: Path, tmp_path: Path) -> None:
    (model / "LICENSE").symlink_to(secret)
    error = _refused(model, "link_outside")
    assert "LICENSE" in str(error) and "outside" in str(error)
    assert isinstance(error, UnsafeFileError)
    with pytest.raises(UnsafeFileError):  # the writer refuses it too, whoever calls it
        copy_pipeline_folder(model, tmp_path / "copy")
    assert not (tmp_path / "copy" / "LICENSE").exists()


def test_tokenizer_entry_linking_outside_is_refused(model: Path, secret: Path) -> None:
    (model / "tokenizer" / "merges.txt").unlink(missing_ok=True)
    (model / "tokenizer" / "merges.txt").symlink_to(secret)
    assert "tokenizer/merges.txt" in str(_refused(model, "link_outside"))


def test_links_to_folders_are_refused(model: Path, tmp_path: Path) -> None:
    ssh = tmp_path / "dot-ssh"
    ssh.mkdir()
    (ssh / "id_ed25519").write_text("PRIVATE KEY", encoding="utf-8")
    (model / "tokenizer" / "keys").symlink_to(ssh)
    _refused(model, "link_outside")
    (model / "tokenizer" / "keys").unlink()
    (model / "tokenizer" / "inside").symlink_to(model / "scheduler")
    _refused(model, "link_to_folder")


def test_dangling_links_and_loops_are_refused(model: Path) -> None:
    (model / "README.md").symlink_to(model / "nowhere")
    _refused(model, "dangling_link")
    (model / "README.md").unlink()
    (model / "unet" / "loop.json").symlink_to(model / "unet" / "loop.json")
    _refused(model, "link_loop")


def test_fifos_in_a_model_folder_are_refused(model: Path) -> None:
    os.mkfifo(model / "vae" / "pipe.json")
    _refused(model, "not_regular")


def test_links_inside_the_folder_are_fine(model: Path) -> None:
    (model / "LICENSE.txt").write_text("MIT", encoding="utf-8")
    (model / "LICENSE").symlink_to(model / "LICENSE.txt")
    resolve_source(model)


def test_pickle_only_components_are_refused_with_what_to_do(model: Path) -> None:
    for file in (model / "unet").glob("*.safetensors"):
        file.rename(file.with_name("diffusion_pytorch_model.bin"))
    error = _refused(model, "no_safetensors")
    message = str(error)
    assert "unet" in message and "safetensors" in message and "save_pretrained" in message
    assert "trust_remote_code" not in message


def _edit_index(model: Path, **changes: object) -> None:
    index = json.loads((model / "model_index.json").read_text(encoding="utf-8"))
    index.update(changes)
    (model / "model_index.json").write_text(json.dumps(index), encoding="utf-8")


def test_custom_pipeline_classes_are_refused(model: Path) -> None:
    _edit_index(model, _class_name="EvilPipeline")
    message = str(_refused(model, "custom_code"))
    assert "EvilPipeline" in message and "never runs model code" in message
    assert "trust_remote_code" not in message
    _edit_index(model, _class_name=["pipeline", "EvilPipeline"])
    _refused(model, "custom_code")


def test_custom_component_code_is_refused(model: Path) -> None:
    (model / "unet" / "evil.py").write_text("import os\n", encoding="utf-8")
    _edit_index(model, unet=["evil", "EvilUNet"])
    assert "unet" in str(_refused(model, "custom_code"))


def test_missing_components_are_refused(model: Path) -> None:
    shutil.rmtree(model / "vae")
    assert "vae" in str(_refused(model, "missing_component"))


@pytest.mark.parametrize("keep", [0, 5, 8 + 20, -100])
def test_truncated_safetensors_are_refused(model: Path, keep: int) -> None:
    weights = next((model / "unet").glob("*.safetensors"))
    data = weights.read_bytes()
    weights.write_bytes(data[:keep] if keep >= 0 else data[:keep])
    error = _refused(model, "truncated")
    assert "unet/" in str(error) and "safetensors" in str(error)


def test_deeply_nested_model_index_is_refused(model: Path) -> None:
    (model / "model_index.json").write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    with pytest.raises(ModelLoadError, match="nested too deeply"):
        resolve_source(model)
