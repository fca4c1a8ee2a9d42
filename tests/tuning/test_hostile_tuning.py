"""``cpedit sweep``/``tune`` against a careless or hostile user's files: they delete or replace only
what cpedit can prove it wrote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import cpedit.tuning.search as search
from cpedit.errors import CpeditError
from cpedit.eval.options import ImageOptions
from cpedit.eval.shapes import ShapesOptions
from cpedit.ownership import NotOursError
from cpedit.recipes.sources import resolve_recipe
from cpedit.tuning import plan_evaluation, sweep, tune
from cpedit.tuning.points import Point, PointSettings

EVAL = {"options": ShapesOptions(images=2), "images": ImageOptions(seed=3, steps=2, batch_size=8)}


def test_a_users_file_under_points_survives_the_sweep(tmp_path: Path) -> None:
    """Points are measured in memory: a sweep writes nothing under ``points/`` and a user's folder there stays."""
    out = tmp_path / "sw"
    blocked = out / "points" / PointSettings(0.2, 2).slug
    blocked.mkdir(parents=True)
    (blocked / "notes.txt").write_text("mine")
    plan = plan_evaluation("shapes", **EVAL)
    result = sweep("builtin:shapes", ["shapes-striped"], skill_ratios=[0.05, 0.2], timesteps=[2], plan=plan, out=out)
    assert [p.settings.skill_ratio for p in result.points] == [0.05, 0.2]
    assert (blocked / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in (out / "points").iterdir()) == [blocked.name]


def test_a_users_file_under_points_survives_a_sweep_that_keeps_models(tmp_path: Path) -> None:
    """With ``keep_models`` a point is saved: a user's folder in its place is refused, never deleted."""
    out = tmp_path / "sw"
    blocked = out / "points" / PointSettings(0.2, 2).slug
    blocked.mkdir(parents=True)
    (blocked / "notes.txt").write_text("mine")
    plan = plan_evaluation("shapes", **EVAL)
    with pytest.raises(CpeditError, match="not a cpedit output") as info:
        sweep(
            "builtin:shapes",
            ["shapes-striped"],
            skill_ratios=[0.05, 0.2],
            timesteps=[2],
            plan=plan,
            out=out,
            keep_models=True,
            plot=False,
        )
    assert info.value.path == str(blocked)
    assert (blocked / "notes.txt").read_text() == "mine"  # refused by the save, and not deleted by the cleanup
    data = json.loads((out / "sweep.json").read_text())
    assert [p["settings"]["skill_ratio"] for p in data["points"]] == [0.05]  # the finished point is kept


class _Meets:
    """A stand-in evaluator whose every point meets the goal; ``during`` runs at each measurement."""

    during: list = []

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.calibrations: list[dict] = []

    def evaluate(self, settings: PointSettings, *, plan: object = None) -> Point:
        for action in self.during:
            action()
        return Point(settings, 10, 0.1, {"before": 1.0, "after": 0.0}, {"before": 1.0, "after": 1.0}, 0.0)

    def close(self) -> None:
        pass


def _tune(out: Path) -> search.TuneResult:
    recipe = resolve_recipe("shapes-striped")
    return tune("builtin:shapes", recipe, plan=plan_evaluation("shapes"), erased_at_most=0.5, max_drop=0.5, out=out)


def test_a_foreign_recipe_at_the_tune_output_is_refused_not_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search, "PointEvaluator", _Meets)
    monkeypatch.setattr(_Meets, "during", [])
    mine = tmp_path / "shapes-striped.yaml"
    mine.write_text("name: shapes-striped\n# my own edits\n")
    with pytest.raises(NotOursError, match="not written by cpedit") as info:
        _tune(tmp_path)
    assert info.value.path == str(mine) and info.value.argument == "out"
    assert mine.read_text() == "name: shapes-striped\n# my own edits\n"
    assert not (tmp_path / "tune.json").exists()  # refused before any work
    # tune's own recipe from an earlier run is replaced
    mine.unlink()
    first = _tune(tmp_path)
    assert first.recipe_file == mine and search.TUNED_MARKER in mine.read_text().splitlines()[0]
    assert _tune(tmp_path).recipe_file == mine
    # a user's file that appears while the search runs is not replaced either
    mine.unlink()
    monkeypatch.setattr(_Meets, "during", [lambda: mine.write_text("kind: mine\n")])
    with pytest.raises(NotOursError):
        _tune(tmp_path)
    assert mine.read_text() == "kind: mine\n"


def test_an_output_replaced_by_a_foreign_folder_during_the_run_is_not_replaced(tmp_path: Path) -> None:
    from cpedit.output.folder import atomic_folder

    out = tmp_path / "out"
    with pytest.raises(NotOursError):
        with atomic_folder(out, overwrite=True) as tmp:
            (tmp / "model_index.json").write_text("{}")
            out.mkdir()  # a user's folder appears after the early check
            (out / "data.csv").write_text("1,2")
    assert (out / "data.csv").read_text() == "1,2" and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


class _BaseMeets(_Meets):
    """A stand-in evaluator on a benchmark where the unedited base already scores below the goal."""

    def evaluate(self, settings: PointSettings, *, plan: object = None) -> Point:
        return Point(settings, 10, 0.1, {"before": 0.2, "after": 0.1}, {"before": 1.0, "after": 1.0}, 0.0)


def test_a_goal_the_base_already_meets_is_said_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search, "PointEvaluator", _BaseMeets)
    result = _tune(tmp_path)
    assert result.met and result.base_meets
    assert json.loads((tmp_path / "tune.json").read_text())["base_meets"] is True
    monkeypatch.setattr(search, "PointEvaluator", _Meets)  # the base erases 1.0 there: the pruning met the goal
    assert not _tune(tmp_path / "again").base_meets
