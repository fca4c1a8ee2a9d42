"""What the terminal app's tests share (import it by name: ``from support.tui import ...``).

There is deliberately no ``__init__.py`` in this folder (pytest would import these tests as a
package named ``tui`` and shadow the app's own ``tui`` package), and no ``conftest.py`` either:
it would take the module name ``conftest`` from tests/conftest.py, whose ``HUB`` tests import.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from cpedit.models.compute import ComputeOptions

TWO_RECIPES = ("shapes-striped", "shapes-star")


def run_async(test: Callable[[], Awaitable[Any]]) -> Any:
    """Run an async Pilot test body from a plain pytest test."""
    return asyncio.run(test())


def calibrated_state(out: Path, recipes: tuple[str, ...] = TWO_RECIPES) -> Any:
    """An :class:`~tui.state.AppState` on the built-in model with ``recipes`` queued, run and calibrated."""
    import cpedit
    from tui.state import AppState, RunProgress, calibrate

    state = AppState(out=str(out), compute=ComputeOptions(device="cpu"))
    for name in recipes:
        state.queue_recipe(cpedit.resolve_recipe(name), origin=name)
    state.finish_run(calibrate(state.start_run()))
    state.progress = RunProgress()  # idle: no timings or memory readings on screen
    state.log.clear()
    return state


@pytest.fixture(autouse=True)
def user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own (empty) user recipe folder: nothing touches the real home."""
    config = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    return config


async def until(pilot: Any, condition: Callable[[], bool], *, timeout: float = 600.0, what: str = "") -> None:
    """Let the app run until ``condition()`` holds (workers finish in threads)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await pilot.pause(0.05)


def screen_lines(app: Any) -> list[str]:
    """The text on the app's screen now, one string per terminal row (what a user reads)."""
    import io

    from rich.console import Console

    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), record=True, legacy_windows=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text().splitlines()
