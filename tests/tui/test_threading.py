"""The app's threading model (issue 20), with Pilot on the built-in model.

Workers compute and only the UI thread changes the app's state: a whole run, re-selection and
save are driven while every attribute assignment on the state is checked for its thread. Each
job has its own cancel: ctrl+x stops the job in progress even when another job starts before
the cancelled one reaches its next check, and the job started afterwards is not affected.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from support.tui import run_async, user_config  # noqa: F401 - user_config: autouse
from test_flow import settle, text_of, wait_until
from textual.widgets import Input

import cpedit
import cpedit.tuning
from cpedit.errors import Cancelled, CpeditError
from cpedit.models.compute import ComputeOptions
from tui.app import CpeditApp
from tui.screens.tune import TunePane
from tui.state import AppState, QueueItem, RunProgress, TuneGoal

NAME = "shapes-striped"


def test_only_the_ui_thread_changes_the_app_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run, re-select and save: no attribute of the state, its progress or its queue items is set by a worker."""
    ui_thread: list[int] = []
    off_ui: list[str] = []

    def guarded(kind: type) -> Any:
        def setattr_checked(self: Any, name: str, value: Any) -> None:
            if ui_thread and threading.get_ident() != ui_thread[0]:
                off_ui.append(f"{kind.__name__}.{name} in {threading.current_thread().name}")
            object.__setattr__(self, name, value)

        return setattr_checked

    for kind in (AppState, RunProgress, QueueItem):
        monkeypatch.setattr(kind, "__setattr__", guarded(kind))
    state = AppState(out=str(tmp_path / "out"), compute=ComputeOptions(device="cpu"))
    app = CpeditApp(state, image_mode="halfcell", initial_recipes=[NAME])

    async def flow() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            ui_thread.append(threading.get_ident())  # the thread that runs the app's event loop
            await wait_until(pilot, lambda: len(state.queue) == 1)
            await pilot.press("ctrl+r")
            await wait_until(pilot, lambda: not state.running)
            assert state.session is not None, state.log
            expected = state.session.select(per_recipe={NAME: {"skill_ratio": 0.05}})
            await pilot.press("4")
            await wait_until(pilot, lambda: app.query_one("#tabs").active == "tune")
            app.query_one(f"#tune-{NAME}-skill_ratio", Input).value = "0.05"
            await wait_until(pilot, lambda: f"{expected.pruned:,} weights pruned" in text_of(app, "#tune-summary"))
            await pilot.press("ctrl+s")
            await wait_until(pilot, lambda: state.saved is not None)
            await settle(app, pilot)
            assert (Path(state.out) / "conceptprune" / "report.json").is_file()

    run_async(flow)
    assert off_ui == []


def test_ctrl_x_cancels_its_job_even_when_another_job_starts_before_it_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An auto-tune is cancelled, then a run starts before the tune looks at its cancel flag: the tune still
    stops as cancelled, and the run, started after ctrl+x, calibrates to its end."""
    entered = threading.Event()
    release = threading.Event()

    def plan_evaluation(*_args: Any, cancel: threading.Event | None = None, **_kwargs: Any) -> Any:
        """Stands in for the tune's first slow step: waits for the test, then honours ``cancel`` as the library does."""
        entered.set()
        assert release.wait(timeout=300), "never released"
        if cancel is not None and cancel.is_set():
            raise Cancelled("tune: evaluation cancelled")
        raise CpeditError("the tune went on after ctrl+x")

    monkeypatch.setattr(cpedit.tuning, "plan_evaluation", plan_evaluation)
    state = AppState(out=str(tmp_path / "out"), compute=ComputeOptions(device="cpu"))
    app = CpeditApp(state, image_mode="halfcell", initial_recipes=[NAME])

    async def flow() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_until(pilot, lambda: len(state.queue) == 1)
            app.query_one(TunePane).start_tune(TuneGoal(NAME, 0.25, 0.5, images=4, steps=4, timesteps=(3,)))
            await wait_until(pilot, entered.is_set)  # the tune is at its first slow step
            await pilot.press("ctrl+x")
            await pilot.press("ctrl+r")  # a new job starts before the tune looks at its flag
            await wait_until(pilot, lambda: state.running)
            release.set()
            await wait_until(pilot, lambda: state.tuning is None and not state.running)
            await settle(app, pilot)
            assert "tune cancelled: nothing applied" in state.log, state.log
            assert state.session is not None and [item.status for item in state.queue] == ["done"], state.log

    run_async(flow)
