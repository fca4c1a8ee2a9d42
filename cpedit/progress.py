"""Progress events: how the library reports slow work without knowing who listens.

The core never prints. It calls an ``on_progress`` callback with :class:`ProgressEvent`
objects; the CLI renders them with rich, the TUI posts them to its widgets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Stage = Literal["load", "calibrate", "score", "prune", "save", "sample", "upload", "done"]


@dataclass(frozen=True)
class ProgressEvent:
    """One step of a run.

    Attributes:
        stage: What is running: ``load``, ``calibrate``, ``score``, ``prune``, ``save``,
            ``sample`` (rendering images), ``upload`` (publishing to the Hub: ``batch``/``batches``
            count files, ``completed``/``total`` count bytes) or ``done``.
        message: A short human-readable line.
        concept: The recipe name being calibrated or scored, when there is one.
        batch: 1-based index of the prompt batch in this concept's calibration (of the
            prompt, when sampling).
        batches: Number of prompt batches for this concept (of prompts, when sampling).
        timestep: Denoiser calls finished in the current batch (0 when it starts, then 1..timesteps).
        timesteps: tau, the denoiser calls each batch makes.
        completed: Denoiser calls finished for this concept so far.
        total: Denoiser calls this concept needs in all (batches * timesteps).
        accumulator_bytes: During calibration, the size of the statistics buffers on the
            compute device (the running totals and one batch's sums).
    """

    stage: Stage
    message: str
    concept: str | None = None
    batch: int | None = None
    batches: int | None = None
    timestep: int | None = None
    timesteps: int | None = None
    completed: int | None = None
    total: int | None = None
    accumulator_bytes: int | None = None


ProgressCallback = Callable[[ProgressEvent], None]


def emit(callback: ProgressCallback | None, event: ProgressEvent) -> None:
    """Send ``event`` to ``callback`` if there is one."""
    if callback is not None:
        callback(event)
