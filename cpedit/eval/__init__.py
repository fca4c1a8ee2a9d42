"""The evaluation suite: generate images from a prompt set (resumable, cached) and measure them.

``cpedit eval clip-score`` and ``cpedit eval fid`` run on :func:`evaluate_clip_score` and
:func:`evaluate_fid`; both keep their images in a folder with a ``manifest.jsonl`` (see
:mod:`cpedit.eval.engine`) and their result in ``EDITED/conceptprune/eval/BENCH.json``.

Importing :mod:`cpedit.eval` is cheap (no torch): names are imported from their modules on
first use (PEP 562), as in :mod:`cpedit`.

Example:
    >>> from cpedit.eval import evaluate_clip_score, load_prompts
    >>> result = evaluate_clip_score("out-no-van-gogh", prompts=load_prompts("prompts.txt"), base=True)
    >>> result.metrics["clip_score"]["after"]
    31.2
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cpedit.eval.benchmarks import MetricResult, evaluate_clip_score, evaluate_fid, record_metric_result
    from cpedit.eval.engine import ImageEntry, PromptSpec, RenderedImages, load_prompts, read_manifest, render_images
    from cpedit.eval.metrics import (
        ClipScorer,
        FeatureExtractor,
        frechet_distance,
        image_features,
        inception_extractor,
        load_clip_scorer,
    )

_EXPORTS = {
    "ClipScorer": "cpedit.eval.metrics",
    "FeatureExtractor": "cpedit.eval.metrics",
    "ImageEntry": "cpedit.eval.engine",
    "MetricResult": "cpedit.eval.benchmarks",
    "PromptSpec": "cpedit.eval.engine",
    "RenderedImages": "cpedit.eval.engine",
    "evaluate_clip_score": "cpedit.eval.benchmarks",
    "evaluate_fid": "cpedit.eval.benchmarks",
    "frechet_distance": "cpedit.eval.metrics",
    "image_features": "cpedit.eval.metrics",
    "inception_extractor": "cpedit.eval.metrics",
    "load_clip_scorer": "cpedit.eval.metrics",
    "load_prompts": "cpedit.eval.engine",
    "read_manifest": "cpedit.eval.engine",
    "record_metric_result": "cpedit.eval.benchmarks",
    "render_images": "cpedit.eval.engine",
}

__all__ = [
    "ClipScorer",
    "FeatureExtractor",
    "ImageEntry",
    "MetricResult",
    "PromptSpec",
    "RenderedImages",
    "evaluate_clip_score",
    "evaluate_fid",
    "frechet_distance",
    "image_features",
    "inception_extractor",
    "load_clip_scorer",
    "load_prompts",
    "read_manifest",
    "record_metric_result",
    "render_images",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cpedit.eval' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
