"""The Preview and Push screens, driven with Textual's Pilot on the builtin shapes model and the Hub emulator.

One calibrated session (builtin:shapes, CPU, a few seconds) is shared by the module; each test gets
its own AppState and output folder around it. No pytest-asyncio: each test runs its Pilot coroutine
with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from support.hub_emulator import HubEmulator
from support.tui import screen_lines, until

import cpedit
from cpedit.models.compute import ComputeOptions
from tui.app import CpeditApp
from tui.screens.base import Pane
from tui.screens.preview import RUN_FIRST, PreviewPane, summary_rows
from tui.screens.push import NOT_LOGGED_IN, SAVE_FIRST, PushPane
from tui.session_jobs import SessionJobs, recipe_values
from tui.state import AppState, build_card, calibrate

PaneT = TypeVar("PaneT", bound=Pane)

RECIPE = "shapes-striped"
TOKEN = "hf_tui-push-secret-never-shown"


@pytest.fixture(scope="module")
def session() -> Any:
    """One calibrated session of the shapes-striped recipe on the builtin model (shared: it is only read)."""
    state = AppState(out=None, compute=ComputeOptions(device="cpu"))
    state.queue_recipe(cpedit.resolve_recipe(RECIPE), origin=RECIPE)
    return calibrate(state.start_run()).jobs.session


def calibrated_state(tmp_path: Path, session: Any, *, save: bool = False) -> AppState:
    """A fresh AppState around the shared session (selected with the recipe's own settings), saved if asked."""
    state = AppState(out=str(tmp_path / "out"), compute=ComputeOptions(device="cpu"))
    state.queue_recipe(cpedit.resolve_recipe(RECIPE), origin=RECIPE)
    state.start_run()
    state.finish_run(SessionJobs(session).select(recipe_values(session)))  # its own jobs: a state may close them
    if save:
        state.save()
    return state


def drive(
    app: CpeditApp, script: Callable[[Any], Coroutine[Any, Any, None]], size: tuple[int, int] = (120, 40)
) -> None:
    """Run ``script(pilot)`` against ``app`` (halfcell images, so the output does not depend on the terminal)."""

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await script(pilot)

    asyncio.run(main())


async def show_screen(app: CpeditApp, pilot: Any, tab: str, kind: type[PaneT]) -> PaneT:
    """Switch to ``tab`` once the app is up, and return its screen once the focus is on it (or inside it).

    A switch made while the tabs are still mounting can be undone by their initial tab (and on a
    loaded machine a full suite run saw the focus never arrive), so the switch waits for the first
    screen's focus and is made again until the focus is on the screen.
    """
    await until(pilot, lambda: app.focused is not None, what="the first screen's focus")
    pane = app.query_one(kind)

    def on_pane() -> bool:
        return app.focused is not None and (app.focused is pane or pane in app.focused.ancestors)

    for _ in range(60):
        app.action_show_tab(tab)
        await pilot.pause()
        if not on_pane() and app.query_one("#tabs").active == tab:
            app.focus_tab()  # shown, but the focus went elsewhere meanwhile
        try:
            await until(pilot, on_pane, timeout=5.0, what=f"the focus on the {tab} screen")
            return pane
        except AssertionError:
            continue  # the switch was undone: switch again
    raise AssertionError(f"the focus never came to the {tab} screen")


def text_of(app: CpeditApp, selector: str) -> str:
    """The plain text a Static shows."""
    return str(app.query_one(selector).render())


def screen_text(app: CpeditApp) -> str:
    """Everything on screen, as the SVG screenshot has it."""
    return app.export_screenshot()


# --- preview ------------------------------------------------------------------------------


def test_preview_before_a_run_says_to_run_the_queue(tmp_path: Path) -> None:
    app = CpeditApp(AppState(out=str(tmp_path / "out")), image_mode="halfcell")

    async def script(pilot: Any) -> None:
        pane = await show_screen(app, pilot, "preview", PreviewPane)
        assert pane.has_class("-empty") and "ctrl+r" in RUN_FIRST
        assert RUN_FIRST in text_of(app, "#preview-hint")
        await pilot.press("r")  # refused, with a message, and the app stays usable
        await pilot.pause()
        assert not pane.rendering
        assert any("run the queue first" in n.message for n in app._notifications)

    drive(app, script)


def test_preview_renders_base_and_edited_then_the_next_seed(tmp_path: Path, session: Any) -> None:
    state = calibrated_state(tmp_path, session)
    app = CpeditApp(state, image_mode="halfcell")

    async def script(pilot: Any) -> None:
        app.refresh_panes()
        pane = await show_screen(app, pilot, "preview", PreviewPane)
        base, edited = app.query_one("#preview-base"), app.query_one("#preview-edited")
        assert not pane.has_class("-empty") and app.focused is pane
        assert type(base).__name__ == "HalfcellImage"

        await pilot.press("r")
        await until(pilot, lambda: base.image is not None and not pane.rendering, what="the first render")
        first = (base.image.tobytes(), edited.image.tobytes())
        prompt = state.preview_prompts()[0]
        assert edited.image is not None and first[0] != first[1]  # the edit changes the picture
        assert text_of(app, "#preview-caption") == f"“{prompt}”  ·  seed 0"

        await pilot.press("n")
        assert pane.seed == 1
        await until(pilot, lambda: not pane.rendering and "seed 1" in text_of(app, "#preview-caption"))
        assert (base.image.tobytes(), edited.image.tobytes()) != first
        expected = state.sample_pair(prompt, seed=1)
        assert base.image.tobytes() == expected[0].tobytes() and edited.image.tobytes() == expected[1].tobytes()
        assert "seed 1" in text_of(app, "#preview-seed")

        # the per-layer summary is the selection's own numbers
        selection = state.selection
        table = app.query_one("#preview-layers")
        rows = [tuple(str(cell) for cell in table.get_row_at(i)) for i in range(table.row_count)]
        assert rows == [(layer, f"{count:,}", f"{share:.1%}") for layer, count, share in summary_rows(selection)]
        assert rows and sum(selection.per_layer.values()) >= sum(int(r[1].replace(",", "")) for r in rows)
        totals = text_of(app, "#preview-totals")
        assert f"{selection.pruned:,} weights pruned" in totals and f"{selection.fraction:.3%}" in totals

        # a re-tune updates the summary and marks the images stale
        name = next(iter(state.tune))
        assert state.set_tune(name, skill_ratio=state.tune[name].skill_ratio / 2)
        state.select_now()
        app.refresh_panes()
        await pilot.pause()
        assert app.query_one("#preview-images").has_class("-stale")
        assert f"{state.selection.pruned:,} weights pruned" in text_of(app, "#preview-totals")

    drive(app, script)


# --- push ---------------------------------------------------------------------------------


async def open_push(app: CpeditApp, pilot: Any) -> PushPane:
    """Show the Push screen, once the focus is on it and it knows who is logged in."""
    pane = await show_screen(app, pilot, "push", PushPane)
    await until(pilot, lambda: "checking" not in text_of(app, "#push-login"), what="whoami")
    return pane


def test_push_needs_a_saved_output_and_says_when_not_logged_in(tmp_path: Path, hub: HubEmulator) -> None:
    repos_before = dict(hub.repos)
    app = CpeditApp(AppState(out=str(tmp_path / "out")), image_mode="halfcell")

    async def script(pilot: Any) -> None:
        pane = await open_push(app, pilot)
        assert text_of(app, "#push-login") == NOT_LOGGED_IN
        assert SAVE_FIRST in text_of(app, "#push-saved")
        app.query_one("#push-repo").value = "alice/fine"
        await app.run_action("push", pane)  # (a first key press into a second app of one process can be lost)
        await pilot.pause()
        await pilot.pause()
        assert not pane.pushing and hub.repos == repos_before
        assert "not pushed: save the output first" in text_of(app, "#push-status")

    drive(app, script, size=(80, 24))


def test_push_refuses_an_invalid_repo_id_as_typed(tmp_path: Path, session: Any, hub: HubEmulator) -> None:
    repos_before = dict(hub.repos)
    state = calibrated_state(tmp_path, session, save=True)
    app = CpeditApp(state, image_mode="halfcell")

    async def script(pilot: Any) -> None:
        pane = await show_screen(app, pilot, "push", PushPane)
        app.query_one("#push-repo").value = "no-slash"  # (typing is covered by the flow test: keys into a
        await pilot.pause()  # second app of one process can be lost, so these tests set values)
        check = text_of(app, "#push-repo-check")
        assert "'no-slash'" in check and "NAMESPACE/NAME" in check
        assert app.query_one("#push-repo-check").has_class("error")
        await app.run_action("push", pane)
        await pilot.pause()
        assert not pane.pushing and hub.repos == repos_before
        app.query_one("#push-repo").value = "no-slash/x"
        await pilot.pause()
        assert text_of(app, "#push-repo-check") == "✓ no-slash/x"

    drive(app, script)


def test_push_renders_the_missing_preview_then_publishes(
    tmp_path: Path, session: Any, hub: HubEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.add_token(TOKEN, "alice")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    state = calibrated_state(tmp_path, session, save=True)
    saved = state.saved
    assert saved is not None and not (saved / "conceptprune" / "preview.png").exists()
    app = CpeditApp(state, image_mode="halfcell")
    repo = "alice/shapes-no-striped-tui"

    async def script(pilot: Any) -> None:
        pane = await open_push(app, pilot)
        assert text_of(app, "#push-login") == "logged in as alice"

        # no preview yet: offered, rendered with v, then the card shows it
        row = app.query_one("#push-preview-row")
        assert row.display
        await pilot.press("v")
        await until(pilot, lambda: not row.display, what="the preview render")
        assert (saved / "conceptprune" / "preview.png").is_file()

        app.query_one("#push-repo").value = repo
        await pilot.pause()
        card = build_card(saved, repo_id=repo)
        assert "conceptprune/preview.png" in card
        markdown = app.query_one("#push-card")
        await until(pilot, lambda: repo in markdown.source, what="the card for the repo")

        await pilot.press("ctrl+u")
        await until(pilot, lambda: not pane.pushing, what="the push")
        assert pane.result is not None, [n.message for n in app._notifications]
        assert repo in hub.repos
        assert hub.file_bytes(repo, "README.md").decode() == card
        assert hub.file_bytes(repo, "conceptprune/preview.png")
        assert pane.result.url in text_of(app, "#push-url")
        bar = app.query_one("#push-progress")
        assert bar.total and bar.total > 10_000 and bar.progress == bar.total  # bytes, from the upload events

        shown = screen_text(app) + "".join(str(w.render()) for w in app.query("Static"))
        assert TOKEN not in shown and TOKEN not in markdown.source

    drive(app, script)


def test_a_failed_push_stays_in_the_screens_log_after_its_notification_goes(
    tmp_path: Path, session: Any, hub: HubEmulator
) -> None:
    """Issue 20 item 12: the failure's reason is on the Push screen itself, not only in a passing toast."""
    state = calibrated_state(tmp_path, session, save=True)
    app = CpeditApp(state, image_mode="halfcell")
    repo = "alice/shapes-not-logged-in"

    async def script(pilot: Any) -> None:
        pane = await open_push(app, pilot)
        app.query_one("#push-repo").value = repo
        await pilot.pause()
        await app.run_action("push", pane)
        # The error's notification reaches the app as a message of its own, after the push's end.
        await until(
            pilot,
            lambda: not pane.pushing and any(n.severity == "error" for n in app._notifications),
            what="the push to fail with an error notification",
        )
        errors = [n.message for n in app._notifications if n.severity == "error"]
        assert repo not in hub.repos
        app.clear_notifications()

        def on_screen() -> str:
            return " ".join(" ".join(screen_lines(app)).split())  # what is on screen, wrapped lines joined

        await until(pilot, lambda: f"push to {repo} failed" in on_screen(), what="the failure in the screen's log")
        shown = on_screen()
        assert errors[-1] in shown and "see the message" not in shown  # the reason itself, not a pointer

    drive(app, script)


def test_push_offers_the_edit_only_and_publishes_no_weights(
    tmp_path: Path, session: Any, hub: HubEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from support.hub_emulator import folder_files

    from cpedit.publish import apply_edit

    hub.add_token(TOKEN, "alice")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    state = calibrated_state(tmp_path, session, save=True)
    saved = state.saved
    assert saved is not None
    app = CpeditApp(state, image_mode="halfcell")
    repo = "alice/shapes-no-striped-edit"

    async def script(pilot: Any) -> None:
        pane = await open_push(app, pilot)
        assert app.query_one("#push-preview-row").display  # weights: the missing preview is offered
        app.query_one("#push-what").value = "edit"
        await pilot.pause()
        assert pane.edit_only and not app.query_one("#push-preview-row").display  # an edit alone has no preview
        app.query_one("#push-repo").value = repo
        markdown = app.query_one("#push-card")
        await until(pilot, lambda: "(edit only)" in markdown.source and repo in markdown.source, what="the card")
        await pilot.press("ctrl+u")
        await until(pilot, lambda: not pane.pushing, what="the push")
        assert pane.result is not None, [n.message for n in app._notifications]
        assert hub.file_bytes(repo, "README.md").decode() == build_card(saved, repo_id=repo, edit_only=True)

    drive(app, script)
    files = set(hub.repos[repo].commits[hub.repos[repo].refs["main"]].files)
    assert files == {
        ".gitattributes",
        "README.md",
        "conceptprune/report.json",
        "conceptprune/pruned.safetensors",
        f"conceptprune/recipes/{RECIPE}.yaml",
    }
    applied = apply_edit(repo, out=tmp_path / "applied")  # the built-in base: applied without naming it
    assert folder_files(applied.path) == folder_files(saved)
