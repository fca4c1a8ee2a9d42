"""The evaluation suite: generate images from a prompt set (resumable, cached) and measure them.

``cpedit eval clip-score``, ``fid``, ``nudity``, ``classify`` and ``attack`` run on
:func:`evaluate_clip_score`, :func:`evaluate_fid`, :func:`evaluate_nudity`,
:func:`cpedit.eval.classify.evaluate_classify` and :func:`evaluate_attack`; all keep their
images in a folder with a ``manifest.jsonl`` (see :mod:`cpedit.eval.engine`), read prompt
sets from files or Hub datasets (:func:`load_prompt_set`), split their images across the
processes of a ``torchrun`` launch (:mod:`cpedit.eval.distributed`) and keep their result
in ``EDITED/conceptprune/eval/BENCH.json``.

Importing :mod:`cpedit.eval` is cheap (no torch): names are imported from their modules on
first use (PEP 562), as in :mod:`cpedit`.

Example:
    >>> from cpedit.eval import evaluate_clip_score, load_prompts
    >>> result = evaluate_clip_score("out-no-van-gogh", prompts=load_prompts("prompts.txt"), base=True)
    >>> result.metrics["clip_score"]["after"]
    31.2
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cpedit._lazy import lazy_exports

if TYPE_CHECKING:
    from cpedit.eval.attack import evaluate_attack
    from cpedit.eval.attack_sets import ATTACK_SETS, AttackSet
    from cpedit.eval.benchmarks import MetricResult, evaluate_clip_score, evaluate_fid, record_metric_result
    from cpedit.eval.classify import classifier_detector, evaluate_classify
    from cpedit.eval.distributed import is_main_process
    from cpedit.eval.engine import ImageEntry, PromptSpec, RenderedImages, load_prompts, read_manifest, render_images
    from cpedit.eval.metrics import (
        ClipScorer,
        FeatureExtractor,
        frechet_distance,
        image_features,
        inception_extractor,
        load_clip_scorer,
    )
    from cpedit.eval.nudity import NudityDetector, evaluate_nudity
    from cpedit.eval.prompt_sets import PromptSet, load_prompt_set

_EXPORTS = {
    "ATTACK_SETS": "cpedit.eval.attack_sets",
    "AttackSet": "cpedit.eval.attack_sets",
    "ClipScorer": "cpedit.eval.metrics",
    "evaluate_attack": "cpedit.eval.attack",
    "evaluate_clip_score": "cpedit.eval.benchmarks",
    "evaluate_fid": "cpedit.eval.benchmarks",
    "evaluate_nudity": "cpedit.eval.nudity",
    "FeatureExtractor": "cpedit.eval.metrics",
    "frechet_distance": "cpedit.eval.metrics",
    "image_features": "cpedit.eval.metrics",
    "ImageEntry": "cpedit.eval.engine",
    "inception_extractor": "cpedit.eval.metrics",
    "is_main_process": "cpedit.eval.distributed",
    "load_clip_scorer": "cpedit.eval.metrics",
    "load_prompt_set": "cpedit.eval.prompt_sets",
    "load_prompts": "cpedit.eval.engine",
    "MetricResult": "cpedit.eval.benchmarks",
    "NudityDetector": "cpedit.eval.nudity",
    "evaluate_classify": "cpedit.eval.classify",
    "classifier_detector": "cpedit.eval.classify",
    "PromptSet": "cpedit.eval.prompt_sets",
    "PromptSpec": "cpedit.eval.engine",
    "read_manifest": "cpedit.eval.engine",
    "record_metric_result": "cpedit.eval.benchmarks",
    "render_images": "cpedit.eval.engine",
    "RenderedImages": "cpedit.eval.engine",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
