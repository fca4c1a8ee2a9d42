"""The Tune screen's sweep panel and auto-tune with Pilot, on the built-in model.

Load a real (small) sweep folder: its points are listed and plotted, and Enter applies one
(the count is what EditSession.select counts); run a tiny tune: its points show and the point
it picks is applied; cancel a tune: nothing is applied.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from support.tui import calibrated_state, run_async, user_config  # noqa: F401 - user_config: autouse
from test_flow import settle, text_of, wait_until
from textual.widgets import Input, OptionList

import cpedit
import cpedit.tuning
from cpedit.models.compute import ComputeOptions
from tui.app import CpeditApp
from tui.screens.tune import TunePane
from tui.screens.tune_dialogs import SweepFolderScreen, TuneGoalScreen
from tui.state import TuneGoal, TuneValues

NAME = "shapes-striped"
TINY = {"images": "4", "steps": "4", "max_skill_ratio": "0.2", "tolerance": "1000", "timesteps": "3"}
"""A goal's evaluation and search kept to a couple of points (each a few seconds on a CPU)."""


@pytest.fixture(scope="module")
def sweep_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real sweep of shapes-striped: two skill ratios at tau 3, four images of four steps."""
    out = tmp_path_factory.mktemp("sweep")
    from cpedit.eval.options import ImageOptions
    from cpedit.eval.shapes import ShapesOptions

    plan = cpedit.tuning.plan_evaluation(
        "shapes", ShapesOptions(images=4), images=ImageOptions(steps=4, seed=0, batch_size=16)
    )
    cpedit.sweep(
        "builtin:shapes",
        [NAME],
        plan=plan,
        skill_ratios=[0.05, 0.2],
        timesteps=[3],
        out=out,
        compute=ComputeOptions(device="cpu"),
    )
    return out


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One calibrated state for the module (each test puts the recipe's own values back first)."""
    return calibrated_state(tmp_path_factory.mktemp("tune") / "out", (NAME,))


def fresh(state: Any) -> Any:
    prune = state.session.recipes[0].prune
    state.tune = {NAME: TuneValues(prune.skill_ratio, prune.timesteps, prune.select_ratio)}
    state.select_now()
    state.points_view = None
    return state


def count_of(app: CpeditApp) -> str:
    return text_of(app, f"#tune-{NAME}-count")


async def open_tune(app: CpeditApp, pilot: Any) -> None:
    """Show the Tune screen, once the focus is on it (its keys work at once; where exactly is for the
    focus tests to check)."""
    await pilot.pause()
    await pilot.press("4")
    pane = app.query_one(TunePane)
    await wait_until(pilot, lambda: app.focused is not None and (app.focused is pane or pane in app.focused.ancestors))


def test_a_sweep_folder_is_plotted_and_enter_applies_a_point(sweep_folder: Path, calibrated: Any) -> None:
    state = fresh(calibrated)
    app = CpeditApp(state, image_mode="halfcell")

    async def flow() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await open_tune(app, pilot)
            await pilot.press("w")
            await pilot.pause()
            assert isinstance(app.screen, SweepFolderScreen)
            app.screen.query_one("#sweep-folder", Input).value = str(sweep_folder / "nothing-here")
            await pilot.press("enter")
            await settle(app, pilot)
            assert "no sweep.json" in text_of(app, "#sweep-status")  # an error: said on the screen

            await pilot.press("w")
            await pilot.pause()
            app.screen.query_one("#sweep-folder", Input).value = str(sweep_folder)
            await pilot.press("enter")
            await settle(app, pilot)
            listed = app.query_one("#sweep-points", OptionList)
            rows = [str(listed.get_option_at_index(i).prompt) for i in range(listed.option_count)]
            assert len(rows) == 2 and rows[0].startswith("  sr 0.05, tau 3") and "sr 0.2, tau 3" in rows[1]
            assert rows[1].startswith("★")  # the Pareto point (it erases the most, for no drop)
            assert str(sweep_folder) in text_of(app, "#sweep-status")

            listed.focus()
            listed.highlighted = 0
            await pilot.press("enter")
            await settle(app, pilot)
            assert state.tune[NAME] == TuneValues(0.05, 3, state.tune[NAME].select_ratio)
            expected = state.session.select(per_recipe={NAME: {"skill_ratio": 0.05, "timesteps": 3}})
            assert state.selection.pruned == expected.pruned
            assert f"{expected.per_concept[NAME]:,} pruned" in count_of(app)
            assert app.query_one(f"#tune-{NAME}-skill_ratio", Input).value == "0.05"
            assert app.query_one(f"#tune-{NAME}-timesteps", Input).value == "3"

    run_async(flow)


def test_a_tune_runs_from_its_dialog_and_the_point_it_picks_is_applied(calibrated: Any) -> None:
    state = fresh(calibrated)
    app = CpeditApp(state, image_mode="halfcell")

    async def flow() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await open_tune(app, pilot)
            await pilot.press("t")
            await pilot.pause()
            dialog = app.screen
            assert isinstance(dialog, TuneGoalScreen)
            for key, value in {
                "erased_at_most": "0.5",
                "max_drop": "0.5",
                **TINY,
            }.items():  # 4 images: a Wilson bound needs room
                dialog.query_one(f"#{key}", Input).value = value
            dialog.query_one("#images", Input).value = "four"
            dialog.action_tune()
            await pilot.pause()
            assert "images: type an integer" in str(
                dialog.query_one("#problem").render()
            )  # said in the dialog, still open
            dialog.query_one("#images", Input).value = "4"
            dialog.action_tune()
            await pilot.pause()
            assert state.tuning == TuneGoal(
                NAME, 0.5, 0.5, images=4, steps=4, timesteps=(3,), max_skill_ratio=0.2, tolerance=1000
            )
            assert str(state.tune_folder(NAME)) in text_of(app, "#sweep-status")
            await wait_until(pilot, lambda: state.tuning is None, timeout=600)
            await settle(app, pilot)

            view = state.points_view
            assert view is not None and "goal met" in view.note, state.log
            assert app.query_one("#sweep-points", OptionList).option_count == len(view.points) >= 2
            picked = next(p for p in view.points if p.chosen)
            assert state.tune[NAME] == dataclasses.replace(
                state.tune[NAME], skill_ratio=picked.skill_ratio, timesteps=3
            )
            expected = state.session.select(per_recipe={NAME: {"skill_ratio": picked.skill_ratio, "timesteps": 3}})
            assert state.selection.pruned == expected.pruned and f"{expected.per_concept[NAME]:,} pruned" in count_of(
                app
            )
            recipe = state.tune_folder(NAME) / f"{NAME}.yaml"
            assert recipe.is_file() and str(recipe) in text_of(app, "#sweep-status")
            assert cpedit.parse_recipe(recipe.read_text()).prune.skill_ratio == picked.skill_ratio

    run_async(flow)


def test_cancelling_a_tune_applies_nothing(calibrated: Any) -> None:
    state = fresh(calibrated)
    before = dict(state.tune)
    app = CpeditApp(state, image_mode="halfcell")

    async def flow() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await open_tune(app, pilot)
            goal = TuneGoal(NAME, 0.25, 0.5, images=4, steps=4, timesteps=(3,), max_skill_ratio=0.2, tolerance=1000)
            app.query_one(TunePane).start_tune(goal)
            await wait_until(pilot, lambda: state.tune_progress.stage in ("load", "calibrate"), timeout=300)
            [worker] = app.running_jobs()
            await pilot.press("ctrl+x")
            assert worker.cancelled_event.is_set() and not app.running_jobs()  # its own flag
            await wait_until(pilot, lambda: state.tuning is None, timeout=300)
            await settle(app, pilot)
            assert state.tune == before and "cancelled" in text_of(app, "#sweep-status")
            assert state.log[-1] == "tune cancelled: nothing applied"

    run_async(flow)
