"""What the image-generating ``cpedit eval`` benchmarks share: their options, and running one.

Every benchmark built on :mod:`cpedit.eval.engine` takes the same generation options
(prompts, limit, images per prompt, seed, steps, guidance, size, ``--base``, images folder,
``--json``, image batch size, device, format) through :func:`metric_options`, and runs through
:func:`run_benchmark`: one :class:`~cpedit.eval.options.ImageOptions` and the benchmark's typed
options are built from the flags, the one driver (:func:`cpedit.eval.driver.evaluate`) runs it,
progress goes to stderr, then a before/after table or the JSON. Under ``torchrun``/``accelerate
launch`` every rank runs the benchmark (the image generation is split across them, see
:mod:`cpedit.distributed`) and only rank 0 shows, writes and prints.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

import click

from cpedit.cli.guard import keep_on_interrupt
from cpedit.cli.layout import FittedTable, stderr_console, stdout_console
from cpedit.cli.options import (
    Decorator,
    apply,
    compute_from,
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
    from cpedit.eval.clip_score import DEFAULT_CLIP_MODEL

    return click.option(
        "--clip-model",
        default=DEFAULT_CLIP_MODEL,
        show_default=True,
        metavar="ID|FOLDER",
        help="CLIP model: a Hub id or a folder (safetensors).",
    )


def metric_options(
    command: Callable[..., Any] | None = None, *, default_prompts: str | None = None, prompts_required: bool = True
) -> Callable[..., Any]:
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


class BenchmarkChoice(click.Choice):
    """The registered benchmarks (of one role) as a click choice, read from the registry when used.

    So ``--eval``/``--preserve`` offer every benchmark :mod:`cpedit.eval.registry` lists, one
    registered later included, and listing them imports no benchmark module.
    """

    def __init__(self, role: str | None = None) -> None:
        self.role = role
        super().__init__((), case_sensitive=True)

    @property
    def choices(self) -> tuple[str, ...]:
        """The registered names, now."""
        from cpedit.eval.registry import benchmark_names

        return benchmark_names(self.role)  # type: ignore[arg-type]

    @choices.setter
    def choices(self, value: object) -> None:
        """Ignored: the registry is the list."""


IMAGE_FLAGS = ("seed", "steps", "guidance_scale", "height", "width", "images_per_prompt", "image_batch_size")
"""The flags :func:`image_options` reads (a command may have only some of them)."""


def image_options(flags: dict[str, Any]) -> Any:
    """The :class:`~cpedit.eval.options.ImageOptions` of a command's flags, taken out of ``flags`` (built once).

    Flags a command does not have keep the options' defaults; ``--image-batch-size`` is the batch size.
    """
    from cpedit.eval.options import ImageOptions

    values = {name: flags.pop(name) for name in IMAGE_FLAGS if name in flags}
    if "image_batch_size" in values:
        values["batch_size"] = values.pop("image_batch_size")
    return ImageOptions(**values)


def run_benchmark(
    name: str,
    edited_dir: str,
    flags: dict[str, Any],
    *,
    table: Callable[[Any], FittedTable] | None = None,
) -> None:
    """Run the registered benchmark ``name`` on ``edited_dir`` from a command's flags, keep and print its result.

    The image flags become one :class:`~cpedit.eval.options.ImageOptions`; the others that name
    a field of the benchmark's options (``--prompts`` is ``prompts``, and names the set in the
    protocol) become its typed options. Progress goes to stderr; then ``table(result)`` (default:
    a before/after table of every metric) or the JSON. Under ``torchrun``/``accelerate launch``
    every rank runs it (each on its own GPU); rank 0 alone shows progress, writes the result and prints.
    """
    from dataclasses import replace

    from cpedit.cli.render import ProgressView
    from cpedit.distributed import is_main_process, rank_device
    from cpedit.eval.driver import evaluate, record_result
    from cpedit.eval.registry import get_benchmark

    json_file = flags.pop("json_file", None)
    if json_file is not None:  # before any work (record_result checks it again)
        from cpedit.output.record import check_outside_record

        check_outside_record(json_file, argument="json_file")
    output_format = flags.pop("output_format", "table")
    images = image_options(flags)
    run = {key: flags.pop(key) for key in ("base", "images_dir") if key in flags}
    compute = compute_from(flags)
    compute = replace(compute, device=rank_device(compute.device))
    prompts = flags.pop("prompts_file", None)
    bench = get_benchmark(name)
    options = bench.options({**flags, "prompts": prompts, "prompts_name": prompts})
    console = stderr_console()
    keep_on_interrupt("no result was written; the images rendered so far are kept for the next run")
    main = is_main_process()
    with ProgressView(console) if main else contextlib.nullcontext() as view:
        result = evaluate(bench, edited_dir, options, images=images, compute=compute, on_progress=view, **run)
    if main:  # shown before it is kept: a result that cannot be written (a full disk) is not lost
        if output_format == "json":
            click.echo(json.dumps(result.to_json(), indent=2))
        else:
            stdout_console().print((table or metric_table)(result))
    record_result(edited_dir, result, json_file=json_file)
    if main and output_format != "json" and json_file is not None:
        console.print(f"Wrote {json_file}")


def metric_table(result: Any) -> FittedTable:
    """A before/after table of every metric of ``result``, with the paper's figure where there is one."""
    from cpedit.eval.intervals import with_interval
    from cpedit.eval.paper import paper_figure

    protocol = result.protocol
    table = FittedTable(
        title=f"{result.benchmark}: {protocol['images']} images ({protocol['prompt_count']} prompts), "
        f"{protocol['steps']} steps, measured with {protocol['metric_model']}"
    )
    for column in ("metric", "before", "after", "change", "paper"):
        table.add_column(column, justify="right" if column in ("before", "after", "change") else "left")
    for name, values in result.metrics.items():
        before, after = values.get("before"), values["after"]
        found = result.intervals.get(name, {})
        figure = paper_figure(result.benchmark, name, protocol)
        table.add_row(
            name,
            with_interval(before, found.get("before"), digits=4),
            with_interval(after, found.get("after"), digits=4),
            with_interval(after - before if before is not None else None, found.get("change"), digits=4, sign=True),
            figure.describe() if figure else "-",
        )
    table.caption = interval_caption(result)
    if result.images is not None:
        table.caption += f"; {result.images.generated} images generated, {result.images.reused} reused"
    return table


def interval_caption(result: Any) -> str:
    """What the table's intervals are, and the metrics without one (FID) and why."""
    from cpedit.eval.intervals import INTERVAL_NOTE

    described = result.protocol.get("intervals") or {}
    none = described.get("none") or {}
    return "; ".join([INTERVAL_NOTE + " (docs/evaluation.md)", *(f"no interval for {k}: {v}" for k, v in none.items())])
