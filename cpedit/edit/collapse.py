"""The collapse guard: did an edit destroy generation rather than its concept?

Pruning too much (a skill ratio far too high, a recipe whose target and base prompts differ in
everything) can break a model: every image turns to noise, a flat colour or black (NaN). The
guard catches that cheaply, right after the edit is applied: a few everyday prompts unrelated
to any recipe's concept are rendered with the base weights and with the edited weights, from
the same seed, and each pair is compared on a grey, downsampled (at most 64x64) copy:

* *contrast*: the standard deviation of the grey levels. A flat, black or NaN image has almost
  none; an image of other content has about as much as the base's.
* *texture*: the mean difference between neighbouring pixels, relative to the contrast. Noise
  has far more than a picture (whose neighbours are alike); a picture of other content about as
  much as the base's.

A prompt's *distance* is how much contrast the edited image lost plus how much rougher it
became, as log ratios to the base image's: ``max(0, -ln(contrast ratio)) + max(0, ln(texture
ratio))``. It is 0 for the same structure whatever the content, and for more contrast or a
smoother texture (other content, brighter colours); ``ln 2`` when the contrast halved or the
texture doubled. A pixel distance would not do: an image whose content changed (which an edit
may do) is as far from the base, pixel for pixel, as noise is. The edit *collapsed* when at
least half of the prompts' distances exceed the threshold (:data:`DEFAULT_THRESHOLD`, 1.0:
the contrast fell or the texture roughened about 2.7-fold). One prompt is not enough: a single scene may
legitimately change.

Cost: 2 x prompts images at :data:`DEFAULT_STEPS` steps (4 x 2 x 6 by default); the base images
are kept by a :class:`CollapseGuard` and rendered once per pipeline, so a sweep pays only for
the edited ones at each point.
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from cpedit.errors import CpeditError
from cpedit.models.architectures import spec_for_pipeline
from cpedit.models.settings import SampleSettings, check_sample_settings
from cpedit.output.collapse import CollapseCheck, PromptDistance
from cpedit.progress import ProgressCallback, ProgressEvent, emit
from cpedit.shapes.model import is_builtin_model

__all__ = [
    "DEFAULT_PROMPTS",
    "DEFAULT_STEPS",
    "DEFAULT_THRESHOLD",
    "CollapseGuard",
    "check_collapse",
    "image_structure",
    "prompt_distance",
]

DEFAULT_PROMPTS = (
    "a bowl of fruit on a wooden kitchen table",
    "a city street with parked cars on a sunny afternoon",
    "a small sailing boat on a calm lake with mountains behind",
    "a cup of coffee next to an open book",
)
"""Everyday scenes unrelated to the shipped recipes' concepts (artists, nudity, objects, gender)."""
SHAPES_PROMPTS = (
    "a plain green circle on a white background",
    "a dotted blue square on a black background",
    "a checkered yellow triangle on a grey background",
    "a plain purple cross on a white background",
)
"""The built-in shapes model's unrelated prompts (its vocabulary; no red, star or stripes: its recipes' concepts)."""
DEFAULT_STEPS = 6
"""Denoising steps of each image: enough to tell a picture from noise or a flat colour."""
DEFAULT_THRESHOLD = 1.0
"""A prompt whose distance exceeds this lost its structure (see the module docstring)."""
SIDE = 64
"""Images are compared as grey copies at most this many pixels wide."""
_FLOOR = 1e-3
"""Contrast and texture below this count as this (a black image's ratio stays finite)."""


def image_structure(image: Image.Image) -> tuple[float, float]:
    """The contrast and texture of ``image`` (see the module docstring), on a grey copy at most :data:`SIDE` wide.

    Returns:
        ``(contrast, texture)``: the standard deviation of the grey levels (0..0.5) and the mean
        neighbour difference over that deviation.
    """
    grey = image.convert("L")
    side = min(SIDE, grey.width, grey.height)
    pixels = np.asarray(grey.resize((side, side), Image.Resampling.BOX), dtype=np.float64) / 255.0
    contrast = float(pixels.std())
    steps = (np.abs(np.diff(pixels, axis=0)).mean() + np.abs(np.diff(pixels, axis=1)).mean()) / 2 if side > 1 else 0.0
    return contrast, float(steps) / max(contrast, _FLOOR)


def prompt_distance(prompt: str, base: Image.Image, edited: Image.Image) -> PromptDistance:
    """Compare the base and edited image of one prompt: their contrast and texture ratios and the distance."""
    base_contrast, base_texture = image_structure(base)
    contrast, texture = image_structure(edited)
    contrast_ratio = max(contrast, _FLOOR) / max(base_contrast, _FLOOR)
    texture_ratio = max(texture, _FLOOR) / max(base_texture, _FLOOR)
    distance = max(0.0, -math.log(contrast_ratio)) + max(0.0, math.log(texture_ratio))
    return PromptDistance(prompt=prompt, distance=distance, contrast=contrast_ratio, texture=texture_ratio)


def judge(distances: Sequence[PromptDistance], *, threshold: float) -> tuple[bool, str]:
    """Whether the prompts say the edit collapsed (at least half beyond ``threshold``), and one line why."""
    broken = [d for d in distances if d.distance > threshold]
    count = f"{len(broken)} of {len(distances)} unrelated prompts"
    if len(broken) * 2 < len(distances) or not broken:
        largest = max(d.distance for d in distances)
        return False, f"no collapse: {count} lost their structure (largest distance {largest:.2f}, limit {threshold:g})"
    contrast = float(np.median([d.contrast for d in broken]))
    texture = float(np.median([d.texture for d in broken]))
    if contrast < 0.5 and contrast <= 1 / texture:
        looks = f"flat or black (contrast {contrast:.2f}x the base's)"
    elif texture > 2 or contrast > 2:
        looks = f"noise-like (texture {texture:.2f}x, contrast {contrast:.2f}x the base's)"
    else:
        looks = f"unlike any picture (contrast {contrast:.2f}x, texture {texture:.2f}x the base's)"
    return True, f"collapse: {count} lost their structure (distance above {threshold:g}); the edited images are {looks}"


class CollapseGuard:
    """Renders the unrelated prompts and judges an edit; keeps the base images of the pipeline it last saw.

    Args:
        prompts: The unrelated prompts (None: :data:`DEFAULT_PROMPTS`, or :data:`SHAPES_PROMPTS`
            for the built-in shapes model).
        steps: Denoising steps of each image.
        seed: Every image starts from a generator seeded with this.
        threshold: A prompt whose distance exceeds this lost its structure.
        height: Image height (None: the model's native size).
        width: Image width.
        guidance_scale: Classifier-free guidance (None: the first recipe's ``sampling.guidance_scale``).

    Raises:
        CpeditError: No prompts, a threshold that is not a positive finite number, or bad sampling values.
    """

    def __init__(
        self,
        *,
        prompts: Sequence[str] | None = None,
        steps: int = DEFAULT_STEPS,
        seed: int = 0,
        threshold: float = DEFAULT_THRESHOLD,
        height: int | None = None,
        width: int | None = None,
        guidance_scale: float | None = None,
    ) -> None:
        if prompts is not None and (not prompts or not all(isinstance(p, str) and p.strip() for p in prompts)):
            raise CpeditError("the collapse check needs at least one prompt, none empty", argument="prompts")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold < math.inf:
            raise CpeditError(f"threshold must be a positive number, got {threshold!r}", argument="threshold")
        check_sample_settings(
            SampleSettings(steps=steps, seed=seed, height=height, width=width, guidance_scale=guidance_scale or 0.0)
        )
        self.prompts = tuple(prompts) if prompts is not None else None
        self.steps, self.seed, self.threshold = steps, seed, float(threshold)
        self.height, self.width, self.guidance_scale = height, width, guidance_scale
        self._base: tuple[Any, tuple[Any, ...], list[Image.Image]] | None = None
        """(a weak reference to the pipeline, what the images were rendered with, the base images)."""

    def prompts_for(self, session: Any) -> tuple[str, ...]:
        """The prompts used for ``session``'s model."""
        if self.prompts is not None:
            return self.prompts
        source = getattr(session, "source", None)
        builtin = source is not None and is_builtin_model(str(source.ref))
        return SHAPES_PROMPTS if builtin else DEFAULT_PROMPTS

    def check(
        self,
        session: Any,
        *,
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> CollapseCheck:
        """Render the prompts with the base and the applied edit of ``session`` and judge the edit.

        Args:
            session: An :class:`~cpedit.edit.session.EditSession` with a selection applied (it stays applied).
            on_progress: Receives the ``sample`` events of the renders.
            cancel: Stops before the next image or step with :class:`~cpedit.errors.Cancelled`.

        Raises:
            CpeditError: No selection is applied, or the renders fail (out of memory: a smaller size).
            Cancelled: ``cancel`` was set (the edit stays applied).
        """
        started = time.perf_counter()
        prompts = self.prompts_for(session)
        guidance = self.guidance_scale
        if guidance is None:
            guidance = session.recipes[0].sampling.guidance_scale if session.recipes else 7.5
        height, width = self.height, self.width
        spec = spec_for_pipeline(session.pipeline)
        if height is None and width is None and spec is not None and spec.default_size is not None:
            height, width = spec.default_size  # a video family: its short clip's size, not its full native size
        options: dict[str, Any] = {
            "seed": self.seed,
            "steps": self.steps,
            "guidance_scale": guidance,
            "height": height,
            "width": width,
            "safety_checker": False,  # a filtered (black) image is not a collapse
        }
        emit(
            on_progress,
            ProgressEvent(stage="sample", message=f"collapse check: {len(prompts)} unrelated prompts, base and edited"),
        )
        key = (prompts, tuple(sorted(options.items())))
        base = self._cached_base(session.pipeline, key)
        if base is None:
            base = session.sample(list(prompts), edited=False, on_progress=on_progress, cancel=cancel, **options)
            self._keep_base(session.pipeline, key, base)
        edited = session.sample(list(prompts), edited=True, on_progress=on_progress, cancel=cancel, **options)
        distances = tuple(prompt_distance(p, b, e) for p, b, e in zip(prompts, base, edited, strict=True))
        collapsed, reason = judge(distances, threshold=self.threshold)
        return CollapseCheck(
            prompts=distances,
            threshold=self.threshold,
            collapsed=collapsed,
            reason=reason,
            steps=self.steps,
            seed=self.seed,
            seconds=time.perf_counter() - started,
        )

    def _cached_base(self, pipeline: Any, key: tuple[Any, ...]) -> list[Image.Image] | None:
        if self._base is None:
            return None
        ref, kept_key, images = self._base
        return images if ref() is pipeline and kept_key == key else None

    def _keep_base(self, pipeline: Any, key: tuple[Any, ...], images: list[Image.Image]) -> None:
        try:
            self._base = (weakref.ref(pipeline), key, images)
        except TypeError:  # a pipeline that cannot be weakly referenced: render its base each time
            self._base = None

    def forget(self) -> None:
        """Drop the kept base images."""
        self._base = None


def check_collapse(
    session: Any,
    *,
    prompts: Sequence[str] | None = None,
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    threshold: float = DEFAULT_THRESHOLD,
    height: int | None = None,
    width: int | None = None,
    guidance_scale: float | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> CollapseCheck:
    """Whether the edit applied in ``session`` destroyed generation rather than its concept (one check).

    The options are :class:`CollapseGuard`'s; ``on_progress`` and ``cancel`` are :meth:`CollapseGuard.check`'s.

    Raises:
        CpeditError: Bad options, no selection applied, or the renders fail.
        Cancelled: ``cancel`` was set (the edit stays applied).
    """
    guard = CollapseGuard(
        prompts=prompts,
        steps=steps,
        seed=seed,
        threshold=threshold,
        height=height,
        width=width,
        guidance_scale=guidance_scale,
    )
    return guard.check(session, on_progress=on_progress, cancel=cancel)
