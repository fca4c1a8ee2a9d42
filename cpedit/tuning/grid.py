"""``cpedit sweep``: measure a grid of prune settings, keep it resumable, mark the Pareto front.

Writes ``OUT/sweep.json`` after every point (atomically)::

    {"sweep": 1, "model": "builtin:shapes", "recipes": [...], "evaluation": {...},
     "grid": {"skill_ratio": [...], "timesteps": [...], "select_ratio": [...], "target": [...]},
     "points": [{"settings": {"skill_ratio": 0.05, "timesteps": 10, "select_ratio": null, "target": null},
                 "pruned": 1234, "pruned_percent": 0.41,
                 "erased": {"before": 0.97, "after": 0.41}, "preserved": {"before": 0.95, "after": 0.93},
                 "drop": 0.02, "metrics": {...}, "seconds": 12.3, "pareto": true}, ...],
     "calibrations": [{"recipe": "shapes-striped", "target": "ffn", "timesteps": 10, "seconds": 3.1}]}

and ``OUT/sweep.png`` (erased after the edit against the preservation drop, every point
labelled, the Pareto front marked). A rerun with the same model, recipes and evaluation
continues: finished points are kept and only the others are measured. Points are measured on
the edited pipeline in memory: no model is written unless ``keep_models`` asks for each.

Under a multi-process launch (``torchrun``; see :mod:`cpedit.distributed`) every rank runs
the same sweep: the calibration splits its prompt batches across the ranks, each point's images
are split across them (:func:`cpedit.eval.engine.render_images`), and rank 0 alone writes
``sweep.json``, the plot and any kept model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cpedit.errors import CpeditError
from cpedit.models.compute import ComputeOptions
from cpedit.progress import ProgressCallback, ProgressEvent, check_cancel, emit
from cpedit.recipes.format import Recipe
from cpedit.tuning.measure import EvaluationPlan
from cpedit.tuning.points import Point, PointEvaluator, PointSettings, check_grid, pareto_front

SWEEP_FILE = "sweep.json"
PLOT_FILE = "sweep.png"
FORMAT = 1

__all__ = ["PLOT_FILE", "SWEEP_FILE", "SweepResult", "read_sweep", "sweep"]


@dataclass
class SweepResult:
    """A sweep: its points (grid order, then any kept from earlier grids), calibrations, files."""

    points: list[Point]
    calibrations: list[dict[str, Any]] = field(default_factory=list)
    measured: int = 0
    """Points measured by this run (the others were finished by an earlier one)."""
    folder: Path | None = None
    plot: Path | None = None

    @property
    def pareto(self) -> list[Point]:
        """The points no other point beats on both erased (after) and drop."""
        return pareto_front(self.points)


def _config(model: str, revision: str | None, recipes: Sequence[Recipe], plan: EvaluationPlan) -> dict[str, Any]:
    return {
        "model": model,
        "revision": revision,
        "recipes": [{"name": r.name, "sha256": hashlib.sha256(r.text.encode()).hexdigest()} for r in recipes],
        "evaluation": plan.described,
    }


def read_sweep(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``folder/sweep.json`` as JSON (None when there is none), checked by its one reader
    (:func:`cpedit.tuning.sweep_file.load_sweep_json`).

    Raises:
        CpeditError: The file is not a sweep file, is tampered with or too large (``reason="malformed"``).
    """
    from cpedit.tuning.sweep_file import load_sweep_json

    path = Path(folder) / SWEEP_FILE
    if not os.path.lexists(path):
        return None
    return load_sweep_json(path, format_version=FORMAT)  # bounded, finite, typed: errors name the field


def _write(folder: Path, config: dict[str, Any], grid: dict[str, list[Any]], result: SweepResult) -> None:
    from cpedit.distributed import is_main_process
    from cpedit.output.record import write_json_atomically

    if not is_main_process():  # one writer per file: rank 0 of a launch
        return

    front = {id(p) for p in result.pareto}
    data = {
        "sweep": FORMAT,
        **config,
        "grid": grid,
        "points": [{**p.to_dict(), "pareto": id(p) in front} for p in result.points],
        "calibrations": result.calibrations,
    }
    write_json_atomically(folder / SWEEP_FILE, data, what="the sweep", argument="out")


def sweep(
    model: str | os.PathLike[str],
    recipes: Sequence[str | os.PathLike[str] | Recipe],
    *,
    skill_ratios: Sequence[float],
    plan: EvaluationPlan,
    out: str | os.PathLike[str],
    timesteps: Sequence[int | None] = (None,),
    select_ratios: Sequence[float | None] = (None,),
    targets: Sequence[str | None] = (None,),
    compute: ComputeOptions = ComputeOptions(),
    batch_size: int | None = None,
    keep_models: bool = False,
    collapse_check: bool = True,
    plot: bool = True,
    on_point: Callable[[Point, int, int], None] | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> SweepResult:
    """Measure every point of the grid (skill ratio x tau x select ratio x target) on ``model``.

    The model is loaded once and calibrated once per hook target, with the largest tau of the
    grid; every point then selects, applies and is measured on the pipeline in memory (see
    :class:`cpedit.tuning.points.PointEvaluator`), and the base weights are restored. The base
    model's images are made and scored once and shared by every point; each judge is loaded
    once. Nothing but ``sweep.json``, the plot and the evaluation images is written (and, with
    ``keep_models``, each point's model). Under ``torchrun`` every rank calls it alike (see the
    module docstring).

    Args:
        model: A Hub id, a pipeline folder or ``builtin:shapes``.
        recipes: Recipes (names, files, ``hub:`` refs), erased together at every point.
        skill_ratios: The skill ratios of the grid.
        plan: How points are measured (:class:`cpedit.tuning.measure.EvaluationPlan`).
        out: The sweep folder: ``sweep.json``, ``sweep.png``, ``images/`` (and ``points/`` with ``keep_models``).
        timesteps: The taus of the grid (None: each recipe's own).
        select_ratios: The select ratios (None: each recipe's own).
        targets: The hook targets (None: each recipe's own).
        compute: Where and how the model loads (device, dtype, offload, Hub revision: recorded in
            ``sweep.json``); the evaluation's judges run on its device too.
        batch_size: Prompts per calibration batch; None picks the largest that fits.
        keep_models: Also save every point's pruned model in ``out/points/`` (for ``cpedit push``).
        collapse_check: Check each point's edit for a collapse (:mod:`cpedit.edit.collapse`; the base
            images once, 4 small images per point): a collapsed point is marked in ``sweep.json``
            (``collapsed``, ``collapse_check``) and the plot, and is never on the Pareto front.
        plot: Write ``sweep.png`` (needs matplotlib: checked before anything is measured).
        on_point: Called with each point as it is finished (and its index and the total).
        on_progress: Receives the load, calibrate, sample and evaluate events.
        cancel: Stops at the next batch; finished points stay in ``sweep.json``.

    Raises:
        CpeditError: A bad grid or recipe, ``out`` holds a sweep of another model, recipes or
            evaluation (``reason="different_sweep"``), ``plot`` without matplotlib
            (``reason="missing_dependency"``, before any work), or as the evaluation.
        Cancelled: ``cancel`` was set (finished points are kept: run again to continue).
    """
    from cpedit.edit.collapse import CollapseGuard
    from cpedit.recipes.sources import resolve_recipe

    if plot:
        from cpedit.tuning.plot import check_plot_available

        check_plot_available()
    for values, name in (
        (list(skill_ratios), "skill_ratio"),
        (list(timesteps), "timesteps"),
        (list(select_ratios), "select_ratio"),
        (list(targets), "target"),
    ):
        check_grid(values, name)
    loaded = [resolve_recipe(r) for r in recipes]
    if not loaded:
        raise CpeditError("give at least one recipe", argument="recipe")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    config = _config(str(model), compute.revision, loaded, plan)
    grid: dict[str, list[Any]] = {
        "skill_ratio": list(skill_ratios),
        "timesteps": list(timesteps),
        "select_ratio": list(select_ratios),
        "target": list(targets),
    }
    previous = read_sweep(folder)
    done: dict[PointSettings, Point] = {}
    if previous is not None:
        differs = [key for key in config if previous.get(key) != config[key]]
        if differs:
            raise CpeditError(
                f"{folder / SWEEP_FILE} holds a sweep with another {', '.join(differs)}; "
                "choose another sweep folder to keep both, or remove it",
                path=str(folder / SWEEP_FILE),
                reason="different_sweep",
                argument="out",
            )
        done = {p.settings: p for p in map(Point.from_dict, previous["points"])}
        if collapse_check:  # a point of an earlier run without the check is measured again, with it
            done = {settings: point for settings, point in done.items() if point.collapse is not None}
    from cpedit.distributed import barrier, is_main_process, rank_device

    barrier()  # every rank has read the earlier points before rank 0 writes the file again
    wanted = [
        PointSettings(skill_ratio=float(s), timesteps=t, select_ratio=r, target=g)
        for g, t, r, s in itertools.product(targets, timesteps, select_ratios, skill_ratios)
    ]
    result = SweepResult(points=[], calibrations=list(previous.get("calibrations", [])) if previous else [])
    result.folder = folder
    pending = [s for s in wanted if s not in done]
    # the largest tau each target's points ask for (None: the recipes' own)
    taus: dict[str | None, int] = {}
    for s in pending:
        if s.timesteps is not None:
            taus[s.target] = max(taus.get(s.target, 0), s.timesteps)
    evaluator = PointEvaluator(
        model,
        loaded,
        plan=plan,
        work=folder,
        timesteps=taus,
        own_timesteps={s.target for s in pending if s.timesteps is None},
        keep_models=keep_models,
        compute=dataclasses.replace(compute, device=rank_device(compute.device)),
        batch_size=batch_size,
        collapse_guard=CollapseGuard() if collapse_check else None,
        on_progress=on_progress,
        cancel=cancel,
    )
    finished = dict(done)
    try:
        for index, settings in enumerate(wanted, 1):
            if settings in finished:
                if on_point is not None:
                    on_point(finished[settings], index, len(wanted))
                continue
            check_cancel(cancel, "between sweep points")
            emit(
                on_progress,
                ProgressEvent(
                    stage="sweep",
                    message=f"point {index} of {len(wanted)}: {settings.label}",
                    completed=index - 1,
                    total=len(wanted),
                    unit="points",
                ),
            )
            point = evaluator.evaluate(settings)
            finished[settings] = point
            result.measured += 1
            result.calibrations = (list(previous.get("calibrations", [])) if previous else []) + evaluator.calibrations
            result.points = _ordered(wanted, finished)
            _write(folder, config, grid, result)
            if on_point is not None:
                on_point(point, index, len(wanted))
    finally:
        evaluator.close()
        points_dir = folder / "points"
        if is_main_process() and points_dir.is_dir() and not any(points_dir.iterdir()):
            points_dir.rmdir()
    result.points = _ordered(wanted, finished)
    result.calibrations = (list(previous.get("calibrations", [])) if previous else []) + evaluator.calibrations
    _write(folder, config, grid, result)
    emit(
        on_progress,
        ProgressEvent(stage="sweep", message="sweep done", completed=len(wanted), total=len(wanted), unit="points"),
    )
    if plot and is_main_process():
        from cpedit.tuning.plot import plot_sweep

        result.plot = plot_sweep(result.points, folder / PLOT_FILE, plan=plan)
    return result


def _ordered(wanted: list[PointSettings], finished: dict[PointSettings, Point]) -> list[Point]:
    """The grid's points in grid order, then points of earlier grids (kept: they were paid for)."""
    ordered = [finished[s] for s in wanted if s in finished]
    ordered += [p for s, p in finished.items() if s not in set(wanted)]
    return ordered
