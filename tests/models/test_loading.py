"""Model sources, devices and dtypes: clear errors before anything heavy happens."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cpedit.errors import CpeditError, ModelLoadError
from cpedit.models.loading import ModelSource, check_model_folder, resolve_device, resolve_dtype, resolve_source


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
        with pytest.raises(CpeditError, match="sees no CUDA GPU; use the cpu device") as info:
            resolve_device("cuda:0")
        assert (info.value.argument, info.value.reason) == ("device", "unavailable")


def test_dtypes_default_to_fp32_on_cpu_and_fp16_on_cuda() -> None:
    assert resolve_dtype(None, torch.device("cpu")) == torch.float32
    assert resolve_dtype(None, torch.device("cuda")) == torch.float16
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(CpeditError, match="unknown dtype 'float8'"):
        resolve_dtype("float8", torch.device("cpu"))


def test_malformed_model_index_is_a_clear_error(tiny_sd_path: Path, tmp_path: Path) -> None:
    import shutil

    from cpedit.models.loading import load_pipeline

    folder = tmp_path / "broken"
    shutil.copytree(tiny_sd_path, folder)
    (folder / "model_index.json").write_text('["not", "an", "object"]')
    with pytest.raises(ModelLoadError, match="model_index.json is not a JSON object"):
        load_pipeline(resolve_source(folder), device=torch.device("cpu"), dtype=torch.float32)
    (folder / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline", "unet": 5}')
    with pytest.raises(ModelLoadError, match="has no unet or transformer component"):
        resolve_source(folder)  # refused before loading, as `cpedit models info` judges it
    with pytest.raises(ModelLoadError, match="cannot load"):
        load_pipeline(ModelSource(str(folder), folder, is_local=True), device=torch.device("cpu"), dtype=torch.float32)


def test_a_folder_cpedit_cannot_edit_is_refused_before_loading(tiny_sd_path: Path, tmp_path: Path) -> None:
    import json
    import shutil

    from cpedit.errors import UnsupportedModelError

    assert check_model_folder(tiny_sd_path).supported
    folder = tmp_path / "other"
    shutil.copytree(tiny_sd_path, folder)
    index = json.loads((folder / "model_index.json").read_text())
    for name, error, words in (
        ("StableDiffusionImg2ImgPipeline", ModelLoadError, "is not a text-to-image pipeline"),
        ("LatentConsistencyModelPipeline", UnsupportedModelError, "is not supported: no cpedit architecture spec"),
    ):
        (folder / "model_index.json").write_text(json.dumps({**index, "_class_name": name}))
        with pytest.raises(error, match=words) as caught:
            check_model_folder(folder)
        with pytest.raises(error) as run:
            resolve_source(folder)  # what a run (cpedit prune) checks first: the same words
        assert str(run.value) == str(caught.value)
    with pytest.raises(ModelLoadError, match="no such folder"):
        check_model_folder(tmp_path / "nothing")


def test_a_hub_cache_snapshot_folder_names_its_repo(tiny_sd_path: Path, tmp_path: Path) -> None:
    import shutil

    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = tmp_path / "hub" / "models--acme--tiny-sd" / "snapshots" / commit
    shutil.copytree(tiny_sd_path, snapshot)
    source = resolve_source(snapshot)
    assert source.is_local and source.repo_id == "acme/tiny-sd" and source.commit == commit
    assert source.path == snapshot.resolve() and source.revision is None
    plain = resolve_source(tiny_sd_path)
    assert plain.repo_id is None and plain.commit is None


def test_pipeline_files_are_what_a_safetensors_load_needs() -> None:
    from cpedit.hub.pipeline_files import components_without_safetensors, pipeline_files

    index = {
        "_class_name": "StableDiffusionPipeline",
        "unet": ["diffusers", "UNet2DConditionModel"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "PNDMScheduler"],
        "safety_checker": [None, None],
    }
    needed = {
        "model_index.json": 1,
        "scheduler/scheduler_config.json": 2,
        "tokenizer/merges.txt": 3,
        "tokenizer/vocab.json": 4,
        "tokenizer/special_tokens_map.json": 5,
        "text_encoder/config.json": 6,
        "text_encoder/model-00001-of-00002.safetensors": 7,  # sharded default variant, with its index
        "text_encoder/model-00002-of-00002.safetensors": 8,
        "text_encoder/model.safetensors.index.json": 9,
        "unet/config.json": 10,
        "unet/diffusion_pytorch_model.safetensors": 11,
        "vae/config.json": 12,
        "vae/diffusion_pytorch_model.fp16.safetensors": 13,  # only a variant: that one
    }
    unneeded = {
        "README.md": 20,
        ".gitattributes": 21,
        "v1-5-pruned.ckpt": 22,
        "v1-5-pruned.safetensors": 23,  # a single-file checkpoint
        "unet/diffusion_pytorch_model.fp16.safetensors": 24,  # not the default variant
        "unet/diffusion_pytorch_model.bin": 25,
        "unet/diffusion_pytorch_model.msgpack": 26,
        "unet/diffusion_pytorch_model.onnx": 27,
        "unet/unet.py": 28,
        "unet/.hidden.json": 29,
        "unet/nested/config.json": 30,
        "text_encoder/model-00001-of-00002.fp16.safetensors": 31,
        "text_encoder/model.safetensors.index.fp16.json": 32,  # the index of a variant not fetched
        "text_encoder/pytorch_model.bin": 33,
        "text_encoder/pytorch_model.bin.index.json": 34,
        "text_encoder/flax_model.msgpack": 35,
        "feature_extractor/preprocessor_config.json": 36,  # not a component of this index
    }
    files = dict(sorted({**needed, **unneeded}.items()))
    assert pipeline_files(index, files) == {p: files[p] for p in files if p in needed}
    # a component listed as [null, null] is still a listed folder: fetched like diffusers (and counted by
    # `cpedit models info`) when the repo has it
    listed = {**files, "safety_checker/model.safetensors": 37}
    assert "safety_checker/model.safetensors" in pipeline_files(index, listed)
    assert components_without_safetensors(index, files) == []
    pickles = {p.replace(".safetensors", ".bin"): s for p, s in needed.items()}
    assert components_without_safetensors(index, pickles) == ["text_encoder", "unet", "vae"]


def test_variant_names_of_sharded_and_plain_files() -> None:
    from cpedit.hub.pipeline_files import variant_of
    from cpedit.models.details import pull_safetensors

    assert variant_of("diffusion_pytorch_model.safetensors") == ""
    assert variant_of("diffusion_pytorch_model.fp16.safetensors") == "fp16"
    assert variant_of("diffusion_pytorch_model-00001-of-00002.safetensors") == ""
    assert variant_of("diffusion_pytorch_model-00001-of-00002.fp16.safetensors") == "fp16"
    assert variant_of("model.fp16-00001-of-00002.safetensors") == "fp16"  # the newer shard naming
    files = {
        "unet/model-00001-of-00002.safetensors": 1,
        "unet/model-00002-of-00002.safetensors": 1,
        "unet/model.fp16-00001-of-00002.safetensors": 1,
        "unet/model.fp16-00002-of-00002.safetensors": 1,
    }
    chosen = pull_safetensors({"unet": ["diffusers", "UNet2DConditionModel"]}, files)
    assert sorted(chosen) == ["unet/model-00001-of-00002.safetensors", "unet/model-00002-of-00002.safetensors"]
