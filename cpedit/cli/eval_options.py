"""What the image-generating ``cpedit eval`` benchmarks share: their options, and running one.

Every benchmark built on :mod:`cpedit.eval.engine` takes the same generation options
(prompts, limit, images per prompt, seed, steps, guidance, size, ``--base``, images folder,
``--json``, batch size, device, format) through :func:`metric_options`, and prints its result
through :func:`run_metric`: progress on stderr, then a before/after table or the JSON.
"""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from cpedit.cli.options import format_option


def metric_options(command):  # type: ignore[no-untyped-def]
    """The options `eval clip-score` and `eval fid` share (generation, images, result)."""
    options = [
        click.argument("edited_dir", metavar="DIR", type=click.Path(file_okay=False, exists=True)),
        click.option(
            "--prompts",
            "prompts_file",
            type=click.Path(dir_okay=False, exists=True),
            required=True,
            help="Prompt set: .txt (one a line), .csv or .jsonl (prompt[,seed,guidance,height,width]).",
        ),
        click.option("--limit", type=click.IntRange(min=1), default=None, help="Use only the first N prompts."),
        click.option(
            "--images-per-prompt", type=click.IntRange(min=1), default=1, show_default=True, help="Images per prompt."
        ),
        click.option(
            "--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of prompts without one."
        ),
        click.option("--steps", type=click.IntRange(min=1), default=30, show_default=True, help="Denoising steps."),
        click.option("--guidance-scale", type=click.FloatRange(min=0), default=7.5, show_default=True),
        click.option("--height", type=click.IntRange(min=8), default=None, help="Image height (default: native)."),
        click.option("--width", type=click.IntRange(min=8), default=None, help="Image width (default: native)."),
        click.option("--base", is_flag=True, help="Evaluate the base model too (cached), for before/after."),
        click.option(
            "--images-dir",
            type=click.Path(file_okay=False),
            default=None,
            help="Where images are kept (default DIR/conceptprune/eval/images/BENCH); reused by later runs.",
        ),
        click.option(
            "--json", "json_file", type=click.Path(dir_okay=False), default=None, help="Also write the result here."
        ),
        click.option("--batch-size", type=click.IntRange(min=1), default=4, show_default=True, help="Images per call."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps."),
        format_option(help="Print a table, or the JSON result on stdout."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def run_metric(
    evaluate,
    edited_dir: str,
    *,
    prompts_file: str,
    limit: int | None,
    json_file: str | None,  # type: ignore[no-untyped-def]
    output_format: str,
    **settings,
) -> None:
    from cpedit.cli.render import ProgressView
    from cpedit.eval.benchmarks import record_metric_result
    from cpedit.eval.engine import load_prompts

    console = Console(stderr=True)
    prompts = load_prompts(prompts_file, limit=limit)
    with ProgressView(console) as view:
        result = evaluate(edited_dir, prompts=prompts, prompts_name=prompts_file, on_progress=view, **settings)
    record_metric_result(edited_dir, result, json_file=json_file)
    if output_format == "json":
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    protocol = result.protocol
    table = Table(
        title=f"{result.benchmark}: {protocol['images']} images ({protocol['prompt_count']} prompts), "
        f"{protocol['steps']} steps, measured with {protocol['metric_model']}"
    )
    for column in ("metric", "before", "after", "change"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for name, values in result.metrics.items():
        before, after = values.get("before"), values["after"]
        change = f"{after - before:+.4f}" if before is not None else "-"
        table.add_row(name, f"{before:.4f}" if before is not None else "-", f"{after:.4f}", change)
    if result.images is not None:
        table.caption = f"{result.images.generated} images generated, {result.images.reused} reused"
    Console().print(table)
    if json_file is not None:
        console.print(f"Wrote {json_file}")
