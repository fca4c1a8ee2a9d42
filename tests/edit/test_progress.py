"""Progress events: what a front end (CLI, TUI) sees during ``cpedit.prune``."""

from __future__ import annotations

from pathlib import Path

from support.helpers import write_recipe

import cpedit
from cpedit.models.compute import ComputeOptions
from cpedit.progress import ProgressEvent

TAU = 3


def test_events_carry_concept_batch_and_timestep_in_order(tiny_sd_path: Path, tmp_path: Path) -> None:
    events: list[ProgressEvent] = []
    cpedit.prune(
        tiny_sd_path,
        [write_recipe(tmp_path, name="events", subjects=("cat", "dog", "car"), tau=TAU, steps=5)],
        out=tmp_path / "out",
        compute=ComputeOptions(device="cpu"),
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


def test_rendering_reports_every_denoising_step_with_the_image_counts(tiny_sd_path: Path) -> None:
    from cpedit.models.sampling import SampleSettings, render_samples

    events: list[ProgressEvent] = []
    prompts = ["a cat", "a dog"]
    render_samples(
        tiny_sd_path,
        prompts=prompts,
        settings=SampleSettings(steps=3),
        compute=ComputeOptions(device="cpu"),
        on_progress=events.append,
    )
    samples = [e for e in events if e.stage == "sample"]
    steps = [e for e in samples if e.timestep is not None]
    calls = steps[0].timesteps
    assert calls is not None and calls >= 3  # PNDM: 3 steps make 4 denoiser calls
    # per image: its start (no step), then every call, with the images done so far and the image in flight
    expected = [(i, i + 1, t) for i in range(2) for t in range(1, calls + 1)]
    assert [(e.completed, e.batch, e.timestep) for e in steps] == expected
    assert all(e.total == 2 and e.batches == 2 and e.batch_size == 1 and e.unit == "images" for e in steps)
    assert samples[-1].completed == samples[-1].total == 2 and samples[-1].timestep is None
