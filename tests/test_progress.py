"""Progress events: what a front end (CLI, TUI) sees during ``cpedit.prune``."""

from __future__ import annotations

from pathlib import Path

from helpers import write_recipe

import cpedit
from cpedit.progress import ProgressEvent

TAU = 3


def test_events_carry_concept_batch_and_timestep_in_order(tiny_sd_path: Path, tmp_path: Path) -> None:
    events: list[ProgressEvent] = []
    cpedit.prune(
        tiny_sd_path,
        [write_recipe(tmp_path, name="events", subjects=("cat", "dog", "car"), tau=TAU, steps=5)],
        out=tmp_path / "out",
        device="cpu",
        batch_size=4,
        on_progress=events.append,
    )

    stages = [e.stage for e in events]
    first = {stage: stages.index(stage) for stage in dict.fromkeys(stages)}
    assert list(first) == ["load", "calibrate", "score", "prune", "save", "done"]
    assert stages[-1] == "done" and stages.count("done") == 1

    calibration = [e for e in events if e.stage == "calibrate"]
    # 6 prompts in batches of 4 and 2: each batch announces itself (timestep 0), then tau calls.
    assert [(e.batch, e.timestep) for e in calibration] == [(b, t) for b in (1, 2) for t in range(TAU + 1)]
    assert all(e.concept == "events" and e.batches == 2 and e.timesteps == TAU for e in calibration)
    assert all(e.total == 2 * TAU for e in calibration)
    completed = [e.completed for e in calibration]
    assert completed == sorted(completed) and completed[0] == 0 and completed[-1] == 2 * TAU
    assert all(e.message for e in events)
