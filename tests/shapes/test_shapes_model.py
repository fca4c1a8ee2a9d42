"""The built-in shapes model and classifier: shipped, loadable, small, and usable as MODEL."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cpedit.cli.main import cli
from cpedit.errors import ModelLoadError
from cpedit.models.loading import resolve_source
from cpedit.shapes import world
from cpedit.shapes.classifier import classify, load_classifier
from cpedit.shapes.model import BUILTIN_MODEL_NAME, builtin_pipeline_path, training_report_path


def test_pipeline_folder_is_small_and_safetensors_only() -> None:
    folder = builtin_pipeline_path()
    files = [f for f in folder.rglob("*") if f.is_file()]
    assert sum(f.stat().st_size for f in files) <= 15 * 1024 * 1024
    weights = [f for f in files if f.suffix in {".bin", ".safetensors", ".pt", ".ckpt", ".pth"}]
    assert weights and all(f.suffix == ".safetensors" for f in weights)


def test_loads_through_from_pretrained_and_generates_32px_images() -> None:
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    from cpedit.models.ffn import find_ffn_output_layers

    pipe = StableDiffusionPipeline.from_pretrained(str(builtin_pipeline_path()), use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    assert isinstance(pipe.unet, UNet2DConditionModel)
    layers = find_ffn_output_layers(pipe.unet)
    assert len(layers) == 7  # GEGLU feed-forwards of the cross-attention transformer blocks (8x8, 4x4, mid)
    image = pipe(
        "a plain red square on a white background",
        num_inference_steps=10,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).images[0]
    assert image.shape == (32, 32, 3)


def test_classifier_reads_known_scenes() -> None:
    model = load_classifier()
    assert model.attributes == world.BUILTIN.attributes  # the shipped classifier knows the shipped world
    pairs = world.sample(300, seed=4242, vocabulary=world.BUILTIN)
    predictions = classify(model, world.render_many(pairs, vocabulary=world.BUILTIN))
    for name in world.BUILTIN.attributes:
        accuracy = np.mean([p[name] == scene.value(name) for p, (scene, _) in zip(predictions, pairs, strict=True)])
        assert accuracy >= 0.98, (name, accuracy)  # 99.7-100% per attribute on 3000 scenes in the training report
    scene = world.Scene("star", "red", "striped", "white")
    one = classify(model, [world.render(scene, seed=1, vocabulary=world.BUILTIN)])[0]
    assert one == {name: scene.value(name) for name in world.BUILTIN.attributes}


def test_training_report_records_the_goals() -> None:
    report = json.loads(training_report_path().read_text())
    assert min(report["classifier_accuracy_on_drawn_scenes"].values()) >= 0.98
    assert report["pipeline_bytes"] <= 15 * 1024 * 1024
    assert report["timings_s"]["total"] <= 60 * 60
    held_out = report["generated_attribute_accuracy"]["held_out_captions"]
    assert set(held_out) == set(world.BUILTIN.attributes) and min(held_out.values()) >= 0.90


def test_shipped_model_shows_the_held_out_captions_attributes() -> None:
    """Re-measure the report's held-out check on the shipped weights (240 images, about 20 s)."""
    import torch

    from devtools.train_shapes import HELD_OUT_CHECK_SEED, check_scenes, measure_attributes

    report = json.loads(training_report_path().read_text())
    checked = report["generated_attribute_accuracy"]
    measured = measure_attributes(
        builtin_pipeline_path(),
        load_classifier(),
        check_scenes(world.held_out_scenes(vocabulary=world.BUILTIN), checked["held_out_captions_count"]),
        per_scene=checked["images_per_caption"],
        seed=HELD_OUT_CHECK_SEED,
        device=torch.device("cpu"),
        **report["generation_settings"],
    )
    for name in world.BUILTIN.attributes:
        assert measured[name] >= 0.90, (name, measured)
        # the same images as the training run's check: at most a few borderline readings may differ
        assert abs(measured[name] - checked["held_out_captions"][name]) <= 0.025, (name, measured)


def test_short_name_resolves_to_the_shipped_folder() -> None:
    source = resolve_source(BUILTIN_MODEL_NAME)
    assert source.path == builtin_pipeline_path() and source.ref == BUILTIN_MODEL_NAME
    with pytest.raises(ModelLoadError, match="Hub models only"):
        resolve_source(BUILTIN_MODEL_NAME, revision="main")


def test_prune_without_model_uses_the_builtin_model(tmp_path: Path) -> None:
    out = tmp_path / "no-stripes"
    result = CliRunner().invoke(cli, ["prune", "--recipe", "shapes-striped", "--out", str(out), "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "conceptprune" / "report.json").read_text())
    assert report["base_model"]["id"] == BUILTIN_MODEL_NAME and report["base_model"]["path"] is None
    assert report["totals"]["pruned_weights"] > 0


def test_model_card_of_a_builtin_edit_names_no_hub_base(tmp_path: Path) -> None:
    from huggingface_hub import ModelCard

    from cpedit.eval.benchmark import BenchmarkResult
    from cpedit.eval.driver import record_result
    from cpedit.output.record import Evaluation
    from cpedit.publish.card import build_model_card

    out = tmp_path / "no-red"
    assert CliRunner().invoke(cli, ["prune", "-r", "shapes-red", "--out", str(out)]).exit_code == 0
    shapes = {"erased": {"before": 0.9, "after": 0.1}, "preserved": {"before": 0.95, "after": 0.93}}
    measured = {"concepts": ["red"], "images": 8, **shapes, "pruned_fraction": 0.001}
    record_result(
        out, BenchmarkResult("shapes", shapes, {}, evaluation=Evaluation.from_dict("shapes", measured, source=""))
    )
    card = ModelCard(build_model_card(out, repo_id="alice/shapes-no-red", base_metadata={}))
    assert "base_model" not in card.data.to_dict()
    assert "conceptprune" in card.data.tags and "red" in card.data.tags
    assert f"`{BUILTIN_MODEL_NAME}`" in card.text and "a local model" not in card.text
    assert "0.9" in card.text and "shapes" in card.text  # the evaluation recorded beside the model
    assert str(tmp_path) not in card.content


def test_prune_help_names_the_builtin_model() -> None:
    result = CliRunner().invoke(cli, ["prune", "--help"])
    assert result.exit_code == 0 and BUILTIN_MODEL_NAME in result.output
