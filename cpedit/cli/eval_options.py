"""What the image-generating ``cpedit eval`` benchmarks share: their options, and running one.

Every benchmark built on :mod:`cpedit.eval.engine` takes the same generation options
(prompts, limit, images per prompt, seed, steps, guidance, size, ``--base``, images folder,
``--json``, batch size, device, format) through :func:`metric_options`, and prints its result
through :func:`run_metric`: progress on stderr, then a before/after table or the JSON. Under
``torchrun``/``accelerate launch`` every rank runs the benchmark (the image generation is split
across them, see :mod:`cpedit.eval.distributed`) and only rank 0 shows, writes and prints.
"""

from __future__ import annotations

import contextlib
import json

import click

from cpedit.cli.layout import FittedTable, stderr_console, stdout_console
from cpedit.cli.options import format_option

PROMPTS_HELP = (
    "Prompt set: a .txt (one a line), .csv or .jsonl file (prompt[,seed,guidance,height,width]), "
    "or a Hub dataset as hub:OWNER/NAME[/FILE][@REVISION] (e.g. hub:AIML-TUDA/i2p; its per-prompt "
    "seeds, guidance and sizes are used)."
)


def metric_options(command=None, *, default_prompts: str | None = None, prompts_required: bool = True):  # type: ignore[no-untyped-def]
    """The options the image benchmarks share (generation, images, result).

    Use as ``@metric_options``, or ``@metric_options(default_prompts="hub:AIML-TUDA/i2p")`` for
    a benchmark with a default prompt set (``prompts_required=False``: one that finds its own).
    """
    if command is None:
        return lambda wrapped: metric_options(
            wrapped, default_prompts=default_prompts, prompts_required=prompts_required
        )
    required = prompts_required and default_prompts is None
    options = [
        click.argument("edited_dir", metavar="DIR", type=click.Path(file_okay=False, exists=True)),
        click.option(
            "--prompts",
            "prompts_file",
            metavar="FILE|hub:ID",
            required=required,
            default=default_prompts,
            show_default=default_prompts is not None,
            help=PROMPTS_HELP,
        ),
        click.option(
            "--category",
            default=None,
            help="Keep the prompts of these categories (comma-separated) of a set with a categories "
            "column, such as I2P's: sexual, violence, hate, harassment, self-harm, shocking, illegal activity.",
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
    category: str | None = None,
    json_file: str | None,  # type: ignore[no-untyped-def]
    output_format: str,
    **settings,
) -> None:
    from cpedit.cli.render import ProgressView
    from cpedit.eval.benchmarks import record_metric_result
    from cpedit.eval.distributed import is_main_process, rank_device
    from cpedit.eval.paper import paper_figure
    from cpedit.eval.prompt_sets import load_prompt_set

    console = stderr_console()
    with ProgressView(console) if is_main_process() else contextlib.nullcontext() as view:  # a Hub set downloads
        prompt_set = load_prompt_set(prompts_file, limit=limit, category=category, on_progress=view)
    prompts = prompt_set.prompts
    # Under torchrun / accelerate launch every rank runs this: each on its own GPU, rank 0 alone
    # shows progress (of its share), writes the result and prints it.
    main = is_main_process()
    if "device" in settings:
        settings["device"] = rank_device(settings["device"])
    with ProgressView(console) if main else contextlib.nullcontext() as view:
        result = evaluate(edited_dir, prompts=prompts, prompts_name=prompts_file, on_progress=view, **settings)
    result.protocol.update(prompt_set.protocol_fields())  # a Hub set's id, commit, file and category
    record_metric_result(edited_dir, result, json_file=json_file)
    if not main:
        return
    if output_format == "json":
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    protocol = result.protocol
    table = FittedTable(
        title=f"{result.benchmark}: {protocol['images']} images ({protocol['prompt_count']} prompts), "
        f"{protocol['steps']} steps, measured with {protocol['metric_model']}"
    )
    for column in ("metric", "before", "after", "change", "paper"):
        table.add_column(column, justify="right" if column in ("before", "after", "change") else "left")
    for name, values in result.metrics.items():
        before, after = values.get("before"), values["after"]
        change = f"{after - before:+.4f}" if before is not None else "-"
        figure = paper_figure(result.benchmark, name, protocol)
        table.add_row(
            name,
            f"{before:.4f}" if before is not None else "-",
            f"{after:.4f}",
            change,
            figure.describe() if figure else "-",
        )
    if result.images is not None:
        table.caption = f"{result.images.generated} images generated, {result.images.reused} reused"
    stdout_console().print(table)
    if json_file is not None:
        console.print(f"Wrote {json_file}")
