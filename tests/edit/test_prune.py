"""``cpedit.prune``: multi-concept union, the saved output, call counts, atomicity and errors."""

from __future__ import annotations

import dataclasses
import filecmp
import json
import math
import shutil
import threading
import time
from pathlib import Path

import pytest
import support.helpers as helpers
import torch
from safetensors.torch import load_file
from support.helpers import CPU, SUBJECTS, load_fresh
from support.masks import output_positions

import cpedit
import cpedit.edit.prune
import cpedit.edit.session
import cpedit.models.loading
from cpedit.errors import (
    Cancelled,
    CpeditError,
    ModelLoadError,
    OutputExistsError,
    RecipeError,
    UnsupportedModelError,
)
from cpedit.models.compute import ComputeOptions
from cpedit.recipes.format import PruneSettings

STEPS, TAU, SKILL_RATIO = 6, 4, 0.05
UNET_FILE = "unet/diffusion_pytorch_model.safetensors"


def settings(name: str, artist: str, *, select_ratio: float = 0.0) -> dict:
    """A small artist-style recipe for the tiny model (8 prompts, non-trivial masks)."""
    return dict(
        name=name,
        concept=artist,
        skill_ratio=SKILL_RATIO,
        tau=TAU,
        steps=STEPS,
        select_ratio=select_ratio,
        preview=(f"a cat in the style of {artist}",),
    )


def recipe_text(name: str, artist: str, *, select_ratio: float = 0.0) -> str:
    return helpers.recipe_text(**settings(name, artist, select_ratio=select_ratio))


def write_recipe(folder: Path, name: str, artist: str) -> Path:
    return helpers.write_recipe(folder, **settings(name, artist))


def raise_on_calibrate_event(exc: BaseException, nth: int = 3):
    """An ``on_progress`` callback that raises ``exc`` at the nth calibration event."""
    seen: list[object] = []

    def callback(event: cpedit.ProgressEvent) -> None:
        if event.stage == "calibrate":
            seen.append(event)
            if len(seen) == nth:
                raise exc

    return callback


def assert_nothing_written(parent: Path) -> None:
    """No output folder and no hidden ``.NAME.partial-*`` / ``.NAME.old-*`` folder in ``parent``."""
    assert sorted(p.name for p in parent.iterdir()) == []


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    return write_recipe(tmp_path / "recipes", "van-gogh-test", "Van Gogh")


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    """An empty parent folder for outputs (so leftovers of a failed run are visible)."""
    folder = tmp_path / "outputs"
    folder.mkdir()
    return folder


@pytest.fixture(scope="module")
def saved(tiny_sd_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One two-concept run saved to disk, shared by the output tests."""
    folder = tmp_path_factory.mktemp("saved")
    recipes = [
        write_recipe(folder / "recipes", "van-gogh-test", "Van Gogh"),
        write_recipe(folder / "recipes", "monet-test", "Claude Monet"),
    ]
    out = folder / "out"
    result = cpedit.prune(
        tiny_sd_path, recipes, out=out, compute=ComputeOptions(device="cpu", dtype="float32"), batch_size=6
    )
    return {"result": result, "out": out, "recipes": recipes, "base": tiny_sd_path}


# --- multi-concept -----------------------------------------------------------------------


def test_multi_concept_union_does_not_depend_on_recipe_order(tiny_sd_path: Path, tmp_path: Path) -> None:
    """Each concept's own skilled set, then the union: the order of the recipes changes nothing, also at a
    select_ratio where the authors' cumulative threshold would (select_ratio * tau = 2 here)."""
    artists = [("van-gogh-o", "Van Gogh"), ("monet-o", "Claude Monet"), ("picasso-o", "Pablo Picasso")]
    paths = [helpers.write_recipe(tmp_path, **settings(name, artist, select_ratio=0.5)) for name, artist in artists]
    forward = cpedit.prune(tiny_sd_path, paths, compute=ComputeOptions(device="cpu", dtype="float32"), batch_size=8)
    rotated = cpedit.prune(
        tiny_sd_path,
        [paths[2], paths[0], paths[1]],
        compute=ComputeOptions(device="cpu", dtype="float32"),
        batch_size=8,
    )
    assert set(forward.masks) == set(rotated.masks)
    assert all(torch.equal(forward.masks[k], rotated.masks[k]) for k in forward.masks)
    for name, _ in artists:
        own = forward.concept_masks[name]
        assert all(torch.equal(own[k], rotated.concept_masks[name][k]) for k in own)
        assert all(bool((forward.masks[k] >= own[k]).all()) for k in own)  # no concept loses a weight
    assert sum(int(m.sum()) for m in forward.masks.values()) > max(
        sum(int(m.sum()) for m in forward.concept_masks[name].values()) for name, _ in artists
    )


def _authors_cumulative_union(marks: list[torch.Tensor], select_ratio: float) -> torch.Tensor:
    """The authors' wanda/multi_concept_union.py: concept after concept, add its marks over the tau
    timesteps to the running result, then threshold the running result at select_ratio * tau."""
    tau = marks[0].shape[0]
    running = torch.zeros(marks[0].shape[1:], dtype=torch.int64)
    for concept in marks:
        running = ((running + concept.sum(0)) > select_ratio * tau).to(torch.int64)
    return running.bool()


def test_union_equals_the_authors_cumulative_threshold_at_select_ratio_zero() -> None:
    """cpedit's union of each concept's own set (count > select_ratio * tau) equals the authors' cumulative
    rule at the published select_ratio 0; above it theirs depends on the order, cpedit's does not."""
    from cpedit.edit.selection import union

    generator = torch.Generator().manual_seed(0)
    tau = 10
    marks = [torch.rand(tau, 64, 64, generator=generator) < 0.1 for _ in range(3)]  # [tau, out, in] per concept

    def cpedit_union(order: list[int], select_ratio: float) -> torch.Tensor:
        return union([{"layer": marks[i].sum(0) > select_ratio * tau} for i in order])["layer"]

    orders = [[0, 1, 2], [2, 1, 0], [1, 2, 0]]
    for order in orders:
        authors = _authors_cumulative_union([marks[i] for i in order], 0.0)
        assert torch.equal(authors, cpedit_union(order, 0.0))
    authors = [_authors_cumulative_union([marks[i] for i in order], 0.1) for order in orders]
    assert not all(torch.equal(authors[0], other) for other in authors[1:])  # theirs depends on the order
    ours = [cpedit_union(order, 0.1) for order in orders]
    assert all(torch.equal(ours[0], other) for other in ours[1:])
    first_alone = marks[orders[0][0]].sum(0) > 0.1 * tau
    assert bool((ours[0] >= first_alone).all()) and not bool((authors[0] >= first_alone).all())  # theirs loses some


def test_two_recipes_prune_the_union_of_single_runs(saved: dict) -> None:
    result = saved["result"]
    singles = [
        cpedit.prune(saved["base"], [path], compute=ComputeOptions(device="cpu", dtype="float32"), batch_size=6)
        for path in saved["recipes"]
    ]
    names = ["van-gogh-test", "monet-test"]
    assert list(result.concept_masks) == names
    for name, single in zip(names, singles, strict=True):
        assert set(single.masks) == set(result.masks)
        for layer, mask in single.masks.items():
            assert torch.equal(result.concept_masks[name][layer], mask), (name, layer)
    for layer, mask in result.masks.items():
        assert torch.equal(mask, singles[0].masks[layer] | singles[1].masks[layer]), layer
    a, b = (sum(int(m.sum()) for m in s.masks.values()) for s in singles)
    total = result.report.to_dict()["totals"]["pruned_weights"]
    assert a > 0 and b > 0 and max(a, b) < total <= a + b  # non-trivial, and the concepts differ

    concepts = {c["name"]: c for c in result.report.to_dict()["concepts"]}
    assert list(concepts) == names
    assert concepts["van-gogh-test"]["pruned_weights"] == a
    assert concepts["monet-test"]["pruned_weights"] == b
    assert concepts["monet-test"]["concept"] == "Claude Monet" and concepts["monet-test"]["prompt_pairs"] == len(
        SUBJECTS
    )


def test_duplicate_recipe_names_are_rejected(recipe: Path, tmp_path: Path, no_model_loading: None) -> None:
    twin = write_recipe(tmp_path / "other", "van-gogh-test", "Vincent van Gogh")
    with pytest.raises(CpeditError, match="van-gogh-test"):
        cpedit.prune("/does/not/matter", [recipe, twin], compute=CPU)


# --- the saved output ------------------------------------------------------------------


def test_only_ffn_output_weights_change(saved: dict) -> None:
    out, base = saved["out"], saved["base"]
    positions = output_positions(out)
    for layer, mask in saved["result"].masks.items():
        assert torch.equal(positions[layer], mask), layer
    pruned, original = load_file(out / UNET_FILE), load_file(base / UNET_FILE)
    assert set(pruned) == set(original)
    ffn_keys = {key for key in original if key.endswith(".ff.net.2.weight")}
    assert ffn_keys == {f"{layer}.weight" for layer in positions} and len(ffn_keys) == 4
    for key, tensor in original.items():
        assert pruned[key].dtype == tensor.dtype and pruned[key].shape == tensor.shape, key
        if key not in ffn_keys:
            assert torch.equal(pruned[key], tensor), key
            continue
        mask = positions[key.removesuffix(".weight")]
        assert bool(mask.any()), key
        assert torch.equal(pruned[key] != tensor, mask), key  # differs exactly at the recorded positions
        assert bool((pruned[key][mask] == 0).all()), key  # and is zero there


def test_every_other_file_is_copied_byte_for_byte(saved: dict) -> None:
    out, base = saved["out"], saved["base"]
    base_files = {p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file()}
    out_files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    record = {p for p in out_files if p.startswith("conceptprune/")}
    assert out_files - record == base_files  # nothing missing, nothing extra
    assert "unet/config.json" in base_files and "model_index.json" in base_files
    for rel in sorted(base_files - {UNET_FILE}):
        assert filecmp.cmp(base / rel, out / rel, shallow=False), rel
    assert not filecmp.cmp(base / UNET_FILE, out / UNET_FILE, shallow=False)


def test_positions_file_is_compact(saved: dict) -> None:
    path = saved["out"] / "conceptprune" / "pruned.safetensors"
    pruned = saved["result"].report.to_dict()["totals"]["pruned_weights"]
    assert pruned > 0
    assert path.stat().st_size < 8 * pruned + 4096


def test_report_contents(saved: dict) -> None:
    from diffusers import UNet2DConditionModel

    out, base = saved["out"], saved["base"]
    report = json.loads((out / "conceptprune" / "report.json").read_text(encoding="utf-8"))
    positions = output_positions(out)
    unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet", use_safetensors=True)
    all_weights = sum(p.numel() for p in unet.parameters())
    modules = dict(unet.named_modules())

    assert [layer["name"] for layer in report["layers"]] == list(positions)
    for layer in report["layers"]:
        assert layer["shape"] == list(modules[layer["name"]].weight.shape)
        assert layer["pruned"] == int(positions[layer["name"]].sum())
    pruned = sum(int(m.sum()) for m in positions.values())
    assert report["totals"]["pruned_weights"] == pruned > 0
    assert report["totals"]["denoiser_weights"] == all_weights
    assert report["totals"]["pruned_fraction"] == pytest.approx(pruned / all_weights, rel=1e-12)

    assert report["base_model"]["id"] == str(base) and report["base_model"]["local"] is True
    assert report["denoiser"] == {"component": "unet", "class": "UNet2DConditionModel"}
    assert report["compute"] == {"device": "cpu", "dtype": "float32"}
    for package in ("python", "cpedit", "torch", "diffusers", "transformers", "safetensors"):
        assert report["versions"][package] not in ("", None), package
    for stage in ("load", "calibrate", "score", "save", "total"):
        assert isinstance(report["timings_s"][stage], float) and report["timings_s"][stage] >= 0, stage

    assert len(report["concepts"]) == 2
    for concept in report["concepts"]:
        assert concept["batch_size"] == 6 and concept["batches"] == math.ceil(2 * len(SUBJECTS) / 6)
        assert concept["timesteps"] == TAU
        assert concept["denoiser_calls"] == concept["batches"] * TAU
    assert report["denoiser_calls"] == sum(c["batches"] * c["timesteps"] for c in report["concepts"])
    assert report["skipped_files"] == []

    for path in saved["recipes"]:
        copied = out / "conceptprune" / "recipes" / path.name
        assert copied.read_bytes() == path.read_bytes()  # verbatim
    assert {c["recipe"] for c in report["concepts"]} == {f"conceptprune/recipes/{p.name}" for p in saved["recipes"]}
    assert report == {**saved["result"].report.to_dict(), "created": report["created"]}


def test_output_loads_and_generates(saved: dict) -> None:
    from diffusers import DiffusionPipeline
    from PIL import Image

    pipe = DiffusionPipeline.from_pretrained(str(saved["out"]), use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    modules = dict(pipe.unet.named_modules())
    for layer, mask in saved["result"].masks.items():
        assert bool((modules[layer].weight[mask] == 0).all()), layer
    image = pipe("a cat", num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images[0]
    assert isinstance(image, Image.Image)
    side = pipe.unet.config.sample_size * pipe.vae_scale_factor
    assert image.size == (side, side)


# --- denoiser calls --------------------------------------------------------------------


def test_calibration_makes_tau_unet_calls_per_batch_and_never_decodes(
    tiny_sd_path: Path, recipe: Path, outputs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipe = load_fresh(tiny_sd_path)
    unet_batches: list[int] = []
    decodes: list[str] = []
    original_decode = pipe.vae.decode

    def counting_decode(*args: object, **kwargs: object):
        decodes.append("decode")
        return original_decode(*args, **kwargs)

    monkeypatch.setattr(pipe.vae, "decode", counting_decode)
    handles = [
        pipe.unet.register_forward_pre_hook(lambda module, args: unet_batches.append(args[0].shape[0])),
        pipe.vae.register_forward_hook(lambda *args: decodes.append("vae.forward")),
        pipe.vae.decoder.register_forward_hook(lambda *args: decodes.append("vae.decoder")),
    ]
    try:
        result = cpedit.prune(pipe, [recipe], batch_size=6, out=outputs / "from-memory")
        assert unet_batches == [2 * b for b in (6, 2) for _ in range(TAU)]  # tau calls per batch, CFG doubles
        assert decodes == []
        concept = result.report.to_dict()["concepts"][0]
        total_calls = result.report.to_dict()["denoiser_calls"]
        assert concept["batches"] == 2 and concept["denoiser_calls"] == total_calls == 2 * TAU
        # The hooks do see decoding: an ordinary generation afterwards trips them.
        pipe("a cat", num_inference_steps=2, generator=torch.Generator().manual_seed(0))
        assert "decode" in decodes and "vae.decoder" in decodes
    finally:
        for handle in handles:
            handle.remove()
    # An in-memory pipeline is written with save_pretrained; the record is the same.
    out = outputs / "from-memory"
    assert result.output == out and result.report.to_dict()["base_model"]["id"] is None
    positions = output_positions(out)
    weights = load_file(out / UNET_FILE)
    for layer, mask in result.masks.items():
        assert torch.equal(positions[layer], mask)
        assert bool((weights[f"{layer}.weight"][mask] == 0).all()), layer


def test_hooks_are_removed_after_a_failed_calibration(tiny_sd_path: Path, recipe: Path) -> None:
    pipe = load_fresh(tiny_sd_path)
    with pytest.raises(RuntimeError, match="boom"):
        cpedit.prune(pipe, [recipe], on_progress=raise_on_calibrate_event(RuntimeError("boom")))
    assert all(not module._forward_hooks and not module._forward_pre_hooks for module in pipe.unet.modules())


# --- atomicity -------------------------------------------------------------------------


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()], ids=["exception", "ctrl-c"])
def test_interrupted_calibration_writes_nothing(
    tiny_sd_path: Path, recipe: Path, outputs: Path, exc: BaseException
) -> None:
    with pytest.raises(type(exc)):
        cpedit.prune(
            tiny_sd_path, [recipe], out=outputs / "model", compute=CPU, on_progress=raise_on_calibrate_event(exc)
        )
    assert_nothing_written(outputs)


@pytest.mark.parametrize(
    ("function", "exc"),
    [
        ("write_record", RuntimeError("disk full")),
        ("write_pipeline_folder", RuntimeError("disk full")),
        ("write_record", KeyboardInterrupt()),
    ],
    ids=["write_record", "write_pipeline_folder", "ctrl-c"],
)
def test_failure_while_saving_writes_nothing(
    tiny_sd_path: Path, recipe: Path, outputs: Path, monkeypatch: pytest.MonkeyPatch, function: str, exc: BaseException
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise exc

    monkeypatch.setattr(cpedit.edit.session, function, fail)
    with pytest.raises(type(exc)):
        cpedit.prune(tiny_sd_path, [recipe], out=outputs / "model", compute=CPU)
    assert_nothing_written(outputs)


def test_existing_output_is_refused_before_loading(recipe: Path, outputs: Path, no_model_loading: None) -> None:
    out = outputs / "model"
    out.mkdir()
    (out / "keep.txt").write_text("mine", encoding="utf-8")
    started = time.perf_counter()
    with pytest.raises(OutputExistsError, match="already exists; choose another output folder") as info:
        cpedit.prune("/no/such/model/anywhere", [recipe], out=out, compute=CPU)  # would be a ModelLoadError
    assert time.perf_counter() - started < 5
    # The library names its argument and the reason, never a CLI flag (the CLI adds the hint).
    assert (info.value.argument, info.value.reason, info.value.path) == ("out", "exists", str(out))
    assert "--" not in str(info.value)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert [p.name for p in outputs.iterdir()] == ["model"]


def _previous_output(out: Path) -> None:
    """``out`` as an earlier cpedit output (--overwrite replaces only those), with an extra file."""
    (out / "conceptprune").mkdir(parents=True)
    (out / "conceptprune" / "report.json").write_text("{}", encoding="utf-8")
    (out / "model_index.json").write_text("{}", encoding="utf-8")
    (out / "keep.txt").write_text("old", encoding="utf-8")


def test_existing_output_is_replaced_with_overwrite(tiny_sd_path: Path, recipe: Path, outputs: Path) -> None:
    out = outputs / "model"
    _previous_output(out)
    result = cpedit.prune(tiny_sd_path, [recipe], out=out, compute=CPU, overwrite=True)
    assert result.output == out
    assert not (out / "keep.txt").exists()
    assert (out / "model_index.json").is_file() and (out / "conceptprune" / "report.json").is_file()
    assert [p.name for p in outputs.iterdir()] == ["model"]  # no .old-* or .partial-* left behind


def test_failed_overwrite_keeps_the_old_output(
    tiny_sd_path: Path, recipe: Path, outputs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = outputs / "model"
    _previous_output(out)

    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(cpedit.edit.session, "write_record", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        cpedit.prune(tiny_sd_path, [recipe], out=out, compute=CPU, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["conceptprune", "keep.txt", "model_index.json"]
    assert [p.name for p in outputs.iterdir()] == ["model"]


def test_cancel_event_stops_the_run(tiny_sd_path: Path, recipe: Path, outputs: Path) -> None:
    cancel = threading.Event()
    events: list[cpedit.ProgressEvent] = []

    def on_progress(event: cpedit.ProgressEvent) -> None:
        events.append(event)
        if event.stage == "calibrate" and not cancel.is_set():
            setter = threading.Thread(target=cancel.set)  # as a UI thread would
            setter.start()
            setter.join()

    with pytest.raises(Cancelled):
        cpedit.prune(tiny_sd_path, [recipe], out=outputs / "model", compute=CPU, cancel=cancel, on_progress=on_progress)
    assert_nothing_written(outputs)
    assert [e.stage for e in events].count("calibrate") == 1  # stopped at the next denoiser call
    assert not any(e.stage in ("save", "done") for e in events)


def test_cancel_after_calibration_still_writes_nothing(tiny_sd_path: Path, recipe: Path, outputs: Path) -> None:
    cancel = threading.Event()

    def on_progress(event: cpedit.ProgressEvent) -> None:
        if event.stage == "score":
            cancel.set()

    with pytest.raises(Cancelled, match="while selecting"):
        cpedit.prune(tiny_sd_path, [recipe], out=outputs / "model", compute=CPU, cancel=cancel, on_progress=on_progress)
    assert_nothing_written(outputs)


# --- errors ----------------------------------------------------------------------------


def test_folder_without_model_index_is_a_load_error(tmp_path: Path, recipe: Path) -> None:
    folder = tmp_path / "not-a-pipeline"
    folder.mkdir()
    (folder / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ModelLoadError, match="model_index.json"):
        cpedit.prune(folder, [recipe], compute=CPU)


def test_revision_with_a_local_folder_is_a_load_error(tiny_sd_path: Path, recipe: Path, outputs: Path) -> None:
    with pytest.raises(ModelLoadError, match="revision"):
        cpedit.prune(
            tiny_sd_path, [recipe], compute=ComputeOptions(device="cpu", revision="main"), out=outputs / "model"
        )
    assert_nothing_written(outputs)


def _unet_without_ffn():
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        mid_block_type="UNetMidBlock2D",
        cross_attention_dim=32,
        norm_num_groups=32,
    )


def test_model_without_ffn_blocks_is_unsupported_in_memory(tiny_sd_path: Path, recipe: Path, outputs: Path) -> None:
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(**{**load_fresh(tiny_sd_path).components, "unet": _unet_without_ffn()})
    with pytest.raises(UnsupportedModelError, match="feed-forward"):
        cpedit.prune(pipe, [recipe], out=outputs / "model")
    assert_nothing_written(outputs)


def test_model_without_ffn_blocks_is_unsupported_from_a_folder(
    tiny_sd_path: Path, recipe: Path, tmp_path: Path, outputs: Path
) -> None:
    folder = tmp_path / "no-ffn"
    shutil.copytree(tiny_sd_path, folder)
    shutil.rmtree(folder / "unet")
    _unet_without_ffn().save_pretrained(folder / "unet", safe_serialization=True)
    with pytest.raises(UnsupportedModelError, match="feed-forward"):
        cpedit.prune(folder, [recipe], out=outputs / "model", compute=CPU)
    assert_nothing_written(outputs)


@pytest.mark.parametrize(("fixture", "calls"), [("tiny_sd_path", STEPS + 1), ("tiny_sd_ddim_path", STEPS)])
def test_tau_beyond_the_schedulers_calls_is_an_error(
    request: pytest.FixtureRequest, recipe: Path, outputs: Path, fixture: str, calls: int
) -> None:
    # Recipe validation already refuses tau > steps; a Recipe object built in code skips it.
    loaded = cpedit.load_recipe(recipe)
    too_long = dataclasses.replace(loaded, prune=PruneSettings(skill_ratio=SKILL_RATIO, timesteps=calls + 1))
    with pytest.raises(CpeditError, match=rf"prune.timesteps = {calls + 1} .* only {calls} denoising steps"):
        cpedit.prune(request.getfixturevalue(fixture), [too_long], out=outputs / "model", compute=CPU)
    assert_nothing_written(outputs)
    # tau equal to the scheduler's calls is fine.
    exact = dataclasses.replace(loaded, prune=PruneSettings(skill_ratio=SKILL_RATIO, timesteps=calls))
    assert cpedit.prune(request.getfixturevalue(fixture), [exact], compute=CPU).report.denoiser_calls == calls


def test_bad_recipe_fails_before_loading(tmp_path: Path, recipe: Path, no_model_loading: None) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        recipe_text("bad", "Monet").replace(f"skill_ratio: {SKILL_RATIO}", "skill_ratio: 2"), encoding="utf-8"
    )
    with pytest.raises(RecipeError) as caught:
        cpedit.prune("/no/such/model", [recipe, bad], compute=CPU)
    assert [field for field, _ in caught.value.problems] == ["prune.skill_ratio"]
    with pytest.raises(RecipeError, match="no such file or shipped recipe"):
        cpedit.prune("/no/such/model", ["not-a-shipped-recipe"], compute=CPU)
    with pytest.raises(CpeditError, match="at least one recipe"):
        cpedit.prune("/no/such/model", [], compute=CPU)
    with pytest.raises(CpeditError, match="batch size"):
        cpedit.prune("/no/such/model", [recipe], compute=CPU, batch_size=0)


def test_overwrite_never_replaces_the_base_model(tiny_sd_path: Path, tmp_path: Path, recipe: Path) -> None:
    base = tmp_path / "models" / "base"
    shutil.copytree(tiny_sd_path, base)
    for out in (base, base.parent):  # the base itself, or a folder holding it
        with pytest.raises(CpeditError, match="is \\(or contains\\) the base model folder"):
            cpedit.prune(base, [recipe], out=out, overwrite=True, compute=CPU)
    assert (base / "model_index.json").is_file()


def test_only_the_pipeline_is_copied(tiny_sd_path: Path, tmp_path: Path, recipe: Path) -> None:
    """A local clone may hold single-file checkpoints and other folders: never ship them unpruned."""
    base = tmp_path / "base"
    shutil.copytree(tiny_sd_path, base)
    shutil.copy(base / UNET_FILE, base / "v1-5-pruned-emaonly.safetensors")  # a single-file checkpoint
    (base / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"pickle")
    (base / "samples").mkdir()
    (base / "samples" / "cat.png").write_bytes(b"png")
    (base / "README.md").write_text("# base model card\n")
    out = tmp_path / "out"
    result = cpedit.prune(base, [recipe], out=out, compute=CPU)
    assert result.report.to_dict()["skipped_files"] == [
        "samples/",
        "unet/diffusion_pytorch_model.bin",
        "v1-5-pruned-emaonly.safetensors",
    ]
    assert not (out / "v1-5-pruned-emaonly.safetensors").exists() and not (out / "samples").exists()
    assert not (out / "unet" / "diffusion_pytorch_model.bin").exists()
    assert filecmp.cmp(base / "README.md", out / "README.md", shallow=False)
    report = json.loads((out / "conceptprune" / "report.json").read_text())
    assert report["skipped_files"] == result.report.to_dict()["skipped_files"]


def test_every_recipe_is_checked_against_the_scheduler_before_calibrating(
    tiny_sd_path: Path, tmp_path: Path, recipe: Path
) -> None:
    good = cpedit.load_recipe(recipe)
    calls = STEPS + 1  # PNDM
    too_long = dataclasses.replace(
        good, name="too-long", prune=PruneSettings(skill_ratio=SKILL_RATIO, timesteps=calls + 1)
    )
    events: list[cpedit.ProgressEvent] = []
    with pytest.raises(CpeditError, match="only 7 denoising steps"):
        cpedit.prune(tiny_sd_path, [good, too_long], compute=CPU, on_progress=events.append)
    assert not [e for e in events if e.stage == "calibrate"]  # failed before the first recipe ran


def test_in_memory_pipeline_refuses_loading_options(tiny_sd_path: Path, recipe: Path) -> None:
    pipe = load_fresh(tiny_sd_path)
    for option in ({"device": "cpu"}, {"dtype": "float16"}, {"revision": "main"}):
        with pytest.raises(CpeditError, match="apply when cpedit loads the model"):
            cpedit.prune(pipe, [recipe], compute=ComputeOptions(**option))


def test_recipe_built_in_code_needs_a_slug_name(tiny_sd_path: Path, recipe: Path, no_model_loading: None) -> None:
    bad = dataclasses.replace(cpedit.load_recipe(recipe), name="../escape")
    with pytest.raises(CpeditError, match="is not a slug"):
        cpedit.prune(tiny_sd_path, [bad])
