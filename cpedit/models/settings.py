"""How images are rendered (steps, guidance, seed, size), and the checks those values must pass.

Kept apart from :mod:`cpedit.models.sampling` so that building and checking settings imports
no torch: the CLI and the app build them before any model is loaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from cpedit.errors import CpeditError
from cpedit.recipes.format import MAX_SIDE

__all__ = ["SampleSettings", "check_sample_settings"]


@dataclass(frozen=True)
class SampleSettings:
    """How images are rendered. The same settings for base and pruned keep a comparison fair."""

    steps: int = 30
    guidance_scale: float = 7.5
    seed: int = 0
    """Every image starts from a generator seeded with this."""
    height: int | None = None
    """None: the model's native size."""
    width: int | None = None


def check_sample_settings(settings: SampleSettings, pipe: Any = None) -> None:
    """Refuse sampling values that diffusers or torch would only fail on, with what to do instead.

    Checked: steps from 1 to the scheduler's training steps (``num_train_timesteps``, when
    ``pipe`` is given), a finite guidance scale of at least 0, and height and width positive
    multiples of 8 of at most :data:`MAX_SIDE`, given both or neither.

    Raises:
        CpeditError: With ``argument`` naming the setting (``steps``, ``guidance_scale``, ``height``, ``width``).
    """
    steps = settings.steps
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise CpeditError(f"steps must be a whole number of at least 1, got {steps!r}", argument="steps")
    scheduler = getattr(pipe, "scheduler", None) if pipe is not None else None
    limit = getattr(getattr(scheduler, "config", None), "num_train_timesteps", None)
    if isinstance(limit, int) and steps > limit:
        raise CpeditError(
            f"steps = {steps} is more than the {limit} timesteps the model's scheduler was trained with; "
            f"use at most {limit} (30 to 50 is usual)",
            reason="too_many",
            argument="steps",
        )
    guidance = settings.guidance_scale
    if not isinstance(guidance, (int, float)) or isinstance(guidance, bool) or not math.isfinite(guidance):
        raise CpeditError(f"guidance scale must be a finite number, got {guidance!r}", argument="guidance_scale")
    if guidance < 0:
        raise CpeditError(f"guidance scale must be at least 0, got {guidance}", argument="guidance_scale")
    for name in ("height", "width"):
        size = getattr(settings, name)
        if size is None:
            continue
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0 or size % 8:
            raise CpeditError(
                f"{name} must be a positive multiple of 8 (the autoencoder works in 8-pixel cells), got {size!r}"
                + (f"; try {max(8, round(size / 8) * 8)}" if isinstance(size, int) and size > 0 else ""),
                argument=name,
            )
        if size > MAX_SIDE:
            raise CpeditError(
                f"{name} = {size} is larger than {MAX_SIDE}; render at the model's native size (omit it) or smaller",
                argument=name,
            )
    if (settings.height is None) != (settings.width is None):
        present = "height" if settings.height is not None else "width"
        raise CpeditError("give both height and width, or neither (the model's native size)", argument=present)
