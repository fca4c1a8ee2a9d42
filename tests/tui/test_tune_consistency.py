"""What you see on the Tune screen is what you save (issue 20), with Pilot on the built-in model.

Selecting runs in workers; these tests hold chosen selections back (a probe around the session's
``select``) so that answers arrive in the worst order, and check that the screen, ctrl+s's
output (recipe copies and report.json) and the fields always agree. Also: a wrong value's
message goes once the value is right, Escape and closed dialogs leave the screen's keys
working, and the per-layer chart shows every count in full at 80 and 100 columns.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.tui import calibrated_state, run_async, screen_lines, user_config  # noqa: F401 - user_config: autouse
from test_flow import settle, text_of, wait_until
from test_tune_screen import open_tune
from textual.pilot import Pilot
from textual.widgets import Input

from tui.app import CpeditApp
from tui.screens.tune import TunePane
from tui.screens.tune_dialogs import SweepFolderScreen, TuneGoalScreen
from tui.state import TuneValues
from tui.widgets.layer_chart import short_layer_name

NAME = "shapes-striped"


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One calibrated state for the module (each test puts the recipe's own values back first)."""
    return calibrated_state(tmp_path_factory.mktemp("consistency") / "out", (NAME,))


@pytest.fixture
def state(calibrated: Any, tmp_path: Path) -> Any:
    """The module's state with the recipe's own values selected and an output folder of this test's own."""
    prune = calibrated.session.recipes[0].prune
    calibrated.tune = {NAME: TuneValues(prune.skill_ratio, prune.timesteps, prune.select_ratio)}
    calibrated.select_now()
    calibrated.out = str(tmp_path / "out")
    calibrated.points_view = None
    return calibrated


class SelectProbe:
    """Stands in for the session's ``select``: calls for which ``hold`` says so wait until :meth:`release`.

    It counts the calls still running and the selection results the Tune screen's workers posted,
    so a test can wait until every answer, held ones included, has reached the screen.
    """

    def __init__(self, state: Any, app: CpeditApp, hold: Callable[[dict[str, Any], int], bool]) -> None:
        self.original = state.session.select
        self.hold = hold
        self.released = threading.Event()
        self.lock = threading.Lock()
        self.calls = 0
        self.running = 0
        self.finished: list[dict[str, Any]] = []
        self.from_workers = 0
        """Calls that ended in a worker thread (each worker posts one result; a call on the UI thread posts none)."""
        self.posted = 0
        self._app = app

    def __call__(self, **kwargs: Any) -> Any:
        asked = dict(kwargs.get("per_recipe", {}).get(NAME, {}))
        in_worker = threading.current_thread() is not threading.main_thread()  # the app's loop runs in the main one
        with self.lock:
            self.calls += 1
            self.running += 1
            number = self.calls
        try:
            if self.hold(asked, number):
                assert self.released.wait(timeout=300), "never released"
            return self.original(**kwargs)
        finally:
            with self.lock:
                self.running -= 1
                self.finished.append(asked)
                self.from_workers += in_worker

    def watch_posts(self) -> None:
        """Count the selection results the Tune screen's workers post (every worker posts one at its end)."""
        pane = self._app.query_one(TunePane)
        post = pane.post_message

        def counted(message: Any) -> bool:
            if type(message).__name__ in ("SelectionReady", "WorkDone"):
                with self.lock:
                    self.posted += 1
            return post(message)

        pane.post_message = counted  # type: ignore[method-assign]

    def all_in(self, values: dict[str, Any]) -> bool:
        """Whether the select for ``values`` finished, nothing is running, and every result was posted."""
        with self.lock:
            done = any(all(asked.get(k) == v for k, v in values.items()) for asked in self.finished)
            return done and self.running == 0 and self.posted >= self.from_workers


def expected(state: Any, **values: Any) -> Any:
    """What the session selects for the recipe's own values with ``values`` changed."""
    prune = state.session.recipes[0].prune
    own = {"skill_ratio": prune.skill_ratio, "timesteps": prune.timesteps, "select_ratio": prune.select_ratio}
    return state.session.select(per_recipe={NAME: {**own, **values}})


def field(app: CpeditApp, name: str) -> Input:
    return app.query_one(f"#tune-{NAME}-{name}", Input)


def shows(app: CpeditApp, selection: Any) -> bool:
    """Whether the header and the concept's count show ``selection``'s numbers."""
    return f"{selection.pruned:,} weights pruned" in text_of(app, "#tune-summary") and (
        f"{selection.per_concept[NAME]:,} pruned" in text_of(app, f"#tune-{NAME}-count")
    )


async def until_all_in(pilot: Pilot, probe: SelectProbe, values: dict[str, Any]) -> None:
    """Wait until every select (held ones too) ended and its result reached the screen."""
    await wait_until(
        pilot, lambda: probe.all_in(values), what=f"a selection for the values in the fields ({values}) on screen"
    )
    for _ in range(3):
        await pilot.pause()


def saved_settings(out: Path) -> tuple[dict[str, Any], int]:
    """The saved recipe copy's prune settings and the report's pruned count."""
    recipe = yaml.safe_load((out / "conceptprune" / "recipes" / f"{NAME}.yaml").read_text())
    report = json.loads((out / "conceptprune" / "report.json").read_text())
    return recipe["prune"], report["totals"]["pruned_weights"]


def test_recipe_values_after_edits_are_shown_and_saved_whatever_order_the_answers_come_in(
    state: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 1: skill ratio 0.3, then tau 5, then ctrl+z: the header and ctrl+s follow the fields (0.2 / 10)."""
    app = CpeditApp(state, image_mode="halfcell")
    own = expected(state)

    async def flow() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            # The answers for the older values (0.3, or tau 5) are held back until the newest is asked for.
            probe = SelectProbe(state, app, lambda asked, _: asked.get("skill_ratio") == 0.3 or asked["timesteps"] == 5)
            monkeypatch.setattr(state.session, "select", probe)
            await open_tune(app, pilot)
            probe.watch_posts()
            field(app, "skill_ratio").value = "0.3"
            await pilot.pause()
            field(app, "timesteps").value = "5"
            await pilot.pause()
            await pilot.press("ctrl+z")
            await pilot.pause()
            probe.released.set()
            await until_all_in(pilot, probe, {"skill_ratio": 0.2, "timesteps": 10})
            assert (field(app, "skill_ratio").value, field(app, "timesteps").value) == ("0.2", "10")
            assert shows(app, own), text_of(app, "#tune-summary")

            await pilot.press("ctrl+s")
            await wait_until(pilot, lambda: state.saved is not None)
            prune, pruned = saved_settings(Path(state.out))
            assert (prune["skill_ratio"], prune["timesteps"], pruned) == (0.2, 10, own.pruned)

    run_async(flow)


def test_save_while_a_selection_computes_saves_the_values_in_the_fields(
    state: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ctrl+s right after a change, while its selection is still computing, saves the changed value."""
    app = CpeditApp(state, image_mode="halfcell")
    changed = expected(state, skill_ratio=0.05)

    async def flow() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            probe = SelectProbe(state, app, lambda asked, _: not probe.released.is_set())
            monkeypatch.setattr(state.session, "select", probe)
            await open_tune(app, pilot)
            field(app, "skill_ratio").value = "0.05"
            await wait_until(pilot, lambda: probe.calls >= 1)  # selecting for 0.05, held
            await pilot.press("ctrl+s")
            await pilot.pause()
            probe.released.set()
            await wait_until(pilot, lambda: state.saved is not None)
            await settle(app, pilot)
            prune, pruned = saved_settings(Path(state.out))
            assert (prune["skill_ratio"], pruned) == (0.05, changed.pruned)
            assert shows(app, changed)
            assert "with these settings" in text_of(app, "#tune-save")

    run_async(flow)


def test_a_wrong_value_then_a_right_one_leaves_no_message(state: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 2: type 0 into skill ratio (a message), then .3: the count updates and the message goes, for good."""
    app = CpeditApp(state, image_mode="halfcell")
    right = expected(state, skill_ratio=0.3)

    async def flow() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            # A second request for 0 (from "0.") is answered last: its error must not come back.
            zeros = [0]

            def hold(asked: dict[str, Any], _: int) -> bool:
                if asked.get("skill_ratio") == 0:
                    zeros[0] += 1
                    return zeros[0] == 2
                return False

            probe = SelectProbe(state, app, hold)
            monkeypatch.setattr(state.session, "select", probe)
            await open_tune(app, pilot)
            probe.watch_posts()
            box = field(app, "skill_ratio")
            box.focus()
            box.value = ""
            await pilot.press("0")
            await wait_until(pilot, lambda: text_of(app, "#tune-problem") != "")  # 0 is out of range: said
            await pilot.press(".", "3")
            await wait_until(pilot, lambda: shows(app, right))
            probe.released.set()
            await until_all_in(pilot, probe, {"skill_ratio": 0.3})
            assert box.value == "0.3" and shows(app, right)
            assert text_of(app, "#tune-problem") == ""
            await pilot.press("tab")  # the focus moves on: still no message
            await pilot.pause()
            assert text_of(app, "#tune-problem") == ""

    run_async(flow)


def test_escape_in_a_field_leaves_every_key_of_the_screen_working(state: Any) -> None:
    """Item 3: after Escape in a field, ctrl+z, w, t and p work at once (no Tab needed); the screen opens with
    the focus on itself."""
    app = CpeditApp(state, image_mode="halfcell")

    async def flow() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await open_tune(app, pilot)
            box = field(app, "skill_ratio")
            await pilot.click(f"#tune-{NAME}-skill_ratio")
            assert app.focused is box
            box.value = "0.05"
            await pilot.press("escape")
            await pilot.press("ctrl+z")
            await wait_until(pilot, lambda: box.value == "0.2")
            assert state.tune[NAME].skill_ratio == 0.2
            await pilot.press("w")
            await wait_until(pilot, lambda: isinstance(app.screen, SweepFolderScreen))
            await pilot.press("escape")
            await wait_until(pilot, lambda: not isinstance(app.screen, SweepFolderScreen))
            await pilot.press("t")
            await wait_until(pilot, lambda: isinstance(app.screen, TuneGoalScreen))
            await pilot.press("escape")
            await wait_until(pilot, lambda: not isinstance(app.screen, TuneGoalScreen))
            await pilot.press("p")
            await wait_until(pilot, lambda: app.query_one("#tabs").active == "preview")
            await settle(app, pilot)
            await pilot.press("4")  # the Tune screen opens with the focus on the screen, not in a field
            await wait_until(pilot, lambda: app.query_one("#tabs").active == "tune" and app.focused is not None)
            assert app.focused is app.query_one(TunePane)
            await pilot.press("tab")  # Tab moves into the fields
            assert isinstance(app.focused, Input) and app.focused.id.startswith(f"tune-{NAME}-")

    run_async(flow)


def test_a_digit_after_a_dialog_closes_switches_screens_instead_of_typing(state: Any) -> None:
    """Item 7: focus in tau, ctrl+s asks (the output exists), n: then 5 shows the Preview screen; tau stays 10."""
    state.save()  # the output exists: ctrl+s asks before replacing it
    app = CpeditApp(state, image_mode="halfcell")

    async def flow() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await open_tune(app, pilot)
            await pilot.click(f"#tune-{NAME}-timesteps")
            assert app.focused is field(app, "timesteps")
            await pilot.press("ctrl+s")
            await wait_until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen")
            await pilot.press("n")
            await wait_until(pilot, lambda: type(app.screen).__name__ != "ConfirmScreen")
            await pilot.press("5")
            await pilot.pause()
            assert field(app, "timesteps").value == "10" and state.tune[NAME].timesteps == 10
            assert app.query_one("#tabs").active == "preview"

    run_async(flow)


@pytest.mark.parametrize("size", [(80, 24), (100, 30)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_the_chart_shows_every_layer_count_in_full(state: Any, size: tuple[int, int]) -> None:
    """Item 10: at 80 and 100 columns each layer's row ends with its whole count (not its first digit)."""
    app = CpeditApp(state, image_mode="halfcell")

    async def flow() -> None:
        async with app.run_test(size=size) as pilot:
            await open_tune(app, pilot)
            await settle(app, pilot)
            lines = screen_lines(app)
            for layer, count in state.selection.per_layer.items():
                row = next(line for line in lines if f" {short_layer_name(layer)} " in line)
                chart_part = row.split("│")[1]  # the chart's box, left of the sweep panel
                assert chart_part.rstrip().endswith(f" {count:,}"), (layer, count, row)

    run_async(flow)
