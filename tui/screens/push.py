"""The Push screen: publish the saved output to the Hub, with its generated model card.

What is published is chosen on the screen: the weights (the whole edited model), or the edit only
(its record, a few MB, which ``cpedit apply`` turns back into the model on its base).

Who you are logged in as is asked once in a thread worker (the token is never read or shown here:
huggingface_hub finds it). The repo id is checked as you type, the card is rebuilt for it in a worker
(the base model's license may come from the Hub), and the push streams ``upload`` events into a
byte progress bar; ctrl+x stops it before the commit, so nothing is half-published. Each push's
outcome, a failure with its reason above all, stays in the screen's log (a notification goes away).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Checkbox, Input, Label, Markdown, ProgressBar, RichLog, Select, Static, Switch

from cpedit import ComputeOptions
from cpedit.errors import CpeditError
from cpedit.hub import HubError, check_repo_id, whoami
from cpedit.output import read_output
from cpedit.progress import ProgressEvent
from tui.messages import CardBuilt, LoginChecked, PreviewWritten, PushFinished, PushProgressed
from tui.screens.base import Pane, job_cancel
from tui.session_jobs import SessionJobs
from tui.state import Saved, build_card, describe_error, push_output, render_saved_preview

NOT_LOGGED_IN = "not logged in: run `hf auth login` or set HF_TOKEN"
SAVE_FIRST = "save the output first (ctrl+s): the push publishes the saved folder"
NO_PREVIEW = "no before/after preview in this output yet (the card shows none)"
PUBLISH_CHOICES = [("weights (the whole model)", "weights"), ("edit only (a few MB; applied to the base)", "edit")]
"""What a push publishes: the edited model's weights, or the edit alone (``cpedit apply`` rebuilds the model)."""


def login_line(result: str | None, error: BaseException | None) -> tuple[str, str]:
    """(text, style class) of the login line from whoami's answer; never anything from the token."""
    if error is None:
        return f"logged in as {result}", "ok"
    if isinstance(error, HubError) and getattr(error, "reason", None) == "auth":
        return NOT_LOGGED_IN, "error"
    message = str(error) if isinstance(error, CpeditError) else type(error).__name__
    return f"login not checked: {message}", "warning"


def repo_check(repo_id: str) -> tuple[bool, str]:
    """Whether ``repo_id`` is a valid ``NAMESPACE/NAME`` and what to say about it (no network call)."""
    if not repo_id:
        return False, "give the repo id as NAMESPACE/NAME"
    try:
        check_repo_id(repo_id)
    except CpeditError as exc:
        return False, str(exc)
    return True, f"✓ {repo_id}"


def card_for_view(card: str) -> str:
    """The card as the Markdown view shows it: the YAML metadata block as a fenced block, not a stray rule."""
    if card.startswith("---\n"):
        end = card.find("\n---", 4)
        if end != -1:
            return f"```yaml\n{card[4:end]}\n```\n{card[end + 4 :]}"
    return card


def preview_missing(saved: Path | None) -> bool:
    """Whether the saved output exists but holds no preview image (an incomplete folder counts as not saved)."""
    if saved is None:
        return False
    try:
        return read_output(saved).preview is None
    except CpeditError:
        return False


class PushPane(Pane):
    """Publish the saved output: repo id, visibility, branch or PR, the card, then the upload."""

    can_focus = True
    BINDINGS = [
        Binding("ctrl+u", "push", "Push", priority=True),
        Binding("v", "render_preview", "Render preview"),
        Binding("l", "check_login", "Check login"),
    ]

    def __init__(self) -> None:
        super().__init__(id="push-pane")
        self.pushing = False
        self.result: Any | None = None
        """The last :class:`cpedit.publish.PushResult`."""
        self._card_request = 0
        self._card_key: tuple[str, int, str | None, bool] | None = None
        self._pushed_to = ""

    # --- layout -------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Vertical(id="push-form"):
            yield Static("checking who you are logged in as…", id="push-login", classes="muted", markup=False)
            yield Static(SAVE_FIRST, id="push-saved", markup=False)
            with Horizontal(id="push-preview-row"):
                yield Button("Render preview (v)", id="push-render-preview", compact=True)
                yield Static(NO_PREVIEW, id="push-preview-note", classes="muted")
            with Horizontal(classes="push-row"):
                yield Label("publish", classes="field-label")
                yield Select(PUBLISH_CHOICES, value="weights", allow_blank=False, id="push-what", compact=True)
            with Horizontal(classes="push-row"):
                yield Label("repo id", classes="field-label")
                yield Input(placeholder="NAMESPACE/NAME", id="push-repo", compact=True)
            yield Static("give the repo id as NAMESPACE/NAME", id="push-repo-check", classes="muted", markup=False)
            with Horizontal(classes="push-row"):
                yield Label("branch", classes="field-label")
                yield Input(placeholder="main", id="push-branch", compact=True)
                yield Label("private", classes="field-label push-private-label")
                yield Switch(id="push-private")
                yield Checkbox("open a pull request", id="push-pr", compact=True)
            with Horizontal(classes="push-row", id="push-go-row"):
                yield Button("Push (ctrl+u)", id="push-go", variant="primary", compact=True)
                yield ProgressBar(id="push-progress", show_eta=True)
            yield Static("", id="push-status", classes="muted", markup=False)
            yield Static("", id="push-url")
            yield RichLog(id="push-log", wrap=True, markup=False, max_lines=200)
        yield Label("model card", classes="section-title")
        with VerticalScroll(id="push-card-scroll"):
            yield Markdown("", id="push-card")

    def on_mount(self) -> None:
        self.query_one("#push-progress").display = False
        self.query_one("#push-log").display = False
        self.action_check_login()
        self.refresh_state()

    def on_show(self) -> None:
        """Take the focus when the tab opens (keys work at once) and re-read the output (a preview may be new)."""
        focused = self.app.focused
        if focused is None or (focused is not self and self not in focused.ancestors):
            self.focus()
        self.refresh_state()

    # --- the state ----------------------------------------------------------------------

    @property
    def repo_id(self) -> str:
        """The repo id as typed (stripped)."""
        return self.query_one("#push-repo", Input).value.strip()

    @property
    def edit_only(self) -> bool:
        """Whether the push publishes the edit alone (no weights)."""
        return self.query_one("#push-what", Select).value == "edit"

    def refresh_state(self) -> None:
        """Saved or not, preview or not (an edit alone publishes none), and the card for the repo id typed."""
        saved = self.state.saved
        self.query_one("#push-saved", Static).update(f"output: {saved}" if saved else SAVE_FIRST)
        self.query_one("#push-saved").set_class(saved is None, "warning")
        self.query_one("#push-preview-row").display = not self.edit_only and preview_missing(saved)
        self._refresh_card()

    def on_select_changed(self, event: Select.Changed) -> None:
        """Weights or edit only: the card (and the preview offer) follow."""
        if event.select.id == "push-what":
            event.stop()
            self.refresh_state()

    def on_input_changed(self, event: Input.Changed) -> None:
        """Check the repo id on every change; a valid one gets its card."""
        if event.input.id != "push-repo":
            return
        event.stop()
        ok, text = repo_check(self.repo_id)
        check = self.query_one("#push-repo-check", Static)
        check.update(text)
        check.set_class(ok, "ok")
        check.set_class(not ok and bool(self.repo_id), "error")
        check.set_class(not self.repo_id, "muted")
        if ok:
            self._refresh_card()

    def _refresh_card(self, *, force: bool = False) -> None:
        """Rebuild the card (in a worker) when the saved output or the valid repo id changed."""
        saved = self.state.saved
        card = self.query_one("#push-card", Markdown)
        if saved is None:
            self._card_key = None
            card.update(f"*{SAVE_FIRST}*")
            return
        ok, _ = repo_check(self.repo_id)
        repo_id = self.repo_id if ok else None
        edit_only = self.edit_only
        key = (str(saved), id(self.state.last_save), repo_id, edit_only)  # a save over the same folder is new too
        if key == self._card_key and not force:
            return
        self._card_key = key
        self._card_request += 1
        self._build_card(self._card_request, saved, repo_id, edit_only)

    @work(thread=True, exclusive=True, exit_on_error=False, group="card")
    def _build_card(self, request: int, saved: Path, repo_id: str | None, edit_only: bool) -> None:
        """Generate the model card (reads the output folder; may ask the Hub for the base model's license)."""
        self.post_message(
            CardBuilt.of(lambda: build_card(saved, repo_id=repo_id, edit_only=edit_only), request=request)
        )

    # --- actions ------------------------------------------------------------------------

    def action_check_login(self) -> None:
        """Ask the Hub who the token belongs to (the token itself is never shown)."""
        self._login("checking who you are logged in as…", "muted")
        self._whoami()

    @work(thread=True, exclusive=True, exit_on_error=False, group="whoami")
    def _whoami(self) -> None:
        self.post_message(LoginChecked.of(whoami))

    def _line(self, selector: str, text: str | Text) -> None:
        """Show a status line, or hide it while it has nothing to say (the form stays compact at 80x24)."""
        line = self.query_one(selector, Static)
        line.update(text)
        line.display = bool(str(text))

    def _login(self, text: str, kind: str) -> None:
        line = self.query_one("#push-login", Static)
        line.update(text)
        for name in ("muted", "ok", "warning", "error"):
            line.set_class(name == kind, name)

    def action_render_preview(self) -> None:
        """Render the saved output's before/after preview into it, so the card shows one."""
        saved = self.state.last_save
        if saved is None:
            self.show_error(SAVE_FIRST, title="preview")
            return
        if self.pushing:
            self.show_error("a push is going; render the preview when it ends", title="preview")
            return
        button = self.query_one("#push-render-preview", Button)
        if button.disabled:
            return  # one is rendering
        button.disabled = True
        button.label = "rendering preview…"
        self._render_preview(saved, self.state.jobs, self.state.compute)

    @work(thread=True, exit_on_error=False, group="render-preview")  # one at a time: refused while one is going
    def _render_preview(self, saved: Saved, jobs: SessionJobs | None, compute: ComputeOptions) -> None:
        cancel = job_cancel()
        self.post_message(
            PreviewWritten.of(lambda: render_saved_preview(saved, jobs=jobs, compute=compute, cancel=cancel))
        )

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """The buttons do what their keys do."""
        event.stop()
        if event.button.id == "push-go":
            self.action_push()
        elif event.button.id == "push-render-preview":
            self.action_render_preview()

    def action_push(self) -> None:
        """Push the saved output to the repo id typed (refused, with the reason, when it cannot go)."""
        problem = self._push_problem()
        if problem:
            self._line("#push-status", f"not pushed: {problem}")
            self.show_error(problem, title="push")
            return
        self.pushing = True
        self._pushed_to = self.repo_id
        self.result = None
        self.query_one("#push-go", Button).disabled = True
        bar = self.query_one("#push-progress", ProgressBar)
        bar.display = True
        bar.update(total=None, progress=0)
        self._line("#push-url", "")
        self._line("#push-status", f"pushing to {self.repo_id}…")
        branch = self.query_one("#push-branch", Input).value.strip() or None
        assert self.state.saved is not None  # _push_problem checked it
        self._push(
            self.state.saved,
            self.repo_id,
            self.query_one("#push-private", Switch).value,
            branch,
            self.query_one("#push-pr", Checkbox).value,
            self.edit_only,
        )

    def _push_problem(self) -> str | None:
        """Why a push cannot start now, or None."""
        if self.pushing:
            return "a push is already going (ctrl+x cancels it)"
        if self.state.saved is None:
            return SAVE_FIRST
        ok, text = repo_check(self.repo_id)
        return None if ok else text

    @work(thread=True, exit_on_error=False, group="push")  # one at a time: refused while one is going
    def _push(
        self, saved: Path, repo_id: str, private: bool, branch: str | None, create_pr: bool, edit_only: bool
    ) -> None:
        """Publish in a thread; upload events come back as messages; ctrl+x sets this push's cancel flag."""
        cancel = job_cancel()

        def on_progress(event: ProgressEvent) -> None:
            self.post_message(PushProgressed(event))

        self.post_message(
            PushFinished.of(
                lambda: push_output(
                    saved,
                    repo_id=repo_id,
                    private=private,
                    branch=branch,
                    create_pr=create_pr,
                    edit_only=edit_only,
                    on_progress=on_progress,
                    cancel=cancel,
                )
            )
        )

    def on_push_progressed(self, message: PushProgressed) -> None:
        """Feed the byte progress bar from the push's upload events."""
        message.stop()
        event = message.event
        self._line("#push-status", event.message)
        if event.stage == "upload" and event.unit == "bytes" and event.total:
            self.query_one("#push-progress", ProgressBar).update(total=event.total, progress=event.completed or 0)

    # --- results ------------------------------------------------------------------------

    def _log(self, line: str) -> None:
        """Keep a line in the screen's log (shown from its first line on)."""
        log = self.query_one("#push-log", RichLog)
        log.display = True
        log.write(line)

    def on_login_checked(self, message: LoginChecked) -> None:
        message.stop()
        text, kind = login_line(message.result, message.error)
        self._login(text, kind)

    def on_card_built(self, message: CardBuilt) -> None:
        message.stop()
        if message.request != self._card_request:
            return  # a newer card is on its way
        card = self.query_one("#push-card", Markdown)
        if message.result is None:
            self._card_key = None
            card.update(f"*the card cannot be built:* {message.error}")
            return
        card.update(card_for_view(message.result))

    def on_preview_written(self, message: PreviewWritten) -> None:
        message.stop()
        button = self.query_one("#push-render-preview", Button)
        button.disabled = False
        button.label = "Render preview (v)"
        if message.result is None:
            why = "cancelled" if message.cancelled else describe_error(message.error)  # type: ignore[arg-type]
            self._log(f"✗ preview not rendered: {why}")
            if not message.cancelled:
                self.show_error(message.error, title="preview")  # type: ignore[arg-type]
            return
        self._log(f"preview written to {message.result}")
        self.app.notify(f"preview written to {message.result}", title="preview", timeout=5)
        self.query_one("#push-preview-row").display = preview_missing(self.state.saved)
        self._refresh_card(force=True)

    def on_push_finished(self, message: PushFinished) -> None:
        message.stop()
        self.pushing = False
        self.query_one("#push-go", Button).disabled = False
        if message.result is not None:
            self._show_result(message.result)
            return
        self.query_one("#push-progress").display = False
        error = message.error
        assert error is not None
        if message.cancelled:
            self._line("#push-status", "cancelled: nothing was committed")
            self._log("push cancelled: nothing was committed")
            return
        why = describe_error(error)
        self._line("#push-status", f"the push failed: {why}")
        self._log(f"✗ push to {self._pushed_to} failed: {why}")
        if isinstance(error, HubError) and getattr(error, "reason", None) == "auth":
            self._login(NOT_LOGGED_IN, "error")
        self.show_error(error, title="push")

    def _show_result(self, result: Any) -> None:
        self.result = result
        bar = self.query_one("#push-progress", ProgressBar)
        bar.update(total=bar.total or 1, progress=bar.total or 1)
        self._line("#push-status", f"pushed {len(result.files)} files to {result.repo_id}")
        text = Text.assemble(("pushed: ", "bold"), (result.url, f"link {result.url}"))
        if result.pr_url:
            text.append_text(Text.assemble(("\npull request: ", "bold"), (result.pr_url, f"link {result.pr_url}")))
        self._line("#push-url", text)
        self._log(f"✓ pushed {len(result.files)} files to {result.repo_id}: {result.pr_url or result.url}")
        self.app.notify(result.pr_url or result.url, title="pushed", timeout=8)
