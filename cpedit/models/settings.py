"""How images are rendered (steps, guidance, seed, size), and the checks those values must pass.

Kept apart from :mod:`cpedit.models.sampling` so that building and checking settings imports
no torch: the CLI and the app build them before any model is loaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from cpedit.errors import CpeditError
from cpedit.recipes.format import MAX_SEED, MAX_SIDE, MAX_STEPS

__all__ = ["SampleSettings", "check_sample_settings", "check_seed"]


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

    Checked: steps from 1 to :data:`~cpedit.recipes.format.MAX_STEPS` and to the scheduler's
    training steps (``num_train_timesteps``, when ``pipe`` is given), a seed from 0 to
    :data:`~cpedit.recipes.format.MAX_SEED`, a finite guidance scale of at least 0, and height
    and width positive multiples of 8 of at most :data:`MAX_SIDE`, given both or neither. All
    but the scheduler's bound hold before any model is loaded.

    Raises:
        CpeditError: With ``argument`` naming the setting (``steps``, ``seed``, ``guidance_scale``,
            ``height``, ``width``).
    """
    steps = settings.steps
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise CpeditError(f"steps must be a whole number of at least 1, got {steps!r}", argument="steps")
    if steps > MAX_STEPS:
        raise CpeditError(
            f"steps = {steps} is more than {MAX_STEPS}, the timesteps diffusion schedulers are trained with; "
            "30 to 50 is usual",
            reason="too_large",
            argument="steps",
        )
    check_seed(settings.seed)
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


def check_seed(seed: object, *, argument: str = "seed") -> None:
    """Refuse a seed that is not a whole number from 0 to :data:`~cpedit.recipes.format.MAX_SEED` (64-bit).

    ``torch.Generator.manual_seed`` fails only at render time on a larger one, after the model
    loaded; a float (NaN, an infinity, 1.5) is no seed at all.

    Raises:
        CpeditError: ``argument`` names the setting; ``reason`` ``too_large`` or ``invalid``.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise CpeditError(
            f"the seed must be a whole number of at least 0, got {seed!r}", reason="invalid", argument=argument
        )
    if seed > MAX_SEED:
        raise CpeditError(
            f"the seed {seed} is larger than {MAX_SEED} (2^63 - 1), the largest seed cpedit takes",
            reason="too_large",
            argument=argument,
        )
