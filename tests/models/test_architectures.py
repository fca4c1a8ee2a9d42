"""Every supported architecture, on tiny random-weight pipelines saved and reloaded from folders.

For SD 2.x (v-prediction, larger native size), SDXL, SD3, FLUX.1, PixArt-alpha/sigma and Sana:
calibration makes exactly tau denoiser calls per batch through the pipeline's own call
path (CFG halves where the pipeline uses CFG, one item per prompt for guidance-distilled
FLUX); only the intended weights change in the output (every other file is byte for byte
the base's); the output loads with ``from_pretrained`` and generates. Also: the MMDiT/FLUX
stream option, FLUX single-stream blocks, and :func:`cpedit.models.describe_support`.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from support.helpers import load_fresh, recipe_text, write_recipe
from support.masks import assert_only_masked_weights_changed

import cpedit
import cpedit.models
from cpedit.errors import CpeditError, UnsupportedModelError
from cpedit.models.architectures import find_target_layers
from cpedit.models.compute import ComputeOptions
from cpedit.models.support import describe_support, require_support

ARCHITECTURES = ["sd2", "sdxl", "sd3", "flux", "pixart-alpha", "pixart-sigma", "sana"]
SUBJECTS = ("cat", "dog")
STEPS, TAU, SIZE = 4, 3, 32
DENOISER = {"sd2": "unet", "sdxl": "unet"}
DISTILLED = {"flux"}  # no unconditional half: the denoiser batch is the prompts themselves


def settings(name: str, **extra: Any) -> dict[str, Any]:
    return dict(name=name, subjects=SUBJECTS, steps=STEPS, tau=TAU, skill_ratio=0.05, size=SIZE, **extra)


def component_of(architecture: str) -> str:
    return DENOISER.get(architecture, "transformer")


def denoiser_batch_sizes(pipe: Any) -> tuple[list[int], Any]:
    """Record the batch size of every denoiser call (hook handle returned for removal)."""
    sizes: list[int] = []
    denoiser = getattr(pipe, "unet", None) or pipe.transformer

    def record(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        sample = args[0] if args else kwargs.get("sample", kwargs.get("hidden_states"))
        sizes.append(sample.shape[0])

    return sizes, denoiser.register_forward_pre_hook(record, with_kwargs=True)


def generate(folder: Path) -> Any:
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(str(folder), use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    binning = "use_resolution_binning" in inspect.signature(type(pipe).__call__).parameters  # PixArt, Sana
    extra = {"use_resolution_binning": False} if binning else {}
    return pipe(
        "a cat",
        num_inference_steps=2,
        height=SIZE,
        width=SIZE,
        output_type="np",
        generator=torch.manual_seed(0),
        **extra,
    ).images


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_architecture_end_to_end(architecture: str, tiny_model_path: Any, tmp_path: Path) -> None:
    base = tiny_model_path(architecture)
    recipe = write_recipe(tmp_path, **settings(f"arch-{architecture}"))

    # In memory, with a hook counting denoiser calls and their batch sizes.
    pipe = load_fresh(base)
    sizes, handle = denoiser_batch_sizes(pipe)
    try:
        in_memory = cpedit.prune(pipe, [recipe], batch_size=4)
    finally:
        handle.remove()
    per_prompt = 1 if architecture in DISTILLED else 2  # CFG stacks [uncond; cond]
    assert sizes == [4 * per_prompt] * TAU  # 2 pairs in one batch, exactly tau calls
    concept = in_memory.report.to_dict()["concepts"][0]
    assert concept["denoiser_calls"] == TAU and concept["target"] == "ffn" and concept["stream"] == "image"
    layers = in_memory.report.to_dict()["layers"]
    assert concept["accumulator_bytes"] == 2 * sum(TAU * 2 * 4 * layer_in(layer) for layer in layers) > 0

    # From the folder: the same masks; only those weights change on disk.
    out = tmp_path / "out"
    result = cpedit.prune(base, [recipe], out=out, compute=ComputeOptions(device="cpu", dtype="float32"), batch_size=4)
    assert set(result.masks) == set(in_memory.masks)
    assert all(torch.equal(result.masks[k], in_memory.masks[k]) for k in result.masks)
    component = component_of(architecture)
    assert result.report.to_dict()["denoiser"]["component"] == component
    assert result.report.to_dict()["edited_components"] == [component]
    assert_only_masked_weights_changed(base, out, result.masks, component)
    images = generate(out)
    assert images.shape == (1, SIZE, SIZE, 3) and bool(torch.isfinite(torch.from_numpy(images)).all())


ENCODES_NEGATIVE = {"sd2", "sd3", "pixart-alpha", "pixart-sigma", "sana"}
"""Pipelines that encode the (empty) negative prompt under guidance; SDXL zeroes it without encoding
(``force_zeros_for_empty_prompt``), guidance-distilled FLUX has none."""


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_text_ffn_counts_every_text_encoder_forward_of_the_call(architecture: str, tiny_model_path: Any) -> None:
    """text-ffn hooks every text encoder for the whole pipeline call (until the first denoiser call), as
    the authors' text hook: the prompts' forward and, where the pipeline encodes one, the negative prompt's."""
    pipe = load_fresh(tiny_model_path(architecture))
    encoders = [name for name in ("text_encoder", "text_encoder_2", "text_encoder_3") if getattr(pipe, name, None)]
    batches: dict[str, list[int]] = {name: [] for name in encoders}
    handles = [
        getattr(pipe, name).register_forward_pre_hook(
            lambda module, args, kwargs, name=name: batches[name].append(
                (args[0] if args else kwargs["input_ids"]).shape[0]
            ),
            with_kwargs=True,
        )
        for name in encoders
    ]
    guidance = 3.5 if architecture in DISTILLED else 7.5
    recipe = cpedit.parse_recipe(recipe_text(**settings("text", prune_target="text-ffn", guidance_scale=guidance)))
    try:
        result = cpedit.prune(pipe, [recipe], batch_size=2)
    finally:
        for handle in handles:
            handle.remove()
    forwards_per_batch = 2 if architecture in ENCODES_NEGATIVE else 1
    assert batches == {name: [2] * (2 * forwards_per_batch) for name in encoders}  # 2 batches of one pair
    assert any(bool(mask.any()) for mask in result.masks.values())
    assert result.report.to_dict()["concepts"][0]["denoiser_calls"] == 0


def layer_in(layer: dict) -> int:
    start, stop = layer.get("columns", (0, layer["shape"][1]))
    return stop - start


@pytest.mark.parametrize("architecture", ["sd3", "flux"])
def test_streams_select_image_text_or_both(architecture: str, tiny_model_path: Any) -> None:
    pipe = load_fresh(tiny_model_path(architecture))
    spec = require_support(pipe)
    image = {layer.key for layer in find_target_layers(pipe, spec, target="ffn")}
    text = {layer.key for layer in find_target_layers(pipe, spec, target="ffn", stream="text")}
    both = {layer.key for layer in find_target_layers(pipe, spec, target="ffn", stream="both")}
    assert image and text and not image & text and both == image | text
    assert all(".ff_context." in key for key in text)
    assert not any("ff_context" in key for key in image)
    if architecture == "sd3":  # the last block is context_pre_only: it has no text-stream FFN
        assert len(image) == 2 and len(text) == 1
    else:  # 1 double-stream block (ff), 2 single-stream blocks (the MLP columns of proj_out)
        assert sorted(image) == [
            "single_transformer_blocks.0.proj_out",
            "single_transformer_blocks.1.proj_out",
            "transformer_blocks.0.ff.net.2",
        ]
    ffn_in = {layer.key for layer in find_target_layers(pipe, spec, target="ffn-in", stream="both")}
    assert all(key.endswith((".net.0.proj", ".proj_mlp")) for key in ffn_in) and len(ffn_in) == len(both)


def test_flux_single_stream_blocks_prune_only_mlp_columns(tiny_model_path: Any, tmp_path: Path) -> None:
    base = tiny_model_path("flux")
    pipe = load_fresh(base)
    block = pipe.transformer.single_transformer_blocks[0]
    dim, hidden = block.proj_mlp.in_features, block.proj_mlp.out_features
    result = cpedit.prune(pipe, [write_recipe(tmp_path, **settings("single"))])
    layer = next(
        entry for entry in result.report.to_dict()["layers"] if entry["name"].startswith("single_transformer_blocks.0")
    )
    assert layer["columns"] == [dim, dim + hidden] and layer["shape"] == [dim, dim + hidden]
    mask = result.masks["single_transformer_blocks.0.proj_out"]
    assert bool(mask[:, dim:].any()) and not bool(mask[:, :dim].any())  # attention columns never pruned
    k = math.floor(0.05 * hidden)
    assert int(mask.sum(dim=1).max()) <= TAU * k


def test_text_stream_prunes_only_ff_context(tiny_model_path: Any, tmp_path: Path) -> None:
    base = tiny_model_path("sd3")
    out = tmp_path / "out"
    result = cpedit.prune(
        base,
        [write_recipe(tmp_path, **settings("text-stream", stream="text"))],
        out=out,
        compute=ComputeOptions(device="cpu"),
    )
    assert list(result.masks) == ["transformer_blocks.0.ff_context.net.2"]
    assert result.report.to_dict()["concepts"][0]["stream"] == "text"
    assert_only_masked_weights_changed(base, out, result.masks, "transformer")


def test_stream_on_a_one_stream_model_is_an_error(tiny_sd_path: Path, tmp_path: Path, no_model_loading: None) -> None:
    pipe = load_fresh(tiny_sd_path)
    with pytest.raises(CpeditError, match="no text-stream feed-forwards"):
        cpedit.prune(pipe, [write_recipe(tmp_path, name="t", stream="text")])


def test_sd2_v_prediction_matches_naive_reference(tiny_model_path: Any, tmp_path: Path) -> None:
    from support.masks import assert_masks_match
    from support.naive_reference import naive_masks_for_recipe

    base = tiny_model_path("sd2")
    pipe = load_fresh(base)
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert pipe.unet.config.sample_size == 24  # a larger native size than SD 1.x's tiny 16, as 768 vs 512 px
    text = dict(name="sd2-fidelity", steps=6, tau=4, skill_ratio=0.05)  # native size: 48 px
    recipe = cpedit.parse_recipe(write_recipe(tmp_path, **text).read_text())
    result = cpedit.prune(base, [recipe], compute=ComputeOptions(device="cpu", dtype="float32"), batch_size=6)
    assert_masks_match(result.masks, naive_masks_for_recipe(pipe, recipe))


# --- describe_support ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pipeline", "architecture"),
    [
        ("StableDiffusionPipeline", "sd"),
        ("StableDiffusionXLPipeline", "sdxl"),
        ("StableDiffusion3Pipeline", "sd3"),
        ("FluxPipeline", "flux"),
        ("PixArtAlphaPipeline", "pixart"),
        ("PixArtSigmaPipeline", "pixart"),
        ("SanaPipeline", "sana"),
        ("ChromaPipeline", "chroma"),
        ("Flux2Pipeline", "flux2"),
        ("Flux2KleinPipeline", "flux2-klein"),
        ("QwenImagePipeline", "qwen-image"),
        ("ZImagePipeline", "z-image"),
    ],
)
def test_describe_support_known(pipeline: str, architecture: str) -> None:
    info = describe_support(pipeline)
    assert info.supported and info.architecture == architecture and info.missing is None
    assert pipeline in info.how


def test_describe_support_unknown_and_related() -> None:
    unknown = describe_support("KandinskyV22Pipeline")
    assert not unknown.supported and unknown.architecture == "unknown"
    assert "no cpedit architecture spec for KandinskyV22Pipeline" in unknown.missing
    assert "FluxPipeline" in unknown.missing  # the message lists what is supported
    img2img = describe_support("StableDiffusionXLImg2ImgPipeline")
    assert not img2img.supported and img2img.architecture == "sdxl"
    assert "sdxl family" in img2img.missing and "text-to-image" in img2img.missing


def test_describe_support_counts_ffn_layers(tiny_sd_path: Path) -> None:
    from diffusers import UNet2DModel

    pipe = load_fresh(tiny_sd_path)
    assert describe_support("StableDiffusionPipeline", pipe.unet).how.endswith("4 FFN layers")
    plain = UNet2DModel(block_out_channels=(32,), down_block_types=("DownBlock2D",), up_block_types=("UpBlock2D",))
    info = describe_support("StableDiffusionPipeline", plain)
    assert not info.supported and "feed-forward" in info.missing


def test_unsupported_pipeline_error_names_what_is_missing(tiny_sd_path: Path, tmp_path: Path) -> None:
    from diffusers import StableDiffusionImg2ImgPipeline

    pipe = StableDiffusionImg2ImgPipeline(**load_fresh(tiny_sd_path).components)
    with pytest.raises(UnsupportedModelError, match="StableDiffusionImg2ImgPipeline is not supported: .*text-to-image"):
        cpedit.prune(pipe, [write_recipe(tmp_path, name="u")])


def test_require_support_checks_the_call_path(tiny_sd_path: Path) -> None:
    """A pipeline of a supported class whose ``__call__`` is not prompt-to-image is refused before calibration."""
    from diffusers import StableDiffusionPipeline

    from cpedit.edit.calibration import check_calibration_fits
    from cpedit.recipes.format import parse_recipe

    class NoPromptPipeline(StableDiffusionPipeline):
        def __call__(self, image: Any = None, num_inference_steps: int = 50) -> Any:  # type: ignore[override]
            raise AssertionError("never called")

    pipe = load_fresh(tiny_sd_path)
    assert require_support(pipe).name == "sd"
    odd = NoPromptPipeline(**pipe.components)
    with pytest.raises(UnsupportedModelError, match="NoPromptPipeline is not a text-to-image pipeline cpedit can"):
        require_support(odd)
    with pytest.raises(UnsupportedModelError, match="no prompt, generator, output_type argument"):
        check_calibration_fits(odd, parse_recipe("cpedit: 1\nname: x\nconcept: x\nprompts: {target: a, base: b}\n"))


def test_describe_support_of_a_meta_device_denoiser() -> None:
    """``cpedit models info`` judges a denoiser built on the meta device (no weights)."""
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64),
            layers_per_block=1,
            cross_attention_dim=32,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        )
    info = describe_support("StableDiffusionPipeline", unet)
    assert info.supported and info.how.endswith("FFN layers")


@pytest.mark.parametrize("architecture", ["flux", "pixart-sigma"])
def test_identical_prompts_prune_nothing(architecture: str, tiny_model_path: Any, tmp_path: Path) -> None:
    """Each target shares its batch and its seeded noise with its base, with or without CFG halves."""
    recipe = write_recipe(tmp_path, **settings("same", target="a photo of a {subject}"))
    result = cpedit.prune(tiny_model_path(architecture), [recipe], compute=ComputeOptions(device="cpu"), batch_size=2)
    assert result.masks and result.report.to_dict()["totals"]["pruned_weights"] == 0


def test_t5_tokenizer_round_trips(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from devtools.builders import build_t5_tokenizer

    tokenizer = build_t5_tokenizer()
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    prompt = "a photo of a cat in the style of Van Gogh"
    assert loaded(prompt).input_ids == tokenizer(prompt).input_ids
    ids = loaded(prompt, padding="max_length", max_length=20).input_ids
    assert ids[-1] == loaded.pad_token_id == 0 and loaded.eos_token_id == 1 and len(set(ids)) > 5


def test_bf16_calibration_writes_the_files_own_dtype(tiny_model_path: Any, tmp_path: Path) -> None:
    """``--dtype bf16`` (large models): calibration in bfloat16, float32 statistics, zeros written in the file dtype."""
    base = tiny_model_path("flux")
    out = tmp_path / "out"
    result = cpedit.prune(
        base, [write_recipe(tmp_path, **settings("bf16"))], out=out, compute=ComputeOptions(device="cpu", dtype="bf16")
    )
    assert (
        result.report.to_dict()["compute"]["dtype"] == "bfloat16"
        and result.report.to_dict()["totals"]["pruned_weights"] > 0
    )
    assert_only_masked_weights_changed(base, out, result.masks, "transformer")
    saved = load_file(out / "transformer" / "diffusion_pytorch_model.safetensors")
    assert saved["transformer_blocks.0.ff.net.2.weight"].dtype == torch.float32
