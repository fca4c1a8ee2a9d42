"""The Queue screen: the queued concepts, the run (ctrl+r) with nested progress, and its log.

All queued concepts run as one multi-concept job (:meth:`cpedit.EditSession.open` then
``calibrate``) in a thread worker; progress events come back as messages and update the
table (queued, calibrating, done, failed), the progress view and the log. ctrl+x cancels:
calibration stops at the next denoiser call, nothing is written, and the progress view says
so. A failed run marks the concept it was on with its error; the rest of the app stays
usable. A run that ends well says what to do next (tune, preview, and where ctrl+s saves).
"""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, RichLog, Static

from cpedit.progress import ProgressEvent
from tui.messages import RunFinished, RunProgressed, SessionOpened
from tui.screens.base import Pane, job_cancel
from tui.state import QueueItem, RunPlan, calibrate, describe_error, memory_in_use
from tui.widgets.run_progress import RunProgressView

STATUS_STYLE = {"queued": "dim", "calibrating": "bold yellow", "done": "bold green", "failed": "bold red"}
MEMORY_EVERY = 0.5
"""Seconds between two memory readings during a run."""


class QueuePane(Pane):
    """The queue table, the run's progress and the log."""

    INITIAL_FOCUS = "#queue-table"
    BINDINGS = [
        Binding("e", "edit", "Edit settings"),
        Binding("delete", "remove", "Remove"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._logged = 0

    def compose(self) -> ComposeResult:
        yield Static(id="queue-title", classes="section-title", markup=False)
        yield DataTable(id="queue-table", cursor_type="row", zebra_stripes=True)
        yield Static(id="queue-error", classes="error", markup=False)
        yield RunProgressView(id="queue-progress")
        yield RichLog(id="queue-log", wrap=True, markup=False, max_lines=500)

    def on_mount(self) -> None:
        table = self.query_one("#queue-table", DataTable)
        table.add_columns("concept", "kind", "pairs", "skill ratio", "tau", "steps", "status", "from")
        self.refresh_state()

    def refresh_state(self) -> None:
        state = self.state
        table = self.query_one("#queue-table", DataTable)
        cursor = table.cursor_row
        table.clear()
        for item in state.queue:
            table.add_row(*self._row(item), key=item.name)
        if state.queue:
            table.move_cursor(row=min(cursor, len(state.queue) - 1))
        running = " · running (ctrl+x cancels)" if state.running else ""
        self.query_one("#queue-title", Static).update(
            f"{len(state.queue)} concept(s) queued on {state.model}{running}"
            + ("" if state.queue or state.running else " · add recipes on the Recipes screen (2)")
        )
        failed = [item for item in state.queue if item.status == "failed"]
        self.query_one("#queue-error", Static).update("\n".join(f"✗ {item.name}: {item.error}" for item in failed))
        self.query_one(RunProgressView).show(state.progress)
        log = self.query_one("#queue-log", RichLog)
        for line in state.log[self._logged :]:
            log.write(line)
        self._logged = len(state.log)

    @staticmethod
    def _row(item: QueueItem) -> tuple[Any, ...]:
        recipe = item.recipe
        return (
            recipe.name,
            recipe.kind,
            str(len(recipe.targets)),
            f"{recipe.prune.skill_ratio:g}",
            str(recipe.prune.timesteps),
            str(recipe.sampling.steps),
            Text(item.status, style=STATUS_STYLE[item.status]),
            item.origin,
        )

    def _highlighted(self) -> str | None:
        table = self.query_one("#queue-table", DataTable)
        if not table.row_count:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    # --- edit ---------------------------------------------------------------------------

    def action_edit(self) -> None:
        """Edit the prune and sampling settings of the highlighted queued copy."""
        from tui.screens.settings_form import QueuedSettingsScreen

        name = self._highlighted()
        if name is None:
            self.app.notify("the queue is empty", timeout=3)
            return
        if self.state.running:
            self.show_error("a run is going; edit settings when it ends")
            return
        self.app.push_screen(QueuedSettingsScreen(name), lambda _: self.cpedit_app.refresh_panes())

    def action_remove(self) -> None:
        """Remove the highlighted concept from the queue."""
        name = self._highlighted()
        if name is None:
            return
        try:
            self.state.unqueue(name)
        except Exception as exc:  # noqa: BLE001 - shown, the app goes on
            self.show_error(exc)
            return
        self.cpedit_app.refresh_panes()

    # --- run ----------------------------------------------------------------------------

    def start_run(self) -> None:
        """Run every queued concept as one job (ctrl+r)."""
        try:
            plan = self.state.start_run()
        except Exception as exc:  # noqa: BLE001 - shown, the app goes on
            self.show_error(exc)
            return
        self.cpedit_app.refresh_panes()
        self._run(plan)

    @work(thread=True, exit_on_error=False, group="run")  # one at a time: refused while one is going
    def _run(self, plan: RunPlan) -> None:
        cancel = job_cancel()
        device = [plan.compute.device]
        last_reading = [0.0]

        def on_progress(event: ProgressEvent) -> None:
            memory = None
            now = time.monotonic()
            if now - last_reading[0] >= MEMORY_EVERY:
                last_reading[0] = now
                memory = memory_in_use(device[0])
            self.post_message(RunProgressed(event, memory_bytes=memory))

        def on_open(session: Any) -> None:
            device[0] = str(session.pipeline.device)
            self.post_message(SessionOpened(device[0]))

        self.post_message(
            RunFinished.of(lambda: calibrate(plan, on_progress=on_progress, cancel=cancel, on_open=on_open))
        )

    def on_run_progressed(self, message: RunProgressed) -> None:
        message.stop()
        self.state.apply_event(message.event)
        if message.memory_bytes is not None:
            self.state.note_device(self.state.progress.device, message.memory_bytes)
        self.refresh_state()

    @on(SessionOpened)
    def _opened(self, message: SessionOpened) -> None:
        message.stop()
        self.state.note_device(message.device, memory_in_use(message.device))
        self.refresh_state()

    def on_run_finished(self, message: RunFinished) -> None:
        message.stop()
        if message.result is not None:
            after = self.state.finish_run(message.result)
            selection = message.result.selection
            self.app.notify(
                f"calibrated: {selection.pruned:,} weights selected ({selection.fraction:.3%}); {after}", timeout=10
            )
        else:
            self.state.fail_run(message.error)  # type: ignore[arg-type]
            if message.cancelled:
                self.app.notify("run cancelled: nothing was written", timeout=5)
            else:
                self.show_error(describe_error(message.error), title="run failed")  # type: ignore[arg-type]
        self.cpedit_app.refresh_panes()
