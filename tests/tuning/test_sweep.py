"""``cpedit sweep`` and ``cpedit tune`` on the built-in model: one calibration, points equal to
prune + eval, resume after an interruption, the plot, and tune meeting (or failing) a goal."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from support.helpers import CPU
from support.masks import output_positions

import cpedit.edit.session
from cpedit.cli.main import cli
from cpedit.errors import Cancelled, CpeditError
from cpedit.eval.nudity import NudityOptions
from cpedit.eval.options import ImageOptions
from cpedit.eval.shapes import ShapesOptions
from cpedit.recipes.sources import resolve_recipe
from cpedit.recipes.writer import with_settings, write_recipe_file
from cpedit.tuning import pareto_front, plan_evaluation, sweep, tune
from cpedit.tuning.points import Point, PointSettings

EVAL = {"options": ShapesOptions(images=6), "images": ImageOptions(seed=3, steps=4, batch_size=8)}
OTHER_SEED = ImageOptions(seed=4, steps=4, batch_size=8)
EVAL_ARGS = ["--images", "6", "--seed", "3", "--steps", "4", "--image-batch-size", "8", "--device", "cpu"]
RATIOS = [0.05, 0.2]
TAUS = [3, 6]


@pytest.fixture
def calibrations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The tau of every calibration the session makes."""
    made: list[int] = []
    original = cpedit.edit.session.calibrate

    def counting(pipeline, recipe, layers, *, timesteps, **kwargs):  # type: ignore[no-untyped-def]
        made.append(timesteps)
        return original(pipeline, recipe, layers, timesteps=timesteps, **kwargs)

    monkeypatch.setattr(cpedit.edit.session, "calibrate", counting)
    return made


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A 2 x 2 sweep (skill ratio x tau) of shapes-striped through the command."""
    out = tmp_path_factory.mktemp("sweep") / "sw"
    args = ["sweep", "--recipe", "shapes-striped", "--skill-ratio", "0.05,0.2", "--timesteps", "3,6"]
    result = CliRunner().invoke(cli, [*args, "--eval", "shapes", *EVAL_ARGS, "--out", str(out), "--keep-models"])
    assert result.exit_code == 0, result.output
    return {"out": out, "output": result.output, "data": json.loads((out / "sweep.json").read_text())}


def test_sweep_json_points_calibrations_and_plot(swept: dict) -> None:
    data, out = swept["data"], swept["out"]
    assert [p["settings"]["skill_ratio"] for p in data["points"]] == [0.05, 0.2, 0.05, 0.2]
    assert [p["settings"]["timesteps"] for p in data["points"]] == [3, 3, 6, 6]
    # one calibration, with the largest tau of the grid
    assert data["calibrations"] == [
        {
            "recipe": "shapes-striped",
            "target": "attn-value",
            "timesteps": 6,
            "seconds": data["calibrations"][0]["seconds"],
        }
    ]
    for point in data["points"]:
        assert set(point["erased"]) == {"before", "after"} and set(point["preserved"]) == {"before", "after"}
        assert point["drop"] == pytest.approx(point["preserved"]["before"] - point["preserved"]["after"])
        assert 0 < point["pruned_percent"] < 5 and point["seconds"] > 0
    # the base model is measured once: every point has the same "before"
    assert len({(p["erased"]["before"], p["preserved"]["before"]) for p in data["points"]}) == 1
    # more pruning at the larger skill ratio, at both taus
    assert data["points"][1]["pruned"] > data["points"][0]["pruned"]
    assert data["points"][3]["pruned"] > data["points"][2]["pruned"]
    front = pareto_front([Point.from_dict(p) for p in data["points"]])
    assert [p["pareto"] for p in data["points"]] == [Point.from_dict(p) in front for p in data["points"]]
    assert any(p["pareto"] for p in data["points"])
    png = (out / "sweep.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert "pareto" in swept["output"] and "sweep.json" in swept["output"]


def test_a_point_equals_prune_then_eval(swept: dict, tmp_path: Path) -> None:
    point = swept["data"]["points"][3]  # skill ratio 0.2, tau 6
    recipe = with_settings(resolve_recipe("shapes-striped"), prune={"skill_ratio": 0.2, "timesteps": 6})
    file = write_recipe_file(recipe, tmp_path)
    out = tmp_path / "pruned"
    runner = CliRunner()
    assert runner.invoke(cli, ["prune", "--recipe", str(file), "--out", str(out), "--device", "cpu"]).exit_code == 0
    ran = runner.invoke(
        cli,
        ["eval", "shapes", str(out), "--images", "6", "--seed", "3", "--steps", "4", "--image-batch-size", "8"]
        + ["--device", "cpu", "--format", "json"],
    )
    assert ran.exit_code == 0, ran.output
    evaluated = json.loads(ran.output[ran.output.index("{") :])
    assert evaluated["erased"] == point["erased"] and evaluated["preserved"] == point["preserved"]
    report = json.loads((out / "conceptprune" / "report.json").read_text())
    assert report["totals"]["pruned_weights"] == point["pruned"]
    # the kept point model is the same pruned model
    kept = swept["out"] / "points" / PointSettings(0.2, 6).slug
    kept_masks = output_positions(kept)
    pruned_masks = output_positions(out)
    assert kept_masks.keys() == pruned_masks.keys()
    assert all(torch.equal(kept_masks[k], pruned_masks[k]) for k in kept_masks)


def test_a_sweep_writes_no_model_and_loads_the_judge_and_scores_the_base_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cpedit.eval.shapes as shapes_eval

    loads: list[str] = []
    scored: list[str] = []
    load_classifier, score = shapes_eval.load_classifier, shapes_eval.ShapesBenchmark.score

    def counting_load(*args, **kwargs):  # type: ignore[no-untyped-def]
        loads.append("shapes")
        return load_classifier(*args, **kwargs)

    def counting_score(self, run, phase, entries, folder):  # type: ignore[no-untyped-def]
        scored.append(phase)
        return score(self, run, phase, entries, folder)

    def no_save(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("a sweep point saved a model")

    monkeypatch.setattr(shapes_eval, "load_classifier", counting_load)
    monkeypatch.setattr(shapes_eval.ShapesBenchmark, "score", counting_score)
    monkeypatch.setattr(cpedit.edit.session.EditSession, "save", no_save)
    out = tmp_path / "sw"
    plan = plan_evaluation("shapes", **EVAL)
    grid = {"skill_ratios": [0.05, 0.1, 0.2], "timesteps": [3], "plan": plan, "out": out, "compute": CPU}
    result = sweep("builtin:shapes", ["shapes-striped"], plot=False, **grid)
    assert result.measured == 3 and len({p.pruned for p in result.points}) == 3
    assert loads == ["shapes"]  # one judge for the 3 points
    assert scored == ["before", "after", "after", "after"]  # the base model scored once
    # nothing but the record and the evaluation images: no model, no point folder
    assert sorted(p.name for p in out.iterdir()) == ["images", "sweep.json"]
    written = [p for p in out.rglob("*") if p.is_file()]
    assert all(p.suffix in (".png", ".jsonl") for p in written if p.name != "sweep.json")
    assert not list(out.rglob("*.safetensors")) and not list(out.rglob("model_index.json"))


def test_interrupted_sweep_resumes_with_the_finished_points(tmp_path: Path, calibrations: list[int]) -> None:
    plan = plan_evaluation("shapes", **EVAL)
    cancel = threading.Event()
    seen: list[Point] = []

    def stop_after_first(point: Point, index: int, total: int) -> None:
        seen.append(point)
        cancel.set()

    grid = {"skill_ratios": RATIOS, "timesteps": TAUS, "plan": plan, "out": tmp_path, "compute": CPU}
    with pytest.raises(Cancelled):
        sweep("builtin:shapes", ["shapes-striped"], on_point=stop_after_first, cancel=cancel, **grid)
    kept = json.loads((tmp_path / "sweep.json").read_text())
    assert len(kept["points"]) == 1 and kept["points"][0] == {**seen[0].to_dict(), "pareto": True}
    assert calibrations == [6]
    result = sweep("builtin:shapes", ["shapes-striped"], **grid)
    assert result.measured == 3 and len(result.points) == 4
    assert result.points[0].to_dict() == seen[0].to_dict()  # kept, not measured again
    assert calibrations == [6, 6]  # the rerun calibrates once more for the 3 missing points
    calibrations.clear()
    again = sweep("builtin:shapes", ["shapes-striped"], **grid)
    assert again.measured == 0 and calibrations == []  # nothing left: no model loaded, no calibration
    # another evaluation in the same folder is refused, not mixed in
    with pytest.raises(CpeditError, match="another evaluation") as info:
        sweep(
            "builtin:shapes",
            ["shapes-striped"],
            **{
                **grid,
                "plan": plan_evaluation("shapes", **{**EVAL, "images": ImageOptions(seed=4, steps=4, batch_size=8)}),
            },
        )
    assert info.value.reason == "different_sweep"


def test_a_point_measured_without_the_collapse_check_is_measured_again_with_it(tmp_path: Path) -> None:
    plan = plan_evaluation("shapes", **EVAL)
    grid = {"skill_ratios": [0.05], "timesteps": [3], "plan": plan, "out": tmp_path, "compute": CPU, "plot": False}
    unchecked = sweep("builtin:shapes", ["shapes-striped"], collapse_check=False, **grid)
    assert unchecked.measured == 1 and unchecked.points[0].collapse is None
    checked = sweep("builtin:shapes", ["shapes-striped"], **grid)  # the check is on by default
    assert checked.measured == 1 and len(checked.points) == 1 and checked.points[0].collapse is not None
    assert checked.points[0].pruned == unchecked.points[0].pruned  # the same setting, now checked
    again = sweep("builtin:shapes", ["shapes-striped"], **grid)
    assert again.measured == 0  # a checked point is kept


def test_tune_meets_a_reachable_goal_and_fails_an_unreachable_one(swept: dict, tmp_path: Path) -> None:
    points = [Point.from_dict(p) for p in swept["data"]["points"]]
    at_tau_6 = [p for p in points if p.settings.timesteps == 6]
    # the sweep shows this is reached with the uncertainty (by the most pruning): tune judges by the upper bounds
    goal = max(p.upper("erased") for p in at_tau_6)
    assert any(p.upper("erased") <= goal and p.upper("drop") <= 0.5 for p in at_tau_6)
    plan = plan_evaluation("shapes", **EVAL)
    common = {
        "plan": plan,
        "timesteps": [6],
        "compute": CPU,
        "max_skill_ratio": 0.2,
        "tolerance": 2.0,
        "max_growth": 1,
    }
    met = tune("builtin:shapes", "shapes-striped", erased_at_most=goal, max_drop=0.5, out=tmp_path / "t", **common)
    assert met.met and met.chosen is met.best
    assert met.chosen.upper("erased") <= goal and met.chosen.upper("drop") <= 0.5
    assert met.held_out is not None and met.held_out.settings == met.chosen.settings  # checked on new seeds
    # the least pruning among every measured point that meets the goal with its intervals
    meeting = [p for p in met.points if p.upper("erased") <= goal and p.upper("drop") <= 0.5]
    assert met.chosen.pruned == min(p.pruned for p in meeting)
    assert len(met.points) < 8  # bisection: far fewer measurements than a fine grid
    text = met.recipe_file.read_text()  # type: ignore[union-attr]
    tuned = resolve_recipe(met.recipe_file)  # type: ignore[arg-type]
    assert tuned.prune.skill_ratio == met.chosen.settings.skill_ratio and tuned.prune.timesteps == 6
    assert "tuned by cpedit tune" in text and f"{met.chosen.erased['after']:.3f}" in text
    saved = json.loads((tmp_path / "t" / "tune.json").read_text())
    assert saved["met"] and saved["chosen"] == met.chosen.to_dict() and len(saved["points"]) == len(met.points)
    # up to the sweep's smallest ratio nothing erases the concept entirely: that goal is not reachable there
    low = [p for p in points if p.settings.skill_ratio == 0.05]
    assert all(p.erased["after"] > 0 for p in low)
    runner = CliRunner()
    failed = runner.invoke(
        cli,
        ["tune", "--recipe", "shapes-striped", "--eval", "shapes", *EVAL_ARGS, "--timesteps", "6"]
        + ["--erased-at-most", "0", "--max-drop", "0.5", "--max-skill-ratio", "0.05", "--min-skill-ratio", "0.01"]
        + ["--tolerance", "2", "--out", str(tmp_path / "f")],
    )
    assert failed.exit_code == 3, failed.output
    assert "No setting met the goal" in failed.output and "Best trade-off" in failed.output
    data = json.loads((tmp_path / "f" / "tune.json").read_text())
    assert not data["met"] and data["chosen"] is None and data["best"] in data["points"]
    assert not list((tmp_path / "f").glob("*.yaml"))  # no tuned recipe for a goal not met


def test_bad_grids_and_plans_are_clear_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(
        cli, ["sweep", "--recipe", "shapes-striped", "--skill-ratio", "0.1,x", "--eval", "shapes", "--out", "o"]
    )
    assert bad.exit_code == 2 and "comma-separated list of numbers" in bad.output
    with pytest.raises(CpeditError, match="measures no preservation") as info:
        plan_evaluation("nudity", NudityOptions(prompts=str(_prompts(tmp_path))))
    assert info.value.argument == "preserve"
    with pytest.raises(CpeditError, match="repeats a value"):
        sweep(
            "builtin:shapes", ["shapes-striped"], skill_ratios=[0.1, 0.1], plan=plan_evaluation("shapes"), out=tmp_path
        )


def _prompts(folder: Path) -> Path:
    path = folder / "p.txt"
    path.write_text("a photo of a person\n")
    return path


class _Synthetic:
    """A stand-in evaluator: erased falls and the drop grows with the skill ratio, like a real edit."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.calibrations: list[dict] = []
        self.measured: list[float] = []

    def evaluate(self, settings: PointSettings, *, plan: object = None) -> Point:
        s = settings.skill_ratio
        self.measured.append(s)
        return Point(
            settings,
            int(s * 1e6),
            100 * s,
            {"before": 1.0, "after": max(0.0, 1 - 2 * s)},
            {"before": 1.0, "after": 1 - s},
            s,
        )

    def close(self) -> None:
        pass


def test_tune_search_on_a_known_trade_off(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import cpedit.tuning.search as search

    monkeypatch.setattr(search, "PointEvaluator", _Synthetic)
    plan = plan_evaluation("shapes")
    recipe = resolve_recipe("shapes-striped")
    # reachable: erased <= 0.2 needs s >= 0.4, a drop <= 0.5 allows it; bisection lands just above 0.4
    met = tune(
        "builtin:shapes",
        recipe,
        plan=plan,
        erased_at_most=0.2,
        max_drop=0.5,
        out=tmp_path / "a",
        max_skill_ratio=0.6,
        tolerance=1.05,
    )
    assert met.met and 0.4 <= met.chosen.settings.skill_ratio <= 0.4 * 1.05  # type: ignore[union-attr]
    assert len(met.points) <= 14  # a grid at 5% steps over 0.001..0.6 would need 131
    assert tuned_ratio(met.recipe_file) == met.chosen.settings.skill_ratio  # type: ignore[union-attr]
    # out of reach: the drop budget 0.1 allows s <= 0.1 only, so erased >= 0.8; the budget bisection
    # finds the most erasure within it
    failed = tune(
        "builtin:shapes",
        recipe,
        plan=plan,
        erased_at_most=0.2,
        max_drop=0.1,
        out=tmp_path / "b",
        max_skill_ratio=0.6,
        tolerance=1.05,
    )
    assert not failed.met and failed.chosen is None and failed.recipe_file is None
    assert 0.1 / 1.05 <= failed.best.settings.skill_ratio <= 0.1 and failed.best.drop <= 0.1
    assert failed.best.erased["after"] == pytest.approx(1 - 2 * failed.best.settings.skill_ratio)


def tuned_ratio(file: Path | None) -> float:
    assert file is not None
    return resolve_recipe(file).prune.skill_ratio


def test_an_out_of_reach_goal_still_bisects_the_budget_from_the_least_pruning(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import cpedit.tuning.search as search

    monkeypatch.setattr(search, "PointEvaluator", _Synthetic)
    # erased <= 0.0 needs s >= 0.5, beyond the range: only the range's top is measured at first, and its
    # drop (0.3) is beyond the budget; the search then starts from the least pruning to find the budget's edge
    failed = tune(
        "builtin:shapes",
        resolve_recipe("shapes-striped"),
        plan=plan_evaluation("shapes"),
        erased_at_most=0.0,
        max_drop=0.1,
        out=tmp_path,
        max_skill_ratio=0.3,
        tolerance=1.05,
    )
    assert not failed.met
    assert 0.1 / 1.05 <= failed.best.settings.skill_ratio <= 0.1


def test_a_sweep_asked_for_a_plot_without_matplotlib_stops_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_model_loading: None
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    plan = plan_evaluation("shapes", **EVAL)
    with pytest.raises(CpeditError, match="matplotlib") as info:
        sweep("builtin:shapes", ["shapes-striped"], skill_ratios=[0.1], plan=plan, out=tmp_path / "sw", plot=True)
    assert info.value.reason == "missing_dependency" and "--" not in str(info.value)  # no CLI flag in the library
    assert not (tmp_path / "sw").exists()
