"""The Tune screen: change skill ratio, tau and select ratio per concept and see at once what is pruned.

Every change re-selects from the session's kept statistics (:meth:`cpedit.EditSession.select`,
no denoiser call): the pruned count and share update, with a bar chart of pruned weights per
layer. ``p`` re-renders the before/after preview with the current selection (Preview screen);
ctrl+s saves the output with these settings, recorded in the saved recipe copies.

The sweep panel plots measured points (preservation drop -> erased after, the Pareto front
starred): ``w`` loads the ``sweep.json`` of a ``cpedit sweep`` folder, ``t`` runs
:func:`cpedit.tune` for a queued concept in a worker (its own copy of the model; ctrl+x
cancels) and applies the point it picks. Enter on a listed point applies its settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Label, OptionList, Static

from cpedit.errors import Cancelled
from tui.messages import Progress, WorkDone, post_outcome
from tui.screens.base import Pane
from tui.state import TUNABLE, TuneGoal, describe_error
from tui.widgets.layer_chart import LayerChart
from tui.widgets.run_progress import STAGE_WORDS, describe_progress
from tui.widgets.sweep_plot import SweepPlot

FIELD_LABELS = {"skill_ratio": "skill ratio", "timesteps": "tau", "select_ratio": "select"}
NUDGE = {"skill_ratio": 0.005, "timesteps": 1, "select_ratio": 0.1}
"""How much ``+``/``-`` change the focused setting."""


def parse_value(field: str, text: str) -> float | int:
    """The typed value of a setting (tau is an integer).

    Raises:
        ValueError: Not a number.
    """
    return int(text) if field == "timesteps" else float(text)


class PointMeasured(Message):
    """A tune measured a point (its ``to_dict`` form), from the tune worker."""

    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__()
        self.data = data


class ConceptRow(Horizontal):
    """One concept's settings: three inputs and its pruned count."""

    def __init__(self, name: str) -> None:
        super().__init__(classes="tune-row")
        self.concept = name

    def compose(self) -> ComposeResult:
        yield Label(self.concept, classes="tune-name")
        for field in TUNABLE:
            yield Label(FIELD_LABELS[field], classes="tune-label")
            yield Input(
                id=f"tune-{self.concept}-{field}",
                type="integer" if field == "timesteps" else "number",
                classes=f"tune-input tune-{field.replace('_', '-')}",
                compact=True,
                tooltip=f"{FIELD_LABELS[field]} of {self.concept}: enter a value (+/- nudge it)",
            )
        yield Static("", id=f"tune-{self.concept}-count", classes="tune-count")


class TunePane(Pane):
    """Per-concept settings, the live pruned count and the per-layer chart."""

    BINDINGS = [
        Binding("p", "preview", "Preview"),
        Binding("plus", "nudge(1)", "+", show=False),
        Binding("minus", "nudge(-1)", "-", show=False),
        Binding("ctrl+z", "reset", "Recipe values"),
        Binding("w", "load_sweep", "Sweep plot"),
        Binding("t", "auto_tune", "Auto-tune"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._sweep_folder = ""
        self._goal: TuneGoal | None = None
        self._sweep_error = ""

    def compose(self) -> ComposeResult:
        yield Static(id="tune-summary", classes="section-title", markup=False)
        yield VerticalScroll(id="tune-rows")
        yield Static(id="tune-problem", classes="error", markup=False)
        with Horizontal(id="tune-bottom"):
            with VerticalScroll(id="tune-chart-box"):
                yield LayerChart(id="tune-chart", bar_width=16)
            yield SweepPlot(id="tune-sweep")
        yield Static(id="tune-save", classes="muted", markup=False)

    def on_mount(self) -> None:
        self.refresh_state()

    # --- render -------------------------------------------------------------------------

    def refresh_state(self) -> None:
        state = self.state
        rows = self.query_one("#tune-rows", VerticalScroll)
        names = list(state.tune)
        shown = [row.concept for row in rows.query(ConceptRow)]
        if shown != names:
            rows.remove_children()
            rows.mount_all([ConceptRow(name) for name in names])
            self.call_after_refresh(self._fill_inputs)
        else:
            self._fill_counts()
        self._render_summary()
        self._render_sweep()

    def _render_sweep(self) -> None:
        state = self.state
        status = self._sweep_error
        if state.tuning is not None:
            head, detail, _ = describe_progress(state.tune_progress)
            status = f"tuning {state.tuning.recipe} in {state.tune_folder(state.tuning.recipe)} (ctrl+x cancels)\n"
            status += " · ".join(part for part in (head, detail) if part)
        self.query_one(SweepPlot).show(state.points_view, status=status, error=bool(self._sweep_error))

    def _fill_inputs(self) -> None:
        for name, values in self.state.tune.items():
            for field in TUNABLE:
                box = self.query_one(f"#tune-{name}-{field}", Input)
                with box.prevent(Input.Changed):
                    box.value = f"{getattr(values, field):g}"
        self._fill_counts()

    def _fill_counts(self) -> None:
        selection = self.state.selection
        for name in self.state.tune:
            counts = self.query(f"#tune-{name}-count")
            if counts and selection is not None:
                counts.first(Static).update(f"{selection.per_concept.get(name, 0):,} pruned")

    def _render_summary(self) -> None:
        state = self.state
        summary = self.query_one("#tune-summary", Static)
        chart = self.query_one("#tune-chart", LayerChart)
        save = self.query_one("#tune-save", Static)
        if state.session is None or state.selection is None:
            summary.update("nothing calibrated yet: queue recipes and run them (ctrl+r), then tune here")
            chart.show(None, empty="the per-layer chart of pruned weights appears after a run")
            save.update("")
            return
        selection = state.selection
        component = getattr(state.session, "denoiser_component", "model")
        summary.update(
            f"{selection.pruned:,} weights pruned · {selection.fraction:.4%} of the edited components ({component})"
        )
        chart.show(selection.per_layer)
        if state.saved is not None and state.saved_selection is selection:
            save.update(f"saved to {state.saved} with these settings")
        else:
            save.update(f"ctrl+s saves to {state.output_folder()} · p renders the before/after preview")

    # --- change -------------------------------------------------------------------------

    @on(Input.Submitted, ".tune-input")
    @on(Input.Changed, ".tune-input")
    def _value_changed(self, event: Input.Changed | Input.Submitted) -> None:
        field = str(event.input.id).rsplit("-", 1)[-1]
        owner = event.input.parent
        if not isinstance(owner, ConceptRow) or field not in TUNABLE:
            return
        try:
            value = parse_value(field, event.value)
        except ValueError:
            self.query_one("#tune-problem", Static).update(f"{owner.concept} {FIELD_LABELS[field]}: type a number")
            return
        self._retune(owner.concept, field, value)

    def _retune(self, name: str, field: str, value: Any) -> None:
        current = getattr(self.state.tune[name], field)
        if value == current:
            return
        self._select(name, field, value)

    @work(thread=True, exclusive=True, exit_on_error=False, group="select")
    def _select(self, name: str, field: str, value: Any) -> None:
        post_outcome(self, "select", lambda: self.state.set_tune(name, **{field: value}))

    def action_nudge(self, direction: int) -> None:
        """Raise or lower the focused setting by one step."""
        focused = self.app.focused
        if not isinstance(focused, Input) or not isinstance(focused.parent, ConceptRow):
            return
        field = str(focused.id).rsplit("-", 1)[-1]
        try:
            value = parse_value(field, focused.value) + direction * NUDGE[field]
        except ValueError:
            return
        focused.value = f"{round(value, 6):g}"

    def action_reset(self) -> None:
        """Put every concept back to its recipe's own settings."""
        session = self.state.session
        if session is None:
            return
        for recipe in session.recipes:
            for field in TUNABLE:
                box = self.query_one(f"#tune-{recipe.name}-{field}", Input)
                box.value = f"{getattr(recipe.prune, field):g}"

    def action_preview(self) -> None:
        """Re-render the before/after preview with the current selection."""
        from tui.screens.preview import PreviewPane

        if self.state.selection is None:
            self.show_error("run the queue first (ctrl+r)")
            return
        self.cpedit_app.action_show_tab("preview")
        self.cpedit_app.query_one(PreviewPane).action_render()

    # --- sweep plot and auto-tune --------------------------------------------------------

    def action_load_sweep(self) -> None:
        """Plot the points of a sweep folder (``cpedit sweep``'s ``sweep.json``)."""
        from tui.screens.tune_dialogs import SweepFolderScreen

        def chosen(folder: Path | None) -> None:
            if folder is not None:
                self._sweep_folder = str(folder)
                self._sweep_worker(folder)

        self.app.push_screen(SweepFolderScreen(self._sweep_folder), chosen)

    @work(thread=True, exclusive=True, exit_on_error=False, group="sweep")
    def _sweep_worker(self, folder: Path) -> None:
        post_outcome(self, "sweep", lambda: self.state.load_sweep(folder))

    @on(OptionList.OptionSelected, "#sweep-points")
    def _point_chosen(self, event: OptionList.OptionSelected) -> None:
        view = self.state.points_view
        if view is None or event.option_id is None:
            return
        self.apply_point(view.points[int(event.option_id)])

    def apply_point(self, point: Any) -> None:
        """Copy a point's settings into the tune values of its concept(s) and select again."""
        if self.state.session is None:
            self.query_one("#tune-problem", Static).update(f"{point.label}: run the queue first (ctrl+r) to use it")
            return
        self._apply_worker(point)

    @work(thread=True, exclusive=True, exit_on_error=False, group="select")
    def _apply_worker(self, point: Any) -> None:
        post_outcome(self, "apply", lambda: self.state.apply_point(point))

    def action_auto_tune(self) -> None:
        """Ask for a goal, then search the least pruning that meets it (:func:`cpedit.tune`)."""
        from tui.screens.tune_dialogs import TuneGoalScreen

        if not self.state.queue:
            self.show_error("queue a recipe first (Recipes screen, 2)")
            return
        if self.state.tuning is not None:
            self.show_error("a tune is already going (ctrl+x cancels it)")
            return

        def chosen(goal: TuneGoal | None) -> None:
            if goal is not None:
                self.start_tune(goal)

        self.app.push_screen(TuneGoalScreen([item.name for item in self.state.queue], self._goal), chosen)

    def start_tune(self, goal: TuneGoal) -> None:
        """Run a tune for ``goal`` in a worker (its points show as they are measured)."""
        try:
            self.state.start_tune(goal)
        except Exception as exc:  # noqa: BLE001 - shown, the app goes on
            self.show_error(exc)
            return
        self._goal, self._sweep_error = goal, ""
        self._render_sweep()
        self._tune_worker(goal, self.cpedit_app.new_cancel())

    @work(thread=True, exclusive=True, exit_on_error=False, group="tune")
    def _tune_worker(self, goal: TuneGoal, cancel: Any) -> None:
        post_outcome(
            self,
            "tune",
            lambda: self.state.run_tune(
                goal,
                on_point=lambda point: self.post_message(PointMeasured(point.to_dict())),
                on_progress=lambda event: self.post_message(Progress(event, group="tune")),
                cancel=cancel,
            ),
        )

    @on(PointMeasured)
    def _point_measured(self, message: PointMeasured) -> None:
        message.stop()
        self.state.add_tune_point(message.data)
        self._render_sweep()

    # --- save ---------------------------------------------------------------------------

    def save(self) -> None:
        """Save the output with the tuned settings (asks before replacing an existing folder)."""
        from tui.screens.confirm import ConfirmScreen

        if self.state.selection is None:
            self.show_error("nothing to save yet: run the queue first (ctrl+r)")
            return
        out = self.state.output_folder()
        if out.exists():

            def answer(replace: bool | None) -> None:
                if replace:
                    self._save(True)

            self.app.push_screen(ConfirmScreen(f"{out} exists. Replace it?", yes="Replace", no="Keep it"), answer)
            return
        self._save(False)

    def _save(self, overwrite: bool) -> None:
        self.query_one("#tune-save", Static).update(f"saving to {self.state.output_folder()}…")
        self._save_worker(overwrite, self.cpedit_app.new_cancel())

    @work(thread=True, exclusive=True, exit_on_error=False, group="save")
    def _save_worker(self, overwrite: bool, cancel: Any) -> None:
        self.state.route_events(
            on_progress=lambda event: self.post_message(Progress(event, group="save")), cancel=cancel
        )
        post_outcome(self, "save", lambda: self.state.save(overwrite=overwrite))

    @on(Progress)
    def _progress(self, message: Progress) -> None:
        if message.group not in ("save", "tune"):
            return
        message.stop()
        event = message.event
        if message.group == "tune":
            self.state.tune_progress.update(event)
            self._render_sweep()
            return
        done = f" {event.completed}/{event.total} {event.unit or ''}" if event.total else ""
        self.query_one("#tune-save", Static).update(
            f"{STAGE_WORDS.get(event.stage, event.stage)}: {event.message}{done}"
        )

    def on_work_done(self, message: WorkDone) -> None:
        if message.group not in ("select", "save", "sweep", "apply", "tune"):
            return
        message.stop()
        problem = self.query_one("#tune-problem", Static)
        if message.group in ("sweep", "tune", "apply"):
            self._sweep_done(message)
            return
        if message.group == "select":
            if message.ok:
                problem.update("")
            else:
                problem.update(describe_error(message.error))
            self.cpedit_app.refresh_panes()
            return
        if message.ok:
            self.app.notify(f"saved {message.result}", timeout=6)
        else:
            self.show_error(message.error, title="save failed")
        self.cpedit_app.refresh_panes()

    def _sweep_done(self, message: WorkDone) -> None:
        problem = self.query_one("#tune-problem", Static)
        if message.group == "sweep":
            self._sweep_error = "" if message.ok else describe_error(message.error)
        elif message.group == "apply":
            problem.update("" if message.ok else describe_error(message.error))
            if message.ok:
                self._fill_inputs()
        elif message.ok:
            point = self.state.finish_tune(message.result)
            self.app.notify(self.state.points_view.note if self.state.points_view else "tune done", timeout=8)
            if self.state.point_targets():
                self.apply_point(point)
        else:
            text = self.state.fail_tune(message.error)
            if isinstance(message.error, Cancelled):
                self.app.notify(text, timeout=5)
            else:
                self.show_error(describe_error(message.error), title="tune failed")
        self.cpedit_app.refresh_panes()
