"""SD3.5 (medium: MMDiT-X), Chroma and FLUX.2 (dev and klein), each through its own tiny random pipeline.

Every family: the same masks as the naive one-prompt-at-a-time procedure (timesteps counted as
scheduler steps, so Chroma's and klein's separate unconditional call counts with its step);
prune changes only the target weights and the output loads and generates. FLUX.2's fused
single-stream projections are pruned only in their MLP part.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from support.helpers import load_fresh, write_recipe
from support.masks import iou
from support.naive_families import family_layers, naive_family_masks
from test_architectures import assert_only_masked_weights_changed, denoiser_batch_sizes, settings

import cpedit
from cpedit.errors import ModelLoadError
from cpedit.models.architectures import find_target_layers
from cpedit.models.compute import ComputeOptions
from cpedit.models.support import require_support
from cpedit.output.record import read_report

STEPS, TAU, SIZE = 3, 2, 16
SEPARATE_UNCONDITIONAL = {"chroma", "flux2-klein"}
"""Families whose unconditional half is a second transformer call in the same step."""
GUIDANCE = {"flux2": 4.0}  # distilled: an input of the transformer, one call per step


def family_settings(name: str, architecture: str, **extra: Any) -> dict[str, Any]:
    own = {"steps": STEPS, "tau": TAU, "size": SIZE, "guidance_scale": GUIDANCE.get(architecture, 5.0)}
    return {**settings(name), **own, **extra}


def generate(folder: Path) -> Any:
    """One image from a saved pipeline, the prompt passed by name (FLUX.2's first parameter is an image)."""
    pipe = load_fresh(folder)
    return pipe(
        prompt="a cat", num_inference_steps=2, height=SIZE, width=SIZE, output_type="np", generator=torch.manual_seed(0)
    ).images


def assert_same_masks(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    """IoU 1.000 per layer (fp32, CPU), and at least one non-empty layer."""
    assert set(got) == set(expected)
    assert any(bool(mask.any()) for mask in expected.values())
    for name, mask in expected.items():
        assert got[name].shape == mask.shape and iou(got[name].cpu(), mask) == 1.0, name


@pytest.mark.parametrize("architecture", ["sd35", "chroma", "flux2", "flux2-klein"])
def test_family_matches_naive_and_prunes_only_targets(architecture: str, tiny_model_path: Any, tmp_path: Path) -> None:
    base = tiny_model_path(architecture)
    recipe = cpedit.parse_recipe(
        write_recipe(tmp_path, **family_settings(f"fam-{architecture}", architecture, stream="both")).read_text()
    )
    pipe = load_fresh(base)
    sizes, handle = denoiser_batch_sizes(pipe)
    try:
        in_memory = cpedit.prune(pipe, [recipe], batch_size=4)
    finally:
        handle.remove()
    per_step = 2 if architecture in SEPARATE_UNCONDITIONAL else 1
    batch = 8 if architecture == "sd35" else 4  # SD3 stacks [uncond; cond] in one call
    assert sizes == [batch] * (TAU * per_step)
    assert in_memory.report.to_dict()["concepts"][0]["denoiser_calls"] == TAU * per_step
    assert_same_masks(in_memory.masks, naive_family_masks(load_fresh(base), recipe))

    out = tmp_path / "out"
    result = cpedit.prune(base, [recipe], out=out, compute=ComputeOptions(device="cpu", dtype="float32"), batch_size=2)
    assert_same_masks(result.masks, in_memory.masks)
    assert_only_masked_weights_changed(base, out, result.masks, "transformer")
    images = generate(out)
    assert images.shape == (1, SIZE, SIZE, 3) and bool(torch.isfinite(torch.from_numpy(images)).all())


def test_flux2_fused_single_blocks_prune_only_their_mlp_part(tiny_model_path: Any, tmp_path: Path) -> None:
    base = tiny_model_path("flux2")
    pipe = load_fresh(base)
    spec = require_support(pipe)
    attn = pipe.transformer.single_transformer_blocks[0].attn
    inner, hidden = attn.inner_dim, attn.mlp_hidden_dim

    ffn = {layer.key: layer for layer in find_target_layers(pipe, spec, target="ffn", stream="both")}
    assert sorted(ffn) == [
        "single_transformer_blocks.0.attn.to_out",
        "single_transformer_blocks.1.attn.to_out",
        "transformer_blocks.0.ff.linear_out",
        "transformer_blocks.0.ff_context.linear_out",
    ]
    assert ffn["single_transformer_blocks.0.attn.to_out"].columns == (inner, inner + hidden)
    assert set(ffn) == set(family_layers(pipe, "ffn", "both"))

    recipe = cpedit.parse_recipe(
        write_recipe(tmp_path, **family_settings("fused-in", "flux2", prune_target="ffn-in")).read_text()
    )
    result = cpedit.prune(pipe, [recipe], batch_size=4)
    fused = result.masks["single_transformer_blocks.0.attn.to_qkv_mlp_proj"]
    assert fused.shape == (3 * inner + 2 * hidden, inner)
    assert bool(fused[3 * inner :].any()) and not bool(fused[: 3 * inner].any())  # Q, K, V never pruned
    record = next(
        layer for layer in result.report.to_dict()["layers"] if layer["name"].endswith("0.attn.to_qkv_mlp_proj")
    )
    assert record["rows"] == [3 * inner, 3 * inner + 2 * hidden] and "columns" not in record
    assert_same_masks(result.masks, naive_family_masks(load_fresh(base), recipe))

    out = tmp_path / "out"
    cpedit.prune(base, [recipe], out=out, compute=ComputeOptions(device="cpu", dtype="float32"), batch_size=2)
    assert any(layer.rows == (3 * inner, 3 * inner + 2 * hidden) for layer in read_report(out).layers)


def test_sd35_attention_targets_skip_the_image_only_attn2(tiny_model_path: Any) -> None:
    pipe = load_fresh(tiny_model_path("sd35"))
    spec = require_support(pipe)
    assert pipe.transformer.transformer_blocks[0].attn2 is not None  # MMDiT-X: a second image-only attention
    for target, attr in (("attn-key", "add_k_proj"), ("attn-value", "add_v_proj")):
        keys = [layer.key for layer in find_target_layers(pipe, spec, target=target)]
        assert keys == [f"transformer_blocks.{i}.attn.{attr}" for i in range(2)]
    ffn = [layer.key for layer in find_target_layers(pipe, spec, target="ffn", stream="both")]
    assert ffn == list(family_layers(pipe, "ffn", "both"))


def test_flux2_text_ffn_hooks_only_the_language_model(tiny_model_path: Any) -> None:
    pipe = load_fresh(tiny_model_path("flux2"))
    keys = [layer.key for layer in find_target_layers(pipe, require_support(pipe), target="text-ffn")]
    assert len(keys) == pipe.text_encoder.config.text_config.num_hidden_layers
    assert all(".language_model." in key and key.endswith(".mlp.down_proj") for key in keys)


def test_distilled_klein_makes_one_call_per_step(tmp_path: Path) -> None:
    from devtools.builders import build_tiny_flux2_klein

    pipe = build_tiny_flux2_klein(distilled=True)
    pipe.set_progress_bar_config(disable=True)
    sizes, handle = denoiser_batch_sizes(pipe)
    try:
        result = cpedit.prune(pipe, [write_recipe(tmp_path, **family_settings("klein-d", "flux2-klein"))], batch_size=4)
    finally:
        handle.remove()
    assert sizes == [4] * TAU  # no unconditional call: guidance is distilled away
    assert any(bool(mask.any()) for mask in result.masks.values())


def test_flux2_tokenizer_needing_torchvision_is_named(
    tiny_model_path: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FLUX.2's real tokenizer is a PixtralProcessor; without torchvision transformers only has a placeholder."""
    import transformers

    class PixtralProcessor:  # what transformers exposes when a class's package is missing
        _backends = ("torchvision",)

    monkeypatch.setattr(transformers, "PixtralProcessor", PixtralProcessor)
    folder = tmp_path / "flux2-pixtral"
    shutil.copytree(tiny_model_path("flux2"), folder)
    index = json.loads((folder / "model_index.json").read_text())
    index["tokenizer"] = ["transformers", "PixtralProcessor"]
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ModelLoadError, match=r"tokenizer component \(PixtralProcessor\) needs torchvision") as caught:
        cpedit.prune(folder, [write_recipe(tmp_path, **family_settings("pixtral", "flux2"))], out=tmp_path / "out")
    assert caught.value.reason == "missing_dependency" and not (tmp_path / "out").exists()


@pytest.mark.parametrize("architecture", ["sd35", "chroma", "flux2"])
def test_single_file_export_writes_sd35_and_refuses_the_others(
    architecture: str, tiny_model_path: Any, tmp_path: Path
) -> None:
    from cpedit.errors import CpeditError
    from cpedit.export import export_single_file

    out = tmp_path / "out"
    recipe = write_recipe(tmp_path, **family_settings(f"export-{architecture}", architecture, steps=2, tau=1))
    cpedit.prune(tiny_model_path(architecture), [recipe], out=out, compute=ComputeOptions(device="cpu"), batch_size=2)
    if architecture == "sd35":  # SD3's layout, with MMDiT-X's attn2 and the qk-norm weights
        export_single_file(out, tmp_path / "model.safetensors")
        assert (tmp_path / "model.safetensors").stat().st_size > 0
        return
    with pytest.raises(CpeditError, match="has no single-file checkpoint layout") as caught:
        export_single_file(out, tmp_path / "model.safetensors")
    assert caught.value.reason == "unsupported" and not (tmp_path / "model.safetensors").exists()
