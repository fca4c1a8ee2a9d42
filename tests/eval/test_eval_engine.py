"""The evaluation engine: prompt sets, the images folder and its manifest, resume, the base cache."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.helpers import CPU, load_fresh, write_recipe

import cpedit
from cpedit.errors import Cancelled, CpeditError
from cpedit.eval.engine import PromptSpec, load_prompts, read_manifest, render_images
from cpedit.output.record import read_output
from cpedit.progress import ProgressEvent

STEPS = 2


@pytest.fixture(scope="module")
def edited(tiny_sd_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cpedit output of the tiny SD pipeline."""
    root = tmp_path_factory.mktemp("eval_engine")
    recipe = write_recipe(root / "recipes", name="eval-style", steps=4, tau=2)
    return cpedit.prune(tiny_sd_path, [recipe], out=root / "out", compute=CPU).output


def test_load_prompts_txt_csv_jsonl(tmp_path: Path) -> None:
    (tmp_path / "p.txt").write_text("a cat\n\n  a dog  \n")
    assert load_prompts(tmp_path / "p.txt") == [PromptSpec("a cat"), PromptSpec("a dog")]
    (tmp_path / "p.csv").write_text("prompt,seed,guidance,height,width\na cat,7,3.5,16,16\na dog,,,,\n")
    assert load_prompts(tmp_path / "p.csv") == [PromptSpec("a cat", 7, 3.5, 16, 16), PromptSpec("a dog")]
    (tmp_path / "p.jsonl").write_text('{"prompt": "a cat", "seed": 3}\n\n{"prompt": "a dog"}\n')
    assert load_prompts(tmp_path / "p.jsonl", limit=1) == [PromptSpec("a cat", seed=3)]
    (tmp_path / "bad.csv").write_text("prompt,seed\na cat,seven\n")
    with pytest.raises(CpeditError, match=r"bad.csv:2: seed must be a whole number") as info:
        load_prompts(tmp_path / "bad.csv")
    assert info.value.argument == "prompts"
    (tmp_path / "none.txt").write_text("\n")
    with pytest.raises(CpeditError, match="no prompts"):
        load_prompts(tmp_path / "none.txt")
    with pytest.raises(CpeditError, match=".txt"):
        load_prompts(tmp_path / "p.yaml")


def test_images_and_manifest_format(edited: Path, tmp_path: Path, counted: list[int]) -> None:
    record = read_output(edited)
    prompts = [PromptSpec("a cat"), PromptSpec("a dog", seed=11, guidance=2.0, height=16, width=16)]
    events: list[ProgressEvent] = []
    rendered = render_images(
        record,
        prompts,
        folder=tmp_path / "images",
        steps=STEPS,
        seed=5,
        images_per_prompt=2,
        batch_size=4,
        compute=CPU,
        on_progress=events.append,
    )
    assert rendered.generated == 4 and rendered.reused == 0
    assert counted == [2, 2]  # batched by shared guidance and size: one call per prompt here
    lines = [json.loads(line) for line in (tmp_path / "images" / "manifest.jsonl").read_text().splitlines()]
    assert [(line["prompt"], line["seed"], line["model"]) for line in lines] == [
        ("a cat", 5, "edited"),
        ("a cat", 6, "edited"),
        ("a dog", 11, "edited"),
        ("a dog", 12, "edited"),
    ]
    for line in lines:
        assert {"prompt", "seed", "file", "model"} <= set(line)
        assert not Path(line["file"]).is_absolute()
        with Image.open(tmp_path / "images" / line["file"]) as image:
            assert image.format == "PNG"
            if line["prompt"] == "a dog":
                assert image.size == (16, 16) and line["guidance"] == 2.0
    assert [e.seed for e in rendered.edited] == [5, 6, 11, 12]
    samples = [e for e in events if e.stage == "sample"]
    assert samples[-1].completed == samples[-1].total == 4 and all(e.unit == "images" for e in samples)


def test_resume_after_cancel_generates_only_the_missing_images(
    edited: Path, tmp_path: Path, counted: list[int]
) -> None:
    record = read_output(edited)
    prompts = [PromptSpec(f"a photo of a {s}") for s in ("cat", "dog", "car", "house", "tree")]
    cancel = threading.Event()

    def stop_after_two(event: ProgressEvent) -> None:
        if event.stage == "sample" and (event.completed or 0) >= 2:
            cancel.set()

    options = dict(folder=tmp_path / "images", steps=STEPS, batch_size=1, compute=CPU)
    with pytest.raises(Cancelled):
        render_images(record, prompts, on_progress=stop_after_two, cancel=cancel, **options)
    assert len(counted) == 3  # the third call was interrupted: its image is not kept
    assert len(read_manifest(tmp_path / "images")) == 2
    # A killed run's half-written manifest line is skipped, and its image generated again.
    with open(tmp_path / "images" / "manifest.jsonl", "a") as handle:
        handle.write('{"prompt": "a photo of a car", "se')
    counted.clear()
    again = render_images(record, prompts, **options)
    assert counted == [1, 1, 1] and again.generated == 3 and again.reused == 2
    assert [e.prompt for e in again.edited] == [p.prompt for p in prompts]
    counted.clear()
    third = render_images(record, prompts, **options)
    assert counted == [] and third.generated == 0 and third.reused == 5


def test_base_images_are_the_base_models_and_cached(
    edited: Path, tiny_sd_path: Path, tmp_path: Path, counted: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    record = read_output(edited)
    prompts = [PromptSpec("a cat in the style of Van Gogh")]
    rendered = render_images(record, prompts, folder=tmp_path / "images", steps=STEPS, base=True, compute=CPU)
    assert rendered.generated == 2 and [e.model for e in rendered.base] == ["base"]
    base_image = np.asarray(Image.open(rendered.base[0].path(rendered.folder)))
    pipe = load_fresh(tiny_sd_path)
    direct = pipe(
        prompts[0].prompt,
        num_inference_steps=STEPS,
        guidance_scale=7.5,
        generator=[torch.Generator("cpu").manual_seed(0)],
    ).images[0]
    assert np.abs(base_image.astype(int) - np.asarray(direct).astype(int)).max() <= 1
    edited_image = np.asarray(Image.open(rendered.edited[0].path(rendered.folder)))
    assert not np.array_equal(edited_image, base_image)

    # Everything cached: a second run loads no model at all.
    import cpedit.models.loading

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded although every image was cached")

    monkeypatch.setattr(cpedit.models.loading, "open_pipeline", refuse)
    counted.clear()
    again = render_images(record, prompts, folder=tmp_path / "images", steps=STEPS, base=True, compute=CPU)
    assert counted == [] and again.reused == 2 and again.base == rendered.base
    # Other settings are other images (the key covers the settings).
    monkeypatch.undo()
    other = render_images(record, prompts, folder=tmp_path / "images", steps=STEPS + 1, compute=CPU)
    assert other.generated == 1 and other.edited[0].key != rendered.edited[0].key


def test_bad_settings_are_refused_before_loading(edited: Path, tmp_path: Path, no_model_loading: None) -> None:
    record = read_output(edited)
    with pytest.raises(CpeditError) as info:
        render_images(record, [PromptSpec("a cat", height=15, width=16)], folder=tmp_path / "i", steps=STEPS)
    assert info.value.argument == "height"


def test_importing_cpedit_eval_costs_no_torch() -> None:
    import subprocess
    import sys

    code = "import sys, cpedit.eval; cpedit.eval.PromptSpec; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_each_batch_reports_its_size_and_every_denoising_step(edited: Path, tmp_path: Path) -> None:
    events: list[ProgressEvent] = []
    prompts = [PromptSpec(f"a photo of a {s}") for s in ("cat", "dog", "car")]
    render_images(
        read_output(edited), prompts, folder=tmp_path / "images", steps=STEPS, batch_size=2,
        compute=CPU, on_progress=events.append
    )  # fmt: skip
    steps = [e for e in events if e.stage == "sample" and e.timestep is not None]
    calls = steps[0].timesteps
    assert calls is not None and calls >= STEPS
    # batch 1 (2 images, none done yet), then batch 2 (1 image, 2 done): every call of each
    expected = [(b, size, done, t) for b, size, done in ((1, 2, 0), (2, 1, 2)) for t in range(1, calls + 1)]
    assert [(e.batch, e.batch_size, e.completed, e.timestep) for e in steps] == expected
    assert all(e.total == 3 and e.batches == 2 and e.concept == "edited" for e in steps)
