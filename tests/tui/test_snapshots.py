"""SVG snapshots of every screen of the app at 80x24 and 120x40 (pytest-textual-snapshot).

The app runs on a calibrated session of the built-in model (made once for the module, so the
Tune, Preview and Push screens have something to show), the dark theme, and half-block images,
so the pictures are the same on every run. The Preview screen shows two pictures the built-in model rendered once,
kept in ``tests/tui/data/`` (:func:`fixed_preview`): pixels rendered afresh come from float arithmetic
whose last bit depends on the CPU's kernels and thread scheduling (one channel of one half-cell
differed by 1/255 between two runs on the same machine), and the snapshot is about the screen, not
the model; tests/tui/test_preview_push.py checks that the screen shows what the session renders.
Render them again with ``CPEDIT_WRITE_PREVIEW_PICTURES=1`` (with ``--snapshot-update``). After a
deliberate change to how a screen looks, review the new pictures and update them with
``pytest tests/tui/test_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.tui import calibrated_state, user_config  # noqa: F401 - user_config: autouse

from tui.app import CpeditApp
from tui.session_jobs import SessionJobs

SIZES = [(80, 24), (120, 40)]
SCREENS = {"model": "1", "recipes": "2", "queue": "3", "tune": "4", "preview": "5", "push": "6"}


@pytest.fixture(scope="module")
def saved_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A calibrated two-concept state whose output is saved (paths relative to a private folder)."""
    folder = tmp_path_factory.mktemp("snapshots")
    here = os.getcwd()
    os.chdir(folder)
    try:
        state = calibrated_state(Path("shapes-no-stripes-or-stars"))
        state.save()
        state.log.clear()
        yield state
    finally:
        os.chdir(here)


PICTURES = Path(__file__).resolve().parent / "data"
"""The Preview screen's base and edited pictures (``preview-base.png``, ``preview-edited.png``)."""


@pytest.fixture
def fixed_preview(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Preview screen renders as usual (the session samples both images), then shows the kept pictures.

    With ``CPEDIT_WRITE_PREVIEW_PICTURES=1`` the rendered pictures are kept instead.
    """
    from PIL import Image

    sample_pair = SessionJobs.sample_pair

    def sample_kept(self: SessionJobs, *args: Any, **kwargs: Any) -> Any:
        rendered = sample_pair(self, *args, **kwargs)
        if os.environ.get("CPEDIT_WRITE_PREVIEW_PICTURES") == "1":
            PICTURES.mkdir(exist_ok=True)
            rendered.base.save(PICTURES / "preview-base.png")
            rendered.edited.save(PICTURES / "preview-edited.png")
        base, edited = (Image.open(PICTURES / f"preview-{side}.png").convert("RGB") for side in ("base", "edited"))
        assert base.size == edited.size == rendered.base.size, "render them again (see the module's notes)"
        return dataclasses.replace(rendered, base=base, edited=edited)

    monkeypatch.setattr(SessionJobs, "sample_pair", sample_kept)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("screen", list(SCREENS))
def test_screen(screen: str, size: tuple[int, int], saved_state: Any, fixed_preview: None, snap_compare: Any) -> None:
    app = CpeditApp(saved_state, image_mode="halfcell")

    async def show(pilot: Any) -> None:
        pilot.app.theme = "textual-dark"
        await pilot.pause()  # the first screen has taken the focus
        await pilot.press(SCREENS[screen])
        await pilot.pause(0.1)  # the chosen screen has taken it
        if screen == "preview":
            await pilot.press("r")
        if screen == "recipes":  # a fixed view: the tree scrolled to its top (it keeps the cursor in view anyway)
            await pilot.pause(0.2)
            pilot.app.query_one("#recipe-tree").scroll_home(animate=False)
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=show)


SWEEP = {
    "sweep": 1,
    "recipes": [{"name": "shapes-striped"}],
    "evaluation": {"benchmark": "shapes"},
    "points": [
        {
            "settings": {"skill_ratio": sr, "timesteps": 3, "select_ratio": None, "target": None},
            "pruned": pruned,
            "pruned_percent": pruned / 27000,
            "erased": {"before": 0.25, "after": erased},
            "preserved": {"before": 0.75, "after": 0.75 - drop},
            "drop": drop,
            "pareto": pareto,
        }
        for sr, pruned, erased, drop, pareto in (
            (0.01, 20, 0.25, 0.0, True),
            (0.05, 80, 0.25, 0.01, False),
            (0.1, 900, 0.125, 0.02, True),
            (0.2, 3482, 0.0, 0.0625, True),
        )
    ],
}
"""A fixed sweep.json for the Tune screen's sweep panel."""


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_tune_with_a_sweep(size: tuple[int, int], saved_state: Any, snap_compare: Any) -> None:
    import json

    Path("sweep").mkdir(exist_ok=True)
    Path("sweep", "sweep.json").write_text(json.dumps(SWEEP))
    from tui.state import read_points

    saved_state.show_points(read_points("sweep"), "sweep")
    app = CpeditApp(saved_state, image_mode="halfcell")

    async def show(pilot: Any) -> None:
        pilot.app.theme = "textual-dark"
        await pilot.pause()
        await pilot.press("4")
        await pilot.pause(0.1)
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()

    try:
        assert snap_compare(app, terminal_size=size, run_before=show)
    finally:
        saved_state.points_view = None
        saved_state.log.clear()
