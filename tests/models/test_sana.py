"""Sana: convolutional GLU feed-forwards (1x1 ``conv_point`` / ``conv_inverted``), Gemma 2, on a tiny pipeline.

The end-to-end checks every family gets (exact tau denoiser calls, only the masked weights change
in the files, the output loads and generates, text-ffn sees every text-encoder forward) run in
``test_architectures.py``. Here: the same pruned weights as the naive one-prompt-at-a-time
reference (fp32, CPU, IoU 1.000) for the convolutional targets and the Gemma MLP, what every target
means in Sana, the refusal of other convolutions and of a text stream, concealing draws written into
a 1x1 convolution's file, and the offline Gemma tokenizer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from support.helpers import load_fresh, write_recipe
from support.masks import assert_masks_match, iou

import cpedit
from cpedit.errors import CpeditError, UnsupportedModelError
from cpedit.models.architectures import find_target_layers
from cpedit.models.compute import ComputeOptions
from cpedit.models.ffn import FFNLayer
from cpedit.models.support import describe_support, require_support

FP32_CPU = ComputeOptions(device="cpu", dtype="float32")
SANA_CALL = {"use_resolution_binning": False, "clean_caption": False}
"""What the naive reference passes to each generation: binning only resizes the decoded image (and
knows only Sana's four native sizes), caption cleaning depends on optional packages."""


@pytest.mark.parametrize("target", ["ffn", "ffn-in", "text-ffn"])
def test_sana_matches_naive_reference(target: str, tiny_model_path: Any, tmp_path: Path) -> None:
    """Batched calibration through SanaPipeline's call (its complex human instruction included) finds the
    weights the published procedure finds, one prompt at a time, decoding every image."""
    from support.naive_reference import naive_masks_for_recipe, sana_layers

    base = tiny_model_path("sana")
    # skill_ratio 0.2: k >= 3 of conv_inverted's 16 input channels (0.05 would pick none)
    settings = dict(name=f"sana-{target}", subjects=("cat", "dog"), steps=4, tau=3, skill_ratio=0.2, size=32)
    recipe = cpedit.parse_recipe(write_recipe(tmp_path, **settings, prune_target=target).read_text())
    result = cpedit.prune(base, [recipe], compute=FP32_CPU, batch_size=4)
    expected = naive_masks_for_recipe(load_fresh(base), recipe, layer_lookup=sana_layers, call_kwargs=SANA_CALL)
    assert_masks_match(result.masks, expected)
    assert all(iou(result.masks[name], mask) == 1.0 for name, mask in expected.items())


def test_what_each_target_means_in_sana(tiny_model_path: Any) -> None:
    pipe = load_fresh(tiny_model_path("sana"))
    spec = require_support(pipe)
    assert spec.name == "sana"
    block = pipe.transformer.transformer_blocks[0]
    inner = block.ff.conv_point.in_channels
    expected = {
        "ffn": ("ff.conv_point", (block.ff.conv_point.out_channels, inner)),
        "ffn-in": ("ff.conv_inverted", (2 * inner, block.ff.conv_inverted.in_channels)),
        "attn-key": ("attn2.to_k", tuple(block.attn2.to_k.weight.shape)),
        "attn-value": ("attn2.to_v", tuple(block.attn2.to_v.weight.shape)),
    }
    for target, (suffix, shape) in expected.items():
        layers = find_target_layers(pipe, spec, target=target)
        assert [layer.key for layer in layers] == [f"transformer_blocks.{i}.{suffix}" for i in range(2)], target
        assert all(layer.shape == shape and layer.weight.shape == shape for layer in layers), target
    text = find_target_layers(pipe, spec, target="text-ffn")
    assert [layer.key for layer in text] == [f"text_encoder/layers.{i}.mlp.down_proj" for i in range(2)]
    with pytest.raises(CpeditError, match="Sana .* has no text-stream feed-forwards"):
        find_target_layers(pipe, spec, target="ffn", stream="text")
    info = describe_support("SanaPipeline", pipe.transformer)
    assert info.supported and info.architecture == "sana" and info.how.endswith("2 FFN layers")


def test_a_pointwise_convolution_is_a_matrix_view_and_other_convolutions_are_refused(tiny_model_path: Any) -> None:
    pipe = load_fresh(tiny_model_path("sana"))
    ff = pipe.transformer.transformer_blocks[0].ff
    layer = FFNLayer(name="transformer_blocks.0.ff.conv_point", module=ff.conv_point, component="transformer")
    assert layer.channels_first and layer.weight.data_ptr() == ff.conv_point.weight.data_ptr()
    with torch.no_grad():
        layer.weight[3, 5] = 0.0  # the view writes through to the [out, in, 1, 1] parameter
    assert float(ff.conv_point.weight.detach()[3, 5, 0, 0]) == 0.0
    with pytest.raises(UnsupportedModelError, match=r"ff.conv_depth is a 3x3 convolution .* 1x1 convolutions"):
        FFNLayer(name="transformer_blocks.0.ff.conv_depth", module=ff.conv_depth, component="transformer")
    with pytest.raises(UnsupportedModelError, match="is a LayerNorm; cpedit prunes linear layers"):
        FFNLayer(name="norm", module=torch.nn.LayerNorm(4), component="transformer")


def test_concealing_draws_land_in_the_convolution_file(tiny_model_path: Any, tmp_path: Path) -> None:
    """Gaussian fills of a 1x1 convolution are written at the mask's places of the stored [out, in, 1, 1] tensor."""
    base = tiny_model_path("sana")
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path, name="sana-conceal", subjects=("cat", "dog"), steps=4, tau=3, size=32)
    result = cpedit.prune(base, [recipe], out=out, compute=FP32_CPU, batch_size=4, conceal="gaussian")
    before = load_file(base / "transformer" / "diffusion_pytorch_model.safetensors")
    after = load_file(out / "transformer" / "diffusion_pytorch_model.safetensors")
    for name, mask in result.masks.items():
        key = f"{name}.weight"
        old, new = before[key][:, :, 0, 0], after[key][:, :, 0, 0]
        assert bool(mask.any()) and torch.equal(new[~mask], old[~mask])
        assert bool((new[mask] != old[mask]).all()) and bool((new[mask] != 0).all())


def test_gemma_tokenizer_round_trips(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from devtools.builders import build_gemma_tokenizer

    tokenizer = build_gemma_tokenizer()
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    prompt = "a photo of a cat in the style of Van Gogh"
    assert loaded(prompt).input_ids == tokenizer(prompt).input_ids
    tokens = loaded.convert_ids_to_tokens(loaded(prompt).input_ids)
    assert tokens[0] == "<bos>" and "\u2581cat" in tokens and "\u2581photo" in tokens


def test_the_memory_estimate_reads_sana_files(tiny_model_path: Any, tmp_path: Path) -> None:
    """The deep-compression autoencoder's levels give the latent size; 1x1 convolutions count as hooked columns."""
    from cpedit.edit.memory import ACTIVATION_BYTES_PER_LATENT_PIXEL_CHANNEL, estimate_memory
    from cpedit.models.files import read_safetensors_header

    base = tiny_model_path("sana")
    recipe = cpedit.resolve_recipe(write_recipe(tmp_path, name="sana-memory", steps=4, tau=3, size=32))
    estimate = estimate_memory(base, [recipe], compute=FP32_CPU)
    latent_pixels = (32 // 2) ** 2  # the tiny AutoencoderDC has two levels: 2x
    assert estimate.activations == ACTIVATION_BYTES_PER_LATENT_PIXEL_CHANNEL * latent_pixels * 320 * 4 * 2
    shapes = read_safetensors_header(base / "transformer" / "diffusion_pytorch_model.safetensors").tensors
    pointwise = sum(e.shape[1] for e in shapes.values() if len(e.shape) == 4 and e.shape[2:] == (1, 1))
    linear = sum(e.shape[1] for e in shapes.values() if len(e.shape) == 2 and e.name.endswith(".weight"))
    assert pointwise > 0 and estimate.statistics == 2 * 3 * 2 * 4 * (linear + pointwise)


def test_models_info_says_sana_is_editable_without_downloading_weights(tiny_model_path: Any, hub: Any) -> None:
    """``cpedit models info`` builds the transformer on the meta device: 2 ``conv_point`` layers, their weights."""
    import json

    from click.testing import CliRunner
    from support.hub_emulator import seed_pipeline

    from cpedit.cli.main import cli

    base = tiny_model_path("sana")
    seed_pipeline(hub, "acme/info-sana", base)
    result = CliRunner().invoke(cli, ["models", "info", "acme/info-sana", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["editable"] is True and data["pipeline_class"] == "SanaPipeline" and "Sana" in data["reason"]
    ff = load_fresh(base).transformer.transformer_blocks[0].ff
    assert data["ffn_layers"] == 2 and data["ffn_weights"] == 2 * ff.conv_point.weight.numel()
    assert not any(path.endswith(".safetensors") for _, path, _ in hub.requests if "/resolve/" in path)
