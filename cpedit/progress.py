"""Progress events and cancellation: how the library reports slow work without knowing who listens.

The core never prints. It calls an ``on_progress`` callback with :class:`ProgressEvent`
objects; the CLI renders them with rich, the TUI posts them to its widgets. Every slow step
also takes a ``cancel`` :class:`threading.Event`; once it is set, the step stops at its next
check with :class:`~cpedit.errors.Cancelled` and leaves nothing half-written.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from cpedit.errors import Cancelled

Stage = Literal[
    "download",
    "load",
    "calibrate",
    "score",
    "prune",
    "restore",
    "save",
    "export",
    "sample",
    "evaluate",
    "upload",
    "sweep",
    "tune",
    "done",
]
Unit = Literal["calls", "batches", "layers", "files", "bytes", "images", "points"]


@dataclass(frozen=True)
class ProgressEvent:
    """One step of a run. Every field has one meaning in every stage; fields that do not apply are None.

    Attributes:
        stage: What is running: ``download`` (fetching a model from the Hub), ``load``,
            ``calibrate``, ``score`` (selecting skilled weights), ``prune`` (zeroing them in
            memory), ``restore`` (putting the base weights back), ``save`` (writing the output
            folder), ``export`` (writing it as one single-file checkpoint), ``sample`` (rendering
            images), ``evaluate``, ``upload`` (publishing to
            the Hub), ``sweep`` and ``tune`` (measuring a grid's or an auto-tune's settings
            points) or ``done``.
        message: A short human-readable line.
        concept: The recipe name being calibrated or scored, when there is one (for
            ``sample``: the label of the images being rendered, such as ``base``).
        batch: 1-based index of the current prompt batch (calibration, or an image batch).
        batches: Number of prompt batches of this concept (or of this image set).
        batch_size: How much of :attr:`unit` the current batch holds (``sample``: the images
            of the pipeline call under way), so that its steps can be counted in before it ends.
        timestep: Denoiser calls finished in the current batch (0 when it starts, then 1..timesteps).
        timesteps: The denoiser calls each batch makes: tau in calibration; when rendering
            (``sample``), the pipeline call's denoising steps.
        completed: Work of this step done so far, in :attr:`unit`: of this concept for
            ``calibrate`` and ``score`` (each concept counts from 0), of the whole step otherwise.
            It never decreases within a step (a batch retried after running out of memory adds
            to :attr:`total` instead), and a step that counts ends with ``completed == total``.
        total: Work of this step in all, in :attr:`unit`.
        unit: What :attr:`completed` and :attr:`total` count: ``calls`` (denoiser calls),
            ``batches`` (text-encoder batches of ``text-ffn``), ``layers``, ``files``, ``bytes``,
            ``images`` or ``points`` (settings points of a sweep or an auto-tune).
        file: The file being downloaded, uploaded or written, relative to its folder or repo.
        file_index: 1-based index of :attr:`file`.
        files: Number of files of this step.
        accumulator_bytes: During calibration, the size of the statistics buffers on the
            compute device (the running totals and one batch's sums).
    """

    stage: Stage
    message: str
    concept: str | None = None
    batch: int | None = None
    batches: int | None = None
    batch_size: int | None = None
    timestep: int | None = None
    timesteps: int | None = None
    completed: int | None = None
    total: int | None = None
    unit: Unit | None = None
    file: str | None = None
    file_index: int | None = None
    files: int | None = None
    accumulator_bytes: int | None = None


ProgressCallback = Callable[[ProgressEvent], None]


def emit(callback: ProgressCallback | None, event: ProgressEvent) -> None:
    """Send ``event`` to ``callback`` if there is one."""
    if callback is not None:
        callback(event)


def step_events(
    callback: ProgressCallback | None, event: ProgressEvent, *, steps: int
) -> Callable[[int, int | None], None] | None:
    """A per-step reporter for one pipeline call: sends ``event`` again with ``timestep``/``timesteps`` set.

    Given to :func:`cpedit.models.sampling.step_callback` as ``on_step(done, calls)``, so a batch of
    images reports each denoising step (``calls`` None: the pipeline does not say, ``steps``
    stands in). None when there is no ``callback``.
    """
    if callback is None:
        return None

    def report(done: int, calls: int | None) -> None:
        callback(dataclasses.replace(event, timestep=done, timesteps=calls or steps))

    return report


def check_cancel(cancel: threading.Event | None, step: str) -> None:
    """Raise :class:`~cpedit.errors.Cancelled` if ``cancel`` is set.

    Args:
        cancel: The run's cancel event (None: never cancelled).
        step: What was going on, for the message (``during calibration``, ``before saving``).
    """
    if cancel is not None and cancel.is_set():
        raise Cancelled(f"cancelled {step}; nothing was written", step=step)
