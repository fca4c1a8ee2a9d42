"""``cpedit eval``: benchmarks that measure an edit."""

from __future__ import annotations

from typing import Any

import click

from cpedit.cli.eval_options import clip_model_option, images_dir_option, json_option, metric_options, run_benchmark
from cpedit.cli.guard import command_guard
from cpedit.cli.layout import FittedTable
from cpedit.cli.options import (
    device_option,
    format_option,
    guidance_option,
    image_batch_option,
    images_option,
    seed_option,
    steps_option,
)


@click.group("eval")
def eval_group() -> None:
    """Measure how well an edit erased its concepts and what it preserved."""


def shapes_table(result: Any) -> FittedTable:
    """The shapes benchmark's result: erased accuracy, mean and per-attribute preservation, before/after."""
    protocol = result.protocol
    table = FittedTable(
        title=f"shapes benchmark: erased {', '.join(protocol['concepts'])} ({protocol['images']} images per set)"
    )
    table.add_column("measure", no_wrap=True)  # the numbers wrap (value over interval), the names stay whole
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    table.add_column("change", justify="right")
    from cpedit.cli.eval_options import interval_caption
    from cpedit.eval.intervals import with_interval

    erased, preserved = result.metrics["erased"], result.metrics["preserved"]
    rows = [("erased accuracy (lower is better)", "erased", erased["before"], erased["after"])]
    rows.append(("preservation, mean (higher is better)", "preserved", preserved["before"], preserved["after"]))
    by_attribute = protocol.get("preserved_by_attribute", {})
    for name, before in by_attribute.get("before", {}).items():
        rows.append((f"  preservation: {name}", "", before, by_attribute["after"][name]))
    for label, metric, before, after in rows:
        found = result.intervals.get(metric, {})
        table.add_row(
            label,
            with_interval(before, found.get("before"), digits=3),
            with_interval(after, found.get("after"), digits=3),
            with_interval(after - before, found.get("change"), digits=3, sign=True),
        )
    table.caption = f"pruned {100 * protocol['pruned_fraction']:.4f}% of the UNet's weights. {interval_caption(result)}"
    return table


@eval_group.command("shapes")
@click.argument("edited_dir", metavar="DIR", type=click.Path(file_okay=False, exists=True))
@images_option(default=128, why="Default 128: one edit is measured, so a larger sample gives a steadier number.")
@seed_option(help="Seed of the images; it also draws the prompts.")
@json_option()
@steps_option(default=25)
@guidance_option()
@image_batch_option(default=64, why="Default 64: the shapes model's images are 32x32 pixels.")
@device_option()
@images_dir_option()
@format_option(help="Print a table, or the JSON result on stdout.")
@command_guard()
def eval_shapes_command(
    edited_dir: str,
    images: int,
    seed: int,
    json_file: str | None,
    steps: int,
    guidance_scale: float,
    image_batch_size: int,
    device: str,
    images_dir: str | None,
    output_format: str,
) -> None:
    """Benchmark an edit of the built-in shapes model: erasure and preservation.

    DIR is a `cpedit prune` output of builtin:shapes (or another shapes-world
    model). Images are generated from held-out prompts of the world (never the recipes'
    calibration prompts) by the base model recorded in DIR and by the edited
    model, with the same seeds, and judged by the shipped attribute classifier:

    \b
      erased accuracy  prompts asking for an erased concept: fraction of images
                       that still show it (lower is better)
      preservation     prompts asking for no erased concept: accuracy of every
                       attribute (shape, colour, texture, background; higher is better)

    Images are kept with a manifest.jsonl (--images-dir), so a second or interrupted
    run reuses them and generates only the rest. The result is also kept in
    DIR/conceptprune/eval/shapes.json, where model cards find it.

    \b
    Examples:
      cpedit prune --recipe shapes-striped --out shapes-no-stripes
      cpedit eval shapes shapes-no-stripes --images 256 --json striped.json
    """
    run_benchmark(
        "shapes",
        edited_dir,
        {
            "images": images,
            "seed": seed,
            "json_file": json_file,
            "steps": steps,
            "guidance_scale": guidance_scale,
            "image_batch_size": image_batch_size,
            "device": device,
            "images_dir": images_dir,
            "output_format": output_format,
        },
        table=shapes_table,
    )


@eval_group.command("clip-score")
@metric_options
@clip_model_option()
@command_guard()
def eval_clip_score_command(edited_dir: str, **options: Any) -> None:
    """CLIP score (100 x max(cos(image, prompt), 0), averaged) of an edit's images.

    Images are generated from the prompt set (seeded per prompt) and kept with a
    manifest.jsonl, so a second or interrupted run reuses them. With --base the base
    model is scored too (its images are cached) and the result is before/after. The
    result is kept in DIR/conceptprune/eval/clip-score.json, where model cards find it.

    \b
    Examples:
      cpedit eval clip-score out-no-van-gogh --prompts coco-1k.txt --base
      cpedit eval clip-score out --prompts p.csv --limit 100 --json clip.json
    """
    run_benchmark("clip-score", edited_dir, options)


@eval_group.command("fid")
@metric_options
@click.option(
    "--reference",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="A folder of (real) reference images (default: the base model's images on the same prompts).",
)
@command_guard()
def eval_fid_command(edited_dir: str, **options: Any) -> None:
    """FID of an edit's images against a reference set (Inception v3 features).

    The reference is a folder of real images (--reference; with --base the base model's
    FID against it is the "before"), or else the base model's images on the same prompts
    and seeds. Needs torch-fidelity (its inception-v3-compat weights download on first
    use). The result is kept in DIR/conceptprune/eval/fid.json.

    \b
    Examples:
      cpedit eval fid out-no-van-gogh --prompts coco-1k.txt
      cpedit eval fid out --prompts coco-1k.txt --reference coco-val/ --base
    """
    run_benchmark("fid", edited_dir, options)


def _register_benchmarks() -> None:
    """The benchmarks that live in their own modules (one module per command)."""
    from cpedit.cli.eval_attack import eval_attack_command
    from cpedit.cli.eval_classify import eval_classify_command
    from cpedit.cli.eval_nudity import eval_nudity_command

    eval_group.add_command(eval_nudity_command)
    eval_group.add_command(eval_classify_command)
    eval_group.add_command(eval_attack_command)


_register_benchmarks()
