"""How a benchmark's images are made: one typed, validated object instead of loose settings.

:class:`ImageOptions` is built once (by the CLI from its flags, or by a caller) and passed to
:func:`cpedit.eval.driver.evaluate` and :func:`cpedit.tuning.measure.plan_evaluation`, so the
seed, steps, guidance, size, images per prompt and batch size travel together and are checked
in one place. It wraps :class:`cpedit.models.sampling.SampleSettings` (the edit session's and
previews' rendering settings) for the checks they share rather than replacing it: previews
have no images per prompt or image batches, and a sample's defaults are not a benchmark's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from cpedit.errors import CpeditError

if TYPE_CHECKING:
    from cpedit.models.settings import SampleSettings

__all__ = ["MAX_IMAGES_PER_PROMPT", "ImageOptions"]

MAX_IMAGES_PER_PROMPT = 1_000
"""Images of one prompt at most, per model (the seeds ``seed`` to ``seed + 999``)."""


@dataclass(frozen=True, kw_only=True)
class ImageOptions:
    """How a benchmark's images are generated (the same for the base and the edited model).

    Attributes:
        seed: The first seed of prompts without one; image ``j`` of a prompt uses ``seed + j``.
        steps: Denoising steps.
        guidance_scale: Classifier-free guidance scale.
        height: Image height (None: the model's native size); give both or neither.
        width: Image width.
        images_per_prompt: Images per prompt, per model.
        batch_size: Images per pipeline call.

    Raises:
        CpeditError: On construction, a value diffusers or torch would only fail on
            (``argument`` names the field), or over a bound: steps over
            :data:`~cpedit.recipes.format.MAX_STEPS`, a seed over :data:`~cpedit.recipes.format.MAX_SEED`,
            images per prompt over :data:`MAX_IMAGES_PER_PROMPT`; all checked before any model loads.
    """

    seed: int = 0
    steps: int = 30
    guidance_scale: float = 7.5
    height: int | None = None
    width: int | None = None
    images_per_prompt: int = 1
    batch_size: int = 4

    def __post_init__(self) -> None:
        from cpedit.models.settings import check_sample_settings, check_seed

        check_seed(self.seed)
        check_sample_settings(self.sample_settings)
        for name in ("images_per_prompt", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise CpeditError("images per prompt and batch size must be at least 1", argument=name)
        if self.images_per_prompt > MAX_IMAGES_PER_PROMPT:
            raise CpeditError(
                f"{self.images_per_prompt} images per prompt is more than {MAX_IMAGES_PER_PROMPT}, the most cpedit "
                "renders of one prompt (the paper's protocols use 1 to 10; use more prompts instead)",
                reason="too_large",
                argument="images_per_prompt",
            )

    @property
    def sample_settings(self) -> SampleSettings:
        """The settings a sample shares with these (steps, guidance, seed, size)."""
        from cpedit.models.settings import SampleSettings

        return SampleSettings(
            steps=self.steps, guidance_scale=self.guidance_scale, seed=self.seed, height=self.height, width=self.width
        )

    def render_arguments(self) -> dict[str, Any]:
        """The keyword arguments of :func:`cpedit.eval.engine.render_images` these set."""
        return asdict(self)

    def generation(self) -> dict[str, Any]:
        """Seed, steps, guidance and batch size: what a sweep records of every evaluation."""
        return {
            "seed": self.seed,
            "steps": self.steps,
            "guidance_scale": self.guidance_scale,
            "batch_size": self.batch_size,
        }
