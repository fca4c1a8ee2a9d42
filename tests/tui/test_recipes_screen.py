"""Pilot tests of the Recipes screen and its dialogs (new recipe, queued copy's settings); no model loads.

pytest-asyncio is not installed, so each test runs its coroutine with :func:`asyncio.run`.
The Hub is the loopback emulator tests/conftest.py sets up; XDG_CONFIG_HOME is a temporary
folder, so "your recipes" never touch the real home.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console
from textual.pilot import Pilot
from textual.widgets import Input, Select, Static, TextArea, Tree

import cpedit
import cpedit.recipes
from cpedit.cli.main import cli
from tui.app import CpeditApp
from tui.screens.recipe_form import NewRecipeScreen
from tui.screens.recipes import RecipesPane, Shown, field_path, problem_lines
from tui.screens.settings_form import QueuedSettingsScreen
from tui.state import AppState

BROKEN = """cpedit: 1
name: Broken Name
concept: x
prompts:
  target: 'a {subjct}'
  base: b
prune:
  skill_ratio: 5
"""
GOOD_HUB_RECIPE = """cpedit: 1
name: hub-cats
concept: cat
kind: object
prompts:
  subjects: [sofa, garden]
  target: "a cat on a {subject}"
  base: "a {subject}"
"""

Scenario = Callable[[CpeditApp, Pilot, RecipesPane], Awaitable[None]]


@pytest.fixture(autouse=True)
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary XDG_CONFIG_HOME: the user recipe folder lives under it."""
    home = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    return home


def run_app(scenario: Scenario, *, folders: tuple[str, ...] = (), size: tuple[int, int] = (120, 40), **kw) -> CpeditApp:
    """Run ``scenario`` against a fresh app on the Recipes screen; returns the app (for its state)."""
    app = CpeditApp(AppState(recipe_folders=folders), image_mode="halfcell", **kw)

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            app.action_show_tab("recipes")
            await pilot.pause()
            await scenario(app, pilot, app.query_one(RecipesPane))

    asyncio.run(main())
    return app


def plain(widget: Static) -> str:
    """A Static's content as plain text (to look for field names and messages)."""
    console = Console(width=160, file=io.StringIO(), record=True, color_system=None)
    console.print(widget.content)
    return console.export_text()


def messages(app: CpeditApp, severity: str | None = None) -> list[str]:
    """The notifications shown so far (of one severity)."""
    return [n.message for n in app._notifications if severity is None or n.severity == severity]


def shipped_key(name: str) -> str:
    """The tree key of a shipped recipe."""
    path = next(p for p in cpedit.recipes.builtin_recipes_dir().rglob("*.yaml") if p.stem == name)
    return f"src:{path}"


async def highlight(pilot: Pilot, pane: RecipesPane, key: str) -> None:
    """Focus the tree and put its cursor on the entry ``key``."""
    pane.query_one("#recipe-tree", Tree).focus()
    assert pane.select_recipe(key), key
    await pilot.pause()
    await pilot.pause()


async def settle(app: CpeditApp, pilot: Pilot) -> None:
    """Wait for the workers and the messages they posted."""
    await app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.pause()


async def settle_until(app: CpeditApp, pilot: Pilot, done: Callable[[], bool], *, timeout: float = 15.0) -> None:
    """Settle until ``done()`` holds (or ``timeout`` passes): a worker may start only after the key's message
    has been handled, so one wait for the workers can come too early on a busy machine."""
    deadline = time.monotonic() + timeout
    await settle(app, pilot)
    while not done() and time.monotonic() < deadline:
        await pilot.pause(0.05)
        await settle(app, pilot)


def leaves(pane: RecipesPane) -> list[Shown]:
    return [node.data for node in pane._tree_nodes() if isinstance(node.data, Shown)]


# --- pure helpers ---------------------------------------------------------------------------


def test_problem_lines_find_nested_keys_and_list_items() -> None:
    assert field_path("prompts.target[1]") == ["prompts", "target", 1]
    marked = problem_lines(BROKEN, [("name", "x"), ("prompts.target", "y"), ("prune.skill_ratio", "z"), ("kind", "w")])
    assert marked == {1: ["name"], 4: ["prompts.target"], 7: ["prune.skill_ratio"]}
    listed = "prompts:\n  target:\n    - a\n    - b {subject}\n"
    assert problem_lines(listed, [("prompts.target[1]", "m")]) == {3: ["prompts.target[1]"]}
    assert problem_lines("a: [\n", [("", "not valid YAML at line 2, column 1: oops")]) == {1: ["file"]}


# --- browsing and queueing --------------------------------------------------------------------


def test_shipped_recipes_are_listed_and_yours_is_empty() -> None:
    async def scenario(app: CpeditApp, pilot: Pilot, pane: RecipesPane) -> None:
        names = {shown.name for shown in leaves(pane)}
        assert {p.stem for p in cpedit.recipes.builtin_recipes_dir().rglob("*.yaml")} <= names
        await highlight(pilot, pane, shipped_key("van-gogh"))
        detail = plain(pane.query_one("#recipe-detail", Static))
        assert "Van Gogh" in detail and "✓ valid recipe" in detail and "skill_ratio 0.01" in detail
        assert "· seed 0" in detail
        assert 'concept: "Van Gogh"' in plain(pane.query_one("#recipe-yaml", Static))
        await highlight(pilot, pane, shipped_key("male-to-female"))  # the authors' gender runs seed every pair
        assert "· seed per pair (12)" in plain(pane.query_one("#recipe-detail", Static))

    run_app(scenario)


def test_add_queues_the_highlighted_recipe_and_a_duplicate_is_an_error() -> None:
    async def scenario(app: CpeditApp, pilot: Pilot, pane: RecipesPane) -> None:
        await highlight(pilot, pane, shipped_key("van-gogh"))
        await pilot.press("a")
        await pilot.pause()
        assert [(item.name, item.origin) for item in app.state.queue] == [("van-gogh", "van-gogh")]
        label = next(n for n in pane._tree_nodes() if isinstance(n.data, Shown) and n.data.name == "van-gogh").label
        assert str(label).startswith("●")
        await pilot.press("a")
        await pilot.pause()
        assert len(app.state.queue) == 1
        assert any("already queued" in m for m in messages(app, "error"))
        await pilot.press("delete")
        await pilot.pause()
        assert app.state.queue == []

    run_app(scenario)


def test_an_invalid_file_shows_each_problem_with_its_field(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "broken.yaml").write_text(BROKEN)

    async def scenario(app: CpeditApp, pilot: Pilot, pane: RecipesPane) -> None:
        broken = next(shown for shown in leaves(pane) if shown.name == "broken")
        assert broken.error is not None
        await highlight(pilot, pane, broken.key)
        detail = plain(pane.query_one("#recipe-detail", Static))
        assert "invalid recipe (3 problems)" in detail
        for field in ("name", "prompts.target", "prune.skill_ratio"):
            assert field in detail
        yaml_text = plain(pane.query_one("#recipe-yaml", Static))
        marked = [line for line in yaml_text.splitlines() if line.startswith("✗")]
        assert [line.split("│")[1].strip() for line in marked] == [
            "name: Broken Name",
            "target: 'a {subjct}'",
            "skill_ratio: 5",
        ]
        await pilot.press("a")
        await pilot.pause()
        assert app.state.queue == []
        assert any("not a valid recipe" in m for m in messages(app, "error"))
        app.action_toggle_theme()  # the Rich colours follow the theme
        await pilot.pause()

    run_app(scenario, folders=(str(folder),))


def test_recipe_refs_given_at_start_are_queued_and_a_bad_one_is_an_error() -> None:
    async def scenario(app: CpeditApp, pilot: Pilot, pane: RecipesPane) -> None:
        await settle(app, pilot)
        assert [item.name for item in app.state.queue] == ["monet"]
        assert any("no-such-recipe" in m for m in messages(app, "error"))

    run_app(scenario, initial_recipes=["monet", "no-such-recipe"])


# --- hub references ----------------------------------------------------------------------------


def test_hub_refs_load_in_a_worker(hub) -> None:  # noqa: ANN001 - the emulator fixture
    hub.seed_repo("acme/tui-recipes", {"cats/hub-cats.yaml": GOOD_HUB_RECIPE.encode()})

    async def scenario(app: CpeditApp, pilot: Pilot, pane: RecipesPane) -> None:
        ref = pane.query_one("#recipe-ref", Input)
        ref.focus()
        ref.value = "hub:acme/no-such-repo/x.yaml"
        await pilot.press("enter")
        await settle_until(app, pilot, lambda: any("no-such-repo" in m for m in messages(app, "error")))
        assert any("no-such-repo" in m for m in messages(app, "error"))
        ref.focus()
        ref.value = "hub:acme/tui-recipes/cats/hub-cats.yaml"
        await pilot.press("enter")

        def hub_leaves() -> list[Shown]:
            return [shown for shown in leaves(pane) if shown.origin.startswith("hub:acme/tui-recipes")]

        await settle_until(app, pilot, lambda: bool(hub_leaves()))
        loaded = hub_leaves()
        assert loaded and loaded[0].recipe is not None and loaded[0].recipe.name == "hub-cats"
        await pilot.press("a")
        await pilot.pause()
        assert [(i.name, i.origin) for i in app.state.queue] == [
            ("hub-cats", "hub:acme/tui-recipes/cats/hub-cats.yaml")
        ]

    run_app(scenario)


# --- the new-recipe form -------------------------------------------------------------------------


async def fill_form(pilot: Pilot, screen: NewRecipeScreen, **values: str) -> None:
    for field, value in values.items():
        widget = screen.query_one(f"#{field}")
        if isinstance(widget, TextArea):
            widget.text = value
        elif isinstance(widget, Select):
            widget.value = value
        else:
            assert isinstance(widget, Input)
            widget.value = value
    await pilot.pause()


def test_new_recipe_form_writes_a_file_the_cli_validates(config_home: Path) -> None:
    async def scenario(app: CpeditApp, pilot: Pilot, pane: RecipesPane) -> None:
        pane.query_one("#recipe-tree", Tree).focus()
        await pilot.press("n")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, NewRecipeScreen)
        await fill_form(
            pilot,
            screen,
            name="no-cats",
            concept="cat",
            kind="object",
            target="a cat on a {subject}",
            base="a {subject}",
            subjects="sofa\n\ngarden\n",
            description="Erase cats.",
        )
        assert "2 prompt pair(s)" in plain(screen.query_one("#pairs", Static))
        await pilot.press("ctrl+o")
        await pilot.pause()
        await pilot.pause()
        assert not isinstance(app.screen, NewRecipeScreen)
        assert any(shown.name == "no-cats" for shown in leaves(pane))
        assert [item.name for item in app.state.queue] == ["no-cats"]

    run_app(scenario)
    path = config_home / "cpedit" / "recipes" / "no-cats.yaml"
    recipe = cpedit.load_recipe(path)
    assert recipe.pairs() == [("a cat on a sofa", "a sofa"), ("a cat on a garden", "a garden")]
    assert (recipe.kind, recipe.description) == ("object", "Erase cats.")
    result = CliRunner().invoke(cli, ["recipes", "validate", str(path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output


def test_new_recipe_form_shows_field_problems_and_writes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "new"

    async def scenario(app: CpeditApp, pilot: Pilot, pane: RecipesPane) -> None:
        screen = NewRecipeScreen(folder)
        await app.push_screen(screen)
        await pilot.pause()
        await fill_form(pilot, screen, name="bad", concept="x", target="a {subjct}", base="b", subjects="cat")
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert app.screen is screen
        target_problem = screen.query_one("#target-problem", Static)
        assert target_problem.has_class("-shown") and "{subject}" in plain(target_problem)
        await fill_form(pilot, screen, target="a cat", base="a photo")  # subjects given, used by neither
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert app.screen is screen
        assert "neither target nor base" in plain(screen.query_one("#subjects-problem", Static))
        assert not screen.query_one("#target-problem", Static).has_class("-shown")
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is not screen

    run_app(scenario)
    assert not folder.exists() or not list(folder.iterdir())


# --- editing a queued copy ---------------------------------------------------------------------


def test_edit_settings_of_a_queued_copy_and_an_invalid_value_stays_open() -> None:
    async def scenario(app: CpeditApp, pilot: Pilot, pane: RecipesPane) -> None:
        await highlight(pilot, pane, shipped_key("van-gogh"))
        await pilot.press("a", "e")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, QueuedSettingsScreen)
        screen.query_one("#skill_ratio", Input).value = "0.02"
        screen.query_one("#seed", Input).value = "7"
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert app.screen is not screen
        recipe = app.state.queue[0].recipe
        assert (recipe.prune.skill_ratio, recipe.sampling.seed) == (0.02, 7)
        assert "skill_ratio: 0.02" in recipe.text

        await pilot.press("e")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, QueuedSettingsScreen)
        assert screen.query_one("#skill_ratio", Input).value == "0.02"
        screen.query_one("#skill_ratio", Input).value = "5"
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert app.screen is screen
        assert "must be in (0, 1]" in plain(screen.query_one("#skill_ratio-problem", Static))
        assert app.state.queue[0].recipe.prune.skill_ratio == 0.02
        screen.query_one("#skill_ratio", Input).value = "0.03"
        screen.query_one("#timesteps", Input).value = "80"  # more than sampling.steps = 50
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is screen
        assert not screen.query_one("#skill_ratio-problem", Static).has_class("-shown")
        assert "larger than the 50 denoiser calls" in plain(screen.query_one("#timesteps-problem", Static))
        await pilot.press("escape")
        await pilot.pause()
        assert app.state.queue[0].recipe.prune.timesteps == 10

    run_app(scenario)


def test_the_screen_fits_80x24_and_works_with_the_keyboard_only() -> None:
    async def scenario(app: CpeditApp, pilot: Pilot, pane: RecipesPane) -> None:
        tree = pane.query_one("#recipe-tree", Tree)
        tree.focus()
        await pilot.press("down", "down", "a")
        await pilot.pause()
        assert len(app.state.queue) == 1
        for widget_id in ("#recipe-tree", "#recipe-ref", "#recipe-queue", "#recipe-view"):
            region = pane.query_one(widget_id).region
            assert region.width >= 20 and region.height >= 1, (widget_id, region)
            assert region.right <= 80 and region.bottom <= 24
        await pilot.press("n")
        await pilot.pause()
        save = app.screen.query_one("#save")
        assert save.region.bottom <= 24 and save.region.height >= 1
        await pilot.press("escape", "e")
        await pilot.pause()
        assert isinstance(app.screen, QueuedSettingsScreen)
        assert app.screen.query_one("#save").region.bottom <= 24

    run_app(scenario, size=(80, 24))
