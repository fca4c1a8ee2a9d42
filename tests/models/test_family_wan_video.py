"""Wan's video outputs: ``cpedit sample`` and the preview write a frame-strip PNG and an animated GIF."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result
from PIL import Image
from support.helpers import write_recipe

import cpedit
from cpedit.cli.main import cli
from cpedit.models.architectures import SPECS
from cpedit.models.compute import ComputeOptions
from cpedit.models.sampling import MIN_CELL, clip_frames, frame_strip, image_grid
from cpedit.output.record import RECORD_DIR

SIZE = 32
FRAMES = next(spec.sample_frames for spec in SPECS if spec.name == "wan")


def invoke(*args: object) -> Result:
    result = CliRunner(env={"COLUMNS": "200"}).invoke(cli, [str(a) for a in args], catch_exceptions=True)
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result


def frames_of(path: Path) -> list[Image.Image]:
    with Image.open(path) as animation:
        assert animation.format == "GIF"
        frames = []
        for index in range(animation.n_frames):
            animation.seek(index)
            frames.append(animation.convert("RGB").copy())
    return frames


def test_sample_writes_a_frame_strip_png_and_an_animated_gif(tiny_model_path: Any, tmp_path: Path) -> None:
    out = tmp_path / "clip.png"
    result = invoke(
        "sample", tiny_model_path("wan2.1"), "-p", "a cat", "--out", out, "--steps", 2,
        "--height", SIZE, "--width", SIZE, "--device", "cpu",
    )  # fmt: skip
    assert f"{FRAMES} frames" in result.output
    with Image.open(out) as strip:
        assert strip.format == "PNG" and strip.width == FRAMES * SIZE  # the clip's frames side by side
    frames = frames_of(out.with_suffix(".gif"))
    assert len(frames) == FRAMES and frames[0].width == MIN_CELL  # one frame per cell, enlarged for its label
    assert not list(tmp_path.glob(".*"))  # nothing temporary left behind


def test_pruned_wan_preview_is_a_strip_grid_and_an_animation(tiny_model_path: Any, tmp_path: Path) -> None:
    recipe = write_recipe(
        tmp_path, name="wan-preview", subjects=("cat", "dog"), steps=2, tau=2, skill_ratio=0.1, size=SIZE,
        preview=("a cat",),
    )  # fmt: skip
    out = tmp_path / "out"
    cpedit.prune(tiny_model_path("wan2.2"), [recipe], out=out, compute=ComputeOptions(device="cpu"), batch_size=4)
    invoke("sample", out, "--compare", "--save-preview", "--steps", 2, "--height", SIZE, "--width", SIZE,
           "--device", "cpu")  # fmt: skip
    with Image.open(out / RECORD_DIR / "preview.png") as grid:
        assert grid.width == 2 * FRAMES * SIZE  # base and pruned columns of strips
    frames = frames_of(out / RECORD_DIR / "preview.gif")
    assert len(frames) == FRAMES and frames[0].width == 2 * MIN_CELL


def test_grid_of_clips_carries_the_animated_grid() -> None:
    clips = [[Image.new("RGB", (64, 64), (i * 40, 0, 0)) for i in range(3)] for _ in range(2)]
    grid = image_grid([[frame_strip(clips[0])], [frame_strip(clips[1])]], column_labels=["a", "b"], row_labels=["p"])
    animated = clip_frames(grid)
    assert grid.width == 2 * 3 * 64 and len(animated) == 3  # two strips of 3 frames
    assert animated[0].width == 2 * MIN_CELL  # one frame per cell, enlarged for its label
    assert animated[2].getpixel((MIN_CELL // 2, 40)) == (80, 0, 0)  # frame 2 of the first clip
    still = image_grid([[Image.new("RGB", (8, 8))]], column_labels=["a"], row_labels=["p"])
    assert clip_frames(still) == []


def test_image_benchmark_on_video_judges_each_clips_middle_frame(
    tiny_model_path: Any, tiny_clip: Path, tmp_path: Path
) -> None:
    import numpy as np
    import torch
    from diffusers import DiffusionPipeline

    from cpedit.eval.classify import ClassifyOptions
    from cpedit.eval.driver import evaluate
    from cpedit.eval.options import ImageOptions

    recipe = write_recipe(tmp_path, name="wan-van-gogh", concept="Van Gogh", subjects=("cat", "dog"), steps=2, tau=1,
                          size=SIZE)  # fmt: skip
    out = tmp_path / "out"
    cpedit.prune(tiny_model_path("wan2.1"), [recipe], out=out, compute=ComputeOptions(device="cpu"), batch_size=4)
    result = evaluate(
        "classify", out, ClassifyOptions(limit=1, classifier_model=str(tiny_clip)),
        images=ImageOptions(steps=2, height=SIZE, width=SIZE, batch_size=5), compute=ComputeOptions(device="cpu"),
    )  # fmt: skip
    images = result.images
    assert images is not None and len(images.edited) == 5  # one image per prompt: intervals stay over prompts
    assert result.protocol["images"] == 5
    pipe = DiffusionPipeline.from_pretrained(str(out), use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    entry = images.edited[0]
    clip = pipe(entry.prompt, num_inference_steps=2, height=SIZE, width=SIZE, num_frames=FRAMES, guidance_scale=7.5,
                generator=torch.Generator().manual_seed(entry.seed), output_type="np").frames[0]  # fmt: skip
    with Image.open(entry.path(images.folder)) as saved:
        judged = np.asarray(saved.convert("RGB")).astype(int)
    expected = (clip[FRAMES // 2] * 255).round().astype(int)
    assert judged.shape == (SIZE, SIZE, 3) and np.abs(judged - expected).max() <= 1  # the middle frame
