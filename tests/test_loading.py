"""Model sources, devices and dtypes: clear errors before anything heavy happens."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cpedit.errors import CpeditError, ModelLoadError
from cpedit.loading import resolve_device, resolve_dtype, resolve_source


def test_local_folder_resolves_to_itself(tiny_sd_path: Path) -> None:
    source = resolve_source(tiny_sd_path)
    assert source.is_local and source.path == tiny_sd_path.resolve() and source.commit is None


def test_hub_id_not_cached_while_offline_says_what_to_do(offline_hub: None) -> None:
    # HF_HUB_OFFLINE=1 and an empty HF_HOME (conftest): nothing can be fetched or found.
    with pytest.raises(
        ModelLoadError, match=r"CompVis/stable-diffusion-v1-4 is not \(fully\) in the local Hub cache"
    ) as info:
        resolve_source("CompVis/stable-diffusion-v1-4")
    assert "HF_HUB_OFFLINE=1" in str(info.value) and "nothing of it is in the cache" in str(info.value)


@pytest.mark.parametrize("ref", ["nope", "./missing/folder", "a/b/c"])
def test_neither_folder_nor_hub_id(ref: str) -> None:
    with pytest.raises(ModelLoadError, match="no such folder, and not a Hub id"):
        resolve_source(ref)


def test_folder_without_model_index(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not a diffusers pipeline folder"):
        resolve_source(tmp_path)


def test_devices() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(CpeditError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(CpeditError, match="sees no CUDA GPU; use --device cpu"):
            resolve_device("cuda:0")


def test_dtypes_default_to_fp32_on_cpu_and_fp16_on_cuda() -> None:
    assert resolve_dtype(None, torch.device("cpu")) == torch.float32
    assert resolve_dtype(None, torch.device("cuda")) == torch.float16
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(CpeditError, match="unknown dtype 'float8'"):
        resolve_dtype("float8", torch.device("cpu"))


def test_malformed_model_index_is_a_clear_error(tiny_sd_path: Path, tmp_path: Path) -> None:
    import shutil

    from cpedit.loading import load_pipeline

    folder = tmp_path / "broken"
    shutil.copytree(tiny_sd_path, folder)
    (folder / "model_index.json").write_text('["not", "an", "object"]')
    with pytest.raises(ModelLoadError, match="model_index.json is not a JSON object"):
        load_pipeline(resolve_source(folder), device=torch.device("cpu"), dtype=torch.float32)
    (folder / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline", "unet": 5}')
    with pytest.raises(ModelLoadError, match="cannot load"):
        load_pipeline(resolve_source(folder), device=torch.device("cpu"), dtype=torch.float32)
