"""CLIP score and FID: the metrics against direct computations, the benchmarks, their JSON and the card."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from support.helpers import CPU, write_recipe

import cpedit
from cpedit.errors import CpeditError
from cpedit.eval.clip_score import ClipScoreOptions
from cpedit.eval.driver import evaluate, record_result
from cpedit.eval.engine import PromptSpec
from cpedit.eval.fid import FidOptions
from cpedit.eval.intervals import Estimate, with_interval
from cpedit.eval.metrics import (
    fid_of_features,
    frechet_distance,
    image_features,
    inception_extractor,
    load_clip_scorer,
    statistics,
)
from cpedit.eval.options import ImageOptions
from cpedit.output.record import RecordError, read_evaluations, read_output
from cpedit.publish.card import build_model_card
from cpedit.publish.push import folder_files

STEPS = 2
PROMPTS = [PromptSpec("a photo of a cat"), PromptSpec("a photo of a dog"), PromptSpec("a red car", seed=4)]


@pytest.fixture(scope="module")
def edited(tiny_sd_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("eval_metrics")
    recipe = write_recipe(root / "recipes", name="eval-style", steps=4, tau=2)
    return cpedit.prune(tiny_sd_path, [recipe], out=root / "out", compute=CPU).output


class SmallFeatures(torch.nn.Module):
    """A small fixed network standing in for Inception (same code path)."""

    name = "small-test-features"
    size = 16

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 6, 3, stride=2)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        assert images.dtype == torch.uint8 and images.shape[1:] == (3, 16, 16)
        return self.conv(images.float() / 255).mean(dim=(2, 3))


# --- Fréchet distance ----------------------------------------------------------------------


def test_frechet_distance_equals_a_direct_computation() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 5)), rng.normal(loc=0.3, size=(60, 5)) @ rng.normal(size=(5, 5))
    mu1, s1 = a.mean(0), np.cov(a, rowvar=False)
    mu2, s2 = b.mean(0), np.cov(b, rowvar=False)
    # tr sqrtm(s1 s2) = sum of the square roots of the eigenvalues of s1 s2 (real, non-negative).
    direct = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2) - 2 * np.sqrt(np.linalg.eigvals(s1 @ s2).real).sum()
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(direct, rel=1e-9)
    assert fid_of_features(a, b) == pytest.approx(direct, rel=1e-9)
    # One dimension: (m1 - m2)^2 + (sd1 - sd2)^2.
    assert frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([3.0]), np.array([[9.0]])) == pytest.approx(
        4 + 1
    )
    assert fid_of_features(a, a) == pytest.approx(0, abs=1e-9)
    with pytest.raises(CpeditError, match="at least 2"):
        statistics(a[:1])


def test_without_scipy_the_eigen_route_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "scipy", None)
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(40, 4)), rng.normal(size=(40, 4)) * 2
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    direct = np.trace(s1 + s2) - 2 * np.sqrt(np.linalg.eigvals(s1 @ s2).real).sum()
    assert frechet_distance(np.zeros(4), s1, np.zeros(4), s2) == pytest.approx(direct, rel=1e-9)


def test_inception_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        with pytest.raises(CpeditError, match="pip install torch-fidelity.*weights-inception-2015-12-05"):
            inception_extractor(device="cpu")
        return
    with pytest.raises(CpeditError, match="weights-inception-2015-12-05-6726825d.pth"):  # offline: no download
        inception_extractor(device="cpu")


# --- CLIP score ------------------------------------------------------------------------------


def test_clip_score_equals_a_direct_computation(tiny_clip: Path) -> None:
    from transformers import CLIPModel, CLIPProcessor

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, size=(40, 40, 3), dtype=np.uint8)) for _ in range(3)]
    prompts = ["a cat", "a dog in the snow", "a red car"]
    scorer = load_clip_scorer(tiny_clip, device="cpu")
    got = scorer.scores(images, prompts, batch_size=2)

    model = CLIPModel.from_pretrained(tiny_clip, use_safetensors=True).eval()
    processor = CLIPProcessor.from_pretrained(tiny_clip)
    inputs = processor(text=prompts, images=images, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(**inputs)
    cos = (out.image_embeds * out.text_embeds).sum(-1).double()  # both unit vectors
    expected = (100 * cos.clamp(min=0)).tolist()
    assert got == pytest.approx(expected, abs=1e-4)
    assert scorer.score(images, prompts) == pytest.approx(float(np.mean(expected)), abs=1e-4)


def test_an_unloadable_clip_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CpeditError, match="cannot load the CLIP model") as info:
        load_clip_scorer(tmp_path / "nothing-here", device="cpu")
    assert info.value.argument == "clip_model"


# --- The benchmarks, their JSON and the card -------------------------------------------------


def test_clip_score_benchmark_before_after_is_recorded_and_shown(edited: Path, tiny_clip: Path, tmp_path: Path) -> None:
    result = evaluate(
        "clip-score",
        edited,
        ClipScoreOptions(prompts=PROMPTS, prompts_name="prompts.txt", clip_model=str(tiny_clip)),
        images=ImageOptions(steps=STEPS),
        base=True,
        compute=CPU,
    )
    values = result.metrics["clip_score"]
    assert set(values) == {"before", "after"} and all(0 <= v <= 100 for v in values.values())
    protocol = result.protocol
    assert protocol["prompt_count"] == 3 and protocol["images"] == 3 and protocol["steps"] == STEPS
    assert protocol["seeds"] == [0, 0, 4] and protocol["metric_model"] == f"local:{tiny_clip.name}"
    record_result(edited, result, json_file=tmp_path / "clip.json")
    data = json.loads((edited / "conceptprune" / "eval" / "clip-score.json").read_text())
    assert data == json.loads((tmp_path / "clip.json").read_text())
    assert set(data) == {"clip_score", "intervals", "protocol"} and set(data["clip_score"]) == {"before", "after"}
    # every phase and the paired change carry a 95% interval, bootstrapped over the 3 prompts
    intervals = data["intervals"]["clip_score"]
    assert set(intervals) == {"before", "after", "change"}
    for phase in ("before", "after"):
        assert intervals[phase]["value"] == values[phase] and intervals[phase]["n"] == 3
        assert intervals[phase]["low"] <= values[phase] <= intervals[phase]["high"]
        assert intervals[phase]["method"] == "bootstrap-prompts"
    assert intervals["change"]["method"] == "paired-bootstrap-prompts"
    assert intervals["change"]["value"] == pytest.approx(values["after"] - values["before"])
    assert data["protocol"]["intervals"]["bootstrap_seed"] == 0 and data["protocol"]["intervals"]["level"] == 0.95
    assert [e.benchmark for e in read_evaluations(edited)] == ["clip-score"]
    kept = read_output(edited).evaluations[0]  # complete output, images folder included
    assert kept.metrics == result.metrics and kept.intervals == data["intervals"]
    assert Estimate.from_dict(kept.intervals["clip_score"]["after"]) == result.intervals["clip_score"]["after"]
    card = build_model_card(edited)
    assert (
        "### clip-score" in card and "| metric | before | after | change | paper (ConceptPrune, for context) |" in card
    )
    shown = [with_interval(values[p], intervals[p], digits=4) for p in ("before", "after")]
    assert f"| clip_score | {shown[0]} | {shown[1]} | " in card and "| 27.93 (MS-COCO captions) |" in card
    assert "95% interval" in card
    published = folder_files(edited)
    assert "conceptprune/eval/clip-score.json" in published
    assert not [f for f in published if f.startswith("conceptprune/eval/images/")]  # the images stay local


def test_malformed_metric_results_are_named(edited: Path, tmp_path: Path) -> None:
    import shutil

    folder = Path(shutil.copytree(edited, tmp_path / "copy"))
    path = folder / "conceptprune" / "eval" / "bad.json"
    interval = {"value": 1.0, "low": 0.5, "high": 1.5, "method": "wilson", "n": 3}
    for data in (
        {"protocol": {}},
        {"clip_score": {"before": 1.0}, "protocol": {}},
        {"fid": 3, "protocol": {}},
        {"fid": {"after": 1.0}, "intervals": {"clip": {"after": interval}}, "protocol": {}},  # no such metric
        {"fid": {"after": 1.0}, "intervals": {"fid": {"after": {**interval, "low": 2.0}}}, "protocol": {}},
        {"fid": {"after": 1.0}, "intervals": {"fid": {"after": {**interval, "high": float("nan")}}}, "protocol": {}},
        {"fid": {"after": 1.0}, "intervals": {"fid": {"during": interval}}, "protocol": {}},
        {"fid": {"after": 1.0}, "intervals": {"fid": {"after": {**interval, "n": True}}}, "protocol": {}},
        {"fid": {"after": 1.0}, "intervals": {"fid": {"after": {**interval, "method": "<b>x</b>"}}}, "protocol": {}},
    ):
        path.write_text(json.dumps(data))
        with pytest.raises(RecordError, match="eval/bad.json"):
            read_evaluations(folder)


def test_fid_benchmark_with_a_small_feature_network(edited: Path, tmp_path: Path) -> None:
    extractor = SmallFeatures()
    common = dict(images=ImageOptions(steps=STEPS), compute=CPU)
    against_base = evaluate("fid", edited, FidOptions(prompts=PROMPTS, feature_extractor=extractor), **common)
    assert set(against_base.metrics["fid"]) == {"after"}  # the reference is the base model's images
    images = against_base.images
    assert images is not None and len(images.base) == len(images.edited) == 3

    def features(entries: list) -> np.ndarray:  # type: ignore[type-arg]
        return image_features(extractor, [Image.open(e.path(images.folder)) for e in entries])

    assert against_base.metrics["fid"]["after"] == pytest.approx(
        fid_of_features(features(images.edited), features(images.base)), rel=1e-9
    )
    assert against_base.protocol["reference"] == {"kind": "base_model_images", "images": 3}

    reference = tmp_path / "real"
    reference.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, size=(24, 24, 3), dtype=np.uint8)).save(reference / f"{i}.png")
    options = FidOptions(prompts=PROMPTS, feature_extractor=extractor, reference=reference)
    with_reference = evaluate("fid", edited, options, base=True, **common)
    fid = with_reference.metrics["fid"]
    assert set(fid) == {"before", "after"} and with_reference.images.generated == 0  # all reused
    real = image_features(extractor, [Image.open(p) for p in sorted(reference.glob("*.png"))])
    assert fid["after"] == pytest.approx(fid_of_features(features(images.edited), real), rel=1e-9)
    assert fid["before"] == pytest.approx(fid_of_features(features(images.base), real), rel=1e-9)
    record_result(edited, with_reference)
    card = build_model_card(edited)
    assert "### fid" in card and f"| fid | {fid['before']:.4f} | {fid['after']:.4f} |" in card
    # FID has no per-image interval: the result and the card say why
    assert (
        with_reference.intervals == {}
        and "not a mean over images" in with_reference.protocol["intervals"]["none"]["fid"]
    )
    assert "No interval for fid: FID compares two sets" in card


def test_cli_clip_score_json_and_card(edited: Path, tiny_clip: Path, tmp_path: Path) -> None:
    from cpedit.cli.main import cli

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a photo of a cat\na photo of a dog\n")
    args = ["eval", "clip-score", str(edited), "--prompts", str(prompts), "--clip-model", str(tiny_clip)]
    args += ["--steps", str(STEPS), "--device", "cpu", "--limit", "1", "--format", "json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data["clip_score"]) == {"after"} and data["protocol"]["prompts"] == "prompts.txt"
    assert data["protocol"]["prompt_count"] == 1
    card = CliRunner().invoke(cli, ["card", str(edited)])
    assert card.exit_code == 0 and "| clip_score | - |" in card.stdout
    table = CliRunner().invoke(cli, args[:-2] + ["--format", "table"])
    assert table.exit_code == 0 and "clip_score" in table.stdout and "1 reused" in table.stdout
