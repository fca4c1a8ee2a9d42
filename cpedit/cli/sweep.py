"""``cpedit sweep`` and ``cpedit tune``: prune settings measured by the evaluation suite."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from cpedit.cli.eval_options import (
    BenchmarkChoice,
    attack_set_option,
    category_option,
    classifier_model_option,
    classifier_option,
    clip_model_option,
    concepts_option,
    family_option,
    image_options,
    images_per_prompt_option,
    limit_option,
    threshold_option,
)
from cpedit.cli.guard import command_guard, keep_on_interrupt
from cpedit.cli.layout import FittedTable, stderr_console, stdout_console
from cpedit.cli.options import (
    apply,
    calibration_batch_option,
    compute_options,
    format_option,
    guidance_option,
    image_batch_option,
    images_option,
    recipe_option,
    seed_option,
    steps_option,
)
from cpedit.recipes.format import Recipe


def _floats(
    name: str, *, low: float, high: float, low_included: bool = False
) -> Callable[[click.Context, click.Parameter, str | None], list[float] | None]:
    """A click callback parsing a comma-separated list of numbers in (low, high] ([low, high])."""

    def parse(ctx: click.Context, param: click.Parameter, value: str | None) -> list[float] | None:
        if value is None:
            return None
        try:
            values = [float(v) for v in value.split(",") if v.strip()]
        except ValueError:
            raise click.BadParameter(f"{value!r} is not a comma-separated list of numbers") from None
        bad = [v for v in values if not (low <= v if low_included else low < v) or v > high]
        if bad or not values:
            bracket = "[" if low_included else "("
            raise click.BadParameter(f"each {name} must be in {bracket}{low:g}, {high:g}]; got {value!r}")
        return values

    return parse


def _ints(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        values = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of whole numbers") from None
    if not values or min(values) < 1:
        raise click.BadParameter(f"each tau must be at least 1; got {value!r}")
    return values


def _words(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()] or None


def evaluation_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options that say how every point is measured (shared by sweep and tune)."""
    return apply(
        click.option(
            "--eval",
            "benchmark",
            type=BenchmarkChoice("erasure"),
            required=True,
            help="The erasure benchmark (the registered ones): shapes (built-in model), classify "
            "(artists/objects), nudity, attack.",
        ),
        click.option(
            "--preserve",
            type=BenchmarkChoice("preservation"),
            default=None,
            help="A preservation measure on --preserve-prompts (needed with nudity and attack).",
        ),
        click.option("--preserve-prompts", default=None, metavar="FILE|hub:ID", help="Prompts for --preserve."),
        click.option("--preserve-limit", type=click.IntRange(min=1), default=None, help="First N preserve prompts."),
        images_option(
            default=64, why="Default 64: every point is measured, so half of `eval shapes`' 128 keeps a sweep quick."
        ),
        click.option(
            "--prompts",
            default=None,
            metavar="FILE|hub:ID",
            help="The benchmark's prompt set (classify: prompt templates with {concept}; see `cpedit eval`).",
        ),
        category_option(),
        limit_option(),
        images_per_prompt_option(),
        family_option(),
        concepts_option(),
        classifier_option(),
        classifier_model_option(),
        attack_set_option(),
        threshold_option(),
        clip_model_option(),
        seed_option(help="Seed of the evaluation images; it also draws the shapes benchmark's prompts."),
        steps_option(default=25),
        guidance_option(),
        image_batch_option(default=16, why="Default 16: between the shapes model's 64 and full-size models' 4."),
        calibration_batch_option(),
        click.option(
            "--collapse-check/--no-collapse-check",
            default=True,
            show_default=True,
            help="Check every point's edit for a collapse (4 unrelated prompts, base against pruned, 6 steps; "
            "the base images once): a point whose edit destroyed generation is marked collapsed and failed "
            "(never on the Pareto front, never chosen by tune).",
        ),
        compute_options(),
    )(command)


PLAN_FLAGS = (
    "benchmark",
    "images",
    "prompts",
    "category",
    "limit",
    "family",
    "concepts",
    "classifier",
    "classifier_model",
    "attack_set",
    "threshold",
    "preserve",
    "preserve_prompts",
    "preserve_limit",
    "clip_model",
)
"""The evaluation flags :func:`_plan` takes out of a command's options (the rest go to sweep/tune)."""


def _plan(options: dict[str, Any], view: Any) -> Any:
    """The evaluation plan of the flags: one ImageOptions, the benchmark's typed options, the preservation's."""
    from cpedit.eval.registry import get_benchmark
    from cpedit.tuning.measure import plan_evaluation

    images = image_options(options)
    flags = {name: options.pop(name) for name in PLAN_FLAGS}
    benchmark, preserve = flags.pop("benchmark"), flags.pop("preserve")
    preserve_options = None
    if preserve is not None:
        preserve_flags = {"prompts": flags["preserve_prompts"], "limit": flags["preserve_limit"]}
        preserve_options = get_benchmark(preserve).options({**preserve_flags, "clip_model": flags["clip_model"]})
    return plan_evaluation(
        benchmark,
        get_benchmark(benchmark).options(flags),
        images=images,
        preserve=preserve,
        preserve_options=preserve_options,
        on_progress=view,
    )


COLUMNS = (
    "skill ratio",
    "tau",
    "select",
    "target",
    "pruned",
    "erased before",
    "erased after",
    "drop",
    "images",
    "time",
)
OPTIONAL = ("select", "target")
"""Shown only when some point sets them (else every point uses the recipes' own)."""
RECIPES_OWN = "recipe"


def own_tau(recipes: Sequence[Recipe]) -> str:
    """The tau the recipes calibrate with when a point keeps theirs: ``10``, or ``10/20`` when they differ."""
    return "/".join(str(tau) for tau in sorted({recipe.prune.timesteps for recipe in recipes}))


def _cells(point: Any, tau: str) -> dict[str, str]:
    """A point's table cells; ``tau`` is the recipes' own, shown for points that keep it."""
    from cpedit.eval.intervals import with_interval

    settings = point.settings
    before = point.erased.get("before")
    return {
        "skill ratio": f"{settings.skill_ratio:.3g}",
        "tau": tau if settings.timesteps is None else str(settings.timesteps),
        "select": RECIPES_OWN if settings.select_ratio is None else f"{settings.select_ratio:.3g}",
        "target": settings.target or RECIPES_OWN,
        "pruned": f"{point.pruned_percent:.4f}%",
        "erased before": "-" if before is None else f"{before:.3f}",
        "erased after": with_interval(point.erased["after"], point.intervals.get("erased"), digits=3),
        "drop": with_interval(point.drop, point.intervals.get("drop"), digits=3, sign=True),
        "images": str(point.images) if point.images else "-",
        "time": f"{point.seconds:.0f} s",
    }


def _settings(point: Any, tau: str) -> str:
    """``skill ratio 0.0173, tau 10`` (select ratio and target too when the point sets them)."""
    cells = _cells(point, tau)
    shown = [k for k in ("skill ratio", "tau", *OPTIONAL) if k not in OPTIONAL or cells[k] != RECIPES_OWN]
    return ", ".join(f"{k} {cells[k]}" for k in shown)


def _line(point: Any, tau: str) -> str:
    """One point as a line (printed as the table fills in)."""
    cells = _cells(point, tau)
    skipped = ("time", "skill ratio", "tau", "images", *OPTIONAL)
    measured = ", ".join(f"{k} {cells[k]}" for k in COLUMNS if k not in skipped)
    failed = f" - COLLAPSED, failed: {point.collapse.reason}" if point.collapsed else ""
    return f"{_settings(point, tau)}, {measured}{failed}"


def _table(title: str, points: list[Any], *, tau: str, marks: dict[int, str]) -> FittedTable:
    """The points, one row each; ``marks`` labels some of them by ``id`` (pareto, chosen)."""
    rows = [_cells(p, tau) for p in points]
    columns = [c for c in COLUMNS if c not in OPTIONAL or any(r[c] != RECIPES_OWN for r in rows)]
    table = FittedTable(title=title, record_header=True)
    for column in columns:
        table.add_column(column, justify="left" if column == "target" else "right")
    table.add_column("")
    for point, cells in zip(points, rows, strict=True):
        mark = "collapsed" if point.collapsed else marks.get(id(point), "")
        table.add_row(*(cells[c] for c in columns), mark)
    return table


def _title(command: str, plan: Any, detail: str) -> str:
    return f"{command}: {plan.benchmark} (erased: {plan.erased_metric}; drop: of {plan.preserved_metric}), {detail}"


@click.command("sweep")
@click.argument("model", default="builtin:shapes", required=False)
@recipe_option(multiple=True)
@click.option(
    "--skill-ratio",
    "skill_ratios",
    callback=_floats("skill ratio", low=0, high=1),
    required=True,
    metavar="LIST",
    help="Skill ratios, comma-separated (0.01,0.02,0.05).",
)
@click.option("--timesteps", callback=_ints, default=None, metavar="LIST", help="Taus (default: the recipes' own).")
@click.option(
    "--select-ratio",
    "select_ratios",
    callback=_floats("select ratio", low=0, high=1, low_included=True),
    default=None,
    metavar="LIST",
    help="Select ratios (default: the recipes' own).",
)
@click.option("--target", "targets", callback=_words, default=None, metavar="LIST", help="Hook targets (ffn,...).")
@evaluation_options
@click.option("--out", "-o", type=click.Path(file_okay=False), required=True, help="The sweep folder (resumable).")
@click.option(
    "--keep-models",
    is_flag=True,
    help="Also save every point's pruned model in OUT/points/ (by default no model is written).",
)
@click.option(
    "--no-plot", is_flag=True, help="Do not draw OUT/sweep.png (drawn when matplotlib, the eval extra, is installed)."
)
@format_option(help="Print the table as it fills in, or the sweep JSON on stdout at the end.")
@command_guard()
def sweep_command(
    model: str,
    recipes: tuple[str, ...],
    skill_ratios: list[float],
    timesteps: list[int] | None,
    select_ratios: list[float] | None,
    targets: list[str] | None,
    out: str,
    keep_models: bool,
    no_plot: bool,
    output_format: str,
    **options: Any,
) -> None:
    """Measure a grid of prune settings on MODEL: erasure against preservation, with the Pareto front.

    Calibrates MODEL (default builtin:shapes) once per recipe and hook target, with the
    largest tau of the grid; then every point (skill ratio x tau x select ratio x target)
    selects its weights, is applied and measured in memory by the --eval benchmark exactly as
    `cpedit prune` + `cpedit eval BENCH --base` would measure it, and is restored: no model
    is written (--keep-models saves each). The base model and each judge are loaded and
    evaluated once. Under torchrun, the ranks split the calibration and each point's images.
    OUT/sweep.json is written after every point, so an interrupted sweep continues where
    it stopped when run again with the same model, recipes and evaluation; OUT/sweep.png
    plots erased (after) against the preservation drop, with the Pareto front marked.

    \b
    Examples:
      cpedit sweep --recipe shapes-striped --skill-ratio 0.01,0.05,0.2 --timesteps 5,10 --eval shapes --out sw
      cpedit sweep CompVis/stable-diffusion-v1-4 --recipe van-gogh --skill-ratio 0.005,0.01,0.02 \\
          --eval classify --out sw-van-gogh --device cuda
      cpedit sweep MODEL --recipe nudity --skill-ratio 0.001,0.01,0.1 --eval nudity --category sexual \\
          --limit 200 --preserve clip-score --preserve-prompts coco-1k.txt --out sw-nudity
    """
    from cpedit.cli.render import ProgressView
    from cpedit.distributed import is_main_process
    from cpedit.recipes.sources import resolve_recipe
    from cpedit.tuning.grid import PLOT_FILE, SWEEP_FILE, sweep
    from cpedit.tuning.plot import plot_available, plot_sweep

    console = stderr_console()
    keep_on_interrupt(f"the points finished so far are kept in {Path(out) / SWEEP_FILE}: run the same command to go on")
    plot = not no_plot and plot_available()  # known before any work: the measured points are never lost
    if not no_plot and not plot:
        console.print(
            f"Note: matplotlib is not installed, so the sweep is measured without its plot {Path(out) / PLOT_FILE} "
            '(pip install "cpedit[eval]" draws it on the next run, which reuses every point; --no-plot skips it).',
            markup=False,
            highlight=False,
        )

    main = is_main_process()  # under torchrun every rank sweeps; rank 0 alone shows, writes and prints

    def on_point(point: Any, index: int, total: int) -> None:
        if output_format == "table" and view is not None:
            view.progress.console.print(f"[{index}/{total}] {_line(point, tau)}", markup=False, highlight=False)

    with ProgressView(console) if main else contextlib.nullcontext() as view:
        loaded = [resolve_recipe(r) for r in recipes]
        tau = own_tau(loaded)
        plan = _plan(options, view)
        result = sweep(
            model,
            loaded,
            skill_ratios=skill_ratios,
            timesteps=timesteps or [None],
            select_ratios=select_ratios or [None],
            targets=targets or [None],
            plan=plan,
            out=out,
            keep_models=keep_models,
            plot=False,  # drawn below, once the result is shown
            on_point=on_point,
            on_progress=view,
            **options,
        )
    if not main:
        return
    if output_format == "json":
        click.echo((Path(out) / SWEEP_FILE).read_text(encoding="utf-8"))
    else:
        front = {id(p): "pareto" for p in result.pareto}
        detail = f"{len(result.points)} points, {result.measured} measured now"
        stdout_console().print(_table(_title("sweep", plan, detail), result.points, tau=tau, marks=front))
    if plot:
        result.plot = plot_sweep(result.points, Path(out) / PLOT_FILE, plan=plan)
    drawn = f" and {result.plot}" if result.plot else "" if no_plot else " (no plot: matplotlib is not installed)"
    console.print(f"Wrote {Path(out) / SWEEP_FILE}{drawn}", markup=False, highlight=False)


@click.command("tune")
@click.argument("model", default="builtin:shapes", required=False)
@recipe_option(multiple=False)
@click.option(
    "--erased-at-most", type=click.FloatRange(min=0), required=True, help="Goal: erased after the edit at most this."
)
@click.option("--max-drop", type=click.FloatRange(min=0), required=True, help="Budget: preservation drop at most this.")
@click.option("--timesteps", callback=_ints, default=None, metavar="LIST", help="Taus to search (default: own).")
@click.option("--select-ratio", type=click.FloatRange(0, 1), default=None, help="A select ratio for every point.")
@click.option("--target", default=None, help="A hook target (default: the recipe's).")
@click.option("--min-skill-ratio", type=click.FloatRange(0, 1, min_open=True), default=0.001, show_default=True)
@click.option("--max-skill-ratio", type=click.FloatRange(0, 1, min_open=True), default=0.3, show_default=True)
@click.option(
    "--tolerance",
    type=click.FloatRange(1, min_open=True),
    default=1.25,
    show_default=True,
    help="Stop bisecting when the skill-ratio bracket is narrower than this factor.",
)
@evaluation_options
@click.option("--out", "-o", type=click.Path(file_okay=False), required=True, help="Folder for the result.")
@click.option("--save", is_flag=True, help="Also save the tuned pruned model in OUT/model.")
@click.option("--overwrite", is_flag=True, help="Replace an earlier OUT/model.")
@click.option(
    "--max-growth",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Where a point's 95% interval straddles the goal, measure it on twice the images, up to this many "
    "times the evaluation's (1: never).",
)
@click.option(
    "--held-out/--no-held-out",
    default=True,
    show_default=True,
    help="Measure the chosen setting again on seeds the search never used, and report both.",
)
@click.option(
    "--holdout-seed",
    type=int,
    default=None,
    help="The held-out check's first seed (default: --seed + 100003).",
)
@format_option(help="Print the steps and the result, or the tune JSON on stdout.")
@command_guard()
def tune_command(
    model: str,
    recipe: str,
    erased_at_most: float,
    max_drop: float,
    timesteps: list[int] | None,
    select_ratio: float | None,
    target: str | None,
    min_skill_ratio: float,
    max_skill_ratio: float,
    tolerance: float,
    out: str,
    save: bool,
    overwrite: bool,
    max_growth: int,
    held_out: bool,
    holdout_seed: int | None,
    output_format: str,
    **options: Any,
) -> None:
    """Find the least pruning that meets an erasure goal within a preservation budget.

    Searches the skill ratio (and the --timesteps taus) on MODEL (default builtin:shapes):
    for each tau, bisection on a log scale between --min-skill-ratio and --max-skill-ratio
    (the pruned fraction grows with the skill ratio) for the smallest ratio whose erased
    value (after) is at most --erased-at-most, then a local refinement just below it; the
    least-pruning point whose preservation drop is at most --max-drop wins. Far fewer
    evaluations than a grid. Writes OUT/tune.json (every point measured), the tuned recipe
    OUT/NAME.yaml (a copy of the recipe with the settings found and a comment with the
    measured numbers) and, with --save, the pruned model OUT/model. If no setting meets the
    goal, it says so, reports the best trade-off found and exits with status 3.

    A point meets the goal only when the upper bounds of the 95% intervals of erased and of
    the drop are within it; where an interval straddles the goal, the point is measured on
    more images (--max-growth). The chosen setting is then measured on held-out seeds
    (--holdout-seed) and both results are shown: numbers on the seeds a setting was chosen
    on flatter it.

    \b
    Examples:
      cpedit tune --recipe shapes-striped --eval shapes --erased-at-most 0.5 --max-drop 0.05 --out t
      cpedit tune MODEL --recipe van-gogh --eval classify --erased-at-most 0.3 --max-drop 0.1 \\
          --timesteps 5,10 --out tune-van-gogh --save --device cuda
    """
    from cpedit.cli.render import ProgressView
    from cpedit.recipes.sources import resolve_recipe
    from cpedit.tuning.search import tune

    console = stderr_console()

    def on_point(point: Any) -> None:
        if output_format == "table":
            view.progress.console.print(f"measured: {_line(point, tau)}", markup=False, highlight=False)

    with ProgressView(console) as view:
        loaded = resolve_recipe(recipe)
        tau = own_tau([loaded])
        plan = _plan(options, view)
        result = tune(
            model,
            loaded,
            plan=plan,
            erased_at_most=erased_at_most,
            max_drop=max_drop,
            out=out,
            timesteps=timesteps,
            select_ratio=select_ratio,
            target=target,
            min_skill_ratio=min_skill_ratio,
            max_skill_ratio=max_skill_ratio,
            tolerance=tolerance,
            save=save,
            overwrite=overwrite,
            max_growth=max_growth,
            held_out=held_out,
            holdout_seed=holdout_seed,
            on_point=on_point,
            on_progress=view,
            **options,
        )
    if output_format == "json":
        click.echo(json.dumps(json.loads(Path(result.file).read_text(encoding="utf-8")), indent=2))  # type: ignore[arg-type]
    else:
        mark = "chosen" if result.met else "best trade-off"
        title = f"tune: {len(result.points)} points measured"
        stdout_console().print(_table(title, result.points, tau=tau, marks={id(result.best): mark}))
        best = result.best
        if result.met:
            cells = _cells(best, tau)
            console.print(
                f"Goal met (with the 95% intervals): {_settings(best, tau)} prunes {best.pruned_percent:.4f}%, "
                f"{plan.erased_metric} {cells['erased after']}, drop {cells['drop']}. "
                f"Wrote {result.recipe_file}" + (f" and {result.model}" if result.model else ""),
                markup=False,
            )
            if result.held_out is not None:
                checked = f"held-out check: the chosen setting on seed {result.held_out_seed} and on the tuning seed"
                marks = {id(best): "tuning seed", id(result.held_out): "held-out seeds"}
                stdout_console().print(_table(checked, [best, result.held_out], tau=tau, marks=marks))
                console.print(
                    "The goal holds on the held-out seeds too."
                    if result.held_out_met
                    else "The goal does NOT hold on the held-out seeds (with the 95% intervals): the setting was "
                    "chosen partly on noise; measure with more images or loosen the goal.",
                    markup=False,
                )
        else:
            console.print(
                f"No setting met the goal (erased <= {erased_at_most:g}, drop <= {max_drop:g}). Best trade-off: "
                f"{_settings(best, tau)}, {plan.erased_metric} {best.erased['after']:.3f}, drop {best.drop:+.3f} "
                f"({best.pruned_percent:.4f}% pruned). See {result.file}.",
                markup=False,
            )
        if result.base_meets:
            console.print(
                f"Note: the base model already meets the goal before any pruning ({plan.erased_metric} "
                f"{best.erased['before']:.3f} <= {erased_at_most:g}), so meeting it says nothing about the pruning; "
                "set a lower --erased-at-most, or check that the evaluation measures the recipe's concept.",
                markup=False,
            )
    if not result.met:
        raise SystemExit(3)
