"""The output record (``conceptprune/``): the typed report round-trips, tampered files are named.

Model cards say what was really pruned, and the base model is inferred or given.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from support.helpers import CPU, write_recipe

import cpedit
from cpedit.hub.cache import infer_hub_snapshot
from cpedit.output.record import (
    Evaluation,
    RecordError,
    Report,
    read_evaluations,
    read_output,
    read_report,
    write_evaluation,
)
from cpedit.publish.card import build_model_card


@pytest.fixture(scope="module")
def shapes_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("record") / "striped"
    cpedit.prune("builtin:shapes", ["shapes-striped"], out=out, compute=CPU)
    return out


def copy_of(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / folder.name
    shutil.copytree(folder, target)
    return target


def test_report_round_trips_through_its_json(shapes_output: Path) -> None:
    report = read_report(shapes_output)
    data = json.loads((shapes_output / "conceptprune" / "report.json").read_text())
    assert report.to_dict() == data
    assert Report.from_dict(data) == report
    assert report.concepts[0].target == "attn-value" and report.edited_label == "UNet"
    assert report.base_model.id == "builtin:shapes" and report.base_model.repo_id is None


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda r: r["totals"].update(pruned_weights="many"), "totals.pruned_weights"),
        (lambda r: r["concepts"][0].update(skill_ratio=None), "concepts[0].skill_ratio"),
        (lambda r: r["concepts"][0].update(recipe="/etc/passwd"), "concepts[0].recipe"),
        (lambda r: r["concepts"][0].update(recipe="conceptprune/recipes/../../x.yaml"), "concepts[0].recipe"),
        (lambda r: r["base_model"].update(path=["a"]), "base_model.path"),
        (lambda r: r["layers"][0].update(shape=[1]), "layers[0].shape"),
        (lambda r: r.pop("denoiser"), "denoiser"),
        (lambda r: r["denoiser"].update(component="vae"), "denoiser.component"),
        (lambda r: r.update(concepts=[]), "concepts"),
        (lambda r: r["concepts"][0].update(pair_seeds=[1, -2]), "concepts[0].pair_seeds"),
        (lambda r: r["concepts"][0].update(pair_seeds="1,2"), "concepts[0].pair_seeds"),
        (lambda r: r["concepts"][0].update(pair_seeds=[True]), "concepts[0].pair_seeds"),
    ],
)
def test_tampered_report_is_refused_naming_file_and_field(
    shapes_output: Path, tmp_path: Path, edit, field: str
) -> None:
    error = read_tampered(shapes_output, tmp_path, edit)
    assert "report.json" in str(error) and field in str(error)
    assert error.reason == "malformed"


def read_tampered(output: Path, tmp_path: Path, edit) -> RecordError:
    """The error reading a copy of ``output`` whose ``report.json`` ``edit`` changed (it must fail)."""
    folder = copy_of(output, tmp_path)
    path = folder / "conceptprune" / "report.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(RecordError) as info:
        read_output(folder)
    return info.value


def _rename(data: dict, old: str, new: str) -> None:
    data[old] = data.pop(new)


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda r: _rename(r, "unet_calls", "denoiser_calls"), "unet_calls"),
        (lambda r: _rename(r["totals"], "unet_weights", "denoiser_weights"), "totals.unet_weights"),
        (lambda r: _rename(r["concepts"][0], "unet_calls", "denoiser_calls"), "concepts[0].unet_calls"),
    ],
)
def test_report_with_pre_release_field_names_is_refused_naming_the_new_name(
    shapes_output: Path, tmp_path: Path, edit, field: str
) -> None:
    written = read_report(shapes_output).to_dict()
    assert "unet_calls" not in written and "denoiser_calls" in written and "denoiser_weights" in written["totals"]
    error = read_tampered(shapes_output, tmp_path, edit)
    new = field.rsplit(".", 1)[-1].replace("unet", "denoiser")
    assert f"report.json: {field} is the pre-release name of {new}" in str(error)
    assert error.reason == "malformed"


def test_report_that_is_not_json_is_refused(shapes_output: Path, tmp_path: Path) -> None:
    folder = copy_of(shapes_output, tmp_path)
    (folder / "conceptprune" / "report.json").write_text("{nope")
    with pytest.raises(RecordError, match="report.json is not valid JSON"):
        read_report(folder)


def test_evaluations_round_trip_and_malformed_ones_are_named(shapes_output: Path, tmp_path: Path) -> None:
    folder = copy_of(shapes_output, tmp_path)
    evaluation = Evaluation(
        benchmark="shapes",
        concepts=("striped",),
        images=8,
        erased={"before": 0.9, "after": 0.5},
        preserved={"before": 0.95, "after": 0.93},
        pruned_fraction=0.001,
    )
    path = write_evaluation(folder, evaluation)
    assert path == folder / "conceptprune" / "eval" / "shapes.json"
    assert read_evaluations(folder) == [evaluation]
    path.write_text(json.dumps({**evaluation.to_dict(), "images": "8"}))
    with pytest.raises(RecordError, match="eval/shapes.json"):
        read_evaluations(folder)


def test_card_says_what_was_really_pruned(shapes_output: Path, tmp_path: Path) -> None:
    card = build_model_card(shapes_output)
    assert "cross-attention value projection weights of the UNet" in card
    assert "feed-forward output weights" not in card.split("## What was erased")[0]
    assert "| shapes-striped | attn-value | image |" in card
    # A text-encoder edit says so, and gives the fraction of the text encoder.
    recipe = write_recipe(tmp_path / "r", name="text-s", steps=6, tau=2, prune_target="text-ffn", skill_ratio=0.05)
    out = cpedit.prune("builtin:shapes", [recipe], out=tmp_path / "text", compute=CPU).output
    text_card = build_model_card(out)
    assert "text-encoder MLP output weights of the text encoders" in text_card
    assert "% of the text_encoder's weights" in text_card


def test_card_says_what_faithful_means_for_the_calibration_dtype(shapes_output: Path, tmp_path: Path) -> None:
    import dataclasses

    from cpedit.publish.card import fidelity_note

    card = build_model_card(shapes_output)  # calibrated on the CPU in float32
    assert "Calibrated in float32: the selection is identical to the published procedure's" in card
    record = read_output(shapes_output)
    half = dataclasses.replace(record, report=dataclasses.replace(record.report, compute_dtype="float16"))
    half_card = build_model_card(shapes_output, record=half)
    assert "Calibrated in float16, as the authors' own code runs" in half_card
    assert "IoU 0.995-0.997 for cpedit and 0.989-0.993 for the authors' code" in half_card
    assert "identical to the published procedure" not in half_card
    assert "was not measured" in fidelity_note("bfloat16") and "bfloat16" in fidelity_note("bfloat16")
    hostile = fidelity_note("<img src=x onerror=alert(1)>|")  # a tampered report's text never reaches the card
    assert "<img" not in hostile and "|" not in hostile and "was not measured" in hostile


def test_base_model_is_inferred_from_a_hub_cache_snapshot(tmp_path: Path) -> None:
    commit = "a" * 40
    snapshot = tmp_path / "hub" / "models--acme--tiny-sd" / "snapshots" / commit
    assert infer_hub_snapshot(snapshot) == ("acme/tiny-sd", commit)
    assert infer_hub_snapshot(tmp_path / "my-model") is None


def test_card_base_model_override(shapes_output: Path) -> None:
    card = build_model_card(shapes_output, base_model="acme/shapes-base")
    assert "base_model: acme/shapes-base" in card and "base_model_relation: finetune" in card


def test_prune_from_a_hub_cache_snapshot_folder_records_the_hub_id(tiny_sd_path: Path, tmp_path: Path) -> None:
    commit = "b" * 40
    snapshot = tmp_path / "hub" / "models--acme--tiny-sd" / "snapshots" / commit
    shutil.copytree(tiny_sd_path, snapshot)
    recipe = write_recipe(tmp_path / "r", name="snap-s", steps=6, tau=2)
    out = cpedit.prune(snapshot, [recipe], out=tmp_path / "out", compute=CPU).output
    report = read_report(out)
    assert report.base_model.local is True
    assert (report.base_model.repo_id, report.base_model.commit) == ("acme/tiny-sd", commit)
    card = build_model_card(out)
    assert "base_model: acme/tiny-sd" in card and str(tmp_path) not in card
