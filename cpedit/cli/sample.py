"""``cpedit sample``: render seeded images, or base-vs-pruned comparisons."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click
from rich.markup import escape

from cpedit.cli.guard import command_guard
from cpedit.cli.layout import stderr_console, stdout_console
from cpedit.cli.options import compute_options, guidance_option, seed_option, size_options, steps_option
from cpedit.cli.render import ProgressView
from cpedit.durable import write_each
from cpedit.errors import CpeditError
from cpedit.models.compute import ComputeOptions
from cpedit.models.sampling import (
    SampleSettings,
    animation_path,
    clip_frames,
    render_samples,
    save_animation,
    save_png,
)
from cpedit.output.preview import compare_samples
from cpedit.output.preview import save_preview as save_preview_file


@click.command("sample")
@click.argument("model", metavar="MODEL_OR_DIR")
@click.option(
    "--prompt",
    "-p",
    "prompts",
    multiple=True,
    metavar="TEXT",
    help="A prompt (repeat for several). Default with --compare: the recipes' preview prompts.",
)
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False),
    help="Where to write the image grid (PNG). For a video model (Wan) each cell is the clip's frames side by "
    "side, and the animated grid is written beside it as a GIF (FILE.gif).",
)
@click.option(
    "--compare", is_flag=True, help="MODEL_OR_DIR is a cpedit output: render its base model and it side by side."
)
@click.option(
    "--save-preview",
    is_flag=True,
    help="With --compare: also save the grid as MODEL_OR_DIR/conceptprune/preview.png, the preview that the "
    "model card shows and `cpedit push` uploads.",
)
@steps_option(default=30)
@guidance_option()
@seed_option(help="Seed of the images, the same for every image.")
@size_options
@click.option(
    "--no-safety-checker",
    is_flag=True,
    help="Do not load the model's safety checker (it blacks out images it flags), e.g. to inspect "
    "what a nudity erasure really renders.",
)
@compute_options()
@command_guard()
def sample_command(
    model: str,
    prompts: tuple[str, ...],
    out: str | None,
    compare: bool,
    save_preview: bool,
    steps: int,
    guidance_scale: float,
    seed: int,
    height: int | None,
    width: int | None,
    no_safety_checker: bool,
    compute: ComputeOptions,
) -> None:
    """Render seeded images from MODEL_OR_DIR into one grid.

    \b
    Examples:
      cpedit sample CompVis/stable-diffusion-v1-4 -p "a cat in the style of Van Gogh" --out cat.png
      cpedit sample sd14-no-van-gogh --compare --out before-after.png
      cpedit sample sd14-no-van-gogh --compare --save-preview
    """
    if save_preview and not compare:
        raise CpeditError("--save-preview needs --compare (the preview is the base-vs-pruned grid)")
    if out is None and not save_preview:
        raise CpeditError("give --out FILE.png (or --compare --save-preview to save the grid in the output folder)")
    if out is not None and not out.lower().endswith(".png"):
        raise CpeditError(f"--out {out}: the grid is written as PNG; give a file name ending in .png")
    settings = SampleSettings(steps=steps, guidance_scale=guidance_scale, seed=seed, height=height, width=width)
    with ProgressView(stderr_console()) as show:
        if compare:
            if compute.revision is not None:
                raise CpeditError("--revision does not apply with --compare: the base revision comes from the report")
            grid = compare_samples(
                model,
                settings=settings,
                prompts=list(prompts) or None,
                compute=compute,
                safety_checker=not no_safety_checker,
                on_progress=show,
            )
        else:
            if not prompts:
                raise CpeditError("give at least one --prompt (or --compare with a cpedit output folder)")
            grid = render_samples(
                model,
                prompts=list(prompts),
                settings=settings,
                compute=compute,
                safety_checker=not no_safety_checker,
                on_progress=show,
            )
    writes: list[Callable[[], Path]] = []  # all attempted: a preview that cannot be written does not lose --out
    if save_preview:
        writes.append(lambda: save_preview_file(model, grid))
    if out is not None:
        target = out
        writes.append(lambda: save_png(grid, target, what="the image grid", argument="out"))
        if clip_frames(grid):  # a video model: the PNG holds frame strips; the animation goes beside it
            writes.append(lambda: save_animation(grid, animation_path(target), argument="out"))
    for written in write_each(writes):
        size = f"{len(clip_frames(grid))} frames" if written.suffix == ".gif" else f"{grid.width}x{grid.height}"
        stdout_console().print(f"Wrote [bold]{escape(str(written))}[/] ({size})")
