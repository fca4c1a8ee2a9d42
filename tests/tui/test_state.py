"""The terminal app's data model, without a UI: queue, run, tune, save."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import yaml
from support.helpers import CPU
from support.tui import calibrated_state, user_config  # noqa: F401 - user_config: autouse

import cpedit
import cpedit.durable
import cpedit.edit
import cpedit.tuning
from cpedit.errors import Cancelled, CpeditError, RecipeError
from cpedit.progress import ProgressEvent
from tui.state import AppState, RunProgress, calibrate, describe_local_model, output_name, read_points


def striped() -> cpedit.Recipe:
    return cpedit.resolve_recipe("shapes-striped")


def test_the_queue_refuses_duplicates_and_edits_copies_with_validation() -> None:
    state = AppState()
    state.queue_recipe(striped(), origin="shapes-striped")
    with pytest.raises(CpeditError, match="already queued"):
        state.queue_recipe(striped(), origin="again")
    item = state.edit_queued("shapes-striped", prune={"skill_ratio": 0.05}, sampling={"steps": 20})
    assert item.recipe.prune.skill_ratio == 0.05 and item.recipe.sampling.steps == 20
    assert cpedit.parse_recipe(item.recipe.text).prune.skill_ratio == 0.05  # the copy's text says so too
    assert striped().prune.skill_ratio == 0.2  # the shipped file is untouched
    with pytest.raises(RecipeError) as caught:
        state.edit_queued("shapes-striped", prune={"skill_ratio": 5})
    assert caught.value.problems[0][0] == "prune.skill_ratio"
    assert state.item("shapes-striped").recipe.prune.skill_ratio == 0.05  # unchanged after a bad value
    state.unqueue("shapes-striped")
    with pytest.raises(CpeditError, match="queue is empty"):
        state.start_run()


def test_a_run_calibrates_once_and_tuning_selects_what_the_session_selects(tmp_path: Path) -> None:
    state = calibrated_state(tmp_path / "out")
    assert [item.status for item in state.queue] == ["done", "done"]
    session = state.session
    assert state.selection.pruned == session.select().pruned  # the recipes' own settings first
    before = state.tuned
    assert state.set_tune("shapes-striped", skill_ratio=0.05)  # checked and kept; nothing selected yet
    assert state.tuned is before and state.current_tuned() is None
    assert not state.set_tune("shapes-striped", skill_ratio=0.05)  # the same value: nothing to select
    selection = state.select_now()
    expected = session.select(per_recipe={"shapes-striped": {"skill_ratio": 0.05}, "shapes-star": {}})
    assert selection.pruned == expected.pruned and selection.per_layer == expected.per_layer
    with pytest.raises(CpeditError):
        state.set_tune("shapes-striped", skill_ratio=7.0)
    assert state.tune["shapes-striped"].skill_ratio == 0.05  # a bad value leaves the last good one
    with pytest.raises(CpeditError, match="unknown setting"):
        state.set_tune("shapes-striped", steps=3)
    assert not state.accept(before)  # an answer for older values is dropped
    assert state.selection is selection

    out = state.save()
    assert out == tmp_path / "out" and (out / "conceptprune" / "report.json").is_file()
    saved = yaml.safe_load((out / "conceptprune" / "recipes" / "shapes-striped.yaml").read_text())
    assert saved["prune"]["skill_ratio"] == 0.05  # the copy records the tuned setting
    report = cpedit.Report.from_dict(json.loads((out / "conceptprune" / "report.json").read_text()))
    assert report.totals.pruned_weights == selection.pruned


def test_events_drive_statuses_and_a_failure_names_its_concept() -> None:
    state = AppState()
    state.queue_recipe(striped(), origin="shapes-striped")
    state.queue_recipe(cpedit.resolve_recipe("shapes-star"), origin="shapes-star")
    state.start_run()
    state.apply_event(ProgressEvent(stage="calibrate", message="c", concept="shapes-striped", completed=1, total=4))
    assert [i.status for i in state.queue] == ["calibrating", "queued"]
    state.apply_event(ProgressEvent(stage="calibrate", message="c", concept="shapes-star", completed=1, total=4))
    assert [i.status for i in state.queue] == ["done", "calibrating"]
    assert state.progress.concept_index == 2 and state.progress.concepts == 2
    state.fail_run(CpeditError("out of memory"))
    assert [(i.status, i.error) for i in state.queue] == [("queued", None), ("failed", "out of memory")]
    assert not state.running and state.session is None

    state.start_run()
    state.fail_run(Cancelled("cancelled while calibrating"))
    assert [i.status for i in state.queue] == ["queued", "queued"]
    assert state.log[-1] == "cancelled: nothing was written"


def test_a_cancelled_run_keeps_nothing(tmp_path: Path) -> None:
    state = AppState(out=str(tmp_path / "out"))
    state.queue_recipe(striped(), origin="shapes-striped")
    plan = state.start_run()
    cancel = threading.Event()

    def on_progress(event: ProgressEvent) -> None:
        if event.stage == "calibrate":
            cancel.set()

    with pytest.raises(Cancelled) as caught:
        calibrate(plan, on_progress=on_progress, cancel=cancel)
    state.fail_run(caught.value)
    assert not (tmp_path / "out").exists()
    assert state.progress.stage == "cancelled" and state.progress.fraction is None  # no ETA left running


def test_progress_estimates_the_time_left() -> None:
    progress = RunProgress()
    progress.update(ProgressEvent(stage="calibrate", message="", concept="a", completed=0, total=10), now=100.0)
    assert progress.eta_seconds(now=101.0) is None  # nothing done yet
    progress.update(ProgressEvent(stage="calibrate", message="", concept="a", completed=5, total=10), now=104.0)
    assert progress.eta_seconds(now=104.0) == pytest.approx(4.0)
    assert progress.fraction == 0.5


def test_local_folders_are_described_without_loading(tiny_sd_path: Path, tmp_path: Path) -> None:
    described = describe_local_model(str(tiny_sd_path), compute=CPU)
    assert described.editable and described.pipeline_class == "StableDiffusionPipeline"
    assert described.safetensors_bytes > 0
    estimate = cpedit.edit.estimate_memory(tiny_sd_path, [], compute=CPU)  # the same line cpedit prune reports
    assert described.memory is not None and described.memory.startswith("memory: ")
    assert f"weights {cpedit.durable.format_bytes(estimate.weights)} in float32" in described.memory
    assert not describe_local_model(str(tmp_path)).editable
    assert output_name("CompVis/stable-diffusion-v1-4", ["van-gogh"]) == "stable-diffusion-v1-4-no-van-gogh"
    assert output_name("builtin:shapes", ["a", "b"]) == "shapes-no-a-b"


def test_an_output_that_could_never_be_written_is_refused_before_the_run(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    state = AppState(out=str(blocker / "out"))
    state.queue_recipe(striped(), origin="shapes-striped")
    with pytest.raises(CpeditError) as caught:
        state.start_run()
    assert caught.value.argument == "out" and not state.running
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "notes.txt").write_text("mine")
    state.out = str(tmp_path / "theirs")  # a folder that is not a cpedit output: never replaced
    with pytest.raises(CpeditError, match="not a cpedit output"):
        state.start_run()


def sweep_point(sr: float, erased: float, drop: float, *, tau: int | None = None, pareto: bool | None = None) -> dict:
    """A point in sweep.json's form (the ``pareto`` mark only when given)."""
    data = {
        "settings": {"skill_ratio": sr, "timesteps": tau, "select_ratio": None, "target": None},
        "pruned": 10,
        "pruned_percent": sr,
        "erased": {"before": 0.5, "after": erased},
        "preserved": {"before": 0.9, "after": 0.9 - drop},
        "drop": drop,
    }
    return data if pareto is None else {**data, "pareto": pareto}


def test_sweep_points_keep_or_compute_the_pareto_front_as_the_library_does() -> None:
    from cpedit.tuning import Point
    from tui.state import mark_pareto, sweep_points

    raw = [sweep_point(0.01, 0.4, 0.0), sweep_point(0.05, 0.1, 0.02, tau=3), sweep_point(0.1, 0.2, 0.05)]
    points = sweep_points(raw)  # no marks in the data: computed
    assert [p.pareto for p in points] == [True, True, False]
    front = cpedit.tuning.pareto_front([Point.from_dict(d) for d in raw])
    assert sorted(p.settings.skill_ratio for p in front) == [p.skill_ratio for p in points if p.pareto]
    assert points[1].label == "sr 0.05, tau 3" and points[1].erased_after == 0.1 and points[1].drop == 0.02
    marked = sweep_points([sweep_point(0.01, 0.4, 0.0, pareto=False), sweep_point(0.05, 0.1, 0.02, pareto=True)])
    assert [p.pareto for p in marked] == [False, True]  # the file's own marks are kept
    assert [p.pareto for p in mark_pareto(marked)] == [True, True]
    chosen = sweep_points(raw, chosen=raw[1]["settings"])
    assert [p.chosen for p in chosen] == [False, True, False]


def test_sweep_points_carry_their_intervals_into_the_list() -> None:
    from tui.state import sweep_points
    from tui.widgets.sweep_plot import point_line

    interval = {"value": 0.1, "low": 0.05, "high": 0.18, "method": "wilson", "n": 64}
    drop = {"value": 0.02, "low": -0.01, "high": 0.04, "method": "paired-bootstrap-prompts", "n": 64}
    with_ci, plain = sweep_points(
        [{**sweep_point(0.05, 0.1, 0.02), "intervals": {"erased": interval, "drop": drop}}, sweep_point(0.1, 0.2, 0.05)]
    )
    assert with_ci.erased_interval == (0.05, 0.18) and with_ci.drop_interval == (-0.01, 0.04)
    assert plain.erased_interval is None and plain.drop_interval is None  # a sweep from before intervals
    assert "erased 95% 0.050-0.180" in point_line(with_ci).plain and "95%" not in point_line(plain).plain


def test_a_collapsed_point_is_marked_and_off_the_front_as_in_the_library() -> None:
    from cpedit.tuning import Point
    from tui.state import sweep_points
    from tui.widgets.sweep_plot import COLLAPSED_MARK, point_line

    check = {
        "collapsed": True,
        "reason": "collapse: 4 of 4 unrelated prompts lost their structure",
        "threshold": 1.0,
        "steps": 6,
        "seed": 0,
        "prompts": [{"prompt": "p", "distance": 3.0, "contrast": 0.05, "texture": 1.0}],
    }
    raw = [sweep_point(0.05, 0.3, 0.02), {**sweep_point(0.9, 0.0, 0.0), "collapsed": True, "collapse_check": check}]
    good, broken = sweep_points(raw)  # no marks in the data: computed
    assert broken.collapsed and not broken.pareto and good.pareto and not good.collapsed
    front = cpedit.tuning.pareto_front([Point.from_dict(d) for d in raw])
    assert [p.settings.skill_ratio for p in front] == [good.skill_ratio]
    line = point_line(broken).plain
    assert line.startswith(COLLAPSED_MARK) and "collapsed: failed" in line and "collapsed" not in point_line(good).plain


def test_a_point_sets_its_settings_and_keeps_the_recipes_own_where_it_kept_them() -> None:
    from tui.state import TuneValues, point_values, sweep_points

    own = TuneValues(skill_ratio=0.2, timesteps=10, select_ratio=0.0)
    kept, set_tau = sweep_points([sweep_point(0.05, 0.1, 0.0), sweep_point(0.07, 0.1, 0.0, tau=4)])
    assert point_values(kept, own) == TuneValues(0.05, 10, 0.0)
    assert point_values(set_tau, own) == TuneValues(0.07, 4, 0.0)


def test_a_sweep_folder_loads_and_its_points_apply_to_the_calibrated_concepts(tmp_path: Path) -> None:
    folder = tmp_path / "sweep"
    state = AppState(out=str(tmp_path / "out"))
    with pytest.raises(CpeditError, match="no sweep.json"):
        read_points(folder)
    folder.mkdir()
    (folder / "sweep.json").write_text('{"sweep": 1, "points": [{"settings": {}}]}')
    with pytest.raises(CpeditError, match="not a cpedit sweep file"):
        read_points(folder)
    data = {
        "sweep": 1,
        "recipes": [{"name": "shapes-striped"}],
        "evaluation": {"benchmark": "shapes"},
        "points": [sweep_point(0.05, 0.1, 0.0, tau=3, pareto=True), sweep_point(0.2, 0.0, 0.5, tau=99, pareto=True)],
    }
    (folder / "sweep.json").write_text(json.dumps(data))
    view = read_points(folder)
    assert view.concepts == ("shapes-striped",) and len(view.points) == 2 and "shapes" in view.title
    state.show_points(view, folder)
    with pytest.raises(CpeditError, match="run the queue first"):
        state.apply_point(view.points[0])

    state = calibrated_state(tmp_path / "out2", ("shapes-striped",))
    state.show_points(read_points(folder), folder)
    assert state.point_targets() == ["shapes-striped"]
    assert state.apply_point(state.points_view.points[0])
    assert state.tune["shapes-striped"].skill_ratio == 0.05 and state.tune["shapes-striped"].timesteps == 3
    assert state.select_now().pruned == state.session.select(skill_ratio=0.05, timesteps=3).pruned
    with pytest.raises(CpeditError):
        state.apply_point(state.points_view.points[1])  # a tau beyond the calibrated one: the old values stay
    assert state.tune["shapes-striped"].skill_ratio == 0.05
    state.points_view.concepts = ("van-gogh",)
    with pytest.raises(CpeditError, match="not calibrated"):
        state.apply_point(state.points_view.points[0])
    assert state.tune_folder("shapes-striped") == tmp_path / "out2-tune" / "shapes-striped"


def test_the_model_screen_shows_the_memory_estimate_escaped() -> None:
    from tui.screens.model import local_markup
    from tui.state import LocalModel

    line = "memory: will not fit (host: needs about 5.34 GB, 1 MB free; [b]x[/b])"
    text = local_markup(LocalModel("/m", "StableDiffusionPipeline", True, "ok", 10, line))
    assert "memory: will not fit (host: needs about 5.34 GB, 1 MB free; \\[b]x\\[/b])" in text
    assert "memory:" not in local_markup(LocalModel("/m", "StableDiffusionPipeline", True, "ok", 10))


@pytest.mark.parametrize("out", [".", "..", "/"])
def test_a_tune_beside_an_output_without_a_name_is_refused_and_nothing_stays_going(out: str) -> None:
    from tui.state import TuneGoal

    state = AppState()
    state.queue_recipe(striped(), origin="shapes-striped")
    state.out = out
    with pytest.raises(CpeditError, match="has no name of its own") as info:
        state.start_tune(TuneGoal("shapes-striped", 0.5, 0.5))
    assert info.value.argument == "out"
    assert state.tuning is None and state.tuning_folder is None  # the app is not stuck in "a tune is going"
    state.out = "edited"
    job = state.start_tune(TuneGoal("shapes-striped", 0.5, 0.5))
    assert state.tuning is not None and job.folder == Path("edited-tune") / "shapes-striped"
