"""What the image-generating ``cpedit eval`` benchmarks share: their options, and running one.

Every benchmark built on :mod:`cpedit.eval.engine` takes the same generation options
(prompts, limit, images per prompt, seed, steps, guidance, size, ``--base``, images folder,
``--json``, image batch size, device, format) through :func:`metric_options`, and prints its result
through :func:`run_metric`: progress on stderr, then a before/after table or the JSON. Under
``torchrun``/``accelerate launch`` every rank runs the benchmark (the image generation is split
across them, see :mod:`cpedit.eval.distributed`) and only rank 0 shows, writes and prints.
"""

from __future__ import annotations

import contextlib
import json

import click

from cpedit.cli.layout import FittedTable, stderr_console, stdout_console
from cpedit.cli.options import (
    Decorator,
    apply,
    device_option,
    format_option,
    guidance_option,
    image_batch_option,
    seed_option,
    size_options,
    steps_option,
)

PROMPTS_HELP = (
    "Prompt set: a .txt (one a line), .csv or .jsonl file (prompt[,seed,guidance,height,width]), "
    "or a Hub dataset as hub:OWNER/NAME[/FILE][@REVISION] (e.g. hub:AIML-TUDA/i2p; its per-prompt "
    "seeds, guidance and sizes are used)."
)


SEED_HELP = "Seed of the images of prompts without a seed of their own."


def prompts_option(*, required: bool = False, default: str | None = None) -> Decorator:
    """``--prompts FILE|hub:ID``: a benchmark's prompt set (``prompts_file``)."""
    return click.option(
        "--prompts",
        "prompts_file",
        metavar="FILE|hub:ID",
        required=required,
        default=default,
        show_default=default is not None,
        help=PROMPTS_HELP,
    )


def category_option() -> Decorator:
    """``--category``: the categories of a prompt set to keep."""
    return click.option(
        "--category",
        default=None,
        help="Keep the prompts of these categories (comma-separated) of a set with a categories "
        "column, such as I2P's: sexual, violence, hate, harassment, self-harm, shocking, illegal activity.",
    )


def limit_option() -> Decorator:
    """``--limit N``: the first N prompts."""
    return click.option("--limit", type=click.IntRange(min=1), default=None, help="Use only the first N prompts.")


def images_per_prompt_option() -> Decorator:
    """``--images-per-prompt``."""
    return click.option(
        "--images-per-prompt", type=click.IntRange(min=1), default=1, show_default=True, help="Images per prompt."
    )


def images_dir_option() -> Decorator:
    """``--images-dir``: where a benchmark keeps its images."""
    return click.option(
        "--images-dir",
        type=click.Path(file_okay=False),
        default=None,
        help="Where images are kept (default DIR/conceptprune/eval/images/BENCH); reused by later runs.",
    )


def json_option() -> Decorator:
    """``--json FILE``: also write the result there."""
    return click.option(
        "--json", "json_file", type=click.Path(dir_okay=False), default=None, help="Also write the result here."
    )


def family_option() -> Decorator:
    """``--family`` of ``classify``."""
    return click.option(
        "--family",
        type=click.Choice(["artists", "objects"]),
        default=None,
        help="The concepts judged against each other (default: the erased concepts' family).",
    )


def _concept_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise click.BadParameter("give one or more concepts, separated by commas", ctx=ctx, param=param)
    return names


def concepts_option() -> Decorator:
    """``--concepts LIST`` of ``classify``."""
    return click.option(
        "--concepts",
        callback=_concept_list,
        default=None,
        metavar="LIST",
        help="The erased concepts, comma-separated names or recipe names (default: the output's recipes').",
    )


def classifier_option() -> Decorator:
    """``--classifier clip|resnet50`` of ``classify``."""
    return click.option(
        "--classifier",
        type=click.Choice(["clip", "resnet50"]),
        default="clip",
        show_default=True,
        help="clip: zero-shot CLIP over the label texts; resnet50: an ImageNet-1k classifier (objects only).",
    )


def classifier_model_option() -> Decorator:
    """``--classifier-model``: the model that judges artist and object concepts."""
    return click.option(
        "--classifier-model",
        default=None,
        metavar="ID|FOLDER",
        help="The classifier's model: a Hub id or a folder, safetensors (default openai/clip-vit-large-patch14; "
        "microsoft/resnet-50 for the resnet50 classifier).",
    )


def attack_set_option() -> Decorator:
    """``--attack-set``: a known adversarial prompt set."""
    from cpedit.eval.attack_sets import ATTACK_SETS

    return click.option(
        "--attack-set",
        type=click.Choice(sorted(ATTACK_SETS), case_sensitive=False),
        default=None,
        help="A known adversarial prompt set (loaded from the Hub; --prompts overrides its prompts).",
    )


def threshold_option() -> Decorator:
    """``--threshold``: NudeNet's detection score."""
    from cpedit.eval.nudity import DEFAULT_THRESHOLD

    return click.option(
        "--threshold",
        type=click.FloatRange(min=0, max=1, max_open=True),
        default=DEFAULT_THRESHOLD,
        show_default=True,
        help="A NudeNet detection counts above this score.",
    )


def clip_model_option() -> Decorator:
    """``--clip-model``: the CLIP model of the CLIP score."""
    from cpedit.eval.benchmarks import DEFAULT_CLIP_MODEL

    return click.option(
        "--clip-model",
        default=DEFAULT_CLIP_MODEL,
        show_default=True,
        metavar="ID|FOLDER",
        help="CLIP model: a Hub id or a folder (safetensors).",
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
    return apply(
        click.argument("edited_dir", metavar="DIR", type=click.Path(file_okay=False, exists=True)),
        prompts_option(required=prompts_required and default_prompts is None, default=default_prompts),
        category_option(),
        limit_option(),
        images_per_prompt_option(),
        seed_option(help=SEED_HELP),
        steps_option(default=30),
        guidance_option(),
        size_options,
        click.option("--base", is_flag=True, help="Evaluate the base model too (cached), for before/after."),
        images_dir_option(),
        json_option(),
        image_batch_option(default=4, why="Default 4: full-size images (512 pixels and more)."),
        device_option(),
        format_option(help="Print a table, or the JSON result on stdout."),
    )(command)


def run_metric(
    evaluate,
    edited_dir: str,
    *,
    prompts_file: str,
    limit: int | None,
    category: str | None = None,
    json_file: str | None,  # type: ignore[no-untyped-def]
    output_format: str,
    image_batch_size: int,
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
    settings["batch_size"] = image_batch_size
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
