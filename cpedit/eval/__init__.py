"""The evaluation suite: generate images from a prompt set (resumable, cached) and measure them.

Every benchmark (``clip-score``, ``fid``, ``nudity``, ``classify``, ``attack``, ``shapes``) is a
:class:`Benchmark` in a module of its own, listed in :mod:`cpedit.eval.registry`, and runs
through one driver, :func:`evaluate`: it keeps the images in a folder with a ``manifest.jsonl``
(see :mod:`cpedit.eval.engine`), reads prompt sets from files or Hub datasets
(:func:`load_prompt_set`), splits the images across the processes of a ``torchrun`` launch
(:mod:`cpedit.distributed`) and returns a :class:`BenchmarkResult`, which
:func:`record_result` keeps in ``EDITED/conceptprune/eval/BENCH.json``.

Importing :mod:`cpedit.eval` is cheap (no torch): names are imported from their modules on
first use (PEP 562), as in :mod:`cpedit`.

Example:
    >>> from cpedit.eval import ClipScoreOptions, ImageOptions, evaluate
    >>> result = evaluate("clip-score", "out-no-van-gogh", ClipScoreOptions(prompts="prompts.txt"),
    ...                   images=ImageOptions(steps=30), base=True)
    >>> result.metrics["clip_score"]["after"]
    31.2
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cpedit._lazy import lazy_exports

if TYPE_CHECKING:
    from cpedit.distributed import is_main_process
    from cpedit.eval.attack import AttackOptions
    from cpedit.eval.attack_sets import ATTACK_SETS, AttackSet
    from cpedit.eval.benchmark import Benchmark, BenchmarkOptions, BenchmarkResult, BenchmarkRun, PromptOptions
    from cpedit.eval.classify import ClassifyOptions, classifier_detector
    from cpedit.eval.clip_score import ClipScoreOptions
    from cpedit.eval.driver import evaluate, record_result
    from cpedit.eval.engine import ImageEntry, PromptSpec, RenderedImages, load_prompts, read_manifest, render_images
    from cpedit.eval.fid import FidOptions
    from cpedit.eval.metrics import (
        ClipScorer,
        FeatureExtractor,
        frechet_distance,
        image_features,
        inception_extractor,
        load_clip_scorer,
    )
    from cpedit.eval.nudity import NudityDetector, NudityOptions
    from cpedit.eval.options import ImageOptions
    from cpedit.eval.prompt_sets import PromptSet, load_prompt_set
    from cpedit.eval.registry import benchmark_names, get_benchmark, register
    from cpedit.eval.shapes import ShapesOptions

_EXPORTS = {
    "ATTACK_SETS": "cpedit.eval.attack_sets",
    "AttackOptions": "cpedit.eval.attack",
    "AttackSet": "cpedit.eval.attack_sets",
    "Benchmark": "cpedit.eval.benchmark",
    "benchmark_names": "cpedit.eval.registry",
    "BenchmarkOptions": "cpedit.eval.benchmark",
    "BenchmarkResult": "cpedit.eval.benchmark",
    "BenchmarkRun": "cpedit.eval.benchmark",
    "classifier_detector": "cpedit.eval.classify",
    "ClassifyOptions": "cpedit.eval.classify",
    "ClipScoreOptions": "cpedit.eval.clip_score",
    "ClipScorer": "cpedit.eval.metrics",
    "evaluate": "cpedit.eval.driver",
    "FeatureExtractor": "cpedit.eval.metrics",
    "FidOptions": "cpedit.eval.fid",
    "frechet_distance": "cpedit.eval.metrics",
    "get_benchmark": "cpedit.eval.registry",
    "image_features": "cpedit.eval.metrics",
    "ImageEntry": "cpedit.eval.engine",
    "ImageOptions": "cpedit.eval.options",
    "inception_extractor": "cpedit.eval.metrics",
    "is_main_process": "cpedit.distributed",
    "load_clip_scorer": "cpedit.eval.metrics",
    "load_prompt_set": "cpedit.eval.prompt_sets",
    "load_prompts": "cpedit.eval.engine",
    "NudityDetector": "cpedit.eval.nudity",
    "NudityOptions": "cpedit.eval.nudity",
    "PromptOptions": "cpedit.eval.benchmark",
    "PromptSet": "cpedit.eval.prompt_sets",
    "PromptSpec": "cpedit.eval.engine",
    "read_manifest": "cpedit.eval.engine",
    "record_result": "cpedit.eval.driver",
    "register": "cpedit.eval.registry",
    "render_images": "cpedit.eval.engine",
    "RenderedImages": "cpedit.eval.engine",
    "ShapesOptions": "cpedit.eval.shapes",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
