"""``cpedit eval clip-score`` and ``cpedit eval fid``: a prompt set, images, a metric, before and after.

Each writes ``EDITED/conceptprune/eval/BENCH.json`` (``clip-score.json``, ``fid.json``)::

    {"clip_score": {"before": 31.4, "after": 30.9}, "protocol": {...}}

``before`` (the base model) only when the base was evaluated too; ``protocol`` says how the
images were made and measured (see :func:`protocol`). Model cards show every result.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cpedit.errors import CpeditError
from cpedit.eval.engine import PromptSpec, RenderedImages, default_images_dir, render_images
from cpedit.output.record import (
    Evaluation,
    OutputRecord,
    evaluation_path,
    read_output,
    write_evaluation,
    write_json_atomically,
)
from cpedit.progress import ProgressCallback, ProgressEvent, check_cancel, emit

CLIP_SCORE = "clip-score"
FID = "fid"
DEFAULT_CLIP_MODEL = "openai/clip-vit-large-patch14"

__all__ = ["DEFAULT_CLIP_MODEL", "MetricResult", "evaluate_clip_score", "evaluate_fid", "record_metric_result"]


@dataclass(frozen=True)
class MetricResult:
    """A metric benchmark's result: ``metrics[name] = {"before"?: x, "after": y}`` and its protocol."""

    benchmark: str
    metrics: dict[str, dict[str, float]]
    protocol: dict[str, Any]
    images: RenderedImages | None = None

    def to_json(self) -> dict[str, Any]:
        """The benchmark's JSON (the one kept in ``conceptprune/eval/BENCH.json``)."""
        return self.to_evaluation().to_dict()

    def to_evaluation(self) -> Evaluation:
        """The result as the output record keeps it."""
        return Evaluation(benchmark=self.benchmark, metrics=self.metrics, protocol=self.protocol)


def record_metric_result(
    edited: str | os.PathLike[str], result: MetricResult, *, json_file: str | os.PathLike[str] | None = None
) -> Path:
    """Keep the result in ``EDITED/conceptprune/eval/BENCH.json`` (and ``json_file``), atomically.

    Under a multi-process launch every rank holds the same result, and only rank 0 writes it
    (one writer per file); the other ranks get the path without writing anything.
    """
    from cpedit.eval.distributed import is_main_process

    if not is_main_process():
        return evaluation_path(edited, result.benchmark)
    path = write_evaluation(edited, result.to_evaluation())
    if json_file is not None:
        write_json_atomically(Path(json_file), result.to_json(), what="the result", argument="json_file")
    return path


def protocol(
    record: OutputRecord,
    prompts: Sequence[PromptSpec],
    *,
    benchmark: str,
    prompts_name: str | None,
    images_per_prompt: int,
    seed: int,
    steps: int,
    guidance_scale: float,
    height: int | None,
    width: int | None,
    metric_model: str,
) -> dict[str, Any]:
    """How the images were made and measured (no local path of the edited model)."""
    base = record.report.base_model
    digest = hashlib.sha256("\n".join(p.prompt for p in prompts).encode()).hexdigest()
    return {
        "benchmark": benchmark,
        "prompts": _prompts_label(prompts_name),
        "prompts_sha256": digest,
        "prompt_count": len(prompts),
        "images_per_prompt": images_per_prompt,
        "images": len(prompts) * images_per_prompt,
        "seed": seed,
        "seeds": [p.seed if p.seed is not None else seed for p in prompts],
        "seeding": "image j of a prompt: its seed (or seed) + j",
        "steps": steps,
        "guidance_scale": guidance_scale,
        "guidances": sorted({p.guidance for p in prompts if p.guidance is not None}),
        "height": height,
        "width": width,
        "base_model": None if base.local else (base.repo_id or base.id),
        "base_revision": None if base.local else (base.commit or base.revision),
        "metric_model": metric_model,
    }


def _prompts_label(prompts_name: str | None) -> str:
    """A prompt set as results name it: a file by its name only (no local path), ``hub:``/``attack:`` refs whole."""
    if not prompts_name:
        return "given"
    if prompts_name.startswith(("hub:", "attack:")):
        return prompts_name
    return Path(prompts_name).name


def _prepare(
    edited: str | os.PathLike[str], prompts: Sequence[PromptSpec], limit: int | None
) -> tuple[OutputRecord, list[PromptSpec]]:
    record = read_output(edited)
    chosen = list(prompts)[:limit] if limit is not None else list(prompts)
    if not chosen:
        raise CpeditError("no prompts to evaluate with", argument="prompts")
    return record, chosen


def evaluate_clip_score(
    edited: str | os.PathLike[str],
    *,
    prompts: Sequence[PromptSpec],
    prompts_name: str | None = None,
    limit: int | None = None,
    images_per_prompt: int = 1,
    seed: int = 0,
    steps: int = 30,
    guidance_scale: float = 7.5,
    height: int | None = None,
    width: int | None = None,
    base: bool = False,
    images_dir: str | os.PathLike[str] | None = None,
    clip_model: str = DEFAULT_CLIP_MODEL,
    device: str = "auto",
    dtype: str | None = None,
    batch_size: int = 4,
    scorer: Any = None,
    pipeline_for: Callable[[str], Any] | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> MetricResult:
    """CLIP score of the edited model's images against their prompts (and the base model's, with ``base``).

    The images are generated (or reused) by :func:`cpedit.eval.engine.render_images`, then
    scored with :class:`cpedit.eval.metrics.ClipScorer` (``scorer``, or ``clip_model`` loaded).
    The result is not written; see :func:`record_metric_result`.

    Raises:
        CpeditError: ``edited`` is not a cpedit output, bad settings, the CLIP model cannot be loaded.
        Cancelled: ``cancel`` was set (the images made so far are kept for the next run).
    """
    from cpedit.eval.metrics import load_clip_scorer, load_images

    record, chosen = _prepare(edited, prompts, limit)
    if scorer is None:
        emit(on_progress, ProgressEvent(stage="load", message=f"loading the CLIP model {clip_model}"))
        scorer = load_clip_scorer(clip_model, device=device)
    settings = dict(seed=seed, steps=steps, guidance_scale=guidance_scale, height=height, width=width)
    rendered = render_images(
        record,
        chosen,
        folder=images_dir or default_images_dir(edited, CLIP_SCORE),
        base=base,
        images_per_prompt=images_per_prompt,
        batch_size=batch_size,
        device=device,
        dtype=dtype,
        pipeline_for=pipeline_for,
        on_progress=on_progress,
        cancel=cancel,
        **settings,
    )
    values: dict[str, float] = {}
    for phase, entries in (("before", rendered.base), ("after", rendered.edited)):
        if not entries:
            continue
        check_cancel(cancel, "during the evaluation")
        emit(on_progress, ProgressEvent(stage="evaluate", message=f"{phase}: CLIP score of {len(entries)} images"))
        images = load_images([e.path(rendered.folder) for e in entries])
        values[phase] = scorer.score(images, [e.prompt for e in entries], batch_size=batch_size)
    emit(on_progress, ProgressEvent(stage="done", message="evaluation done"))
    return MetricResult(
        benchmark=CLIP_SCORE,
        metrics={"clip_score": values},
        protocol=protocol(
            record,
            chosen,
            benchmark=CLIP_SCORE,
            prompts_name=prompts_name,
            images_per_prompt=images_per_prompt,
            metric_model=getattr(scorer, "name", clip_model),
            **settings,
        ),
        images=rendered,
    )


def evaluate_fid(
    edited: str | os.PathLike[str],
    *,
    prompts: Sequence[PromptSpec],
    reference: str | os.PathLike[str] | None = None,
    prompts_name: str | None = None,
    limit: int | None = None,
    images_per_prompt: int = 1,
    seed: int = 0,
    steps: int = 30,
    guidance_scale: float = 7.5,
    height: int | None = None,
    width: int | None = None,
    base: bool = False,
    images_dir: str | os.PathLike[str] | None = None,
    feature_extractor: Any = None,
    device: str = "auto",
    dtype: str | None = None,
    batch_size: int = 4,
    pipeline_for: Callable[[str], Any] | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> MetricResult:
    """FID of the edited model's images against a reference set.

    The reference is a folder of (real) images, or, when ``reference`` is None, the base
    model's images on the same prompts and seeds (then only ``after`` is reported). With a
    reference folder and ``base``, ``before`` is the base model's FID against it.

    Args:
        feature_extractor: A :class:`cpedit.eval.metrics.FeatureExtractor` (default:
            torch-fidelity's ``inception-v3-compat``, :func:`cpedit.eval.metrics.inception_extractor`).
        Others: as :func:`evaluate_clip_score`.

    Raises:
        CpeditError: As :func:`evaluate_clip_score`; the Inception network is not available;
            fewer than 2 images in a set.
        Cancelled: ``cancel`` was set.
    """
    from cpedit.eval.metrics import fid_of_features, image_features, inception_extractor, load_images, reference_images

    record, chosen = _prepare(edited, prompts, limit)
    reference_files = reference_images(reference) if reference is not None else None
    if len(chosen) * images_per_prompt < 2:
        raise CpeditError("FID needs at least 2 generated images: give more prompts or images per prompt")
    if feature_extractor is None:
        emit(on_progress, ProgressEvent(stage="load", message="loading the Inception network"))
        feature_extractor = inception_extractor(device=device)
    settings = dict(seed=seed, steps=steps, guidance_scale=guidance_scale, height=height, width=width)
    rendered = render_images(
        record,
        chosen,
        folder=images_dir or default_images_dir(edited, FID),
        base=base or reference is None,
        images_per_prompt=images_per_prompt,
        batch_size=batch_size,
        device=device,
        dtype=dtype,
        pipeline_for=pipeline_for,
        on_progress=on_progress,
        cancel=cancel,
        **settings,
    )

    def features(paths: list[Path], what: str) -> Any:
        check_cancel(cancel, "during the evaluation")
        emit(on_progress, ProgressEvent(stage="evaluate", message=f"features of {len(paths)} {what} images"))
        return image_features(feature_extractor, load_images(paths), batch_size=max(batch_size, 8))

    edited_features = features([e.path(rendered.folder) for e in rendered.edited], "edited")
    base_features = features([e.path(rendered.folder) for e in rendered.base], "base") if rendered.base else None
    values: dict[str, float] = {}
    if reference_files is None:
        values["after"] = fid_of_features(edited_features, base_features)
    else:
        reference_features = features(reference_files, "reference")
        if base_features is not None:
            values["before"] = fid_of_features(base_features, reference_features)
        values["after"] = fid_of_features(edited_features, reference_features)
    emit(on_progress, ProgressEvent(stage="done", message="evaluation done"))
    result_protocol = protocol(
        record,
        chosen,
        benchmark=FID,
        prompts_name=prompts_name,
        images_per_prompt=images_per_prompt,
        metric_model=getattr(feature_extractor, "name", type(feature_extractor).__name__),
        **settings,
    )
    result_protocol["reference"] = (
        {"kind": "base_model_images", "images": len(rendered.base)}
        if reference_files is None
        else {"kind": "folder", "name": Path(reference).name, "images": len(reference_files)}
    )
    return MetricResult(benchmark=FID, metrics={"fid": values}, protocol=result_protocol, images=rendered)
