"""``cpedit prune``: erase concepts and save the pruned pipeline."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click

from cpedit.cli.export import SINGLE_FILE_DTYPES
from cpedit.cli.guard import command_guard
from cpedit.cli.layout import stderr_console, stdout_console
from cpedit.cli.options import (
    SINGLE_FILE_DTYPE_HELP,
    SINGLE_FILE_HELP,
    calibration_batch_option,
    compute_options,
    format_option,
    preview_steps_option,
    recipe_option,
)
from cpedit.cli.render import ProgressView, concept_table, layer_table, warn_if_collapsed
from cpedit.edit.prune import prune
from cpedit.errors import CpeditError
from cpedit.export.single_file import check_single_file_target, export_single_file
from cpedit.models.compute import ComputeOptions
from cpedit.models.sampling import SampleSettings
from cpedit.shapes.model import BUILTIN_MODEL_NAME


@contextmanager
def _about_single_file() -> Iterator[None]:
    """Errors of the single-file export name --single-file (the library calls it ``out``, as --out is here)."""
    try:
        yield
    except CpeditError as exc:
        if exc.argument == "out":
            exc.argument = "single_file"
        raise


@click.command("prune")
@click.argument("model", metavar="[MODEL]", required=False, default=BUILTIN_MODEL_NAME)
@recipe_option(multiple=True)
@click.option(
    "--out", "-o", required=True, type=click.Path(file_okay=False), help="Output folder (written atomically)."
)
@compute_options(offload=True)
@calibration_batch_option()
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
@click.option(
    "--preview/--no-preview",
    default=False,
    show_default=True,
    help="Also render a before/after grid of the recipes' preview prompts into OUT/conceptprune/preview.png "
    "(the model card shows it; `cpedit push` uploads it).",
)
@preview_steps_option()
@click.option(
    "--conceal",
    type=click.Choice(["zero", "gaussian"]),
    default=None,
    help="How pruned weights are filled: zero (the paper's; the default, or the recipes' prune.conceal), or "
    "gaussian: draws matching the layer's own weights, so no exact zeros mark the edit. Only helps when the "
    "base weights are not public; conceptprune/pruned.safetensors then stays local (push leaves it out).",
)
@click.option(
    "--conceal-scale",
    type=click.Choice(["row", "layer"]),
    default=None,
    help="Where --conceal gaussian measures the spread it draws from (default: the recipes', else row).",
)
@click.option(
    "--conceal-seed",
    type=click.IntRange(min=0, max=2**63 - 1),
    default=None,
    help="Seed of the gaussian draws (default: random; recorded in the local report, never published).",
)
@click.option(
    "--memory-check/--no-memory-check",
    default=True,
    show_default=True,
    help="Before the model loads, estimate the memory the run needs (weights at --dtype, statistics, "
    "activations at --batch-size) against the free memory, print it, and refuse a run that will not fit. "
    "--no-memory-check prints the estimate and goes ahead anyway.",
)
@click.option(
    "--collapse-check/--no-collapse-check",
    default=True,
    show_default=True,
    help="After pruning, render 4 unrelated prompts with the base and the pruned model (same seed, 6 steps) "
    "and warn when the edit destroyed generation (noise, flat or black images) rather than the concept. "
    "Recorded in report.json; a collapse is a warning, the output is still written (exit status 0).",
)
@click.option(
    "--single-file",
    "single_file",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="OUT.safetensors",
    help=SINGLE_FILE_HELP,
)
@click.option(
    "--single-file-dtype",
    type=click.Choice(SINGLE_FILE_DTYPES),
    default=None,
    help=SINGLE_FILE_DTYPE_HELP,
)
@format_option(help="How to print the result: tables, or the report as JSON on stdout.")
@command_guard()
def prune_command(
    model: str,
    recipes: tuple[str, ...],
    out: str,
    compute: ComputeOptions,
    batch_size: int | None,
    overwrite: bool,
    preview: bool,
    preview_steps: int,
    conceal: str | None,
    conceal_scale: str | None,
    conceal_seed: int | None,
    memory_check: bool,
    collapse_check: bool,
    single_file: str | None,
    single_file_dtype: str | None,
    output_format: str,
) -> None:
    """Erase concepts from MODEL (a Hub id or a local pipeline folder) and save the result.

    Without MODEL, or with MODEL = builtin:shapes, cpedit uses its built-in model: a
    small text-to-image model of coloured, textured shapes that ships with cpedit and
    runs offline in seconds (its recipes: `cpedit recipes list`, names shapes-*).

    For each recipe, cpedit runs the recipe's target and base prompts through the first
    tau denoiser calls, scores the FFN output weights (Wanda scores; other layers with
    the recipe's prune.target), and zeroes the weights that fire for the concept.
    Several recipes prune the union of their sets. Supported: SD 1.x/2.x, SDXL, SD3,
    FLUX.1, PixArt. The output is a standard diffusers folder (only pruned weights differ
    from the base) plus OUT/conceptprune/ (pruned positions, recipes, report.json).

    Ctrl-C stops cleanly and leaves no output folder.

    \b
    Examples:
      cpedit prune --recipe shapes-striped --out shapes-no-stripes
      cpedit prune CompVis/stable-diffusion-v1-4 --recipe van-gogh --out sd14-no-van-gogh
      cpedit prune ./my-sd15 -r recipes/nudity/nudity.yaml -r monet --out safe --device cuda:1
      cpedit prune ./my-sd15 -r my-recipe.yaml --out edited --dtype bfloat16 --batch-size 8
      cpedit prune CompVis/stable-diffusion-v1-4 -r hub:acme/recipes/van-gogh.yaml --out out --preview
      cpedit prune ./my-sd15 -r van-gogh --out edited --single-file edited.safetensors
    """
    if single_file is not None:
        with _about_single_file():
            check_single_file_target(single_file, overwrite=overwrite)  # before the model loads
    console = stderr_console()
    with ProgressView(console) as view:
        result = prune(
            model,
            list(recipes),
            out=out,
            compute=compute,
            batch_size=batch_size,
            overwrite=overwrite,
            on_progress=view,
            preview=preview,
            preview_settings=SampleSettings(steps=preview_steps),
            conceal=conceal,
            conceal_scale=conceal_scale,
            conceal_seed=conceal_seed,
            memory_check=memory_check,
            collapse_check=collapse_check,
        )
        exported = None
        if single_file is not None:
            with _about_single_file():
                exported = export_single_file(
                    out, single_file, dtype=single_file_dtype, overwrite=overwrite, on_progress=view
                )
    report = result.report
    if output_format == "json":
        click.echo(report.to_json(), nl=False)
        warn_if_collapsed(report)
        return
    stdout = stdout_console()
    stdout.print(concept_table(report))
    stdout.print(layer_table(report))
    t = report.timings_s
    stdout.print(
        f"Pruned {report.totals.pruned_weights:,} weights "
        f"({100 * report.totals.pruned_fraction:.4f}% of the {report.edited_label}) "
        f"in {t['total']:.1f}s "
        f"(load {t['load']:.1f}s, calibrate {t['calibrate']:.1f}s, score {t['score']:.1f}s, "
        f"save {t.get('save', 0):.1f}s)."
    )
    stdout.print(f"Saved to [bold]{result.output}[/]")
    if report.conceal.conceals:
        stdout.print(
            f"Concealed: pruned weights filled with {report.conceal.mode} draws (scale {report.conceal.scale}, "
            f"seed {report.conceal.seed}); conceptprune/pruned.safetensors stays local (`cpedit push` leaves it "
            "out). This only helps while the base weights are not public.",
            highlight=False,
            soft_wrap=True,
        )
    if preview:
        stdout.print(f"Preview: [bold]{result.output}/conceptprune/preview.png[/]")
    if exported is not None:
        stdout.print(f"Single file: [bold]{exported.path}[/] ({exported.family})", highlight=False)
    if report.collapse_check is not None and not report.collapse_check.collapsed:
        stdout.print(f"Collapse check: {report.collapse_check.reason}.", markup=False, highlight=False)
    warn_if_collapsed(report)
