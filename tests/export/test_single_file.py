"""Single-file export: the exported checkpoint reads back through diffusers' own single-file code as the edited folder.

Each family's tiny random pipeline gets an edit (random masks over every 2-D weight of the components the
file holds: fused q/k/v, swapped AdaLN halves, transposed and reshaped tensors included), written as a
cpedit output folder the way ``cpedit prune`` writes one. The export is then read back with diffusers
0.42 (HF_HUB_OFFLINE=1, the config from the base folder) and must equal the edited folder, every
pruned entry (zero) included:

- SD 1.x and 2.x: the whole pipeline through ``from_single_file``.
- SDXL and SD3: the UNet/MMDiT and VAE through their ``from_single_file``; the text encoders through the
  converters ``from_single_file`` calls (``convert_ldm_clip_checkpoint``, ``convert_open_clip_checkpoint``,
  ``convert_sd3_t5_checkpoint_to_diffusers``). The pipeline-level loader picks a text encoder's keys by
  probing one key's width, and the tiny pipelines' two CLIPs have the same width (32), so it would give
  both encoders CLIP-L's weights; real SDXL/SD3 encoders differ in width (768 and 1280). For SD3's CLIP-L,
  ``from_single_file`` also replaces ``text_projection`` with the identity by design (SD3's checkpoints do).
- FLUX.1: ``convert_flux_transformer_checkpoint_to_diffusers`` hard-codes FLUX.1's width
  (``inner_dim = 3072``), so ``from_single_file`` cannot read a tiny FLUX transformer. The tiny file
  goes through that converter's own source with the width set to the tiny model's, and a probe at
  FLUX.1's width (narrow columns) goes through the unmodified converter.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import threading
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from support.helpers import recipe_text

from cpedit.errors import Cancelled, CpeditError, OutputExistsError
from cpedit.export.layouts import FAMILIES, Target, plan_component
from cpedit.export.single_file import FORMAT, export_single_file
from cpedit.output.folder import weight_fills, write_pipeline_folder
from cpedit.output.record import BaseModelInfo, ConceptRecord, Report, Totals, write_record
from cpedit.ownership import NotOursError
from cpedit.recipes.format import parse_recipe

ARCHITECTURE = {"sd1": "sd1", "sd2": "sd2", "sdxl": "sdxl", "sd3": "sd3", "flux": "flux"}
DENOISER = {"sd1": "unet", "sd2": "unet", "sdxl": "unet", "sd3": "transformer", "flux": "transformer"}


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for file in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(file))
    return tensors


def make_output(base: Path, out: Path, family: str, *, seed: int = 0) -> tuple[Path, dict[str, dict]]:
    """A cpedit output of ``base``: random 10% masks over every 2-D weight of the file's components."""
    generator = torch.Generator().manual_seed(seed)
    masks: dict[str, dict[str, torch.Tensor]] = {}
    for layout in FAMILIES[family]:
        tensors = _tensors(base / layout.component)
        masks[layout.component] = {}
        for name, tensor in tensors.items():
            if name.endswith(".weight") and tensor.ndim == 2:
                mask = torch.rand(tensor.shape, generator=generator) < 0.1
                mask[-1, -1] = True  # every layer has a pruned entry, also the smallest
                masks[layout.component][name.removesuffix(".weight")] = mask
    out.parent.mkdir(parents=True, exist_ok=True)
    write_pipeline_folder(base, out, edits={c: weight_fills(m) for c, m in masks.items()})
    recipe = parse_recipe(recipe_text(name="van-gogh"))
    pruned = sum(int(m.sum()) for per in masks.values() for m in per.values())
    report = Report(
        base_model=BaseModelInfo(id="acme/tiny-base", local=False, revision="main", commit="0" * 40),
        denoiser_component=DENOISER[family],
        denoiser_class="Tiny",
        pipeline=None,
        edited_components=tuple(masks),
        compute_device="cpu",
        compute_dtype="float32",
        offload=False,
        concepts=(
            ConceptRecord(
                name="van-gogh",
                concept="Van Gogh",
                kind="style",
                recipe="conceptprune/recipes/van-gogh.yaml",
                prompt_pairs=8,
                skill_ratio=0.05,
                timesteps=4,
                select_ratio=0.0,
                pruned_weights=pruned,
            ),
        ),  # fmt: skip
        layers=(),
        totals=Totals(pruned, 1, 1, 1, 0.1, 0.1),
        denoiser_calls=0,
    )
    all_masks = {f"{c}.{name}": m for c, per in masks.items() for name, m in per.items()}
    write_record(out, masks=all_masks, recipes=[recipe], report=report)
    return out, masks


@pytest.fixture(scope="module")
def exported(tiny_model_path, tmp_path_factory):  # type: ignore[no-untyped-def]
    """``exported(family)``: (base folder, edited folder, masks, the single file), built once per family."""
    made: dict[str, tuple[Path, Path, dict, Path]] = {}

    def get(family: str) -> tuple[Path, Path, dict, Path]:
        if family not in made:
            base = tiny_model_path(ARCHITECTURE[family])
            root = tmp_path_factory.mktemp(f"export_{family}")
            out, masks = make_output(base, root / "edited", family)
            file = root / f"{family}.safetensors"
            export_single_file(out, file)
            made[family] = (base, out, masks, file)
        return made[family]

    return get


def assert_equal_to_folder(got: dict[str, torch.Tensor], folder: Path, masks: dict[str, torch.Tensor]) -> None:
    """``got`` (diffusers keys) equals the folder's tensors, and every masked entry is zero in it."""
    expected = _tensors(folder)
    flat = {(k[len("text_model.") :] if k[len("text_model.") :] in expected else k): v for k, v in got.items()}
    assert set(flat) == set(expected)
    for key, value in expected.items():
        assert torch.equal(flat[key], value), key
    for name, mask in masks.items():
        assert bool(mask.any())
        assert (flat[f"{name}.weight"][mask] == 0).all(), name


def _checkpoint(file: Path) -> dict[str, torch.Tensor]:
    return load_file(file)


@pytest.mark.parametrize("family", ["sd1", "sd2"])
def test_sd_pipeline_reads_back_through_from_single_file(family, exported, offline_hub):  # type: ignore[no-untyped-def]
    import diffusers

    base, out, masks, file = exported(family)
    pipe = diffusers.StableDiffusionPipeline.from_single_file(str(file), config=str(base), local_files_only=True)
    for component in ("unet", "vae", "text_encoder"):
        state = getattr(pipe, component).state_dict()
        assert_equal_to_folder(state, out / component, masks[component])


@pytest.mark.parametrize("family", ["sdxl", "sd3"])
def test_denoiser_and_vae_read_back_through_from_single_file(family, exported, offline_hub):  # type: ignore[no-untyped-def]
    import diffusers

    base, out, masks, file = exported(family)
    denoiser = DENOISER[family]
    cls = diffusers.UNet2DConditionModel if denoiser == "unet" else diffusers.SD3Transformer2DModel
    model = cls.from_single_file(str(file), config=str(base), subfolder=denoiser, local_files_only=True)
    assert_equal_to_folder(model.state_dict(), out / denoiser, masks[denoiser])
    vae = diffusers.AutoencoderKL.from_single_file(str(file), config=str(base), subfolder="vae", local_files_only=True)
    assert_equal_to_folder(vae.state_dict(), out / "vae", masks["vae"])


@pytest.mark.parametrize("family", ["sdxl", "sd3"])
def test_text_encoders_read_back_through_diffusers_converters(family, exported):  # type: ignore[no-untyped-def]
    from diffusers.loaders import single_file_utils as sfu

    base, out, masks, file = exported(family)
    checkpoint = _checkpoint(file)
    for layout in FAMILIES[family][2:]:
        if layout.layout == "clip":
            got = sfu.convert_ldm_clip_checkpoint(dict(checkpoint), layout.prefix)
        elif layout.layout == "t5":
            got = sfu.convert_sd3_t5_checkpoint_to_diffusers(dict(checkpoint))
        else:
            config = json.loads((base / layout.component / "config.json").read_text())
            model = type("M", (), {"config": type("C", (), {"hidden_size": config["hidden_size"]})})
            got = sfu.convert_open_clip_checkpoint(model, dict(checkpoint), prefix=layout.prefix)
        assert_equal_to_folder(got, out / layout.component, masks[layout.component])


def _flux_converter(inner_dim: int):  # type: ignore[no-untyped-def]
    """diffusers' FLUX converter, its hard-coded FLUX.1 width (3072) set to ``inner_dim`` (nothing else changed)."""
    from diffusers.loaders import single_file_utils as sfu

    source = inspect.getsource(sfu.convert_flux_transformer_checkpoint_to_diffusers)
    assert source.count("inner_dim = 3072") == 1
    namespace = dict(vars(sfu))
    exec(source.replace("inner_dim = 3072", f"inner_dim = {inner_dim}"), namespace)  # noqa: S102
    return namespace["convert_flux_transformer_checkpoint_to_diffusers"]


def test_flux_transformer_reads_back_through_diffusers_converter(exported):  # type: ignore[no-untyped-def]
    base, out, masks, file = exported("flux")
    checkpoint = _checkpoint(file)
    assert not any(key.startswith(("model.", "first_stage_model.", "text_encoders.")) for key in checkpoint)
    config = json.loads((base / "transformer" / "config.json").read_text())
    convert = _flux_converter(config["num_attention_heads"] * config["attention_head_dim"])
    assert_equal_to_folder(convert(dict(checkpoint)), out / "transformer", masks["transformer"])


def test_flux_layout_at_flux1_width_matches_the_unmodified_converter(tiny_model_path):  # type: ignore[no-untyped-def]
    """A probe with FLUX.1's single-block rows (3072 per q/k/v, 12288 MLP), narrow columns: every element lands back."""
    from diffusers.loaders import single_file_utils as sfu

    base = tiny_model_path("flux")
    shapes = {k: tuple(v.shape) for k, v in _tensors(base / "transformer").items()}
    for key in list(shapes):
        if key.startswith("single_transformer_blocks.") and key.split(".")[-2] in ("to_q", "to_k", "to_v"):
            shapes[key] = (3072, *shapes[key][1:])
        if key.startswith("single_transformer_blocks.") and ".proj_mlp." in key:
            shapes[key] = (12288, *shapes[key][1:])
    probe, start = {}, 0
    for key, shape in shapes.items():  # every element a different number
        count = int(torch.tensor(shape).prod()) if shape else 1
        probe[key] = torch.arange(start, start + count, dtype=torch.float64).reshape(shape)
        start += count
    layout = FAMILIES["flux"][0]
    targets = plan_component(layout, shapes, json.loads((base / "transformer" / "config.json").read_text()))
    checkpoint = {t.name: _assemble(t, probe) for t in targets}
    back = sfu.convert_flux_transformer_checkpoint_to_diffusers(checkpoint)
    assert set(back) == set(probe)
    for key, value in probe.items():
        assert torch.equal(back[key], value), key


def _assemble(target: Target, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    parts = []
    for piece in target.pieces:
        t = tensors[piece.key]
        if piece.op == "swap_halves":
            a, b = t.chunk(2)
            t = torch.cat([b, a])
        elif piece.op == "transpose":
            t = t.T
        parts.append(t)
    return torch.cat(parts).reshape(target.shape)


def test_metadata_records_the_edit_and_no_local_path(exported):  # type: ignore[no-untyped-def]
    base, out, masks, file = exported("sd1")
    with safe_open(file, framework="pt") as handle:
        metadata = handle.metadata()
    digest = hashlib.sha256((out / "conceptprune" / "pruned.safetensors").read_bytes()).hexdigest()
    assert metadata["format"] == FORMAT
    assert metadata["base_model"] == "acme/tiny-base"
    assert metadata["base_revision"] == "0" * 40
    assert json.loads(metadata["recipes"]) == ["van-gogh"]
    assert metadata["pruned_weights"] == str(sum(int(m.sum()) for per in masks.values() for m in per.values()))
    assert metadata["positions_sha256"] == digest
    text = json.dumps(metadata)
    for secret in (str(out), str(base), str(file.parent), "hf_", "/tmp", "token"):
        assert secret not in text


def test_local_base_is_not_named(tiny_model_path, tmp_path):  # type: ignore[no-untyped-def]
    base = tiny_model_path("sd1")
    out, _ = make_output(base, tmp_path / "edited", "sd1")
    report_file = out / "conceptprune" / "report.json"
    report = json.loads(report_file.read_text())
    report["base_model"] = {"id": str(base), "local": True, "path": str(base)}
    report_file.write_text(json.dumps(report))
    result = export_single_file(out, tmp_path / "x.safetensors")
    assert result.metadata["base_model"] == "local"
    assert "base_revision" not in result.metadata
    assert str(base) not in (tmp_path / "x.safetensors").read_bytes()[:65536].decode("utf-8", "replace")


def test_dtype_as_asked(exported, tmp_path):  # type: ignore[no-untyped-def]
    base, out, masks, _ = exported("sd1")
    file = tmp_path / "half.safetensors"
    export_single_file(out, file, dtype="float16")
    checkpoint = load_file(file)
    assert {t.dtype for t in checkpoint.values()} == {torch.float16}
    key = "model.diffusion_model.time_embed.0.weight"
    assert torch.equal(checkpoint[key], _tensors(out / "unet")["time_embedding.linear_1.weight"].half())


def test_progress_and_cancel(exported, tmp_path):  # type: ignore[no-untyped-def]
    _, out, _, _ = exported("sd1")
    events = []
    file = tmp_path / "a.safetensors"
    export_single_file(out, file, on_progress=events.append)
    assert events and all(e.stage == "export" for e in events)
    assert events[-1].completed == events[-1].total == file.stat().st_size
    assert [e.completed for e in events] == sorted(e.completed for e in events)
    cancel = threading.Event()

    def stop_after_some(event):  # type: ignore[no-untyped-def]
        if len(seen) == 5:
            cancel.set()
        seen.append(event)

    seen: list = []
    with pytest.raises(Cancelled):
        export_single_file(out, tmp_path / "b.safetensors", on_progress=stop_after_some, cancel=cancel)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.safetensors"]  # no temporary left


def test_overwrite_only_what_cpedit_wrote(exported, tmp_path):  # type: ignore[no-untyped-def]
    _, out, _, _ = exported("sd1")
    file = tmp_path / "model.safetensors"
    file.write_bytes(b"someone else's checkpoint")
    with pytest.raises(NotOursError):
        export_single_file(out, file, overwrite=True)
    assert file.read_bytes() == b"someone else's checkpoint"
    file.unlink()
    export_single_file(out, file)
    with pytest.raises(OutputExistsError):
        export_single_file(out, file)
    export_single_file(out, file, overwrite=True, dtype="bfloat16")
    assert {t.dtype for t in load_file(file).values()} == {torch.bfloat16}
    with pytest.raises(CpeditError) as error:
        export_single_file(out, tmp_path / "model.ckpt")
    assert error.value.reason == "suffix"


def test_flux_edit_of_a_text_encoder_is_refused(tiny_model_path, tmp_path):  # type: ignore[no-untyped-def]
    out, _ = make_output(tiny_model_path("flux"), tmp_path / "edited", "flux")
    report_file = out / "conceptprune" / "report.json"
    report = json.loads(report_file.read_text())
    report["edited_components"] = ["transformer", "text_encoder"]
    report_file.write_text(json.dumps(report))
    with pytest.raises(CpeditError) as error:
        export_single_file(out, tmp_path / "flux.safetensors")
    assert error.value.reason == "unsupported" and "text_encoder" in str(error.value)
    assert not (tmp_path / "flux.safetensors").exists()
