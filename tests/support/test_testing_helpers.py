"""Tests of devtools.builders (offline random SD pipelines) and of tests/naive_reference.py."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from devtools.builders import (
    CLIP_VOCAB_SIZE,
    build_random_sd_components,
    load_clip_tokenizer,
    sd_component_configs,
    write_clip_tokenizer,
)
from support.naive_reference import ffn_output_linears, naive_prune, naive_skilled_masks, naive_unet_call_count

CAT_IDS = [49406, 320, 1125, 539, 320, 2368, 49407]


def _load(path: Path):
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(str(path), use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_clip_tokenizer(tmp_path: Path) -> None:
    tok = load_clip_tokenizer(write_clip_tokenizer(tmp_path / "tokenizer"))
    assert len(tok) == CLIP_VOCAB_SIZE == 49408
    assert tok("a photo of a cat").input_ids == CAT_IDS
    assert tok.model_max_length == 77
    assert tok.pad_token == "<|endoftext|>"
    padded = tok("a photo of a cat", padding="max_length", max_length=tok.model_max_length).input_ids
    assert len(padded) == 77 and padded[: len(CAT_IDS)] == CAT_IDS and set(padded[len(CAT_IDS) :]) == {49407}


def test_tiny_pipeline_roundtrip_and_generate(tiny_sd_path: Path) -> None:
    from diffusers import PNDMScheduler
    from PIL import Image

    pipe = _load(tiny_sd_path)
    assert isinstance(pipe.scheduler, PNDMScheduler)
    assert pipe.safety_checker is None and len(pipe.tokenizer) == 49408
    assert pipe.tokenizer("a photo of a cat").input_ids == CAT_IDS
    expected = pipe.unet.config.sample_size * pipe.vae_scale_factor
    image = pipe("a photo of a cat", num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images[0]
    assert isinstance(image, Image.Image)
    assert image.size == (expected, expected)
    # Saved weights load back identically to a fresh in-memory build with the same seed.
    fresh = build_random_sd_components(size="tiny", scheduler="pndm", seed=0)
    for name, tensor in fresh.unet.state_dict().items():
        assert torch.equal(tensor, pipe.unet.state_dict()[name]), name


def test_unet_call_count(tiny_sd_path: Path, tiny_sd_ddim_path: Path) -> None:
    assert naive_unet_call_count(_load(tiny_sd_path), 3) == 4
    assert naive_unet_call_count(_load(tiny_sd_ddim_path), 3) == 3


def test_sd15_configs_instantiate_on_meta() -> None:
    pipe = build_random_sd_components(size="sd15", device="meta")
    assert sum(p.numel() for p in pipe.unet.parameters()) == 859_520_964
    assert sum(p.numel() for p in pipe.vae.parameters()) == 83_653_863
    assert sum(p.numel() for p in pipe.text_encoder.parameters()) == 123_060_480
    assert len(ffn_output_linears(pipe.unet)) == 16
    assert sd_component_configs("sd15")["text_encoder"]["hidden_act"] == "quick_gelu"


NAIVE_KW = dict(steps=2, guidance_scale=7.5, seed=0)


def test_naive_skilled_masks(tiny_sd_path: Path) -> None:
    pipe = _load(tiny_sd_path)
    layers = ffn_output_linears(pipe.unet)
    assert "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.2" in layers
    skill_ratio = 0.05
    masks = naive_skilled_masks(
        pipe,
        ["a cat in the style of Van Gogh", "a dog in the style of Van Gogh"],
        ["a photo of a cat", "a photo of a dog"],
        skill_ratio=skill_ratio,
        tau=1,
        select_ratio=0.0,
        **NAIVE_KW,
    )
    assert set(masks) == set(layers)
    total = 0
    for name, mask in masks.items():
        weight = layers[name].weight
        assert mask.dtype == torch.bool and mask.device.type == "cpu"
        assert mask.shape == weight.shape
        k = math.floor(skill_ratio * weight.shape[1])
        assert int(mask.sum(dim=1).max()) <= k
        total += int(mask.sum())
    assert total > 0

    naive_prune(pipe, masks)
    for name, mask in masks.items():
        assert torch.all(layers[name].weight[mask] == 0)


def test_naive_identical_prompts_give_empty_masks(tiny_sd_path: Path) -> None:
    pipe = _load(tiny_sd_path)
    prompts = ["a photo of a cat", "a photo of a dog"]
    masks = naive_skilled_masks(pipe, prompts, list(prompts), skill_ratio=0.05, tau=2, select_ratio=0.0, **NAIVE_KW)
    assert masks and all(not bool(mask.any()) for mask in masks.values())
