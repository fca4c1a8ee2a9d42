"""Wan 2.1 / 2.2 text-to-video, on tiny random-weight pipelines saved and loaded through ``from_pretrained``.

Wan runs the unconditional half as a second transformer call of each step; Wan 2.2 A14B hands
the steps after its boundary to a second, low-noise ``transformer_2``. Both transformers are
hooked and pruned, each with the statistics of the steps it runs.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from support.helpers import load_fresh, write_recipe
from support.naive_wan import naive_wan_masks

import cpedit
from cpedit.edit.calibration import calibrate
from cpedit.errors import CpeditError, CpeditWarning
from cpedit.models.architectures import find_target_layers, spec_for_pipeline
from cpedit.models.compute import ComputeOptions
from cpedit.models.support import describe_support
from cpedit.recipes import load_recipe

SIZE, STEPS, FRAMES = 32, 4, 9
"""The tiny scheduler's 4 steps are t = 999, 900 (high noise: transformer), 750, 500 (transformer_2)."""


def wan_recipe(folder: Path, *, tau: int, size: int | None = SIZE, **extra: Any) -> Path:
    return write_recipe(
        folder,
        name=f"wan-{tau}",
        subjects=("cat", "dog"),
        steps=STEPS,
        tau=tau,
        skill_ratio=0.1,
        size=size,
        guidance_scale=5.0,
        **extra,
    )


def assert_only_masked_weights_changed(
    base: Path, out: Path, masks: dict[str, torch.Tensor], components: list[str]
) -> None:
    """Every file but the components' safetensors is byte-identical; there, exactly the masked weights became 0."""
    import filecmp

    from safetensors.torch import load_file

    files = sorted(p.relative_to(base) for p in base.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file() and "conceptprune" not in p.parts)
    changed = {p.parts[0] for p in files if not filecmp.cmp(base / p, out / p, shallow=False)}
    assert changed == set(components)
    for component in components:
        before = {k: v for f in (base / component).glob("*.safetensors") for k, v in load_file(f).items()}
        after = {k: v for f in (out / component).glob("*.safetensors") for k, v in load_file(f).items()}
        prefix = "" if component == "transformer" else f"{component}/"
        keyed = {
            k.removeprefix(prefix) + ".weight": m
            for k, m in masks.items()
            if k.startswith(prefix) and (prefix or "/" not in k)
        }
        assert before.keys() == after.keys() and keyed and set(keyed) <= set(before)
        for key, tensor in before.items():
            mask = keyed.get(key)
            if mask is None:
                assert torch.equal(tensor, after[key]), key
            else:
                assert torch.equal(after[key][~mask], tensor[~mask]) and bool((after[key][mask] == 0).all()), key


@pytest.mark.parametrize("tau", [2, 3])
def test_wan22_statistics_equal_the_naive_procedure(tau: int, tiny_model_path: Any, tmp_path: Path) -> None:
    base = tiny_model_path("wan2.2")
    recipe = wan_recipe(tmp_path, tau=tau)
    pipe = load_fresh(base)
    calls: list[tuple[str, int]] = []
    handles = [
        getattr(pipe, name).register_forward_pre_hook(
            lambda m, a, k, name=name: calls.append((name, k["hidden_states"].shape[0])), with_kwargs=True
        )
        for name in ("transformer", "transformer_2")
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = cpedit.prune(pipe, [recipe], batch_size=4)
    for handle in handles:
        handle.remove()
    # Two calls (conditional, then unconditional) of 4 prompts per step; the low-noise transformer from step 3.
    assert calls == [("transformer", 4)] * 4 + [("transformer_2", 4)] * 2 * (tau - 2)
    assert result.report.to_dict()["concepts"][0]["denoiser_calls"] == 2 * tau
    expected = naive_wan_masks(load_fresh(base), load_recipe(recipe), num_frames=FRAMES, height=SIZE, width=SIZE)
    assert set(result.masks) == set(expected) and len(expected) == 4
    for name, mask in expected.items():
        assert torch.equal(result.masks[name], mask), name  # IoU 1.000
    low_noise = [m for k, m in result.masks.items() if k.startswith("transformer_2/")]
    idle = [w for w in caught if isinstance(w.message, CpeditWarning) and "transformer_2" in str(w.message)]
    if tau == 2:  # tau ends before the boundary: transformer_2 has no statistics, nothing of it is pruned
        assert not any(bool(m.any()) for m in low_noise) and len(idle) == 1
        assert "left unpruned" in str(idle[0].message)
    else:
        assert all(bool(m.any()) for m in low_noise) and not idle


def test_wan_ffn_rows_are_tokens(tiny_model_path: Any, tmp_path: Path) -> None:
    """The FFN input of the 5-D latent [B, C, F, H, W] is [B, tokens, dim]: one row per patch of every latent frame."""
    pipe = load_fresh(tiny_model_path("wan2.1"))
    spec = spec_for_pipeline(pipe)
    assert spec is not None and spec.name == "wan"
    layers = find_target_layers(pipe, spec)
    assert [layer.key for layer in layers] == ["blocks.0.ffn.net.2", "blocks.1.ffn.net.2"]
    shapes: list[tuple[int, ...]] = []
    handle = layers[0].module.register_forward_pre_hook(lambda m, a: shapes.append(tuple(a[0].shape)))
    try:
        stats = calibrate(pipe, load_recipe(wan_recipe(tmp_path, tau=1)), layers, batch_size=2)
    finally:
        handle.remove()
    latent_frames = (FRAMES - 1) // 4 + 1
    # 2 batches of one pair, a conditional and an unconditional call each; 2x2 patches of 8x VAE latents
    assert shapes == [(2, latent_frames * (SIZE // 16) ** 2, 32)] * 4
    assert stats.sums["blocks.0.ffn.net.2"].shape == (1, 2, 32) and stats.idle_denoisers == ()


def test_wan_default_calibration_clip(tiny_model_path: Any, tmp_path: Path) -> None:
    """A recipe without a size calibrates a short clip: 9 frames at 240x416 (not Wan's 81 frames at 480x832)."""
    pipe = load_fresh(tiny_model_path("wan2.1"))
    layers = find_target_layers(pipe, spec_for_pipeline(pipe))
    seen: list[tuple[int, ...]] = []
    handle = pipe.transformer.register_forward_pre_hook(
        lambda m, a, k: seen.append(tuple(k["hidden_states"].shape)), with_kwargs=True
    )
    try:
        calibrate(pipe, load_recipe(wan_recipe(tmp_path, tau=1, size=None)), layers, batch_size=2)
    finally:
        handle.remove()
    assert seen == [(2, 16, 3, 240 // 8, 416 // 8)] * 4


@pytest.mark.parametrize("architecture", ["wan2.1", "wan2.2"])
def test_wan_prune_changes_only_target_weights_and_generates(
    architecture: str, tiny_model_path: Any, tmp_path: Path
) -> None:
    base = tiny_model_path(architecture)
    out = tmp_path / "out"
    result = cpedit.prune(
        base, [wan_recipe(tmp_path, tau=3)], out=out, compute=ComputeOptions(device="cpu"), batch_size=4
    )
    components = ["transformer"] + (["transformer_2"] if architecture == "wan2.2" else [])
    report = result.report.to_dict()
    assert report["denoiser"]["component"] == "transformer" and report["edited_components"] == components
    assert_only_masked_weights_changed(base, out, result.masks, components)
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(str(out), use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    frames = pipe(
        "a cat",
        num_inference_steps=2,
        height=SIZE,
        width=SIZE,
        num_frames=5,
        output_type="np",
        generator=torch.manual_seed(0),
    ).frames
    assert frames.shape == (1, 5, SIZE, SIZE, 3) and bool(torch.isfinite(torch.from_numpy(frames)).all())
    # Wan has no single-file checkpoint layout: export says so, and writes nothing.
    from cpedit.export.single_file import export_single_file

    with pytest.raises(CpeditError, match="WanPipeline has no single-file checkpoint layout") as refused:
        export_single_file(out, tmp_path / "wan.safetensors")
    assert refused.value.reason == "unsupported" and not (tmp_path / "wan.safetensors").exists()


def test_wan_targets_and_refusals(tiny_model_path: Any, tmp_path: Path) -> None:
    pipe = load_fresh(tiny_model_path("wan2.2"))
    spec = spec_for_pipeline(pipe)
    assert spec is not None
    values = [layer.key for layer in find_target_layers(pipe, spec, target="attn-value")]
    assert values == [
        "blocks.0.attn2.to_v",
        "blocks.1.attn2.to_v",
        "transformer_2/blocks.0.attn2.to_v",
        "transformer_2/blocks.1.attn2.to_v",
    ]
    text = find_target_layers(pipe, spec, target="text-ffn")
    assert [layer.key for layer in text] == [
        f"text_encoder/encoder.block.{i}.layer.1.DenseReluDense.wo" for i in (0, 1)
    ]
    with pytest.raises(CpeditError, match="no text-stream feed-forwards"):
        find_target_layers(pipe, spec, stream="text")
    info = describe_support("WanPipeline", pipe.transformer)
    assert info.supported and info.architecture == "wan" and "Wan" in info.how and "transformer_2" in info.how
