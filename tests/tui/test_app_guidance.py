"""The app says where it stands and what comes next (issue 20), with Pilot on the built-in model.

ctrl+r on a calibrated queue asks before throwing the calibration away; a run in progress shows
on the Queue and Tune screens from its first moment, a finished one says what to do next and
where ctrl+s saves (a cancelled one says so: ``test_flow``); the Model screen refuses a folder
cpedit cannot edit with the reason ``cpedit prune`` gives; help shows keys as they are typed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from support.helpers import CPU
from support.tui import calibrated_state, run_async, user_config  # noqa: F401 - user_config: autouse
from test_flow import notices, settle, text_of, wait_until
from textual.widgets import DataTable, Input

from tui.app import CpeditApp
from tui.screens.confirm import ConfirmScreen
from tui.screens.help import HelpScreen
from tui.state import AppState

NAME = "shapes-striped"
BUILTIN = "builtin:shapes"
REPO = "guide/no-text-encoder"


def progress_text(app: CpeditApp) -> str:
    """The Queue screen's progress panel, as shown."""
    return "\n".join(text_of(app, f"#progress-{part}") for part in ("head", "detail", "where"))


def test_ctrl_r_on_a_calibrated_queue_asks_before_replacing_the_calibration(tmp_path: Path) -> None:
    """Item 4: ctrl+r after a run asks first; "keep it" keeps the calibration and the tuning."""
    state = calibrated_state(tmp_path / "out", (NAME,))
    session = state.session
    app = CpeditApp(state, image_mode="halfcell")

    async def flow() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            await pilot.press("ctrl+r")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            assert not state.running
            question = str(app.screen.query_one("#question").render())
            assert "replaces the calibration" in question and "not saved" in question
            await pilot.press("n")
            await wait_until(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
            assert state.session is session and not state.running and state.selection is not None

            await pilot.press("ctrl+r")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            await wait_until(pilot, lambda: state.running)
            assert state.session is None  # asked, and run again
            await pilot.press("ctrl+x")
            await wait_until(pilot, lambda: not state.running)
            await settle(app, pilot)

    run_async(flow)


def test_a_run_shows_on_the_queue_and_tune_screens_from_its_start(tmp_path: Path) -> None:
    """Item 8: while a run goes, Queue does not say idle and Tune does not say nothing is calibrated."""
    state = AppState(out=str(tmp_path / "out"), compute=CPU)
    app = CpeditApp(state, image_mode="halfcell", initial_recipes=[NAME])

    async def flow() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_until(pilot, lambda: len(state.queue) == 1)
            await pilot.press("ctrl+r")
            assert state.running
            assert "idle" not in progress_text(app)
            tune = text_of(app, "#tune-summary")
            assert "nothing calibrated" not in tune and "a run is going" in tune, tune
            await pilot.press("ctrl+x")
            await wait_until(pilot, lambda: not state.running)
            await settle(app, pilot)
            assert "nothing calibrated yet" in text_of(app, "#tune-summary")

    run_async(flow)


def test_a_finished_run_says_what_next_and_where_ctrl_s_saves(tmp_path: Path) -> None:
    """Item 9: with --out given, the end of a run says that ctrl+s saves there (and that Tune is next)."""
    out = tmp_path / "chosen-out"
    state = AppState(out=str(out), compute=CPU)
    app = CpeditApp(state, image_mode="halfcell", initial_recipes=[NAME])

    async def flow() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_until(pilot, lambda: len(state.queue) == 1)
            await pilot.press("ctrl+r")
            await wait_until(pilot, lambda: not state.running)
            await settle(app, pilot)
            assert state.session is not None, state.log
            said = f"ctrl+s saves to {out}"
            assert said in text_of(app, "#progress-head")  # on the Queue screen, not only in a toast
            assert any(said in n for n in notices(app))
            assert any("screen 4" in line and said in line for line in state.log)

    run_async(flow)


def cli_error(*args: object) -> str:
    """The message ``cpedit`` prints after ``Error:`` for these arguments."""
    from cpedit.cli.main import cli

    result = CliRunner(env={"COLUMNS": "300"}).invoke(cli, [str(a) for a in args])
    assert result.exit_code != 0
    line = next(line for line in result.output.splitlines() if line.startswith("Error: "))
    return line.removeprefix("Error: ")


@pytest.mark.parametrize("kind", ["no-model-index", "img2img"])
def test_the_model_screen_refuses_a_folder_it_cannot_edit_with_the_clis_reason(
    kind: str, tiny_sd_path: Path, tmp_path: Path
) -> None:
    """Item 6: Enter on a folder cpedit cannot edit keeps the model and says why, as ``cpedit prune`` does."""
    folder = tmp_path / kind
    if kind == "img2img":
        shutil.copytree(tiny_sd_path, folder)
        index = json.loads((folder / "model_index.json").read_text())
        (folder / "model_index.json").write_text(json.dumps({**index, "_class_name": "StableDiffusionImg2ImgPipeline"}))
    else:
        folder.mkdir()
    reason = cli_error("prune", folder, "-r", NAME, "-o", tmp_path / "out", "--device", "cpu")
    state = AppState(out=str(tmp_path / "out"), compute=CPU)
    app = CpeditApp(state, image_mode="halfcell")

    async def flow() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            await pilot.click("#model-search")
            app.query_one("#model-search", Input).value = str(folder)
            await wait_until(pilot, lambda: "cannot edit" in text_of(app, "#model-details"))
            await pilot.press("enter")
            await wait_until(pilot, lambda: "not chosen" in text_of(app, "#model-status") or state.model != BUILTIN)
            assert state.model == BUILTIN
            assert reason in text_of(app, "#model-details")  # what the screen says is what a run says
            assert reason in text_of(app, "#model-status")
            assert any(reason in n for n in notices(app, "error"))

    run_async(flow)


def test_the_model_screen_refuses_a_hub_model_its_details_say_cannot_be_edited(hub: Any, tmp_path: Path) -> None:
    """Item 6, for the Hub: a model whose details say cpedit cannot edit it is not chosen either."""
    hub.seed_repo(
        REPO,
        {"model_index.json": b'{"_class_name": "DDPMPipeline", "unet": ["diffusers", "UNet2DModel"]}'},
        card_metadata={"library_name": "diffusers", "pipeline_tag": "text-to-image"},
    )
    state = AppState(out=str(tmp_path / "out"), compute=CPU)
    app = CpeditApp(state, image_mode="halfcell")

    async def flow() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.click("#model-search")
            await pilot.press(*"guide")  # searched as it is typed
            table = app.query_one("#model-results", DataTable)
            await wait_until(pilot, lambda: REPO in table.rows)
            table.focus()
            table.move_cursor(row=table.get_row_index(REPO))
            await wait_until(pilot, lambda: "cannot edit" in text_of(app, "#model-details"))
            assert "no text encoder" in text_of(app, "#model-details")
            await pilot.press("enter")
            await wait_until(pilot, lambda: "not chosen" in text_of(app, "#model-status") or state.model != BUILTIN)
            assert state.model == BUILTIN and "no text encoder" in text_of(app, "#model-status")
            table.move_cursor(row=0)
            await pilot.press("enter")  # the built-in model is still chosen as before
            await wait_until(pilot, lambda: "base model: builtin:shapes" in text_of(app, "#model-status"))

    run_async(flow)


def test_help_shows_keys_as_they_are_typed_each_once(tmp_path: Path) -> None:
    """Item 11: ``?`` and ``/``, not ``question_mark`` and ``slash``; delete is ``del`` everywhere; no repeats."""
    app = CpeditApp(AppState(out=str(tmp_path / "out")), image_mode="halfcell")

    async def flow() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            await pilot.press("?")
            await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
            table = app.screen.query_one(DataTable)
            rows = [tuple(str(cell) for cell in table.get_row_at(i)) for i in range(table.row_count)]
            keys = {key for _, key, _ in rows}
            assert {"?", "/", "del", "ctrl+r", "ctrl+s", "+", "-"} <= keys, sorted(keys)
            assert not keys & {"question_mark", "slash", "delete", "plus", "minus"}
            assert not any("_" in key for key in keys)
            assert len(rows) == len(set(rows))
            assert ("Queue", "del", "Remove") in rows and ("Recipes", "del", "Remove") in rows

    run_async(flow)
