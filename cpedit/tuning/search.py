"""``cpedit tune``: the least pruning that meets an erasure goal within a preservation budget.

The goal: ``erased`` after the edit at most ``erased_at_most`` and a preservation ``drop`` at
most ``max_drop``. For each candidate tau (the recipe's own by default) the search bisects the
skill ratio on a log scale between ``min_skill_ratio`` and ``max_skill_ratio``: the pruned
fraction grows with the skill ratio, so the smallest ratio that erases enough is found in a
handful of measurements (a grid would need many). A local refinement then measures one
point just below the ratio found (erasure is not perfectly monotone in a measured sample).
The least-pruning point that meets the whole goal is chosen. If none does, a second bisection
finds the largest skill ratio whose drop is within the budget (the drop grows with pruning
too), and the search says so and reports the best trade-off it measured: the least erased
within the budget, else the least drop.

The goal is judged with the uncertainty: a point meets it only when the upper bounds of the
95% intervals of erased (after) and of the drop are within it (:mod:`cpedit.eval.intervals`).
Where an interval straddles the goal (the point might meet it or not), the point is measured
again on twice the images, up to ``max_growth`` times the plan's; a point clearly on one side
costs the plan's images only. The chosen point is then measured once more on held-out seeds
(``holdout_seed``: images the search never saw), and both measurements are reported.

Writes ``OUT/tune.json`` (the goal, every point measured, the choice), and when the goal is
met ``OUT/RECIPE.yaml`` (the recipe with the settings found and a comment with the measured
numbers) and, with ``save``, the pruned model in ``OUT/model``. An ``OUT/RECIPE.yaml`` that this
comment does not mark as a tuned recipe (a user's own) is never replaced: the tune refuses before any work.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cpedit.errors import CpeditError
from cpedit.models.compute import ComputeOptions
from cpedit.ownership import check_replaceable_file
from cpedit.progress import ProgressCallback, ProgressEvent, check_cancel, emit
from cpedit.recipes.format import Recipe
from cpedit.tuning.measure import EvaluationPlan
from cpedit.tuning.points import Point, PointEvaluator, PointSettings

TUNE_FILE = "tune.json"
MODEL_DIR = "model"
HELD_OUT_OFFSET = 100_003
"""The held-out check's first seed, by default: the plan's seed plus this (no image of the search)."""
TUNED_MARKER = "tuned by cpedit tune"
"""In the first-line comment of every recipe tune writes: the proof that it may replace that file."""

__all__ = ["TUNE_FILE", "TuneResult", "tune"]


@dataclass
class TuneResult:
    """What the search found.

    Attributes:
        met: Whether a measured point meets the whole goal.
        chosen: The least-pruning point meeting the goal (None when ``met`` is False).
        best: ``chosen``, or the best trade-off measured.
        points: Every point measured, in order.
        goal: ``{"erased_at_most", "max_drop"}``.
        recipe_file: The tuned recipe (when met).
        model: The saved pruned model (when met and asked for).
        held_out: ``chosen`` measured again on held-out seeds (None: not met, or not asked for).
        held_out_met: Whether the goal holds there too, with the uncertainty (None: no check).
        held_out_seed: The held-out check's first seed.
        images: Images per model measured at each point, in order (more where an interval straddled the goal).
        base_meets: The unedited base already meets the erasure goal (its ``before`` value), so
            meeting it says nothing about the pruning: front ends say so.
    """

    met: bool
    chosen: Point | None
    best: Point
    points: list[Point]
    goal: dict[str, float]
    calibrations: list[dict[str, Any]] = field(default_factory=list)
    base_meets: bool = False
    recipe_file: Path | None = None
    model: Path | None = None
    file: Path | None = None
    held_out: Point | None = None
    held_out_met: bool | None = None
    held_out_seed: int | None = None
    images: list[int] = field(default_factory=list)


def meets_goal(point: Point, erased_at_most: float, max_drop: float) -> bool:
    """Whether the goal holds with the uncertainty: the intervals' upper bounds of erased and the drop within it.

    A collapsed point (its edit destroyed generation: :attr:`Point.collapsed`) never meets it.
    """
    if point.collapsed:
        return False
    return point.upper("erased") <= erased_at_most and point.upper("drop") <= max_drop


def within_budget(point: Point, max_drop: float) -> bool:
    """Whether the drop's upper bound is within the budget (never for a collapsed point)."""
    return not point.collapsed and point.upper("drop") <= max_drop


def undecided(point: Point, erased_at_most: float, max_drop: float) -> bool:
    """Whether an interval straddles the goal: the point might meet it or not (more images would tell).

    A collapsed point is decided: it fails.
    """
    clearly_fails = point.collapsed or point.lower("erased") > erased_at_most or point.lower("drop") > max_drop
    return not clearly_fails and not meets_goal(point, erased_at_most, max_drop)


def _base_meets(points: Sequence[Point], erased_at_most: float) -> bool:
    """Whether the unedited base already meets the erasure goal (its ``before`` value): any pruning would "meet" it."""
    return any(p.erased.get("before") is not None and p.erased["before"] <= erased_at_most for p in points[:1])


def best_trade_off(points: Sequence[Point], *, max_drop: float) -> Point:
    """The least erased point within the drop budget (its interval's upper bound), else the least drop.

    Collapsed points come last: one is the best trade-off only when every point collapsed.
    """
    within = [p for p in points if within_budget(p, max_drop)]
    if within:
        return min(within, key=lambda p: (p.erased["after"], p.pruned))
    return min(points, key=lambda p: (p.collapsed, p.drop, p.erased["after"]))


def tune(
    model: str | os.PathLike[str],
    recipe: str | os.PathLike[str] | Recipe,
    *,
    plan: EvaluationPlan,
    erased_at_most: float,
    max_drop: float,
    out: str | os.PathLike[str],
    timesteps: Sequence[int] | None = None,
    select_ratio: float | None = None,
    target: str | None = None,
    min_skill_ratio: float = 0.001,
    max_skill_ratio: float = 0.3,
    tolerance: float = 1.25,
    save: bool = False,
    overwrite: bool = False,
    max_growth: int = 4,
    held_out: bool = True,
    holdout_seed: int | None = None,
    compute: ComputeOptions = ComputeOptions(),
    batch_size: int | None = None,
    collapse_check: bool = True,
    on_point: Callable[[Point], None] | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> TuneResult:
    """Search the skill ratio (and tau) for the least pruning that meets the goal.

    Args:
        model: A Hub id, a pipeline folder or ``builtin:shapes``.
        recipe: The recipe to tune (name, file or ``hub:`` ref).
        plan: How points are measured (:func:`cpedit.tuning.measure.plan_evaluation`).
        erased_at_most: The erasure goal: ``erased`` after the edit at most this.
        max_drop: The preservation budget: ``drop`` at most this.
        out: The folder for ``tune.json``, the tuned recipe, ``model/``, the images.
        timesteps: The taus to search (default: the recipe's own).
        select_ratio: A select ratio for every point (None: the recipe's own).
        target: A hook target (None: the recipe's own).
        min_skill_ratio: The search's smallest skill ratio.
        max_skill_ratio: The search's largest skill ratio.
        tolerance: The bisection stops when the bracket's ratio is below this (> 1).
        save: Save the chosen point's pruned model in ``out/model``.
        overwrite: Replace an earlier ``out/model`` and tuned recipe.
        max_growth: Where a point's interval straddles the goal, measure it again on twice the
            images, up to this many times the plan's (1: never).
        held_out: Measure the chosen point again on held-out seeds and report both.
        holdout_seed: The held-out check's first seed (default: the plan's plus :data:`HELD_OUT_OFFSET`).
        compute: Where and how the model loads (device, dtype, offload, Hub revision); the
            evaluation's judges run on its device too.
        batch_size: Prompts per calibration batch; None picks the largest that fits.
        collapse_check: Check each point's edit for a collapse (:mod:`cpedit.edit.collapse`): a
            collapsed point never meets the goal, and counts as beyond the drop budget.
        on_point: Called with each point as it is measured.
        on_progress, cancel: As :func:`cpedit.tuning.grid.sweep`.

    Raises:
        CpeditError: Bad goal or search range, or as the measurement.
        NotOursError: ``out`` holds a file of the tuned recipe's name that tune did not write.
        Cancelled: ``cancel`` was set.
    """
    from cpedit.edit.collapse import CollapseGuard
    from cpedit.output.record import write_json_atomically
    from cpedit.recipes.sources import resolve_recipe

    if not 0 < min_skill_ratio < max_skill_ratio <= 1:
        raise CpeditError(
            f"the skill-ratio range must satisfy 0 < min < max <= 1, got {min_skill_ratio:g}..{max_skill_ratio:g}",
            argument="min_skill_ratio",
        )
    if tolerance <= 1:
        raise CpeditError(f"tolerance must be above 1, got {tolerance:g}", argument="tolerance")
    if max_drop < 0 or erased_at_most < 0:
        raise CpeditError("the goal's erased-at-most and max-drop must not be negative", argument="max_drop")
    if not isinstance(max_growth, int) or isinstance(max_growth, bool) or max_growth < 1:
        raise CpeditError(f"max_growth must be a whole number >= 1, got {max_growth!r}", argument="max_growth")
    held_seed = plan.images.seed + HELD_OUT_OFFSET if holdout_seed is None else holdout_seed
    loaded = resolve_recipe(recipe)
    taus: list[int | None] = list(dict.fromkeys(timesteps)) if timesteps else [None]
    folder = Path(out)
    check_replaceable_file(_tuned_recipe_path(loaded, folder), marker=TUNED_MARKER, argument="out")  # before any work
    folder.mkdir(parents=True, exist_ok=True)
    largest = max((t for t in taus if t is not None), default=None)
    evaluator = PointEvaluator(
        model,
        [loaded],
        plan=plan,
        work=folder,
        timesteps={} if largest is None else {target: largest},
        own_timesteps={target} if None in taus else set(),
        compute=compute,
        batch_size=batch_size,
        collapse_guard=CollapseGuard() if collapse_check else None,
        on_progress=on_progress,
        cancel=cancel,
    )
    measured: dict[PointSettings, Point] = {}
    growth: dict[PointSettings, int] = {}

    def measure(skill_ratio: float, tau: int | None) -> Point:
        settings = PointSettings(skill_ratio=skill_ratio, timesteps=tau, select_ratio=select_ratio, target=target)
        if settings not in measured:
            check_cancel(cancel, "between tune steps")
            emit(on_progress, ProgressEvent(stage="tune", message=f"measuring {settings.label}", unit="points"))
            point, factor = evaluator.evaluate(settings), 1
            while factor * 2 <= max_growth and undecided(point, erased_at_most, max_drop):
                factor *= 2  # the interval straddles the goal: more images decide it
                check_cancel(cancel, "between tune steps")
                emit(
                    on_progress,
                    ProgressEvent(stage="tune", message=f"measuring {settings.label} on {factor}x the images"),
                )
                point = evaluator.evaluate(settings, plan=plan.enlarged(factor))
            measured[settings], growth[settings] = point, factor
            if on_point is not None:
                on_point(point)
        return measured[settings]

    def erases(point: Point) -> bool:
        # A collapsed point counts as erasing (it destroyed everything): the search moves to less pruning.
        return point.collapsed or point.upper("erased") <= erased_at_most

    def _bisect_budget(measure: Callable[[float, int | None], Point], at_tau: list[Point], tau: int | None) -> None:
        """Bisect between the largest ratio within the drop budget and the next one beyond it."""
        beyond = [p.settings.skill_ratio for p in at_tau if not within_budget(p, max_drop)]
        if not beyond:
            return  # every ratio measured is within the budget: the most pruning measured is the best
        within = [p.settings.skill_ratio for p in at_tau if within_budget(p, max_drop)]
        if not within:  # only too much damage measured: start from the least pruning of the range
            if not within_budget(measure(min_skill_ratio, tau), max_drop):
                return
            within = [min_skill_ratio]
        low_ratio = max(within)
        above = [r for r in beyond if r > low_ratio]
        if not above:
            return
        high_ratio = min(above)
        while high_ratio / low_ratio > tolerance:
            middle = math.sqrt(low_ratio * high_ratio)
            if within_budget(measure(middle, tau), max_drop):
                low_ratio = middle
            else:
                high_ratio = middle

    try:
        for tau in taus:
            high = measure(max_skill_ratio, tau)
            if not erases(high):
                continue  # even the most pruning of the range does not erase enough at this tau
            low_ratio, high_ratio = min_skill_ratio, max_skill_ratio
            low = measure(low_ratio, tau)
            if erases(low):
                continue  # the least pruning of the range already erases enough
            while high_ratio / low_ratio > tolerance:
                middle = math.sqrt(low_ratio * high_ratio)
                if erases(measure(middle, tau)):
                    high_ratio = middle
                else:
                    low_ratio = middle
            measure(high_ratio, tau)
            measure(high_ratio / math.sqrt(tolerance), tau)  # local refinement, just below the bracket
        if not any(meets_goal(p, erased_at_most, max_drop) for p in measured.values()):
            for tau in taus:  # the goal is out of reach: find the most erasure within the drop budget instead
                _bisect_budget(measure, [p for p in measured.values() if p.settings.timesteps == tau], tau)
        meeting = [p for p in measured.values() if meets_goal(p, erased_at_most, max_drop)]
        chosen = min(meeting, key=lambda p: (p.pruned, p.drop)) if meeting else None
        points = list(measured.values())
        if not points:
            raise CpeditError("nothing was measured", argument="timesteps")
        result = TuneResult(
            met=chosen is not None,
            chosen=chosen,
            best=chosen or best_trade_off(points, max_drop=max_drop),
            points=points,
            goal={"erased_at_most": erased_at_most, "max_drop": max_drop},
            calibrations=list(evaluator.calibrations),
            images=[p.images for p in points],
            base_meets=_base_meets(points, erased_at_most),
        )
        if chosen is not None and held_out:
            check_cancel(cancel, "between tune steps")
            emit(on_progress, ProgressEvent(stage="tune", message=f"held-out check of {chosen.settings.label}"))
            held_plan = plan.enlarged(growth[chosen.settings]).reseeded(held_seed)
            result.held_out = evaluator.evaluate(chosen.settings, plan=held_plan)
            result.held_out_met = meets_goal(result.held_out, erased_at_most, max_drop)
            result.held_out_seed = held_seed
        if chosen is not None:
            result.recipe_file = _write_tuned_recipe(loaded, chosen, plan, result.goal, folder, overwrite=True)
            if save:
                result.model = evaluator.save(chosen.settings, folder / MODEL_DIR, overwrite=overwrite)
    finally:
        evaluator.close()
    data = {
        "tune": 1,
        "model": str(model),
        "recipe": loaded.name,
        "goal": result.goal,
        "evaluation": plan.described,
        "met": result.met,
        "rule": "a point meets the goal when the 95% intervals' upper bounds of erased (after) and drop are within "
        "it and its edit did not collapse",
        "max_growth": max_growth,
        "base_meets": result.base_meets,
        "chosen": None if chosen is None else chosen.to_dict(),
        "held_out": None
        if result.held_out is None
        else {"seed": result.held_out_seed, "met": result.held_out_met, "point": result.held_out.to_dict()},
        "best": result.best.to_dict(),
        "points": [p.to_dict() for p in points],
        "calibrations": result.calibrations,
        "recipe_file": None if result.recipe_file is None else result.recipe_file.name,
    }
    result.file = write_json_atomically(folder / TUNE_FILE, data, what="the tune result", argument="out")
    return result


def _write_tuned_recipe(
    recipe: Recipe, point: Point, plan: EvaluationPlan, goal: dict[str, float], folder: Path, *, overwrite: bool
) -> Path:
    from cpedit.recipes.writer import with_settings, write_recipe_file

    settings = point.settings
    prune: dict[str, Any] = {"skill_ratio": settings.skill_ratio}
    for key in ("timesteps", "select_ratio", "target"):
        if getattr(settings, key) is not None:
            prune[key] = getattr(settings, key)
    seed = plan.described.get("seed")
    note = (
        f"{recipe.name}, {TUNED_MARKER} ({plan.benchmark}, evaluation seed {seed}): "
        f"{plan.erased_metric} {point.erased.get('before', float('nan')):.3f} -> {point.erased['after']:.3f} "
        f"(95% up to {point.upper('erased'):.3f}), {plan.preserved_metric} drop {point.drop:.3f} "
        f"(up to {point.upper('drop'):.3f}), {point.pruned_percent:.4f}% pruned; "
        f"goal: erased <= {goal['erased_at_most']:g}, drop <= {goal['max_drop']:g}"
    )
    tuned = with_settings(recipe, prune=prune, note=note)
    check_replaceable_file(_tuned_recipe_path(tuned, folder), marker=TUNED_MARKER, argument="out")
    return write_recipe_file(tuned, folder, overwrite=overwrite)


def _tuned_recipe_path(recipe: Recipe, folder: Path) -> Path:
    """Where :func:`cpedit.recipes.writer.write_recipe_file` puts the tuned ``recipe`` in ``folder``."""
    return folder / f"{recipe.name}.yaml"
