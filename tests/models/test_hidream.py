"""HiDream-I1 (``HiDreamImagePipeline``) on a tiny random-weight pipeline saved and reloaded from a folder.

HiDream's image-stream feed-forwards are mixtures of experts whose routed experts see only the
tokens routed to them (no batch dimension): calibration must count each routed row for its own
prompt, which the comparison with the naive one-prompt-at-a-time procedure proves (IoU 1.000,
fp32 on the CPU). Also: which layers each target means, the native-area size the pipeline
runs whatever size is asked, and an output that changes only the masked weights and generates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from support.helpers import load_fresh, recipe_text, write_recipe
from support.masks import assert_only_masked_weights_changed, iou

import cpedit
from cpedit.models.architectures import find_target_layers
from cpedit.models.compute import ComputeOptions
from cpedit.models.moe import expert_batch_items
from cpedit.models.support import describe_support, require_support

SUBJECTS = ("cat", "dog")
STEPS, TAU = 3, 2
FP32 = ComputeOptions(device="cpu", dtype="float32")
NATIVE = 128  # the tiny pipeline's native size: default_sample_size 128 latent pixels, VAE factor 1


@pytest.fixture(scope="module")
def hidream(tiny_model_path: Any) -> Path:
    return tiny_model_path("hidream")


def settings(name: str, **extra: Any) -> dict[str, Any]:
    return dict(name=name, subjects=SUBJECTS, steps=STEPS, tau=TAU, skill_ratio=0.05, **extra)


def test_targets_mean_every_expert_the_shared_experts_and_the_text_stream(hidream: Path) -> None:
    pipe = load_fresh(hidream)
    spec = require_support(pipe)
    assert spec.name == "hidream" and spec.guidance == "cfg" and spec.streams == ("image", "text")
    image = find_target_layers(pipe, spec, target="ffn")
    blocks = ("double_stream_blocks.0.block.ff_i", "single_stream_blocks.0.block.ff_i")
    expected = [f"{b}.{part}.w2" for b in blocks for part in ("shared_experts", *(f"experts.{e}" for e in range(4)))]
    assert [layer.key for layer in image] == expected
    assert [layer.route.expert if layer.route else None for layer in image] == [None, 0, 1, 2, 3] * 2
    assert all(layer.route.block is pipe.transformer.double_stream_blocks[0].block.ff_i for layer in image[1:5])
    assert not any("gate" in layer.key for t in ("ffn", "ffn-in") for layer in find_target_layers(pipe, spec, target=t))
    text = find_target_layers(pipe, spec, target="ffn", stream="text")
    assert [layer.key for layer in text] == ["double_stream_blocks.0.block.ff_t.w2"]
    ffn_in = [layer.key for layer in find_target_layers(pipe, spec, target="ffn-in", stream="both")]
    assert len(ffn_in) == 2 * 11 and all(key.endswith((".w1", ".w3")) for key in ffn_in)
    keys = [layer.key for layer in find_target_layers(pipe, spec, target="attn-value")]
    assert keys == ["double_stream_blocks.0.block.attn1.to_v_t"]  # single-stream blocks have no text projection
    encoders = [layer.key for layer in find_target_layers(pipe, spec, target="text-ffn")]
    assert [k for k in encoders if k.startswith("text_encoder_4/")] == [
        "text_encoder_4/model.layers.0.mlp.down_proj",
        "text_encoder_4/model.layers.1.mlp.down_proj",
    ]
    assert {k.split("/")[0] for k in encoders} == set(spec.text_encoders)
    info = describe_support("HiDreamImagePipeline", pipe.transformer)
    assert info.supported and info.how.endswith("11 FFN layers")  # both streams: 10 image + 1 text


@pytest.mark.parametrize("training", [False, True])
def test_expert_batch_items_name_the_item_of_every_routed_row(training: bool) -> None:
    """Every row an expert receives is one of its named batch item's tokens, in eval (moe_infer) and train mode."""
    from diffusers.models.transformers.transformer_hidream_image import MOEFeedForwardSwiGLU

    torch.manual_seed(0)
    block = MOEFeedForwardSwiGLU(dim=8, hidden_dim=32, num_routed_experts=4, num_activated_experts=2)
    block.train(training)
    x = torch.randn(3, 5, 8)
    seen: dict[int, torch.Tensor] = {}
    routed: list[list[torch.Tensor]] = []
    handles = [
        expert.w1.register_forward_pre_hook(lambda m, a, i=i: seen.__setitem__(i, a[0].detach().clone()))
        for i, expert in enumerate(block.experts)
    ]
    handles.append(
        block.gate.register_forward_hook(lambda m, a, out: routed.append(expert_batch_items(block, a[0], out[0])))
    )
    with torch.no_grad():
        block(x)
    for handle in handles:
        handle.remove()
    items = routed[0]
    assert sum(len(i) for i in items) == 3 * 5 * 2 and len({int(i) for e in items for i in e}) == 3
    for expert, rows in seen.items():
        assert rows.shape[0] == len(items[expert])
        for row, item in zip(rows, items[expert].tolist(), strict=True):
            assert any(torch.equal(row, token) for token in x[item]), (expert, item)


@pytest.mark.parametrize("target", ["ffn", "text-ffn"])
def test_matches_naive_one_prompt_at_a_time_reference(target: str, hidream: Path, tmp_path: Path) -> None:
    """Both pairs share one batch (routed rows of four prompts mixed in every expert); the masks equal the naive
    procedure's exactly. text-ffn: HiDream encodes the empty negative prompt once per call (a batch of one),
    which counts once per prompt, as in each prompt's own call."""
    from support.naive_reference import naive_masks_for_recipe

    recipe = cpedit.parse_recipe(recipe_text(**settings(f"hd-{target}", prune_target=target)))
    result = cpedit.prune(hidream, [recipe], compute=FP32, batch_size=4)
    naive = naive_masks_for_recipe(load_fresh(hidream), recipe)
    assert set(result.masks) == set(naive)
    for name, mask in naive.items():
        assert bool(mask.any()), name
        assert iou(result.masks[name], mask) == 1.0, name


def test_prune_end_to_end_at_the_native_size(hidream: Path, tmp_path: Path) -> None:
    """A 32 px recipe still runs at HiDream's native area: the report says so; only masked weights change."""
    pipe = load_fresh(hidream)
    sizes: list[tuple[int, ...]] = []
    handle = pipe.transformer.register_forward_pre_hook(
        lambda m, a, kw: sizes.append(tuple(kw["hidden_states"].shape)), with_kwargs=True
    )
    recipe = write_recipe(tmp_path, **settings("hd-e2e", size=32))
    try:
        in_memory = cpedit.prune(pipe, [recipe], batch_size=4)
    finally:
        handle.remove()
    assert sizes == [(8, 4, NATIVE, NATIVE)] * TAU  # [uncond; cond] of 4 prompts, native latents, tau calls
    concept = in_memory.report.to_dict()["concepts"][0]
    assert concept["image_size"] == [NATIVE, NATIVE] and concept["denoiser_calls"] == TAU

    out = tmp_path / "out"
    result = cpedit.prune(hidream, [recipe], out=out, compute=FP32, batch_size=4)
    assert all(torch.equal(result.masks[k], in_memory.masks[k]) for k in in_memory.masks)
    assert result.report.to_dict()["edited_components"] == ["transformer"]
    assert_only_masked_weights_changed(hidream, out, result.masks, "transformer")
    edited = load_fresh(out)
    images = edited("a cat", num_inference_steps=2, output_type="np", generator=torch.manual_seed(0)).images
    assert images.shape == (1, NATIVE, NATIVE, 3) and bool(torch.isfinite(torch.from_numpy(images)).all())


def test_text_stream_prunes_only_ff_t(hidream: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path, **settings("hd-text", stream="text"))
    result = cpedit.prune(hidream, [recipe], out=out, compute=FP32, batch_size=4)
    assert list(result.masks) == ["double_stream_blocks.0.block.ff_t.w2"]
    assert_only_masked_weights_changed(hidream, out, result.masks, "transformer")


def test_models_info_verdict_from_the_config_alone(hidream: Path) -> None:
    """``cpedit models info``: the denoiser built on the meta device from config.json; HiDream is editable."""
    import json

    from cpedit.models.details import build_meta_denoiser, count_layers
    from cpedit.models.support import editability

    index = json.loads((hidream / "model_index.json").read_text())
    meta = build_meta_denoiser(json.loads((hidream / "transformer" / "config.json").read_text()))
    layers, ffn_weights, _ = count_layers(meta, pipeline_class="HiDreamImagePipeline")
    assert layers == 10 and ffn_weights == 10 * 32 * 256  # 2 blocks x (shared + 4 experts), w2: 256 -> 32
    verdict = editability(
        index=index, denoiser_class=meta.__class__.__name__, ffn_layers=layers, safetensors_files=1, denoiser=meta
    )
    assert verdict.editable and verdict.reason.startswith("HiDream-I1") and "11 FFN layers" in verdict.reason
