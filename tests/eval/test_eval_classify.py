"""``cpedit eval classify``: the classifiers against direct computations, concept discovery, the benchmark, the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from support.helpers import write_recipe
from support.paths import REPO_ROOT

import cpedit
from cpedit.errors import CpeditError
from cpedit.eval.classify import (
    ARTISTS,
    FAMILIES,
    IMAGENET_INDEX,
    OBJECTS,
    ClassifyOptions,
    ClipClassifier,
    classifier_detector,
    classify_prompts,
    erased_concepts,
    load_classifier,
)
from cpedit.eval.driver import evaluate, record_result
from cpedit.eval.engine import PromptSpec
from cpedit.eval.intervals import wilson
from cpedit.eval.metrics import load_images
from cpedit.eval.options import ImageOptions
from cpedit.models.compute import ComputeOptions
from cpedit.output.record import read_evaluations, read_output

STEPS = 2


@pytest.fixture(scope="module")
def edited(tiny_sd_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny output whose recipe erases "Van Gogh" (an artist-like recipe, a few prompts)."""
    root = tmp_path_factory.mktemp("eval_classify")
    recipe = write_recipe(root / "recipes", name="eval-van-gogh", concept="Van Gogh", steps=4, tau=2)
    return cpedit.prune(tiny_sd_path, [recipe], out=root / "out", compute=ComputeOptions(device="cpu")).output


@pytest.fixture(scope="module")
def tiny_resnet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random ResNet with the 1000 ImageNet labels, saved with save_pretrained (safetensors)."""
    from transformers import ConvNextImageProcessor, ResNetConfig, ResNetForImageClassification

    folder = tmp_path_factory.mktemp("tiny_resnet")
    torch.manual_seed(0)
    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", num_labels=1000)
    ResNetForImageClassification(config).save_pretrained(folder)
    ConvNextImageProcessor(size={"shortest_edge": 32}).save_pretrained(folder)
    return folder


def random_images(count: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, size=(40, 40, 3), dtype=np.uint8)) for _ in range(count)]


# --- The classifiers against direct computations ---------------------------------------------


def test_clip_classification_is_the_argmax_over_the_label_texts(tiny_clip: Path) -> None:
    from transformers import CLIPModel, CLIPProcessor

    images = random_images(6)
    classifier = load_classifier("clip", tiny_clip, device="cpu")
    got = classifier.predict(images, ARTISTS, batch_size=4)

    model = CLIPModel.from_pretrained(tiny_clip, use_safetensors=True).eval()
    processor = CLIPProcessor.from_pretrained(tiny_clip)
    labels = ["a painting in the style of " + a for a in ("Van Gogh", "Monet", "Pablo Picasso")]
    labels += ["a painting in the style of Leonardo Da Vinci", "a painting in the style of Salvador Dali"]
    assert ARTISTS.labels() == labels
    inputs = processor(text=labels, images=images, return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**inputs).logits_per_image
    assert got == logits.argmax(dim=1).tolist()
    assert OBJECTS.labels()[:2] == ["a photo of a tench", "a photo of an English springer"]


def test_resnet_classification_is_the_argmax_over_the_imagenette_logits(tiny_resnet: Path) -> None:
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    images = random_images(5, seed=1)
    classifier = load_classifier("resnet50", tiny_resnet, device="cpu")
    got = classifier.predict(images, OBJECTS, batch_size=2)

    model = AutoModelForImageClassification.from_pretrained(tiny_resnet, use_safetensors=True).eval()
    processor = AutoImageProcessor.from_pretrained(tiny_resnet)
    indices = [0, 217, 482, 491, 497, 566, 569, 571, 574, 701]
    assert [c.imagenet_index for c in OBJECTS.concepts] == indices == list(IMAGENET_INDEX.values())
    with torch.no_grad():
        logits = model(**processor(images=images, return_tensors="pt")).logits
    assert got == logits[:, indices].argmax(dim=1).tolist()
    with pytest.raises(CpeditError, match="use the CLIP classifier") as info:
        classifier.predict(images, ARTISTS)
    assert info.value.argument == "classifier"


def test_unloadable_classifiers_are_clear_errors(tmp_path: Path, tiny_clip: Path) -> None:
    for kind in ("clip", "resnet50"):
        with pytest.raises(CpeditError, match=f"cannot load the {kind} classifier") as info:
            load_classifier(kind, tmp_path / "nothing-here", device="cpu")
        assert info.value.argument == "classifier_model" and info.value.path == str(tmp_path / "nothing-here")
    with pytest.raises(
        CpeditError, match="not the 1000 ImageNet-1k classes"
    ):  # a CLIP folder is no ImageNet classifier
        load_classifier("resnet50", tiny_clip, device="cpu")
    with pytest.raises(CpeditError, match="unknown classifier 'vit'") as info:
        load_classifier("vit", device="cpu")
    assert info.value.argument == "classifier"


# --- Prompts and concepts ---------------------------------------------------------------------


def test_prompt_sets_fill_every_concept_with_the_same_templates() -> None:
    held_out = classify_prompts(ARTISTS, limit=2)
    assert [s.prompt for _, s in held_out[:2]] == [
        "a house in the style of Van Gogh",
        "a tree in the style of Van Gogh",
    ]
    assert [c.name for c, _ in held_out] == [c.name for c in ARTISTS.concepts for _ in range(2)]
    paper = classify_prompts(OBJECTS, prompt_set="paper")
    assert len(paper) == 120 and paper[12][1].prompt == "an English springer in a road"
    excluded = classify_prompts(ARTISTS, exclude={"a house in the style of monet"}, limit=1)
    assert [s.prompt for _, s in excluded][:2] == ["a tree in the style of Van Gogh", "a tree in the style of Monet"]
    templates = [PromptSpec("{a_concept} on a plate", seed=7), PromptSpec("a {concept} toy")]
    filled = classify_prompts(OBJECTS, templates=templates)
    assert filled[0][1] == PromptSpec("a tench on a plate", seed=7) and filled[3][1].prompt == "a English springer toy"
    # The held-out sets never meet the shipped recipes' calibration prompts.
    from cpedit.recipes.format import load_recipe

    root = REPO_ROOT / "recipes"
    calibration = {p.lower() for f in root.glob("*/*.yaml") for pair in load_recipe(f).pairs() for p in pair}
    for family in FAMILIES.values():
        assert not {s.prompt.lower() for _, s in classify_prompts(family)} & calibration
    with pytest.raises(CpeditError, match="names no concept") as info:
        classify_prompts(ARTISTS, templates=[PromptSpec("a photo of a cat")])
    assert info.value.argument == "prompts"
    with pytest.raises(CpeditError, match="no prompt template left"):
        classify_prompts(ARTISTS, templates=[PromptSpec("a {concept}")], exclude={"a van gogh"})


def _record(*concepts: tuple[str, str]) -> SimpleNamespace:
    items = tuple(SimpleNamespace(name=name, concept=concept) for name, concept in concepts)
    return SimpleNamespace(folder=Path("out"), report=SimpleNamespace(concepts=items), recipes=[])


def test_erased_concepts_come_from_the_record_or_the_options(edited: Path) -> None:
    family, erased = erased_concepts(read_output(edited))
    assert family is ARTISTS and [c.name for c in erased] == ["Van Gogh"]
    family, erased = erased_concepts(_record(("church", "church"), ("x", "English Springer Spaniel")))
    assert family is OBJECTS and [c.slug for c in erased] == ["church", "english-springer"]
    family, erased = erased_concepts(_record(("my-recipe", "Claude Monet")))
    assert [c.name for c in erased] == ["Monet"]
    # Overrides: names or slugs, any case.
    family, erased = erased_concepts(read_output(edited), concepts=["monet", "SALVADOR-DALI"])
    assert family is ARTISTS and [c.name for c in erased] == ["Monet", "Salvador Dali"]
    # A family picks its concepts out of a multi-concept edit.
    family, erased = erased_concepts(_record(("nudity", "naked"), ("van-gogh", "Van Gogh")), family="artists")
    assert [c.name for c in erased] == ["Van Gogh"]


def test_unknown_families_and_concepts_are_clear_errors(edited: Path) -> None:
    record = read_output(edited)
    with pytest.raises(CpeditError, match="unknown concept family 'paintings'; choose one of artists, objects") as info:
        erased_concepts(record, family="paintings")
    assert info.value.argument == "family"
    with pytest.raises(CpeditError, match="'rembrandt' is not one this benchmark classifies.*van-gogh") as info:
        erased_concepts(record, concepts=["rembrandt"])
    assert info.value.argument == "concepts"
    with pytest.raises(CpeditError, match="recipe 'nudity' erases 'naked'.*name the concepts") as info:
        erased_concepts(_record(("nudity", "naked")))
    assert info.value.argument == "concepts"
    with pytest.raises(CpeditError, match="no recipe of this output erases a concept of the objects family"):
        erased_concepts(record, family="objects")
    with pytest.raises(CpeditError, match="different families"):
        erased_concepts(record, concepts=["van-gogh", "church"])
    with pytest.raises(CpeditError, match="not one this benchmark classifies"):
        erased_concepts(record, family="objects", concepts=["van-gogh"])


# --- The benchmark ------------------------------------------------------------------------------


def test_classify_benchmark_accuracies_equal_a_direct_computation(edited: Path, tiny_clip: Path) -> None:
    result = evaluate(
        "classify",
        edited,
        ClassifyOptions(limit=1, classifier_model=str(tiny_clip)),
        images=ImageOptions(steps=STEPS, batch_size=5),
        base=True,
        compute=ComputeOptions(device="cpu"),
    )
    images = result.images
    assert images is not None and len(images.edited) == len(images.base) == 5  # one prompt per artist
    # "a house in the style of Van Gogh" is a calibration prompt of the edit: the next template serves every artist.
    assert [e.prompt for e in images.edited] == [f"a tree in the style of {c.name}" for c in ARTISTS.concepts]
    classifier = load_classifier("clip", tiny_clip, device="cpu")
    per_concept = result.protocol["per_concept"]
    for phase, entries in (("before", images.base), ("after", images.edited)):
        predicted = classifier.predict(load_images([e.path(images.folder) for e in entries]), ARTISTS)
        hits = [p == i for i, p in enumerate(predicted)]  # image i shows artist i
        assert result.metrics["erased_accuracy"][phase] == float(hits[0])
        assert result.metrics["preserved_accuracy"][phase] == pytest.approx(sum(hits[1:]) / 4)
        assert [per_concept[c.name][phase] for c in ARTISTS.concepts] == [float(h) for h in hits]
    assert per_concept["Van Gogh"]["role"] == "erased" and per_concept["Monet"] == {
        "role": "preserved",
        "images": 1,
        "before": per_concept["Monet"]["before"],
        "after": per_concept["Monet"]["after"],
    }
    protocol = result.protocol
    assert protocol["family"] == "artists" and protocol["erased_concepts"] == ["Van Gogh"]
    assert protocol["preserved_concepts"] == ["Monet", "Pablo Picasso", "Leonardo Da Vinci", "Salvador Dali"]
    assert protocol["classifier"] == "clip" and protocol["metric_model"] == f"local:{tiny_clip.name}"
    assert protocol["labels"] == ARTISTS.labels() and protocol["prompt_set"] == "held-out"
    assert protocol["prompts"] == "artists-held-out" and protocol["calibration_prompts"] == 0
    assert protocol["images"] == 5 and protocol["steps"] == STEPS

    record_result(edited, result)
    data = json.loads((edited / "conceptprune" / "eval" / "classify.json").read_text())
    assert set(data) == {"erased_accuracy", "preserved_accuracy", "intervals", "protocol"}
    assert all(0 <= v <= 1 for k in ("erased_accuracy", "preserved_accuracy") for v in data[k].values())
    # shares of images: Wilson intervals over the images counted (1 erased, 4 preserved), the change paired
    for name, n in (("erased_accuracy", 1), ("preserved_accuracy", 4)):
        for phase in ("before", "after"):
            hits = round(data[name][phase] * n)
            assert data["intervals"][name][phase] == wilson(hits, n).to_dict()
        assert data["intervals"][name]["change"]["method"] == "paired-bootstrap-prompts"
    assert [e.metrics for e in read_evaluations(edited) if e.benchmark == "classify"] == [result.metrics]


def test_resnet_on_artists_is_refused_before_anything_runs(edited: Path, no_model_loading: None) -> None:
    with pytest.raises(CpeditError, match="resnet50 classifier knows ImageNet classes, not the artists") as info:
        evaluate("classify", edited, ClassifyOptions(classifier="resnet50"), images=ImageOptions(steps=STEPS))
    assert info.value.argument == "classifier"


def test_classifier_detector_says_whether_the_concept_is_shown(tiny_clip: Path, tmp_path: Path) -> None:
    paths = []
    for i, image in enumerate(random_images(4, seed=3)):
        paths.append(tmp_path / f"{i}.png")
        image.save(paths[-1])
    detector = classifier_detector("Monet", classifier_model=tiny_clip, device="cpu")
    assert detector.name == "classify-clip" and detector.version == f"1:{tiny_clip}"
    predicted = ClipClassifier(detector.classifier.scorer).predict(load_images(paths), ARTISTS)  # type: ignore[attr-defined]
    assert detector.concept_present(paths) == [p == 1 for p in predicted]
    with pytest.raises(CpeditError, match="'rembrandt' is not one this detector classifies"):
        classifier_detector("rembrandt", classifier_model=tiny_clip)


# --- The command -------------------------------------------------------------------------------


def test_cli_classify_json_table_and_errors(edited: Path, tiny_clip: Path, tiny_resnet: Path, tmp_path: Path) -> None:
    from cpedit.cli.eval_classify import eval_classify_command
    from cpedit.cli.hints import message_with_hint

    # Objects judged by the ImageNet classifier, on prompt templates from a file.
    templates = tmp_path / "templates.txt"
    templates.write_text("{a_concept} on a table\n")
    args = [str(edited), "--family", "objects", "--concepts", "church,Gas Pump", "--prompts", str(templates)]
    args += ["--classifier", "resnet50", "--classifier-model", str(tiny_resnet), "--steps", str(STEPS)]
    args += ["--device", "cpu", "--format", "json", "--json", str(tmp_path / "r.json")]
    result = CliRunner().invoke(eval_classify_command, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data == json.loads((tmp_path / "r.json").read_text())
    assert set(data["erased_accuracy"]) == set(data["preserved_accuracy"]) == {"after"}
    protocol = data["protocol"]
    assert protocol["prompts"] == "templates.txt" and protocol["prompt_set"] == "file" and protocol["images"] == 10
    assert protocol["erased_concepts"] == ["church", "gas pump"] and protocol["classifier"] == "resnet50"
    assert protocol["labels"]["church"] == 497 and protocol["per_concept"]["gas pump"]["role"] == "erased"
    tench = protocol["per_concept"]["tench"]
    assert set(tench) == {"role", "images", "after"} and tench["images"] == 1 and tench["after"] in (0.0, 1.0)
    assert [e.benchmark for e in read_evaluations(edited)].count("classify") == 1

    # The artists' table, before and after (the images of the benchmark test above are reused).
    args = [str(edited), "--classifier-model", str(tiny_clip), "--steps", str(STEPS), "--device", "cpu"]
    table = CliRunner().invoke(eval_classify_command, [*args, "--limit", "1", "--base"])
    assert table.exit_code == 0, table.output
    for text in ("erased accuracy", "preserved accuracy", "preservation drop", "Pablo Picasso (preserved", "reused"):
        assert text in table.stdout

    bad = CliRunner().invoke(eval_classify_command, [str(edited), "--concepts", "rembrandt"])
    assert isinstance(bad.exception, CpeditError)
    assert "hint: see --concepts" in message_with_hint(bad.exception, eval_classify_command)
    assert "cpedit eval classify" in CliRunner().invoke(eval_classify_command, ["--help"]).output
