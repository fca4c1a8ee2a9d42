"""Messages the app's thread workers send back to the UI thread (Textual messages are thread-safe to post).

A worker computes and never changes the app's state: it posts its progress events and, at its end,
one message of its job's own kind (:class:`RunFinished`, :class:`SelectionReady`, ...), carrying
its result or its error and what it was asked for. The screen's handler, on the UI thread, takes
the result in only while it still matches what the screen asks for.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from textual.message import Message

from cpedit.errors import Cancelled
from cpedit.progress import ProgressEvent
from cpedit.recipes import Recipe
from tui.session_jobs import Rendered, Saved, Tuned, TuneSet
from tui.state import PointsView

if TYPE_CHECKING:
    # typing.Self is Python 3.11+; the annotation is never evaluated (postponed), so 3.10 needs no import.
    from typing_extensions import Self

R = TypeVar("R")


# --- progress -------------------------------------------------------------------------------


class Progress(Message):
    """A progress event of the library, from a worker (each job has its own subclass)."""

    def __init__(self, event: ProgressEvent) -> None:
        super().__init__()
        self.event = event


class RunProgressed(Progress):
    """A run's progress event, with the memory in use on its device when it was sent (None: not measured)."""

    def __init__(self, event: ProgressEvent, *, memory_bytes: int | None = None) -> None:
        super().__init__(event)
        self.memory_bytes = memory_bytes


class SaveProgressed(Progress):
    """A save's progress event."""


class TuneProgressed(Progress):
    """An auto-tune's progress event."""


class RenderProgressed(Progress):
    """A preview render's progress event."""


class PushProgressed(Progress):
    """A push's progress event (bytes uploaded)."""


class SessionOpened(Message):
    """A run loaded its model: where it computes (``cpu``, ``cuda:0``, ...)."""

    def __init__(self, device: str) -> None:
        super().__init__()
        self.device = device


class PointMeasured(Message):
    """An auto-tune measured a point (its ``to_dict`` form)."""

    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__()
        self.data = data


# --- results --------------------------------------------------------------------------------


class Outcome(Message, Generic[R]):
    """How a job ended: ``result`` when it succeeded, else ``error`` (a cancel is a :class:`cpedit.Cancelled`)."""

    def __init__(self, *, result: R | None = None, error: BaseException | None = None) -> None:
        super().__init__()
        self.result = result
        self.error = error

    @classmethod
    def of(cls, work: Callable[[], R], **asked: Any) -> Self:
        """Run ``work`` (in the worker) and wrap how it ended; ``asked`` is what the job was asked for.

        Every error is wrapped, never raised: the app shows it and stays usable.
        """
        try:
            result = work()
        except Exception as exc:  # noqa: BLE001 - shown in the app, whatever it is
            return cls(error=exc, **asked)
        return cls(result=result, **asked)

    @property
    def ok(self) -> bool:
        """Whether the job succeeded."""
        return self.error is None

    @property
    def cancelled(self) -> bool:
        """Whether the job was cancelled (ctrl+x, or a newer job of its kind replaced it)."""
        return isinstance(self.error, Cancelled)


class RunFinished(Outcome[Tuned]):
    """A run's end: the calibrated session with the recipes' own selection."""


class SelectionReady(Outcome[Tuned]):
    """A re-selection's end; ``values`` are the tune values it was asked for."""

    def __init__(self, *, values: TuneSet, result: Tuned | None = None, error: BaseException | None = None) -> None:
        super().__init__(result=result, error=error)
        self.values = values


class SaveFinished(Outcome[Saved]):
    """A save's end: the folder written and the selection it holds."""


class SweepLoaded(Outcome[PointsView]):
    """A sweep folder's points, read for the plot."""

    def __init__(self, *, folder: Path, result: PointsView | None = None, error: BaseException | None = None) -> None:
        super().__init__(result=result, error=error)
        self.folder = folder


class TuneFinished(Outcome[Any]):
    """An auto-tune's end: :func:`cpedit.tune`'s result."""


class PreviewRendered(Outcome[Rendered]):
    """A before/after render's end; ``request`` numbers it (a newer request replaces it)."""

    def __init__(self, *, request: int, result: Rendered | None = None, error: BaseException | None = None) -> None:
        super().__init__(result=result, error=error)
        self.request = request


class PreviewWritten(Outcome[Path]):
    """The saved output's preview image, written into it."""


class CardBuilt(Outcome[str]):
    """A model card's text; ``request`` numbers it (a newer one replaces it)."""

    def __init__(self, *, request: int, result: str | None = None, error: BaseException | None = None) -> None:
        super().__init__(result=result, error=error)
        self.request = request


class LoginChecked(Outcome[str]):
    """Who the Hub token belongs to (its user name)."""


class PushFinished(Outcome[Any]):
    """A push's end: :class:`cpedit.hub.PushResult`."""


class SearchDone(Outcome[list[Any]]):
    """A Hub model search's results for ``query``."""

    def __init__(self, *, query: str, result: list[Any] | None = None, error: BaseException | None = None) -> None:
        super().__init__(result=result, error=error)
        self.query = query


class ModelDescribed(Outcome[Any]):
    """What cpedit can do with a model (Hub details or a local folder); ``model`` is the id or path asked about,
    ``choose`` whether the user asked to choose it once described."""

    def __init__(
        self, *, model: str, choose: bool = False, result: Any = None, error: BaseException | None = None
    ) -> None:
        super().__init__(result=result, error=error)
        self.model = model
        self.choose = choose


class RecipeLoaded(Outcome[Recipe]):
    """A recipe reference typed on the Recipes screen, resolved."""

    def __init__(self, *, ref: str, result: Recipe | None = None, error: BaseException | None = None) -> None:
        super().__init__(result=result, error=error)
        self.ref = ref


class RecipesResolved(Outcome[list[tuple[str, "Recipe | BaseException"]]]):
    """The ``--recipe`` references given at start, each resolved to a recipe or its error."""
