"""Hook targets (the paper's ablations) on SD 1.x, and runs that mix them.

Every target gives the same pruned weights as the naive reference extended to it
(``tests/naive_reference.py``: ``ff.net.0.proj``, ``attn2.to_k`` / ``to_v``, the text
encoder's ``mlp.fc2`` hooked through the whole pipeline call, as the authors' text hook
is: the prompt's encoding and, under guidance, the empty negative prompt's). ``text-ffn`` edits only the text
encoder's files and makes no denoiser call. Recipes with different targets in one run
are handled: each is calibrated on its own layers and the union is taken per layer.
"""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file
from support.helpers import CPU, load_fresh, recipe_text, write_recipe
from support.masks import MIN_IOU, assert_masks_match, iou, output_positions
from support.naive_reference import naive_masks_for_recipe

import cpedit
from cpedit.cli.main import cli
from cpedit.errors import CpeditError, RecipeError
from cpedit.models.compute import ComputeOptions
from cpedit.models.loading import resolve_dtype

TARGET_SUFFIX = {
    "ffn": ".ff.net.2",
    "ffn-in": ".ff.net.0.proj",
    "attn-key": ".attn2.to_k",
    "attn-value": ".attn2.to_v",
    "text-ffn": ".mlp.fc2",
}


def target_settings(target: str, **extra: object) -> dict:
    return dict(name=f"t-{target}", steps=6, tau=4, skill_ratio=0.05, prune_target=target, **extra)


@pytest.mark.parametrize("target", ["ffn-in", "attn-key", "attn-value", "text-ffn"])
def test_target_matches_naive_reference(target: str, tiny_sd_path: Path, tmp_path: Path) -> None:
    recipe = cpedit.parse_recipe(recipe_text(**target_settings(target)))
    assert recipe.prune.target == target
    result = cpedit.prune(tiny_sd_path, [recipe], compute=ComputeOptions(device="cpu", dtype="float32"), batch_size=4)
    expected = naive_masks_for_recipe(load_fresh(tiny_sd_path), recipe)
    assert expected and all(name.endswith(TARGET_SUFFIX[target]) for name in expected)
    assert_masks_match(result.masks, expected)
    assert all(layer["target"] == target for layer in result.report.to_dict()["layers"])


@pytest.mark.parametrize("guidance_scale", [7.5, 1.0])
def test_text_ffn_counts_the_prompt_and_negative_prompt_encodings(
    guidance_scale: float, tiny_sd_path: Path, tmp_path: Path
) -> None:
    """The authors' text hook stays on for the whole pipeline call: under classifier-free guidance
    every prompt is encoded and then the empty negative prompt, all 77 token rows of each, and both
    count for the prompt. In float32 cpedit's masks equal the reference's exactly (IoU 1.000)."""
    recipe = cpedit.parse_recipe(recipe_text(**target_settings("text-ffn", guidance_scale=guidance_scale)))
    pipe = load_fresh(tiny_sd_path)
    forwards: list[torch.Tensor] = []
    handle = pipe.text_encoder.register_forward_pre_hook(lambda module, args: forwards.append(args[0].clone()))
    try:
        result = cpedit.prune(pipe, [recipe], batch_size=4)
    finally:
        handle.remove()
    empty = pipe.tokenizer([""] * 4, padding="max_length", max_length=77, return_tensors="pt").input_ids
    encoded = pipe.tokenizer(recipe.pairs()[0][:2], padding="max_length", max_length=77, return_tensors="pt")
    assert forwards[0].shape == (4, 77) and torch.equal(forwards[0][:2], encoded.input_ids)
    if guidance_scale > 1:
        assert len(forwards) == 2 * 2 and torch.equal(forwards[1], empty)  # per batch: prompts, then ""
    else:
        assert len(forwards) == 2  # no guidance: the prompts only
    expected = naive_masks_for_recipe(load_fresh(tiny_sd_path), recipe)
    assert set(result.masks) == set(expected) and len(expected) == 2
    for name, mask in expected.items():
        assert bool(mask.any()), name
        assert torch.equal(result.masks[name], mask), f"{name}: IoU {iou(result.masks[name], mask):.4f}"
    if guidance_scale > 1:  # the comparison can fail: the prompts' encodings alone select other weights
        prompts_alone = cpedit.parse_recipe(recipe_text(**target_settings("text-ffn", guidance_scale=1.0)))
        alone = naive_masks_for_recipe(load_fresh(tiny_sd_path), prompts_alone)
        assert min(iou(result.masks[name], alone[name]) for name in alone) < MIN_IOU  # 0.68 on this model


def test_ffn_in_marks_value_and_gate_halves(tiny_sd_path: Path, tmp_path: Path) -> None:
    """GEGLU's input projection has 2 x inner outputs (value, gate); all of them are candidate rows."""
    result = cpedit.prune(tiny_sd_path, [write_recipe(tmp_path, **target_settings("ffn-in"))], compute=CPU)
    for name, mask in result.masks.items():
        inner = mask.shape[0] // 2
        assert mask.shape[0] == 8 * mask.shape[1]  # GEGLU: 2 * (4 * dim) rows of dim inputs
        assert bool(mask[:inner].any()) and bool(mask[inner:].any()), name


def test_text_ffn_edits_only_the_text_encoder(tiny_sd_path: Path, tmp_path: Path) -> None:
    pipe = load_fresh(tiny_sd_path)
    calls: list[int] = []
    handle = pipe.unet.register_forward_hook(lambda module, args, output: calls.append(1))
    try:
        in_memory = cpedit.prune(pipe, [write_recipe(tmp_path, **target_settings("text-ffn"))])
    finally:
        handle.remove()
    assert calls == []  # stopped before the first denoiser call
    out = tmp_path / "out"
    result = cpedit.prune(tiny_sd_path, [write_recipe(tmp_path, **target_settings("text-ffn"))], out=out, compute=CPU)
    assert set(result.masks) == set(in_memory.masks)
    assert all(torch.equal(result.masks[k], in_memory.masks[k]) for k in result.masks)
    report = result.report.to_dict()
    concept = report["concepts"][0]
    assert concept["denoiser_calls"] == 0 and concept["target"] == "text-ffn"
    assert "ignored" in concept["timesteps_note"]
    assert report["edited_components"] == ["text_encoder"]
    assert all(key.startswith("text_encoder/") for key in result.masks)
    text_weights = sum(p.numel() for p in result.pipeline.text_encoder.parameters())
    assert report["totals"]["edited_weights"] == text_weights
    # on disk: the UNet and everything else byte for byte; the text encoder only at the mask
    for path in tiny_sd_path.rglob("*"):
        if path.is_file():
            relative = path.relative_to(tiny_sd_path)
            same = filecmp.cmp(path, out / relative, shallow=False)
            assert same == (relative.parts[0] != "text_encoder" or relative.suffix != ".safetensors"), relative
    before = load_file(tiny_sd_path / "text_encoder" / "model.safetensors")
    after = load_file(out / "text_encoder" / "model.safetensors")
    masks = {key.removeprefix("text_encoder/") + ".weight": mask for key, mask in result.masks.items()}
    for key, tensor in before.items():
        if key in masks:
            assert bool(masks[key].any()) and torch.equal(after[key] == 0, masks[key]), key
        else:
            assert torch.equal(after[key], tensor), key
    positions = output_positions(out)
    assert set(positions) == set(result.masks)


def test_multi_concept_across_targets_is_the_union_per_layer(tiny_sd_path: Path, tmp_path: Path) -> None:
    recipes = [write_recipe(tmp_path, **target_settings(t)) for t in ("ffn", "attn-key", "text-ffn")]
    alone = {
        t: cpedit.prune(tiny_sd_path, [write_recipe(tmp_path / t, **target_settings(t))], compute=CPU).masks
        for t in ("ffn", "attn-key", "text-ffn")
    }
    out = tmp_path / "out"
    result = cpedit.prune(tiny_sd_path, recipes, out=out, compute=CPU)
    expected = {key: mask for masks in alone.values() for key, mask in masks.items()}
    assert set(result.masks) == set(expected) and len(expected) == 4 + 4 + 2
    assert all(torch.equal(result.masks[key], expected[key]) for key in expected)
    report = result.report.to_dict()
    assert [c["target"] for c in report["concepts"]] == ["ffn", "attn-key", "text-ffn"]
    assert report["edited_components"] == ["unet", "text_encoder"]
    assert report["totals"]["pruned_weights"] == sum(int(m.sum()) for m in expected.values())
    saved_unet = load_file(out / "unet" / "diffusion_pytorch_model.safetensors")
    saved_text = load_file(out / "text_encoder" / "model.safetensors")
    for key, mask in expected.items():
        saved = saved_text if key.startswith("text_encoder/") else saved_unet
        assert torch.equal(saved[key.removeprefix("text_encoder/") + ".weight"] == 0, mask), key


def test_same_target_twice_is_the_union(tiny_sd_path: Path, tmp_path: Path) -> None:
    a = write_recipe(tmp_path, **target_settings("attn-value"))
    b = write_recipe(tmp_path, **{**target_settings("attn-value", concept="Monet"), "name": "t-monet"})
    result = cpedit.prune(tiny_sd_path, [a, b], compute=CPU)
    first, second = result.concept_masks["t-attn-value"], result.concept_masks["t-monet"]
    assert all(torch.equal(result.masks[k], first[k] | second[k]) for k in first)


# --- recipes -------------------------------------------------------------------------------


def test_recipe_target_and_stream_defaults(tmp_path: Path) -> None:
    recipe = cpedit.parse_recipe(recipe_text(name="d"))
    assert recipe.prune.target == "ffn" and recipe.prune.stream == "image"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"prune_target": "ffn-out"}, "prune.target: must be one of ffn, ffn-in, attn-key, attn-value, text-ffn"),
        ({"stream": "audio"}, "prune.stream: must be one of image, text, both"),
        ({"prune_target": "attn-key", "stream": "text"}, "prune.stream: applies to targets ffn and ffn-in only"),
    ],
)
def test_recipe_rejects_bad_target_or_stream(extra: dict, message: str) -> None:
    with pytest.raises(RecipeError) as info:
        cpedit.parse_recipe(recipe_text(name="bad", **extra))
    assert message in str(info.value)


# --- memory options ------------------------------------------------------------------------


def test_offload_on_cpu_is_refused_before_loading(tiny_sd_path: Path, tmp_path: Path, no_model_loading: None) -> None:
    with pytest.raises(CpeditError, match="offload .* CUDA GPU") as info:
        cpedit.prune(
            tiny_sd_path, [write_recipe(tmp_path, name="o")], compute=ComputeOptions(device="cpu", offload=True)
        )
    assert (info.value.argument, info.value.reason) == ("offload", "needs_cuda") and "--" not in str(info.value)
    result = CliRunner().invoke(
        cli,
        ["prune", str(tiny_sd_path), "-r", str(write_recipe(tmp_path, name="o")), "-o", str(tmp_path / "x")]
        + ["--device", "cpu", "--offload"],
    )
    assert result.exit_code != 0 and "drop --offload" in result.output
    assert not (tmp_path / "x").exists()


def test_bf16_alias() -> None:
    assert resolve_dtype("bf16", torch.device("cpu")) is torch.bfloat16
    assert resolve_dtype("fp16", torch.device("cpu")) is torch.float16
    with pytest.raises(CpeditError, match="bf16"):
        resolve_dtype("half", torch.device("cpu"))


def test_cli_text_ffn_summary_and_compare_restore_the_base_text_encoder(
    tiny_sd_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    import cpedit.models.sampling as sampling
    import cpedit.output.preview as preview

    out = tmp_path / "out"
    recipe = write_recipe(tmp_path, **target_settings("text-ffn", preview=("a cat",)))
    result = CliRunner().invoke(cli, ["prune", str(tiny_sd_path), "-r", str(recipe), "-o", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "% of the text_encoder)" in text  # the pruned fraction is of the edited component
    report = json.loads((out / "conceptprune" / "report.json").read_text(encoding="utf-8"))
    assert report["concepts"][0]["target"] == "text-ffn" and report["edited_components"] == ["text_encoder"]

    masks = output_positions(out)
    key = next(k for k, m in masks.items() if bool(m.any()))
    weight = key.removeprefix("text_encoder/") + ".weight"
    seen: list[tuple[str, int]] = []

    def fake_generate(pipe, prompts, settings, *, label, on_progress=None, cancel=None):  # noqa: ANN001, ANN202
        seen.append((label, int((pipe.text_encoder.state_dict()[weight] == 0).sum())))
        return [Image.new("RGB", (8, 8))] * len(prompts)

    monkeypatch.setattr(preview, "generate", fake_generate)
    preview.compare_samples(str(out), settings=sampling.SampleSettings(steps=2), compute=CPU)
    assert seen == [("pruned", int(masks[key].sum())), ("base", 0)]
