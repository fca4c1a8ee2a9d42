"""The whole flow of the app with Pilot, on the built-in model and the loopback Hub; cancel and errors.

search the Hub -> choose the built-in model -> queue two recipes -> run (progress to the end)
-> tune (the count equals EditSession.select) -> preview -> save -> push (the repo and its card
on the emulator). Then: cancel mid-run writes nothing; offline search, a bad recipe and a
failing run show in the app, which stays usable.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from support.helpers import CPU
from support.tui import run_async, user_config  # noqa: F401 - user_config: autouse
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static

import cpedit
import cpedit.recipes
from tui.app import CpeditApp
from tui.screens.model import ModelPane
from tui.screens.recipes import RecipesPane
from tui.state import AppState

TOKEN = "hf_tui-flow-test-token"
T2I = {"library_name": "diffusers", "pipeline_tag": "text-to-image"}


async def settle(app: CpeditApp, pilot: Pilot, *, rounds: int = 3) -> None:
    """Wait for the workers and the messages they posted."""
    for _ in range(rounds):
        await app.workers.wait_for_complete()
        await pilot.pause()


async def wait_until(pilot: Pilot, check: Any, *, timeout: float = 600.0, what: str = "") -> None:
    """Let the app run until ``check()`` holds (workers finish in threads); ``what`` names it in the failure."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, f"timed out waiting for {what or check}"
        await pilot.pause(0.05)


def notices(app: CpeditApp, severity: str | None = None) -> list[str]:
    return [n.message for n in app._notifications if severity is None or n.severity == severity]


def text_of(app: CpeditApp, selector: str) -> str:
    return str(app.query_one(selector, Static).render())


def record_events(state: AppState) -> list[Any]:
    """Keep every run event the app takes in."""
    seen: list[Any] = []
    original = state.apply_event

    def apply_event(event: Any) -> None:
        seen.append(event)
        original(event)

    state.apply_event = apply_event  # type: ignore[method-assign]
    return seen


def test_search_choose_queue_run_tune_preview_save_push(
    hub: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.seed_repo("tuiflow/sd-one", {"model_index.json": b"{}"}, card_metadata=T2I, downloads=12, likes=3)
    hub.add_token(TOKEN, "alice")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    state = AppState(out=str(tmp_path / "out"), compute=CPU)
    events = record_events(state)
    app = CpeditApp(state, image_mode="halfcell")

    async def flow() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            # Model: search as you type, then choose the built-in model.
            await pilot.click("#model-search")
            await pilot.press(*"tuiflow")
            await wait_until(pilot, lambda: app.query_one("#model-results", DataTable).row_count == 2)
            table = app.query_one("#model-results", DataTable)
            assert table.get_row_at(1)[0] == "tuiflow/sd-one" and table.get_row_at(1)[1] == "12"
            table.focus()
            table.move_cursor(row=1)
            await settle(app, pilot)
            assert "tuiflow/sd-one" in text_of(app, "#model-details")
            table.move_cursor(row=0)
            await pilot.press("enter")
            await pilot.pause()
            assert state.model == "builtin:shapes"

            # Recipes: queue two with the keyboard.
            await pilot.press("2")
            pane = app.query_one(RecipesPane)
            pane.query_one("#recipe-tree").focus()
            for name in ("shapes-striped", "shapes-star"):
                path = next(p for p in cpedit.recipes.builtin_recipes_dir().rglob("*.yaml") if p.stem == name)
                assert pane.select_recipe(f"src:{path}")
                await pilot.pause()
                await pilot.press("a")
                await pilot.pause()
            assert [item.name for item in state.queue] == ["shapes-striped", "shapes-star"]

            # Run: one job; progress reaches the end of every concept.
            await pilot.press("ctrl+r")
            await wait_until(pilot, lambda: not state.running)
            await settle(app, pilot)
            assert [item.status for item in state.queue] == ["done", "done"], state.log
            calibrations = [e for e in events if e.stage == "calibrate" and e.total]
            for name in ("shapes-striped", "shapes-star"):
                last = [e for e in calibrations if e.concept == name][-1]
                assert last.completed == last.total
            assert state.progress.stage == "done"

            # Tune: a new skill ratio re-selects; the count is EditSession.select's.
            await pilot.press("4")
            await pilot.pause()
            box = app.query_one("#tune-shapes-striped-skill_ratio", Input)
            box.value = "0.05"
            await settle(app, pilot)
            expected = state.session.select(per_recipe={"shapes-striped": {"skill_ratio": 0.05}, "shapes-star": {}})
            assert state.selection.pruned == expected.pruned
            assert f"{expected.pruned:,} weights pruned" in text_of(app, "#tune-summary")
            assert f"{expected.per_concept['shapes-striped']:,} pruned" in text_of(app, "#tune-shapes-striped-count")

            # Preview: p renders the before/after pair with this selection.
            await pilot.press("p")
            await settle(app, pilot)
            assert app.query_one("#tabs").active == "preview"
            assert preview_rendered(app)

            # Save: ctrl+s writes the output with the tuned settings.
            await pilot.press("ctrl+s")
            await settle(app, pilot)
            out = tmp_path / "out"
            report = json.loads((out / "conceptprune" / "report.json").read_text())
            assert report["totals"]["pruned_weights"] == expected.pruned
            assert "skill_ratio: 0.05" in (out / "conceptprune" / "recipes" / "shapes-striped.yaml").read_text()

            # Push: repo id checked as typed; the push lands on the emulator with its card.
            await pilot.press("6")
            await settle(app, pilot)
            assert "alice" in text_of(app, "#push-login")
            await pilot.click("#push-repo")
            await pilot.press(*"alice/shapes-tuned")
            await settle(app, pilot)
            await pilot.press("ctrl+u")
            await settle(app, pilot, rounds=6)
            assert "alice/shapes-tuned" in hub.repos
            readme = hub.file_bytes("alice/shapes-tuned", "README.md").decode()
            assert "shapes-striped" in readme and "ConceptPrune" in readme
            assert "alice/shapes-tuned" in text_of(app, "#push-url")
            screen = app.export_screenshot()
            assert TOKEN not in screen

    run_async(flow)


def preview_rendered(app: CpeditApp) -> bool:
    """Whether the Preview screen shows a base and an edited image."""
    from tui.screens.preview import PreviewPane

    pane = app.query_one(PreviewPane)
    images = [pane.query_one(f"#preview-{side}").image for side in ("base", "edited")]  # type: ignore[attr-defined]
    return all(image is not None for image in images) and pane._shown is app.state.current_tuned()


def test_cancel_mid_run_writes_nothing_says_so_and_the_app_goes_on(tmp_path: Path) -> None:
    """Also issue 20 item 5: the progress panel says cancelled (no frozen percentage or ETA)."""
    state = AppState(out=str(tmp_path / "out"), compute=CPU)
    app = CpeditApp(state, image_mode="halfcell", initial_recipes=["shapes-striped"])

    async def flow() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_until(pilot, lambda: len(state.queue) == 1)
            await pilot.press("ctrl+r")
            await wait_until(pilot, lambda: state.progress.stage == "calibrate")
            await pilot.press("ctrl+x")
            await wait_until(pilot, lambda: not state.running)
            await settle(app, pilot)
            assert [item.status for item in state.queue] == ["queued"]
            assert state.session is None and "cancelled: nothing was written" in state.log
            assert any("nothing was written" in n for n in notices(app))
            panel = "\n".join(text_of(app, f"#progress-{part}") for part in ("head", "detail", "where"))
            assert "cancelled" in text_of(app, "#progress-head"), panel
            assert "ETA" not in panel and "calibrating" not in panel and "%" not in panel
            assert not app.query_one("#progress-bar").display
            await pilot.press("ctrl+s")  # nothing to save: said, not crashed
            await pilot.pause()
            assert any("run the queue first" in n for n in notices(app, "error"))
            assert not (tmp_path / "out").exists()

    run_async(flow)


def test_errors_show_in_the_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = AppState(model=str(tmp_path / "no-such-model"), out=str(tmp_path / "out"), compute=CPU)
    app = CpeditApp(state, image_mode="halfcell", initial_recipes=["shapes-striped", "no-such-recipe"])

    async def flow() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(app, pilot)
            assert [item.name for item in state.queue] == ["shapes-striped"]
            assert any("no-such-recipe" in n for n in notices(app, "error"))  # a bad recipe: shown

            await pilot.press("ctrl+r")  # a model that does not exist: the run fails, shown on its concept
            await wait_until(pilot, lambda: not state.running)
            await settle(app, pilot)
            assert state.queue[0].status == "failed" and "no-such-model" in (state.queue[0].error or "")
            assert "no-such-model" in text_of(app, "#queue-error")
            assert "failed" in text_of(app, "#progress-head") and "ETA" not in text_of(app, "#progress-detail")

            monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline: the search says so
            import huggingface_hub.constants

            monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
            await pilot.press("1")
            app.query_one(ModelPane).search("anything")
            await settle(app, pilot)
            assert "search failed" in text_of(app, "#model-status")

            state.choose_model("builtin:shapes")  # and the app still works
            await pilot.press("ctrl+r")
            await wait_until(pilot, lambda: not state.running)
            assert state.queue[0].status == "done"

    run_async(flow)


def test_quit_asks_while_a_run_is_going_and_the_palette_has_every_action(tmp_path: Path) -> None:
    from tui.screens.confirm import ConfirmScreen

    state = AppState(out=str(tmp_path / "out"), compute=CPU)
    app = CpeditApp(state, image_mode="halfcell", initial_recipes=["shapes-striped"])

    async def flow() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            titles = [command.title for command in app.get_system_commands(app.screen)]
            for title in ("Run the queue", "Cancel", "Save the output", "Go to Tune", "Key bindings"):
                assert title in titles
            await wait_until(pilot, lambda: len(state.queue) == 1)
            await pilot.press("ctrl+r")
            await wait_until(pilot, lambda: state.progress.stage == "calibrate")
            await pilot.press("ctrl+q")
            await pilot.pause()
            assert isinstance(app.screen, ConfirmScreen)  # asked, not quit
            await pilot.press("n")
            await pilot.pause()
            assert app.is_running  # kept running: the run goes on to its end, not cancelled
            await wait_until(pilot, lambda: not state.running)
            assert state.queue[0].status == "done" and not any(w.cancelled_event.is_set() for w in app.workers)
            await pilot.press("ctrl+q")  # nothing running: quits at once
            await pilot.pause()
            assert not app.is_running

    run_async(flow)


def test_a_hub_model_is_pulled_with_byte_progress(hub: Any, tiny_sd_path: Path, tmp_path: Path) -> None:
    from support.hub_emulator import seed_pipeline

    seed_pipeline(hub, "tuiflow/tiny-sd", tiny_sd_path)
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(
        "cpedit: 1\nname: tiny-cats\nconcept: cat\nkind: object\n"
        "prompts: {target: 'a photo of a cat', base: 'a photo'}\nprune: {timesteps: 2}\nsampling: {steps: 3}\n"
    )
    state = AppState(model="tuiflow/tiny-sd", out=str(tmp_path / "out"), compute=CPU)
    events = record_events(state)
    app = CpeditApp(state, image_mode="halfcell", initial_recipes=[str(recipe)])

    async def flow() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_until(pilot, lambda: len(state.queue) == 1)
            await pilot.press("3", "ctrl+r")
            await wait_until(pilot, lambda: not state.running)
            await settle(app, pilot)
            assert state.queue[0].status == "done", state.log

    run_async(flow)
    downloads = [e for e in events if e.stage == "download" and e.unit == "bytes" and e.total]
    assert downloads and downloads[-1].completed == downloads[-1].total  # bytes, to the end
    from tui.state import RunProgress
    from tui.widgets.run_progress import describe_progress

    progress = RunProgress()
    progress.update(downloads[len(downloads) // 2])
    assert " of " in describe_progress(progress)[1]  # "x MiB of y MiB", as the view shows it


def test_text_with_brackets_is_shown_as_text_not_markup(tmp_path: Path) -> None:
    odd = tmp_path / "no[such]model[/]"  # Rich markup would choke on it (or hide parts of it)
    state = AppState(model=str(odd), out=str(tmp_path / "out"), compute=CPU)
    app = CpeditApp(state, image_mode="halfcell", initial_recipes=["shapes-striped"])

    async def flow() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_until(pilot, lambda: len(state.queue) == 1)
            await pilot.press("3", "ctrl+r")
            await wait_until(pilot, lambda: not state.running)
            await settle(app, pilot)
            assert "no[such]model[/]" in text_of(app, "#queue-error")
            await pilot.press("1")
            app.query_one(ModelPane).search(str(odd))
            await settle(app, pilot)
            assert "no[such]model[/]" in text_of(app, "#model-details")
            assert "base model: " + str(odd) in text_of(app, "#model-chosen")

    run_async(flow)
