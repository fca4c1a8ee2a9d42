"""The Preview screen: the base and the edited model side by side, for each preview prompt and any seed.

Rendering runs :meth:`tui.session_jobs.SessionJobs.sample_pair` in a thread worker (a few denoising
steps per image; the session holds the model) with the tune values in the Tune screen's fields; a
newer render replaces one in progress, which stops. The per-layer summary says where the tuned
selection prunes, so a re-tune on the Tune screen shows here at once; the images it made stale are
dimmed until they are rendered again.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widget import Widget
from textual.widgets import DataTable, Label, Select, Static
from textual_image.widget import HalfcellImage, Image

from cpedit.progress import ProgressEvent
from tui.messages import PreviewRendered, RenderProgressed
from tui.screens.base import Pane, job_cancel
from tui.session_jobs import Rendered, SessionJobs, Tuned, TuneSet
from tui.state import PREVIEW_STEPS, describe_error

TOP_LAYERS = 8
"""How many layers the summary lists (the most pruned first)."""
RUN_FIRST = "Nothing to preview yet: queue concepts on the Recipes screen, then run the queue first (ctrl+r)."
PRESS_R = "press r to render this prompt with the base and the edited model"


def summary_rows(selection: Any, top: int = TOP_LAYERS) -> list[tuple[str, int, float]]:
    """(layer, pruned weights, share of all pruned) for the ``top`` most pruned layers of a selection."""
    ranked = sorted(selection.per_layer.items(), key=lambda item: (-item[1], item[0]))[:top]
    total = selection.pruned or 1
    return [(layer, count, count / total) for layer, count in ranked]


def summary_totals(selection: Any, top: int = TOP_LAYERS) -> str:
    """The summary's last line: weights pruned in all, their share of the edited components, how many layers."""
    layers = len(selection.per_layer)
    more = f" ({layers - top} more not listed)" if layers > top else ""
    return (
        f"{selection.pruned:,} weights pruned in all, {selection.fraction:.3%} of the edited components, "
        f"in {layers} layer{'s' if layers != 1 else ''}{more}"
    )


class PreviewPane(Pane):
    """Before/after images of the tuned selection, with the prompt and seed, and where it prunes."""

    can_focus = True
    BINDINGS = [
        Binding("r", "render", "Render"),
        Binding("n", "next_seed", "Next seed"),
    ]

    def __init__(self) -> None:
        super().__init__(id="preview-pane")
        self.seed = 0
        """The seed of the next render (the caption shows the one of the images on screen)."""
        self.rendering = False
        self._request = 0
        self._shown: Tuned | None = None
        """The selection of the images on screen (with the values it was computed for)."""
        self._prompts: list[str] = []

    # --- layout -------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        image_class = HalfcellImage if self.cpedit_app.image_mode == "halfcell" else Image
        yield Static(RUN_FIRST, id="preview-hint")
        with VerticalScroll(id="preview-body"):
            with Horizontal(id="preview-controls"):
                yield Label("prompt", classes="field-label")
                yield Select([], prompt="preview prompt", allow_blank=True, compact=True, id="preview-prompt")
                yield Label("seed 0", id="preview-seed")
            yield Static(PRESS_R, id="preview-status", classes="muted", markup=False)
            with Horizontal(id="preview-images"):
                for side in ("base", "edited"):
                    with Vertical(classes="preview-side"):
                        yield Label(side, classes="section-title preview-side-label")
                        yield image_class(id=f"preview-{side}", classes="preview-image")
            yield Static("", id="preview-caption", markup=False)
            yield Label("where the selection prunes", classes="section-title")
            yield DataTable(id="preview-layers", cursor_type="none", zebra_stripes=True, show_cursor=False)
            yield Static("", id="preview-totals")

    def on_mount(self) -> None:
        table = self.query_one("#preview-layers", DataTable)
        table.add_column("layer", key="layer")
        table.add_column("pruned", key="pruned")
        table.add_column("share", key="share")
        self.refresh_state()

    def on_show(self) -> None:
        """Take the focus when the tab opens, so the screen's keys work at once."""
        focused = self.app.focused
        if focused is None or (focused is not self and self not in focused.ancestors):
            self.focus()

    # --- rendering the state ------------------------------------------------------------

    def refresh_state(self) -> None:
        """Show the hint before a run; after one, the prompts, the summary and whether the images are stale."""
        selection = self.state.selection
        self.set_class(selection is None, "-empty")
        if selection is None:
            self._prompts = []
            self._set_prompts([])
            self._clear_images()
            self._show_summary(None)
            return
        prompts = self.state.preview_prompts()
        if prompts != self._prompts:
            self._prompts = prompts
            self._set_prompts(prompts)
        self._show_summary(selection)
        shown = self._shown
        stale = shown is not None and (shown.jobs, shown.values) != (self.state.jobs, self.state.values)
        self.query_one("#preview-images").set_class(stale, "-stale")
        if stale and not self.rendering:
            self._status("the selection changed since these images: press r to render again", "warning")

    def _set_prompts(self, prompts: list[str]) -> None:
        select = self.query_one("#preview-prompt", Select)
        with self.prevent(Select.Changed):
            select.set_options((prompt, index) for index, prompt in enumerate(prompts))
            if prompts:
                select.value = 0

    def _clear_images(self) -> None:
        for side in ("base", "edited"):
            self.query_one(f"#preview-{side}").image = None  # type: ignore[attr-defined]
        self._shown = None
        self.query_one("#preview-caption", Static).update("")
        self.query_one("#preview-images").set_class(False, "-stale")
        self._status(PRESS_R)

    def _show_summary(self, selection: Any | None) -> None:
        table = self.query_one("#preview-layers", DataTable)
        table.clear()
        totals = self.query_one("#preview-totals", Static)
        if selection is None:
            totals.update("")
            return
        for layer, count, share in summary_rows(selection):
            table.add_row(layer, Text(f"{count:,}", justify="right"), Text(f"{share:.1%}", justify="right"), key=layer)
        totals.update(summary_totals(selection))

    def _status(self, text: str, kind: str = "muted") -> None:
        status = self.query_one("#preview-status", Static)
        status.update(text)
        for name in ("muted", "warning", "error"):
            status.set_class(name == kind, name)

    @property
    def prompt(self) -> str | None:
        """The chosen preview prompt (None before a run)."""
        value = self.query_one("#preview-prompt", Select).value
        if isinstance(value, int) and 0 <= value < len(self._prompts):
            return self._prompts[value]
        return self._prompts[0] if self._prompts else None

    # --- actions ------------------------------------------------------------------------

    def action_render(self) -> None:
        """Render the chosen prompt at the current seed with the base and the edited model (a render in
        progress is replaced)."""
        prompt = self.prompt
        jobs = self.state.jobs
        if jobs is None or prompt is None:
            self.show_error("run the queue first (ctrl+r): there is no edited model to preview yet", title="preview")
            return
        self.rendering = True
        self._request += 1
        self.query_one("#preview-images").loading = True
        self._status(f"rendering “{prompt}” at seed {self.seed}…")
        self._sample(jobs, self.state.values, self.state.current_tuned(), self._request, prompt, self.seed)

    def action_next_seed(self) -> None:
        """Try the next seed (and render it)."""
        self.seed += 1
        self.query_one("#preview-seed", Label).update(f"seed {self.seed}")
        self.action_render()

    def on_select_changed(self, event: Select.Changed) -> None:
        """Choosing another prompt renders it (when there is something to render)."""
        event.stop()
        if self.state.selection is not None:
            self.action_render()

    @work(thread=True, exclusive=True, exit_on_error=False, group="preview")
    def _sample(
        self, jobs: SessionJobs, values: TuneSet, tuned: Tuned | None, request: int, prompt: str, seed: int
    ) -> None:
        """Sample the base and the edited model for ``values`` (blocking, in a thread).

        The session's events come here while it renders; ctrl+x, or a newer render, stops it at the next
        denoising step.
        """
        cancel = job_cancel()

        def on_progress(event: ProgressEvent) -> None:
            self.post_message(RenderProgressed(event))

        self.post_message(
            PreviewRendered.of(
                lambda: jobs.sample_pair(
                    values, tuned, prompt, seed=seed, steps=PREVIEW_STEPS, on_progress=on_progress, cancel=cancel
                ),
                request=request,
            )
        )

    def on_render_progressed(self, message: RenderProgressed) -> None:
        """Show how far the render is (denoising steps of the base, then the edited image)."""
        message.stop()
        event = message.event
        if event.stage == "sample" and event.total and self.rendering:
            self._status(f"rendering {event.concept or ''} image: {event.completed}/{event.total} {event.unit or ''}")

    def on_preview_rendered(self, message: PreviewRendered) -> None:
        """Show a finished render (or its error); an answer to an older request is dropped."""
        message.stop()
        if message.request != self._request:
            return  # replaced by a newer render
        self.rendering = False
        self.query_one("#preview-images").loading = False
        if message.result is not None:
            self._show(message.result)
            self.cpedit_app.take(message.result.tuned)
        elif message.cancelled:
            self._status("render cancelled; press r to render again")
        else:
            why = describe_error(message.error)  # type: ignore[arg-type]
            self._status(f"the render failed: {why} · press r to try again", "error")
            self.show_error(message.error, title="preview")  # type: ignore[arg-type]

    def _show(self, rendered: Rendered) -> None:
        for side, picture in (("base", rendered.base), ("edited", rendered.edited)):
            image: Widget = self.query_one(f"#preview-{side}")
            image.image = picture  # type: ignore[attr-defined]
        self._shown = rendered.tuned
        self.query_one("#preview-caption", Static).update(f"“{rendered.prompt}”  ·  seed {rendered.seed}")
        self._status("n: next seed  ·  r: render again  ·  choose another prompt above")
        self.refresh_state()  # stale already if the values changed while it rendered
