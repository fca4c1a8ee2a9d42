"""Qwen-Image and Z-Image on tiny random-weight pipelines built offline and loaded with ``from_pretrained``.

Calibration through each pipeline's own call path equals the naive one-prompt-at-a-time procedure
(:mod:`support.naive_qwen`) in fp32: statistics and masks, for the image and text streams and the
text encoder, with prompts of different lengths in one batch (the padding a batch adds is left
out). Also: the layers each target means, Qwen-Image's guidance (a negative-prompt call per step
only when guidance is asked), Z-Image's batch layout (conditional half first), prune changes only
the target weights, the output loads and generates, inapplicable targets are refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from support.helpers import load_fresh, write_recipe
from support.naive_qwen import naive_family_masks

import cpedit
from cpedit.edit.calibration import calibrate
from cpedit.errors import UnsupportedModelError
from cpedit.models.architectures import find_target_layers, spec_for_pipeline
from cpedit.models.compute import ComputeOptions
from cpedit.recipes.format import parse_recipe

FAMILIES = ("qwen-image", "z-image")
# prompts of different token lengths: a batch of them is padded to its longest
SUBJECTS = ("cat", "big old dog on a red sofa")
SIZE, STEPS, TAU = 32, 3, 2
FP32 = ComputeOptions(device="cpu", dtype="float32")


def recipe_of(tmp_path: Path, name: str, **extra: Any) -> Any:
    settings = dict(name=name, subjects=SUBJECTS, steps=STEPS, tau=TAU, skill_ratio=0.1, size=SIZE)
    return parse_recipe(write_recipe(tmp_path, **{**settings, **extra}).read_text())


def denoiser_calls(pipe: Any) -> tuple[list[tuple[int, Any]], Any]:
    """Record (batch size, text rows per item) of every transformer call."""
    calls: list[tuple[int, Any]] = []

    def record(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        sample = args[0] if args else kwargs["hidden_states"]
        captions = args[2] if len(args) > 2 else kwargs.get("encoder_hidden_states")
        rows = [len(c) for c in captions] if isinstance(captions, list) else captions.shape[1]
        calls.append((len(sample), rows))

    return calls, pipe.transformer.register_forward_pre_hook(record, with_kwargs=True)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    ("target", "stream", "guidance"),
    [("ffn", "both", 2.0), ("ffn", "image", 1.0), ("text-ffn", "image", 2.0)],
)
def test_calibration_equals_the_naive_procedure(
    family: str, target: str, stream: str, guidance: float, tiny_model_path: Any, tmp_path: Path
) -> None:
    """Batched calibration (all prompts in one batch, padded) = one prompt at a time: statistics and masks."""
    pipe = load_fresh(tiny_model_path(family))
    recipe = recipe_of(tmp_path, f"{family}-{target}", prune_target=target, stream=stream, guidance_scale=guidance)
    layers = find_target_layers(pipe, spec_for_pipeline(pipe), target=target, stream=stream)
    calls, handle = denoiser_calls(pipe)
    try:
        stats = calibrate(pipe, recipe, layers, batch_size=2 * len(SUBJECTS))
    finally:
        handle.remove()
    expected_masks, expected_stats = naive_family_masks(pipe, family, recipe)
    assert set(stats.sums) == set(expected_stats)
    for name, sums in stats.sums.items():
        torch.testing.assert_close(sums, expected_stats[name], rtol=1e-5, atol=1e-6, msg=name)
    result = cpedit.prune(tiny_model_path(family), [recipe], compute=FP32, batch_size=2 * len(SUBJECTS))
    # Equal statistics, and equal masks (IoU 1.000) except where S_t > S_b compares float noise:
    # Z-Image's noise refiner sees no text, so at step 0 a target and its base differ only by the
    # rounding of their RoPE offsets (image positions start after the caption), ~1e-6 in the naive
    # run too, and each procedure breaks those ties by its own rounding.
    assert set(result.masks) == set(expected_masks)
    tied = {name for name in expected_masks if name.startswith("noise_refiner.")}
    assert any(bool(expected_masks[name].any()) for name in set(expected_masks) - tied)
    for name, mask in expected_masks.items():
        if name not in tied:
            assert torch.equal(result.masks[name].cpu(), mask), name
    if target == "text-ffn":
        return
    prompts = 2 * len(SUBJECTS)
    if family == "qwen-image":  # the negative prompt is a separate call of the same step, only under guidance
        assert [size for size, _ in calls] == [prompts] * (TAU * (2 if guidance > 1 else 1))
        assert calls[0][1] > calls[1][1] if guidance > 1 else True  # prompts padded; " " alone is short
    else:  # one call per step: [cond; uncond] under guidance (Z-Image guides whenever guidance_scale > 0)
        assert [size for size, _ in calls] == [2 * prompts] * TAU
        rows = calls[0][1]
        assert rows[:prompts] != rows[prompts:]  # the conditional half (the prompts' own lengths) is first
        assert len(set(rows[prompts:])) == 1  # the unconditional half: the empty negative prompt


def test_padding_rows_are_what_the_mask_leaves_out(tiny_model_path: Any, tmp_path: Path) -> None:
    """Without the padding masks the batched text-stream statistics differ: the test above proves something."""
    pipe = load_fresh(tiny_model_path("qwen-image"))
    recipe = recipe_of(tmp_path, "unmasked", stream="text", guidance_scale=1.0)
    layers = find_target_layers(pipe, spec_for_pipeline(pipe), target="ffn", stream="text")
    assert all(layer.padding is not None for layer in layers)
    masked = calibrate(pipe, recipe, layers, batch_size=4)
    unmasked = calibrate(pipe, recipe, [type(layer)(layer.name, layer.module, layer.component) for layer in layers])
    name = layers[0].key
    assert not torch.allclose(masked.sums[name], unmasked.sums[name])


@pytest.mark.parametrize("family", FAMILIES)
def test_prune_changes_only_target_weights_and_output_generates(
    family: str, tiny_model_path: Any, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    base = tiny_model_path(family)
    out = tmp_path / "out"
    result = cpedit.prune(base, [recipe_of(tmp_path, family, guidance_scale=2.0)], out=out, compute=FP32)
    keys = {name + ".weight" for name in result.masks}
    before = {k: v for f in (base / "transformer").glob("*.safetensors") for k, v in load_file(f).items()}
    after = {k: v for f in (out / "transformer").glob("*.safetensors") for k, v in load_file(f).items()}
    assert before.keys() == after.keys() and keys <= before.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and changed <= keys
    for name, mask in result.masks.items():
        weight = after[name + ".weight"]
        assert torch.equal(weight == 0, (before[name + ".weight"] == 0) | mask.cpu()), name
    for component in ("text_encoder", "vae"):
        for file in (base / component).glob("*.safetensors"):
            assert file.read_bytes() == (out / component / file.name).read_bytes()
    from cpedit.errors import CpeditError
    from cpedit.export.single_file import export_single_file

    with pytest.raises(CpeditError, match="has no single-file checkpoint layout") as refused:
        export_single_file(out, out=tmp_path / "model.safetensors")
    assert refused.value.reason == "unsupported" and not (tmp_path / "model.safetensors").exists()
    pipe = load_fresh(out)
    image = pipe("a cat", num_inference_steps=2, height=SIZE, width=SIZE, output_type="np").images[0]
    assert image.shape == (SIZE, SIZE, 3) and bool((image == image).all())


def test_z_image_refuses_attention_targets(tiny_model_path: Any, tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, name="attn", prune_target="attn-value", size=SIZE, steps=STEPS, tau=TAU)
    with pytest.raises(UnsupportedModelError, match="Z-Image.*no text-only value projection"):
        cpedit.prune(tiny_model_path("z-image"), [recipe], compute=FP32)
    # refused from model_index.json, before the memory estimate and the weights load
    reached: list[Any] = []
    with pytest.raises(UnsupportedModelError, match="attn: prune.target = attn-value does not apply to Z-Image"):
        cpedit.EditSession.open(tiny_model_path("z-image"), [recipe], compute=FP32, before_load=reached.append)
    assert reached == []


def test_layers_each_target_means(tiny_model_path: Any) -> None:
    qwen = load_fresh(tiny_model_path("qwen-image"))
    spec = spec_for_pipeline(qwen)
    assert spec is not None and spec.name == "qwen-image"
    names = [layer.name for layer in find_target_layers(qwen, spec, stream="both")]
    assert names == [f"transformer_blocks.{i}.{s}_mlp.net.2" for i in range(2) for s in ("img", "txt")]
    text = find_target_layers(qwen, spec, target="text-ffn")
    assert text and all(".language_model." in layer.name and "visual" not in layer.name for layer in text)
    assert any("visual" in name and name.endswith("down_proj") for name, _ in qwen.text_encoder.named_modules())
    value = find_target_layers(qwen, spec, target="attn-value")
    assert [layer.name for layer in value] == [f"transformer_blocks.{i}.attn.add_v_proj" for i in range(2)]

    z = load_fresh(tiny_model_path("z-image"))
    spec = spec_for_pipeline(z)
    assert spec is not None and spec.name == "z-image"
    assert [layer.name for layer in find_target_layers(z, spec)] == [
        "noise_refiner.0.feed_forward.w2",
        "layers.0.feed_forward.w2",
        "layers.1.feed_forward.w2",
    ]
    assert [layer.name for layer in find_target_layers(z, spec, stream="text")] == ["context_refiner.0.feed_forward.w2"]
    ffn_in = [layer.name for layer in find_target_layers(z, spec, target="ffn-in", stream="text")]
    assert ffn_in == ["context_refiner.0.feed_forward.w1", "context_refiner.0.feed_forward.w3"]
    # Z-Image pads every prompt to a fixed length: its text-encoder padding is counted, as alone
    assert all(layer.padding is None for layer in find_target_layers(z, spec, target="text-ffn"))


def test_qwen_image_previews_with_the_guidance_calibration_used(tiny_model_path: Any) -> None:
    """Sampling passes the recipe's guidance as Qwen-Image's true CFG: a negative-prompt call per step above 1."""
    from cpedit.models.sampling import generate
    from cpedit.models.settings import SampleSettings

    pipe = load_fresh(tiny_model_path("qwen-image"))
    for guidance, per_step in ((3.0, 2), (1.0, 1)):
        calls, handle = denoiser_calls(pipe)
        try:
            generate(pipe, ["a cat"], SampleSettings(steps=2, guidance_scale=guidance, height=SIZE, width=SIZE))
        finally:
            handle.remove()
        assert len(calls) == 2 * per_step, (guidance, calls)
