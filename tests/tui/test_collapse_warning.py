"""The Tune screen's save runs the collapse check: a collapsed edit is saved with a warning on screen.

The image measure is tested on the shapes model in ``tests/edit/test_collapse.py``; here the save of
a calibrated state is judged once as it is (no warning) and once through a stand-in distance that
says every unrelated prompt lost its structure (the warning on the save line, in the log and in
the report).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.tui import calibrated_state, run_async, user_config  # noqa: F401 - user_config: autouse
from test_flow import settle, text_of, wait_until

import cpedit.edit.collapse
from cpedit.output.collapse import PromptDistance
from cpedit.output.record import read_report
from tui.app import CpeditApp

NAME = "shapes-striped"


def save_with_the_app(state: Any) -> str:
    """Save with ctrl+s on the Tune screen; the save line once it is done."""
    app = CpeditApp(state, image_mode="halfcell")

    async def flow() -> str:
        async with app.run_test(size=(140, 40)) as pilot:
            await pilot.pause()
            await pilot.press("4")
            await wait_until(pilot, lambda: app.query_one("#tabs").active == "tune")
            await pilot.press("ctrl+s")
            await wait_until(pilot, lambda: state.saved is not None, what="the save")
            await settle(app, pilot)
            return text_of(app, "#tune-save")

    return str(run_async(flow))


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return calibrated_state(tmp_path_factory.mktemp("guard") / "out", (NAME,))


def test_a_collapsed_save_shows_the_warning(calibrated: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def broken(prompt: str, base: object, edited: object) -> PromptDistance:
        return PromptDistance(prompt=prompt, distance=5.0, contrast=0.01, texture=1.0)

    monkeypatch.setattr(cpedit.edit.collapse, "prompt_distance", broken)
    calibrated.last_save, calibrated.out = None, str(tmp_path / "out")
    line = " ".join(save_with_the_app(calibrated).split())
    assert "WARNING: the edit destroyed generation, not just the concept (collapse: 4 of 4" in line
    assert "lower the skill ratio" in line
    assert any("destroyed generation" in entry for entry in calibrated.log)
    report = read_report(Path(calibrated.out))
    assert report.collapse_check is not None and report.collapse_check.collapsed


def test_a_sound_save_shows_no_warning(calibrated: Any, tmp_path: Path) -> None:
    calibrated.last_save, calibrated.out = None, str(tmp_path / "out")
    line = save_with_the_app(calibrated)
    assert "saved to" in line and "WARNING" not in line
    check = read_report(Path(calibrated.out)).collapse_check
    assert check is not None and not check.collapsed and max(check.distances) < check.threshold / 2
