"""The Tune screen: change skill ratio, tau and select ratio per concept and see at once what is pruned.

A value typed in a field is checked on the spot and becomes the concept's tune value; a worker
then re-selects from the session's kept statistics (:meth:`cpedit.EditSession.select`, no
denoiser call). Its answer carries the values it was computed for and is shown only if they
are still the values in the fields (a newer request replaces an older one, which stops). The
pruned count and share, the per-layer chart, ``p`` (the before/after preview) and ctrl+s (the
saved output, with these settings in its recipe copies and report) all follow the values in
the fields; while a selection for them is computing, the screen says so, and ctrl+s and ``p``
compute it themselves.

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
from textual.widgets import Input, Label, OptionList, Static

from cpedit.errors import CpeditError
from cpedit.progress import ProgressEvent
from tui.messages import (
    PointMeasured,
    SaveFinished,
    SaveProgressed,
    SelectionReady,
    SweepLoaded,
    TuneFinished,
    TuneProgressed,
)
from tui.screens.base import Pane, job_cancel
from tui.session_jobs import SessionJobs, Tuned, TuneSet
from tui.state import TUNABLE, TuneGoal, TuneJob, describe_error, read_points, run_tune
from tui.widgets.layer_chart import LayerChart
from tui.widgets.run_progress import STAGE_WORDS, describe_progress
from tui.widgets.sweep_plot import SweepPlot

FIELD_LABELS = {"skill_ratio": "skill ratio", "timesteps": "tau", "select_ratio": "select"}
NUDGE = {"skill_ratio": 0.005, "timesteps": 1, "select_ratio": 0.1}
"""How much ``+``/``-`` change the focused setting."""


def value_problem(concept: str, field: str, error: CpeditError) -> str:
    """What the problem line says about a value the session refuses (with how to tune tau further)."""
    text = str(error).removeprefix(f"{concept}: ")
    if error.argument == "timesteps":
        text += "; to tune tau up to N, start cpedit tui with --timesteps N"
    return f"{concept} {FIELD_LABELS[field]}: {text}"


def parse_value(field: str, text: str) -> float | int:
    """The typed value of a setting (tau is an integer).

    Raises:
        ValueError: Not a number.
    """
    return int(text) if field == "timesteps" else float(text)


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
        Binding("plus", "nudge(1)", "Raise the value", show=False),
        Binding("minus", "nudge(-1)", "Lower the value", show=False),
        Binding("ctrl+z", "reset", "Recipe values"),
        Binding("w", "load_sweep", "Sweep plot"),
        Binding("t", "auto_tune", "Auto-tune"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._sweep_folder = ""
        self._sweep_request: Path | None = None
        self._goal: TuneGoal | None = None
        self._sweep_error = ""
        self._problems: dict[tuple[str, str], str] = {}
        """Per (concept, field), why the text in that field is not a value (the tune value stays the last good one)."""
        self._note = ""
        """A message about the last re-selection or point applied (shown under the fields' problems)."""
        self._saving = False
        self._save_line = ""

    def compose(self) -> ComposeResult:
        yield Static(id="tune-summary", classes="section-title", markup=False)
        yield VerticalScroll(id="tune-rows", can_focus=False)
        yield Static(id="tune-problem", classes="error", markup=False)
        with Horizontal(id="tune-bottom"):
            with VerticalScroll(id="tune-chart-box"):
                yield LayerChart(id="tune-chart")
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
            self._problems.clear()
            rows.remove_children()
            rows.mount_all([ConceptRow(name) for name in names])
            self.call_after_refresh(self._fill_inputs)
        else:
            self._fill_counts()
        self._render_summary()
        self._render_problems()
        self._render_sweep()

    def _render_sweep(self) -> None:
        state = self.state
        status = self._sweep_error
        if state.tuning is not None:
            head, detail, _ = describe_progress(state.tune_progress)
            status = f"tuning {state.tuning.recipe} in {state.tuning_folder} (ctrl+x cancels)\n"
            status += " · ".join(part for part in (head, detail) if part)
        self.query_one(SweepPlot).show(state.points_view, status=status, error=bool(self._sweep_error))

    def _fill_inputs(self) -> None:
        """Show the tune values in the fields (a value set here is no edit: it starts nothing)."""
        for name, values in self.state.tune.items():
            for field in TUNABLE:
                boxes = self.query(f"#tune-{name}-{field}")
                if boxes:
                    box = boxes.first(Input)
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
        if state.running:
            summary.update("a run is going: tune here when it has calibrated (its progress is on screen 3)")
            chart.show(None, empty="the per-layer chart of pruned weights appears when the run ends")
        elif state.session is None or state.selection is None:
            summary.update("nothing calibrated yet: queue recipes and run them (ctrl+r), then tune here")
            chart.show(None, empty="the per-layer chart of pruned weights appears after a run")
        else:
            selection = state.selection
            component = getattr(state.session, "denoiser_component", "model")
            pending = "" if state.current_tuned() is not None else " · selecting for the values below…"
            summary.update(
                f"{selection.pruned:,} weights pruned · {selection.fraction:.4%} of the edited components "
                f"({component}){pending}"
            )
            chart.show(selection.per_layer)
        self._render_save_line()

    def _render_save_line(self) -> None:
        state = self.state
        save = self.query_one("#tune-save", Static)
        if self._saving or self._save_line:
            save.update(self._save_line)
        elif state.session is None or state.running:
            save.update("")
        elif state.saved_is_current():
            warning = state.collapse_warning()
            tail = f"\nWARNING: {warning}" if warning else ""
            save.update(f"saved to {state.saved} with these settings{tail}")
        else:
            save.update(f"ctrl+s saves to {state.output_folder()} · p previews · tab edits the values")

    def _render_problems(self) -> None:
        lines = [*self._problems.values(), *([self._note] if self._note else [])]
        self.query_one("#tune-problem", Static).update("\n".join(lines))

    # --- change -------------------------------------------------------------------------

    @on(Input.Submitted, ".tune-input")
    @on(Input.Changed, ".tune-input")
    def _value_changed(self, event: Input.Changed | Input.Submitted) -> None:
        field = str(event.input.id).rsplit("-", 1)[-1]
        owner = event.input.parent
        if not isinstance(owner, ConceptRow) or field not in TUNABLE or owner.concept not in self.state.tune:
            return
        key = (owner.concept, field)
        where = f"{owner.concept} {FIELD_LABELS[field]}"
        try:
            changed = self.state.set_tune(owner.concept, **{field: parse_value(field, event.value)})
        except ValueError:
            self._problems[key] = f"{where}: type a{'n integer' if field == 'timesteps' else ' number'}"
        except CpeditError as exc:
            self._problems[key] = value_problem(owner.concept, field, exc)
        else:
            self._problems.pop(key, None)
            self._note = ""
            if changed:
                self.reselect()
        self._render_problems()
        self._render_summary()

    def reselect(self) -> None:
        """Select for the tune values now, in a worker (a newer request replaces this one)."""
        jobs = self.state.jobs
        if jobs is not None:
            self._select(jobs, self.state.values)

    @work(thread=True, exclusive=True, exit_on_error=False, group="select")
    def _select(self, jobs: SessionJobs, values: TuneSet) -> None:
        cancel = job_cancel()
        self.post_message(SelectionReady.of(lambda: jobs.select(values, cancel=cancel), values=values))

    def on_selection_ready(self, message: SelectionReady) -> None:
        message.stop()
        if message.cancelled:
            return  # a newer request replaced it
        if message.result is not None:
            self.cpedit_app.take(message.result)
        elif message.values == self.state.values:
            self._note = f"selecting failed: {describe_error(message.error)}"  # type: ignore[arg-type]
            self._render_problems()

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
        if self.state.session is None:
            return
        changed = self.state.reset_tune()
        self._values_set(changed)

    def _values_set(self, changed: bool) -> None:
        """The tune values were set from outside the fields: show them there, and select for them."""
        self._problems.clear()
        self._note = ""
        self._fill_inputs()
        if changed:
            self.reselect()
        self._render_problems()
        self._render_summary()

    def action_preview(self) -> None:
        """Render the before/after preview with the values in the fields."""
        from tui.screens.preview import PreviewPane

        if self.state.session is None:
            self.show_error("run the queue first (ctrl+r)")
            return
        if self._problems:
            self.show_error(self._fix_first())
            return
        self.cpedit_app.action_show_tab("preview")
        self.app.query_one(PreviewPane).action_render()

    def _fix_first(self) -> str:
        return f"fix the values first: {next(iter(self._problems.values()))} (ctrl+z puts the recipe values back)"

    # --- sweep plot and auto-tune --------------------------------------------------------

    def action_load_sweep(self) -> None:
        """Plot the points of a sweep folder (``cpedit sweep``'s ``sweep.json``)."""
        from tui.screens.tune_dialogs import SweepFolderScreen

        def chosen(folder: Path | None) -> None:
            if folder is not None:
                self._sweep_folder = str(folder)
                self._sweep_request = folder
                self._sweep_worker(folder)

        self.app.push_screen(SweepFolderScreen(self._sweep_folder), chosen)

    @work(thread=True, exclusive=True, exit_on_error=False, group="sweep")
    def _sweep_worker(self, folder: Path) -> None:
        self.post_message(SweepLoaded.of(lambda: read_points(folder), folder=folder))

    def on_sweep_loaded(self, message: SweepLoaded) -> None:
        message.stop()
        if message.folder != self._sweep_request:
            return  # another folder was asked for meanwhile
        if message.result is not None:
            self._sweep_error = ""
            self.state.show_points(message.result, message.folder)
        else:
            self._sweep_error = describe_error(message.error)  # type: ignore[arg-type]
        self.cpedit_app.refresh_panes()

    @on(OptionList.OptionSelected, "#sweep-points")
    def _point_chosen(self, event: OptionList.OptionSelected) -> None:
        view = self.state.points_view
        if view is None or event.option_id is None:
            return
        self.apply_point(view.points[int(event.option_id)])

    def apply_point(self, point: Any) -> None:
        """Copy a point's settings into the tune values of its concept(s) and select again."""
        try:
            changed = self.state.apply_point(point)
        except CpeditError as exc:
            self._note = f"{point.label}: {exc}"
            self._render_problems()
            return
        self._values_set(changed)

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
            job = self.state.start_tune(goal)
        except CpeditError as exc:
            self.show_error(exc)
            return
        self._goal, self._sweep_error = goal, ""
        self._render_sweep()
        self._tune_worker(job)

    @work(thread=True, exit_on_error=False, group="tune")  # one at a time: refused while one is going
    def _tune_worker(self, job: TuneJob) -> None:
        cancel = job_cancel()

        def on_point(point: Any) -> None:
            self.post_message(PointMeasured(point.to_dict()))

        def on_progress(event: ProgressEvent) -> None:
            self.post_message(TuneProgressed(event))

        self.post_message(
            TuneFinished.of(
                lambda: run_tune(
                    job,
                    on_point=on_point,
                    on_progress=on_progress,
                    cancel=cancel,
                )
            )
        )

    def on_point_measured(self, message: PointMeasured) -> None:
        message.stop()
        self.state.add_tune_point(message.data)
        self._render_sweep()

    def on_tune_progressed(self, message: TuneProgressed) -> None:
        message.stop()
        self.state.tune_progress.update(message.event)
        self._render_sweep()

    def on_tune_finished(self, message: TuneFinished) -> None:
        message.stop()
        if message.result is not None:
            point = self.state.finish_tune(message.result)
            self.app.notify(self.state.points_view.note if self.state.points_view else "tune done", timeout=8)
            if self.state.point_targets():
                self.apply_point(point)
        else:
            text = self.state.fail_tune(message.error)  # type: ignore[arg-type]
            if message.cancelled:
                self.app.notify(text, timeout=5)
            else:
                self.show_error(describe_error(message.error), title="tune failed")  # type: ignore[arg-type]
        self.cpedit_app.refresh_panes()

    # --- save ---------------------------------------------------------------------------

    def save(self) -> None:
        """Save the output with the values in the fields (asks before replacing an existing folder)."""
        from tui.screens.confirm import ConfirmScreen

        problem = self._save_problem()
        if problem:
            self.show_error(problem)
            return
        values, out = self.state.values, self.state.output_folder()  # what the fields hold now
        if out.exists():

            def answer(replace: bool | None) -> None:
                if replace:
                    self._start_save(values, out, overwrite=True)

            self.app.push_screen(ConfirmScreen(f"{out} exists. Replace it?", yes="Replace", no="Keep it"), answer)
            return
        self._start_save(values, out, overwrite=False)

    def _save_problem(self) -> str | None:
        """Why the output cannot be saved now, or None."""
        if self.state.running:
            return "a run is going: save when it has calibrated"
        if self.state.session is None:
            return "nothing to save yet: run the queue first (ctrl+r)"
        if self._problems:
            return self._fix_first()
        if self._saving:
            return "a save is going (ctrl+x cancels it)"
        return None

    def _start_save(self, values: TuneSet, out: Path, *, overwrite: bool) -> None:
        jobs = self.state.jobs
        if jobs is None or values != self.state.values:
            self.show_error("the calibration changed meanwhile: nothing was saved")
            return
        self._saving = True
        self._save_line = f"saving to {out}…"
        self._render_save_line()
        self._save_worker(jobs, values, self.state.current_tuned(), out, overwrite)

    @work(thread=True, exit_on_error=False, group="save")  # one at a time: refused while one is going
    def _save_worker(self, jobs: SessionJobs, values: TuneSet, tuned: Tuned | None, out: Path, overwrite: bool) -> None:
        cancel = job_cancel()

        def on_progress(event: ProgressEvent) -> None:
            self.post_message(SaveProgressed(event))

        self.post_message(
            SaveFinished.of(
                lambda: jobs.save(values, tuned, out, overwrite=overwrite, on_progress=on_progress, cancel=cancel)
            )
        )

    def on_save_progressed(self, message: SaveProgressed) -> None:
        message.stop()
        event = message.event
        done = f" {event.completed}/{event.total} {event.unit or ''}" if event.total else ""
        self._save_line = f"{STAGE_WORDS.get(event.stage, event.stage)}: {event.message}{done}"
        self._render_save_line()

    def on_save_finished(self, message: SaveFinished) -> None:
        message.stop()
        self._saving = False
        self._save_line = ""
        if message.result is not None:
            self.state.finish_save(message.result)
            warning = self.state.collapse_warning()
            if warning:
                self.app.notify(f"saved {message.result.path}, but {warning}", severity="warning", timeout=12)
            else:
                self.app.notify(f"saved {message.result.path}", timeout=6)
        elif message.cancelled:
            self._save_line = "save cancelled: nothing was written"
        else:
            self._save_line = f"save failed: {describe_error(message.error)}"  # type: ignore[arg-type]
            self.show_error(message.error, title="save failed")  # type: ignore[arg-type]
        self.cpedit_app.refresh_panes()
