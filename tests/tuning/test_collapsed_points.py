"""A point whose edit collapsed (the collapse guard failed) counts as failed in ``sweep`` and ``tune``.

``tune``'s decisions run on a stand-in evaluator (the synthetic trade-off of
``test_tune_uncertainty``: erased after ``1 - 2 * s``, drop ``s``) whose points collapse from a
skill ratio on; the sweep's Pareto front, ``sweep.json``'s reader and the table on hand-made points.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from test_tune_uncertainty import _Measured, _tune

from cpedit.cli.sweep import _line, _table
from cpedit.edit.collapse import CollapseGuard
from cpedit.errors import CpeditError
from cpedit.output.collapse import CollapseCheck, PromptDistance
from cpedit.tuning.points import Point, PointSettings, pareto_front
from cpedit.tuning.search import best_trade_off, meets_goal
from cpedit.tuning.sweep_file import load_sweep_json


def check(collapsed: bool) -> CollapseCheck:
    distance = 3.0 if collapsed else 0.1
    prompts = tuple(PromptDistance(f"p{i}", distance, 0.05 if collapsed else 1.0, 1.0) for i in range(4))
    reason = "collapse: 4 of 4 unrelated prompts lost their structure" if collapsed else "no collapse"
    return CollapseCheck(prompts=prompts, threshold=1.0, collapsed=collapsed, reason=reason, steps=6, seed=0)


class _Collapsing(_Measured):
    """The stand-in, checked by a guard: points from ``collapse_from`` on destroyed generation."""

    collapse_from = 1.0
    guards: list[object] = []

    def __init__(self, *args: object, collapse_guard: object = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        type(self).guards.append(collapse_guard)

    def evaluate(self, settings: PointSettings, *, plan=None) -> Point:  # type: ignore[no-untyped-def]
        point = super().evaluate(settings, plan=plan)
        return dataclasses.replace(point, collapse=check(settings.skill_ratio >= self.collapse_from))


@pytest.fixture
def collapsing(monkeypatch: pytest.MonkeyPatch) -> type[_Collapsing]:
    import cpedit.tuning.search as search

    monkeypatch.setattr(search, "PointEvaluator", _Collapsing)
    monkeypatch.setattr(_Collapsing, "luck", 0.0)
    monkeypatch.setattr(_Collapsing, "guards", [])
    return _Collapsing


def test_tune_checks_every_point_by_default(collapsing: type[_Collapsing], tmp_path: Path) -> None:
    _tune(tmp_path / "on")
    _tune(tmp_path / "off", collapse_check=False)
    assert isinstance(collapsing.guards[0], CollapseGuard) and collapsing.guards[1] is None


def test_tune_never_chooses_a_collapsed_point(
    collapsing: type[_Collapsing], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every setting that erases enough collapses: no choice, and the best trade-off is one that works."""
    monkeypatch.setattr(_Collapsing, "collapse_from", 0.4)
    result = _tune(tmp_path)
    assert not result.met and result.chosen is None
    collapsed = [p for p in result.points if p.collapsed]
    assert collapsed and any(p.erased["after"] <= 0.2 and p.drop <= 0.5 for p in collapsed)  # its numbers would do
    assert not result.best.collapsed and result.best.settings.skill_ratio < 0.4  # the best that still works
    saved = json.loads((tmp_path / "tune.json").read_text())
    assert saved["chosen"] is None and "did not collapse" in saved["rule"]
    assert all(p["collapsed"] is (p["settings"]["skill_ratio"] >= 0.4) for p in saved["points"])


def test_tune_chooses_below_the_collapse(
    collapsing: type[_Collapsing], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_Collapsing, "collapse_from", 0.5)
    result = _tune(tmp_path)
    assert result.met and result.chosen is not None and not result.chosen.collapsed
    assert 0.4 < result.chosen.settings.skill_ratio < 0.5


def point(s: float, erased: float, drop: float, *, collapsed: bool | None = None) -> Point:
    return Point(
        PointSettings(skill_ratio=s),
        pruned=int(s * 1e4),
        pruned_percent=s,
        erased={"before": 1.0, "after": erased},
        preserved={"before": 1.0, "after": 1.0 - drop},
        drop=drop,
        collapse=None if collapsed is None else check(collapsed),
    )


def test_a_collapsed_point_meets_no_goal_and_is_off_the_front() -> None:
    good, broken, unchecked = (
        point(0.1, 0.5, 0.05, collapsed=False),
        point(0.9, 0.0, 0.0, collapsed=True),
        point(0.2, 0.4, 0.1),
    )
    assert broken.collapsed and not good.collapsed and not unchecked.collapsed
    assert not meets_goal(broken, 1.0, 1.0) and meets_goal(good, 1.0, 1.0)
    # the collapsed point would dominate both (nothing erased left, no drop measured): it is left out
    assert pareto_front([good, broken, unchecked]) == [good, unchecked]
    assert best_trade_off([good, broken], max_drop=1.0) is good
    assert best_trade_off([broken], max_drop=1.0) is broken  # only when every point collapsed


def test_sweep_json_keeps_the_check_and_its_reader_refuses_a_bad_one(tmp_path: Path) -> None:
    points = [point(0.1, 0.5, 0.05, collapsed=False), point(0.9, 0.0, 0.0, collapsed=True), point(0.2, 0.4, 0.1)]
    data = {"sweep": 1, "points": [p.to_dict() for p in points], "calibrations": []}
    file = tmp_path / "sweep.json"
    file.write_text(json.dumps(data))
    read = [Point.from_dict(p) for p in load_sweep_json(file, format_version=1)["points"]]
    assert read == points
    assert data["points"][1]["collapsed"] is True and "collapsed" not in data["points"][2]
    for change, field in (
        ({"collapsed": False}, "points[1].collapsed"),
        ({"collapse_check": {**points[1].collapse.to_dict(), "seed": -3}}, "points[1].collapse_check.seed"),  # type: ignore[union-attr]
    ):
        bad = json.loads(json.dumps(data))
        bad["points"][1].update(change)
        file.write_text(json.dumps(bad))
        with pytest.raises(CpeditError, match=field.replace("[", r"\[").replace("]", r"\]")) as caught:
            load_sweep_json(file, format_version=1)
        assert caught.value.reason == "malformed"


def test_the_table_and_the_point_line_mark_a_collapse() -> None:
    from rich.console import Console

    good, broken = point(0.1, 0.5, 0.05, collapsed=False), point(0.9, 0.0, 0.0, collapsed=True)
    console = Console(width=200, record=True)
    console.print(_table("sweep", [good, broken], tau="10", marks={id(good): "pareto"}))
    rows = [line for line in console.export_text().splitlines() if "%" in line]
    assert rows[0].split("│")[-2].strip() == "pareto" and rows[1].split("│")[-2].strip() == "collapsed"
    assert "COLLAPSED, failed: collapse: 4 of 4" in _line(broken, "10") and "COLLAPSED" not in _line(good, "10")
