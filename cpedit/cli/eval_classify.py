"""``cpedit eval classify``: erased and preserved accuracy of artist styles and Imagenette objects.

The generation options (images per prompt, seed, steps, guidance, size, ``--base``, images
folder, ``--json``, image batch size, device, format) are the ones every image benchmark shares
(:func:`cpedit.cli.eval_options.metric_options`), taken from there so they stay the same;
``--prompts`` here is a file of prompt *templates* (the benchmark has its own prompt sets) and
``--limit`` counts prompts per concept, so those two are this command's own; options added
there for other benchmarks (``--category``) are not taken.
"""

from __future__ import annotations

from typing import Any

import click

from cpedit.cli.eval_options import (
    classifier_model_option,
    classifier_option,
    concepts_option,
    family_option,
    metric_options,
    run_benchmark,
)
from cpedit.cli.guard import command_guard
from cpedit.cli.layout import FittedTable

SHARED = (
    "edited_dir",
    "images_per_prompt",
    "seed",
    "steps",
    "guidance_scale",
    "height",
    "width",
    "base",
    "images_dir",
    "json_file",
    "image_batch_size",
    "device",
    "output_format",
)
"""The shared benchmark options this command takes as they are (its prompts and limit are its own)."""


def _shared_params() -> list[click.Parameter]:
    """Fresh copies of the :data:`SHARED` options of :func:`metric_options` (DIR first)."""

    def probe(**_: Any) -> None:
        """Only collects the parameters."""

    params = {p.name: p for p in click.command()(metric_options(probe)).params}
    return [params[name] for name in SHARED if name in params]


def _percent(value: float | None, interval: Any = None) -> str:
    from cpedit.eval.intervals import with_interval

    return "-" if value is None else with_interval(value, interval, digits=1, scale=100) + "%"


def _points(before: float | None, after: float | None, *, sign: bool = True, interval: Any = None) -> str:
    from cpedit.eval.intervals import Estimate, with_interval

    if before is None or after is None:
        return "-"
    if sign:
        return with_interval(after - before, interval, digits=1, sign=True, scale=100)
    if interval is not None:  # the drop is minus the change
        interval = Estimate(-interval.value, -interval.high, -interval.low, interval.method, interval.n)
    return with_interval(before - after, interval, digits=1, scale=100)


def classify_table(result: Any) -> FittedTable:
    """The result as a table: the two accuracies, the preservation drop and each concept (percent)."""
    protocol = result.protocol
    table = FittedTable(
        title=f"classify ({protocol['family']}): erased {', '.join(protocol['erased_concepts'])}; "
        f"{protocol['images']} images per model ({protocol['prompt_count']} prompts), {protocol['steps']} steps, "
        f"judged by {protocol['classifier']} ({protocol['metric_model']})"
    )
    table.add_column("measure", no_wrap=True)  # the numbers wrap (value over interval), the names stay whole
    for column in ("before", "after", "change (points)"):
        table.add_column(column, justify="right")
    erased = result.metrics.get("erased_accuracy", {})
    preserved = result.metrics.get("preserved_accuracy", {})
    erased_ci = result.intervals.get("erased_accuracy", {})
    preserved_ci = result.intervals.get("preserved_accuracy", {})
    table.add_row(
        "erased accuracy (lower is better)",
        _percent(erased.get("before"), erased_ci.get("before")),
        _percent(erased.get("after"), erased_ci.get("after")),
        _points(erased.get("before"), erased.get("after"), interval=erased_ci.get("change")),
    )
    if preserved:
        table.add_row(
            "preserved accuracy (higher is better)",
            _percent(preserved.get("before"), preserved_ci.get("before")),
            _percent(preserved.get("after"), preserved_ci.get("after")),
            _points(preserved.get("before"), preserved.get("after"), interval=preserved_ci.get("change")),
        )
        table.add_row(
            "preservation drop (before - after)",
            "",
            _points(preserved.get("before"), preserved.get("after"), sign=False, interval=preserved_ci.get("change")),
            "",
        )
    for name, values in protocol["per_concept"].items():
        table.add_row(
            f"  {name} ({values['role']}, {values['images']} images)",
            _percent(values.get("before")),
            _percent(values.get("after")),
            _points(values.get("before"), values.get("after")),
        )
    from cpedit.cli.eval_options import interval_caption

    caption = f"accuracies in percent of images (the JSON keeps fractions 0..1); {interval_caption(result)}"
    if result.images is not None:
        caption += f"; {result.images.generated} images generated, {result.images.reused} reused"
    table.caption = caption
    return table


@click.command("classify")
@family_option()
@concepts_option()
@classifier_option()
@classifier_model_option()
@click.option(
    "--prompt-set",
    type=click.Choice(["held-out", "paper"]),
    default="held-out",
    show_default=True,
    help="held-out: the paper's templates on things it did not calibrate on; paper: its calibration prompts.",
)
@click.option(
    "--prompts",
    "prompts_file",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="Prompt templates instead of --prompt-set: .txt, .csv or .jsonl, each prompt with {concept} "
    "(or {a_concept}), filled in with every concept of the family.",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Use only the first N prompts per concept.")
@command_guard()
def eval_classify_command(edited_dir: str, **options: Any) -> None:
    """Erased and preserved accuracy of an artist-style or object erasure (the paper's measure).

    Every concept of the family gets the same prompts; the edited model's images (and with
    --base the base model's, cached) are classified among the family's concepts:

    \b
      artists  Van Gogh, Monet, Pablo Picasso, Leonardo Da Vinci, Salvador Dali;
               CLIP against "a painting in the style of {artist}"
      objects  the ten Imagenette classes; CLIP against "a photo of a {class}", or
               --classifier resnet50 (ImageNet-1k logits of the ten classes)

    \b
      erased accuracy     erased concepts' images named as their concept (lower is better)
      preserved accuracy  other concepts' images named as their own (higher is better)
      preservation drop   preserved accuracy before - after (needs --base)

    The erased concepts are the recipes' of DIR (or --concepts). Default prompts: the
    paper's templates ("a {thing} in the style of {artist}", "a {class} in the snow", ...)
    on 20 things / 12 scenes it did not calibrate on (--prompt-set paper: its own). The
    table shows percent; DIR/conceptprune/eval/classify.json keeps fractions, with the
    per-concept accuracies under protocol.per_concept.

    \b
    Examples:
      cpedit eval classify sd14-no-van-gogh --base
      cpedit eval classify sd14-no-church --classifier resnet50 --limit 5 --json church.json
      cpedit eval classify out --family artists --concepts van-gogh,monet --prompt-set paper
      cpedit eval classify out --prompts my-templates.txt --images-per-prompt 4
    """
    run_classify(edited_dir, **options)


_SHARED = _shared_params()
# DIR first, then this command's options, then the shared generation options.
eval_classify_command.params = [
    *(p for p in _SHARED if p.name == "edited_dir"),
    *eval_classify_command.params,
    *(p for p in _SHARED if p.name != "edited_dir"),
]


def run_classify(edited_dir: str, **flags: Any) -> None:
    """Run the benchmark with a progress display, keep its result, print the table or the JSON."""
    run_benchmark("classify", edited_dir, flags, table=classify_table)
