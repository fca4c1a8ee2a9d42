"""``cpedit eval clip-score``: CLIP score of an edit's images against their prompts, before and after.

The result, in ``EDITED/conceptprune/eval/clip-score.json``::

    {"clip_score": {"before": 31.4, "after": 30.9}, "protocol": {...}}

A preservation measure: ``sweep``/``tune`` use it on unrelated prompts (higher is better).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cpedit.eval.benchmark import (
    Benchmark,
    BenchmarkRun,
    Phase,
    PromptOptions,
    prepare_prompts,
    prompt_groups,
    public_model_name,
)
from cpedit.eval.engine import ImageEntry
from cpedit.eval.intervals import Sample
from cpedit.eval.options import ImageOptions
from cpedit.progress import ProgressEvent

CLIP_SCORE = "clip-score"
DEFAULT_CLIP_MODEL = "openai/clip-vit-large-patch14"

__all__ = ["DEFAULT_CLIP_MODEL", "ClipScoreBenchmark", "ClipScoreOptions"]


@dataclass(frozen=True, kw_only=True)
class ClipScoreOptions(PromptOptions):
    """Options of ``clip-score`` (and the prompt set of :class:`~cpedit.eval.benchmark.PromptOptions`).

    Attributes:
        clip_model: The CLIP model: a Hub id or a folder (safetensors).
        scorer: An already loaded :class:`cpedit.eval.metrics.ClipScorer` (None: load ``clip_model``).
    """

    clip_model: str = DEFAULT_CLIP_MODEL
    scorer: Any = None


class ClipScoreBenchmark(Benchmark):
    """CLIP score of the images against their prompts (:class:`cpedit.eval.metrics.ClipScorer`)."""

    name = CLIP_SCORE
    role = "preservation"
    options_type = ClipScoreOptions
    preserved_metric = "clip_score"

    def describe(self, options: Any, images: ImageOptions) -> dict[str, Any]:
        """The CLIP model."""
        return {"clip_model": public_model_name(options.clip_model)}

    def prepare(self, run: BenchmarkRun) -> None:
        """The prompts, then the CLIP model (unless given)."""
        from cpedit.eval.metrics import load_clip_scorer

        prepare_prompts(run)
        scorer = run.options.scorer
        if scorer is None:

            def load() -> Any:
                run.emit(ProgressEvent(stage="load", message=f"loading the CLIP model {run.options.clip_model}"))
                return load_clip_scorer(run.options.clip_model, device=run.compute.device)

            scorer = run.load_judge(("clip-score", str(run.options.clip_model), run.compute.device), load)
        run.judge = scorer
        run.metric_model = getattr(scorer, "name", run.options.clip_model)

    def score(self, run: BenchmarkRun, phase: Phase, entries: Sequence[ImageEntry], folder: Path) -> dict[str, Sample]:
        """The CLIP score of each of the phase's images (the metric: their mean; its interval: over prompts)."""
        from cpedit.errors import CpeditError
        from cpedit.eval.metrics import load_images

        run.emit(ProgressEvent(stage="evaluate", message=f"{phase}: CLIP score of {len(entries)} images"))
        images = load_images([e.path(folder) for e in entries])
        values = run.judge.scores(images, [e.prompt for e in entries], batch_size=run.images.batch_size)
        if not values:
            raise CpeditError("no images to score", argument="prompts")
        return {"clip_score": Sample.of(values, prompt_groups(run, len(values)), "mean")}
