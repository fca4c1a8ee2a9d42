"""``cpedit tui``: the terminal app (code in the top-level ``tui`` package, the ``tui`` extra)."""

from __future__ import annotations

import click

from cpedit.cli.options import compute_options, recipe_option
from cpedit.errors import CpeditError
from cpedit.models.compute import ComputeOptions

GRAPHICS = ("auto", "halfcell")
"""How the app draws previews (``--graphics``)."""


@click.command("tui")
@click.argument("model", metavar="[MODEL]", required=False, default=None)
@recipe_option(multiple=True, required=False)
@click.option("--out", "-o", type=click.Path(file_okay=False), default=None, help="Where ctrl+s saves the output.")
@click.option(
    "--recipes-dir",
    "recipe_folders",
    multiple=True,
    type=click.Path(exists=True),
    help="Also list the recipes in this folder on the Recipes screen. Repeatable.",
)
@compute_options(dtype=False, revision=False)
@click.option(
    "--timesteps",
    "calibrate_timesteps",
    type=click.IntRange(min=1),
    default=None,
    help="Calibrate for this many denoiser calls, so the Tune screen can try any tau up to it "
    "(default: each recipe's own tau).",
)
@click.option(
    "--graphics",
    "image_mode",
    type=click.Choice(GRAPHICS),
    default="auto",
    show_default=True,
    help="How previews draw: auto (Kitty or Sixel graphics where the terminal has them, else "
    "half-blocks) or halfcell (always half-blocks).",
)
@click.option("--images", "old_image_mode", type=click.Choice(GRAPHICS), default=None, hidden=True)
def tui_command(
    model: str | None,
    recipes: tuple[str, ...],
    out: str | None,
    recipe_folders: tuple[str, ...],
    compute: ComputeOptions,
    calibrate_timesteps: int | None,
    image_mode: str,
    old_image_mode: str | None,
) -> None:
    """Open the terminal app: pick MODEL, queue recipes, run, tune, preview, save and push.

    Without MODEL the built-in model (builtin:shapes) is chosen; the Model screen searches the
    Hub or takes a local folder; every --recipe is queued at the start. Press ? in the app
    for every key, ctrl+p for the command palette, ctrl+q to quit.

    \b
    Examples:
      cpedit tui
      cpedit tui --recipe shapes-striped --recipe shapes-star
      cpedit tui CompVis/stable-diffusion-v1-4 -r van-gogh --out sd14-no-van-gogh --device cuda
    """
    try:
        from tui.app import run_app
    except ImportError as exc:
        raise CpeditError(
            f"the terminal app needs its extra packages ({exc.name or exc}): pip install 'cpedit[tui]'",
            reason="missing_dependency",
        ) from None
    if old_image_mode is not None:  # the option's name before --images meant an image count everywhere else
        image_mode = old_image_mode
    run_app(
        model=model,
        recipes=recipes,
        out=out,
        compute=compute,
        recipe_folders=recipe_folders,
        calibrate_timesteps=calibrate_timesteps,
        image_mode=image_mode,
    )
