"""The evaluation engine: prompt sets, and resumable, cached image generation into a folder.

Images are PNG files in an images folder (default ``EDITED/conceptprune/eval/images/BENCH``)
with a ``manifest.jsonl``: one JSON line per image, written after the image itself::

    {"prompt": "a cat", "seed": 0, "file": "edited/3f2a....png", "model": "edited", "key": "3f2a...",
     "steps": 30, "guidance": 7.5, "height": null, "width": null}

``file`` is relative to the folder; ``model`` is ``edited`` or ``base``; ``key`` is a hash of
the model (the edited output's report, or the base model's id and revision), the prompt, the
seed and the settings. A run reuses every listed image whose key it needs and generates only
the rest, so a second run, or a run after Ctrl-C or a crash, picks up where the last one
stopped, and the base model's images are made once for all the runs that ask for them.

Under a multi-process launch (``torchrun``, ``accelerate launch``; see :mod:`cpedit.distributed`)
the missing images are batched as in one process and the batches dealt out to the ranks;
rank ``R`` lists its images in its own ``manifest.rank-R.jsonl`` and rank 0 merges them into
``manifest.jsonl`` once every rank is done. After every run the manifest is rewritten in one
canonical order (this run's images in prompt-set order, the edited model's then the base's,
then older entries as they were), so one process and N processes leave the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypedDict

from cpedit import distributed
from cpedit.errors import CpeditError, CpeditWarning
from cpedit.eval.manifest import (
    MANIFEST,
    RANK_MANIFEST,
    ImageEntry,
    ImageJob,
    Model,
    append_manifest,
    check_images_folder,
    read_images_folder,
    read_manifest,
    write_canonical_manifest,
)
from cpedit.models.compute import ComputeOptions
from cpedit.output.record import EVAL_DIR, IMAGES_DIR, POSITIONS_FILE, RECORD_DIR, OutputRecord
from cpedit.progress import ProgressCallback, ProgressEvent, check_cancel, emit, step_events
from cpedit.recipes.format import MAX_SEED
from cpedit.text import shown

__all__ = [
    "ImageEntry",
    "ImageJob",
    "PromptSpec",
    "RenderedImages",
    "default_images_dir",
    "image_jobs",
    "load_prompts",
    "read_manifest",
    "render_images",
]


@dataclass(frozen=True)
class PromptSpec:
    """One prompt of a prompt set, with the settings it asks for (None: the run's own)."""

    prompt: str
    seed: int | None = None
    guidance: float | None = None
    height: int | None = None
    width: int | None = None


def load_prompts(file: str | os.PathLike[str], *, limit: int | None = None) -> list[PromptSpec]:
    """Read a prompt set: ``.txt`` (one prompt a line), ``.csv`` or ``.jsonl``.

    CSV files have a header with a ``prompt`` column and optionally ``seed``, ``guidance``,
    ``height``, ``width``; JSON Lines files have one object a line with the same keys. Blank
    lines (and empty optional cells) are skipped.

    Args:
        file: The prompt file.
        limit: Keep only the first ``limit`` prompts.

    Raises:
        CpeditError: The file cannot be read, has an unknown suffix, a bad value (the line
            named) or no prompt (``argument="prompts"``).
    """
    path = Path(file)
    suffix = path.suffix.lower()
    if suffix not in (".txt", ".csv", ".jsonl"):
        raise CpeditError(
            f"{path}: a prompt file must be .txt (one prompt a line), .csv or .jsonl",
            path=str(path),
            argument="prompts",
        )
    from cpedit.eval.prompt_files import read_rows

    columns, rows = read_rows(path)  # bounded and streamed: size, lines, rows (file and line named)
    if suffix == ".csv" and "prompt" not in columns:
        raise CpeditError(f"{path}: the CSV header has no 'prompt' column", path=str(path), argument="prompts")
    specs = [s for n, row in rows if (s := _spec(row, where=f"{path}:{n}", path=path)) is not None]
    if limit is not None:
        specs = specs[:limit]
    if not specs:
        raise CpeditError(f"{path}: no prompts", path=str(path), argument="prompts")
    return specs


def _spec(row: dict[str, Any], *, where: str, path: Path) -> PromptSpec | None:
    def fail(message: str) -> CpeditError:
        return CpeditError(f"{where}: {message}", path=str(path), argument="prompts")

    prompt = row.get("prompt")
    if prompt is None or (isinstance(prompt, str) and not prompt.strip()):
        return None
    if not isinstance(prompt, str):
        raise fail(f"prompt must be text, got {shown(prompt)}")
    from cpedit.eval.prompt_files import check_prompt

    check_prompt(prompt.strip(), where=where, path=path)
    values: dict[str, Any] = {}
    for name, kind in (("seed", int), ("guidance", float), ("height", int), ("width", int)):
        raw = row.get(name)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            continue
        try:
            value = kind(raw) if not isinstance(raw, bool) else None
            if kind is int and isinstance(raw, float) and raw != int(raw):
                value = None
        except (TypeError, ValueError, OverflowError):  # OverflowError: int() of an infinity (JSON 1e999)
            value = None
        if value is None or (kind is float and not math.isfinite(value)) or (kind is int and value < 0):
            raise fail(f"{name} must be a {'whole number' if kind is int else 'number'}, got {shown(raw)}")
        if name == "seed" and value > MAX_SEED:
            raise fail(f"the seed {value} is larger than {MAX_SEED} (2^63 - 1), the largest seed cpedit takes")
        values[name] = value
    return PromptSpec(prompt=prompt.strip(), **values)


@dataclass
class RenderedImages:
    """The images of a run: per model, in the order of the prompt set (prompt, then seed)."""

    folder: Path
    edited: list[ImageEntry]
    base: list[ImageEntry] = field(default_factory=list)
    generated: int = 0
    """Images generated by this run (the others were reused)."""
    reused: int = 0


def default_images_dir(edited: str | os.PathLike[str], benchmark: str) -> Path:
    """``EDITED/conceptprune/eval/images/BENCH``."""
    return Path(edited) / RECORD_DIR / EVAL_DIR / IMAGES_DIR / benchmark


def model_identity(record: OutputRecord, model: Model, *, positions_sha256: str | None = None) -> dict[str, Any]:
    """What names a model in the cache key.

    The edited model: its base, the digest of its pruned positions (``conceptprune/pruned.safetensors``,
    or ``positions_sha256`` for an edit held in memory) and how they were filled, so two edits
    share images only when they are the same edit (two outputs made in the same second with the
    same count do not); the report's creation time too, where no positions file is kept. The
    base model: its id and revision, and for a local folder its content
    (:func:`cpedit.eval.base_content.local_base_content`), so a folder replaced by other weights
    is not taken for the old one.

    Raises:
        CpeditError: A local base no longer matches the output (``reason="mismatch"``) or is gone.
    """
    report = record.report
    base = report.base_model
    base_identity = {"model": base.repo_id or base.id, "revision": base.commit or base.revision}
    if model == "base":
        from cpedit.eval.base_content import local_base_content

        content = local_base_content(record)  # a local folder can be replaced: its content names it
        return base_identity if content is None else {**base_identity, "content": content}
    positions = Path(record.folder) / RECORD_DIR / POSITIONS_FILE
    identity: dict[str, Any] = {"model": "edited", "base": base_identity, "pruned": report.totals.pruned_weights}
    identity["conceal"] = report.conceal.to_dict()
    if positions_sha256 is not None:
        identity["positions_sha256"] = positions_sha256
    elif positions.is_file():
        identity["positions_sha256"] = _file_sha256(positions)
    else:
        identity["created"] = report.created
    return identity


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _JobSettings(TypedDict):
    """What decides an image (with the model's identity, it is hashed into the image's key)."""

    prompt: str
    seed: int
    steps: int
    guidance: float
    height: int | None
    width: int | None


def image_jobs(
    prompts: Sequence[PromptSpec],
    *,
    identity: dict[str, Any],
    model: Model,
    seed: int,
    steps: int,
    guidance_scale: float,
    height: int | None,
    width: int | None,
    images_per_prompt: int,
) -> list[ImageJob]:
    """The images a run needs: ``images_per_prompt`` per prompt, seeded ``(prompt's seed or seed) + j``."""
    jobs = []
    for spec in prompts:
        first = spec.seed if spec.seed is not None else seed
        for j in range(images_per_prompt):
            settings: _JobSettings = {
                "prompt": spec.prompt,
                "seed": first + j,
                "steps": steps,
                "guidance": spec.guidance if spec.guidance is not None else guidance_scale,
                "height": spec.height if spec.height is not None else height,
                "width": spec.width if spec.width is not None else width,
            }
            key = hashlib.sha256(json.dumps({**identity, **settings}, sort_keys=True).encode()).hexdigest()
            jobs.append(ImageJob(model=model, key=key, **settings))
    return jobs


def _batches(jobs: Sequence[ImageJob], batch_size: int) -> list[list[ImageJob]]:
    """Jobs in batches of at most ``batch_size`` that share guidance and size (one pipeline call each)."""
    groups: dict[tuple[Any, ...], list[ImageJob]] = {}
    for job in jobs:
        groups.setdefault((job.guidance, job.height, job.width), []).append(job)
    return [group[i : i + batch_size] for group in groups.values() for i in range(0, len(group), batch_size)]


def render_batch(
    pipe: Any,
    jobs: Sequence[ImageJob],
    *,
    cancel: threading.Event | None = None,
    on_step: Callable[[int, int | None], None] | None = None,
) -> list[Any]:
    """One pipeline call for ``jobs`` (same guidance and size), one generator per image: PIL images.

    ``on_step(done, calls)`` hears of every denoising step (see :func:`cpedit.models.sampling.step_callback`).
    A video model (Wan) renders a short clip per job (:func:`cpedit.models.sampling.call_size`) and its
    image is the clip's middle frame: image benchmarks judge that frame as an image, one per prompt and
    seed, so intervals stay over prompts.

    Raises:
        CpeditError: Out of memory (``reason="out_of_memory"``: use a smaller batch size).
    """
    import torch

    from cpedit.models.architectures import guidance_arguments, spec_for_pipeline
    from cpedit.models.sampling import call_size, step_callback

    device = pipe.device if pipe.device.type != "mps" else torch.device("cpu")
    first = jobs[0]
    size, video = call_size(pipe, height=first.height, width=first.width)
    try:
        result = pipe(
            prompt=[job.prompt for job in jobs],  # by name: FLUX.2's first parameter is a conditioning image
            num_inference_steps=first.steps,
            **guidance_arguments(spec_for_pipeline(pipe), first.guidance, prompts=len(jobs)),
            generator=[torch.Generator(device=device).manual_seed(job.seed) for job in jobs],
            **size,
            **video,
            **step_callback(pipe, cancel, on_step=on_step),
        )
    except (torch.OutOfMemoryError, MemoryError) as exc:
        raise CpeditError(
            f"not enough memory to render {len(jobs)} images at once ({str(exc).splitlines()[0][:160]}); "
            "render fewer at once",
            reason="out_of_memory",
            argument="batch_size",
        ) from None
    if video:
        return [list(clip)[len(clip) // 2] for clip in result.frames]
    return list(result.images)


def _swap_to_base(
    pipe: Any, record: OutputRecord, *, on_progress: ProgressCallback | None, cancel: threading.Event | None
) -> None:
    """Put the base model's weights back into every component the run edited (the rest is identical)."""
    from cpedit.models import loading

    report = record.report
    base = report.base_model
    if not report.base_ref:
        raise CpeditError(
            f"{record.folder}: the report does not record a base model to compare with",
            path=str(record.folder),
            reason="no_base",
        )
    emit(on_progress, ProgressEvent(stage="load", message=f"loading the base model {report.base_ref}"))
    source = loading.resolve_source(
        report.base_ref,
        revision=None if base.local else (base.commit or base.revision),
        on_progress=on_progress,
        cancel=cancel,
    )
    loading.load_base_components(pipe, source.path, report.edited_components, cancel=cancel)


def render_images(
    record: OutputRecord,
    prompts: Sequence[PromptSpec],
    *,
    folder: str | os.PathLike[str],
    base: bool = False,
    seed: int = 0,
    steps: int = 30,
    guidance_scale: float = 7.5,
    height: int | None = None,
    width: int | None = None,
    images_per_prompt: int = 1,
    batch_size: int = 4,
    compute: ComputeOptions = ComputeOptions(),
    pipe: Any = None,
    pipeline_for: Callable[[Model], Any] | None = None,
    edited_identity: dict[str, Any] | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> RenderedImages:
    """Make sure ``folder`` holds every image of the edited model (and the base's, with ``base``).

    Images already listed in the manifest are reused; the rest are generated, batched, the
    edited model's first, then the base model's from the same in-memory pipeline (its edited
    components swapped back). Each image is written (atomically) and then listed, so a
    cancelled or killed run loses at most the batch in flight. The pipeline is loaded only if
    something is missing.

    Args:
        record: The edited output (:func:`cpedit.output.record.read_output`).
        prompts: The prompt set; a prompt's own seed, guidance and size override the run's.
        folder: The images folder (created if needed).
        base: Also the base model's images, on the same prompts and seeds.
        seed: The first seed of prompts without one; image ``j`` of a prompt uses ``seed + j``.
        steps: Denoising steps.
        guidance_scale: Classifier-free guidance scale.
        height: Image height (None: the model's native size); give both or neither.
        width: Image width.
        images_per_prompt: Images per prompt, per model.
        batch_size: Images per pipeline call.
        compute: The device and dtype the edited output loads with (no revision: it is a folder; no
            offload with ``base``: the base's components are swapped into the loaded pipeline).
        pipe: An already loaded pipeline of the edited output (None: load it when needed). With
            ``base``, its edited components are replaced by the base model's when base images are made.
        pipeline_for: Gives the pipeline that shows a model (``"edited"`` or ``"base"``), called
            before that model's first missing batch, in place of ``pipe``, the load and the swap:
            an edit session in memory (``cpedit sweep``) applies or restores its selection here.
        edited_identity: What names the edited model in the image keys, for an edit held in memory
            (no positions file to digest); None: :func:`model_identity` of ``record``.
        on_progress: Receives ``load`` and ``sample`` events (``completed``/``total`` count
            the images of the run, the reused ones included; a batch also reports each of its
            denoising steps in ``timestep``/``timesteps``; under a multi-process launch each
            rank counts its own share, then every rank gets the whole count once all are ready).
        cancel: Checked before and after every batch; stops with :class:`~cpedit.errors.Cancelled`.

    Under a multi-process launch (``WORLD_SIZE`` > 1, see :mod:`cpedit.distributed`) every
    rank calls this with the same arguments: the missing images are batched as in one process,
    rank ``R`` renders batches ``R, R + N, ...`` on its own device (``compute.device`` ``auto``/``cuda``:
    ``cuda:LOCAL_RANK``) and lists them in ``manifest.rank-R.jsonl``; once every rank is done,
    rank 0 merges these into ``manifest.jsonl`` and every rank returns all the images. The
    images and the manifest are the same, byte for byte, as one process makes (same device and
    thread settings assumed). In any case the manifest ends in canonical order (see
    :func:`cpedit.eval.manifest.write_canonical_manifest`).

    Raises:
        CpeditError: Bad settings, offload with ``base``, no base model recorded (with ``base``), out of memory, a
            half-set launch environment (``reason="distributed_environment"``), images that are
            not there after the run (``reason="images_missing"``: a folder that the nodes do not share).
        Cancelled: ``cancel`` was set (the images made so far are kept).
    """
    from cpedit.models.sampling import SampleSettings, check_sample_settings, save_png

    check_sample_settings(SampleSettings(steps=steps, guidance_scale=guidance_scale, height=height, width=width))
    for spec in prompts:
        h, w = spec.height if spec.height is not None else height, spec.width if spec.width is not None else width
        check_sample_settings(
            SampleSettings(
                steps=steps,
                guidance_scale=spec.guidance if spec.guidance is not None else guidance_scale,
                height=h,
                width=w,
            )
        )
    if images_per_prompt < 1 or batch_size < 1:
        raise CpeditError("images per prompt and batch size must be at least 1", argument="images_per_prompt")
    if base and pipe is None and pipeline_for is None:
        compute.refuse_offload("the base model's components are swapped into the loaded pipeline")
    root = Path(folder)
    check_images_folder(root)  # before anything is loaded or rendered: no links, a manifest file, model folders
    root.mkdir(parents=True, exist_ok=True)
    models: list[Model] = ["edited", "base"] if base else ["edited"]
    jobs = {
        m: image_jobs(
            prompts,
            identity=edited_identity if m == "edited" and edited_identity is not None else model_identity(record, m),
            model=m,
            seed=seed,
            steps=steps,
            guidance_scale=guidance_scale,
            height=height,
            width=width,
            images_per_prompt=images_per_prompt,
        )
        for m in models
    }
    launch = distributed.setup()
    rank, size = (launch.rank, launch.world_size) if launch is not None else (0, 1)
    cached = read_images_folder(root)
    have = cached.entries
    if cached.damaged and rank == 0:
        _say_damaged(root, cached.damaged, on_progress)
    distributed.barrier()  # every rank has seen the same folder before any of them writes to it
    missing = {m: [j for j in jobs[m] if j.key not in have] for m in models}
    reused = sum(len(jobs[m]) - len(missing[m]) for m in models)
    result = RenderedImages(folder=root, edited=[], reused=reused)
    # The batches of one process, dealt out: every image is rendered in the same batch, so the same pixels.
    work = [(m, batch) for m in models for batch in _batches(missing[m], batch_size)]
    mine = work[rank::size]
    manifest_name = MANIFEST if launch is None else RANK_MANIFEST.format(rank=rank)
    where = "" if launch is None else f"rank {rank}/{size}: "
    if mine and pipe is None and pipeline_for is None:
        from cpedit.models import loading

        check_cancel(cancel, "before loading the model")
        on_rank = replace(compute, device=distributed.rank_device(compute.device))
        _, pipe = loading.open_pipeline(record.folder, compute=on_rank, on_progress=on_progress, cancel=cancel)
    for model in models:
        batches = [batch for m, batch in mine if m == model]
        if launch is None:
            total, done = len(jobs[model]), len(jobs[model]) - len(missing[model])
        else:  # a rank counts its own share
            total, done = sum(len(batch) for batch in batches), 0
        if batches:
            if pipeline_for is not None:
                pipe = pipeline_for(model)
            elif model == "base":
                _swap_to_base(pipe, record, on_progress=on_progress, cancel=cancel)
            pipe.set_progress_bar_config(disable=True)
            for index, batch in enumerate(batches, 1):
                check_cancel(cancel, "while generating the evaluation images")
                started = ProgressEvent(
                    stage="sample",
                    message=f"{where}{model}: {len(batch)} image(s), {batch[0].prompt}",
                    concept=model,
                    batch=index,
                    batches=len(batches),
                    batch_size=len(batch),
                    completed=done,
                    total=total,
                    unit="images",
                )
                emit(on_progress, started)
                on_step = step_events(on_progress, started, steps=batch[0].steps)
                images = render_batch(pipe, batch, cancel=cancel, on_step=on_step)
                check_cancel(cancel, "while generating the evaluation images")  # an interrupted batch is not kept
                for job, image in zip(batch, images, strict=True):
                    (root / job.file).parent.mkdir(parents=True, exist_ok=True)
                    save_png(image, root / job.file, what="an evaluation image")
                    append_manifest(root, job, name=manifest_name)
                done += len(batch)
        if launch is None:
            _ready(on_progress, model, total=total, reused=total - len(missing[model]))
        elif batches:
            emit(
                on_progress,
                ProgressEvent(
                    stage="sample",
                    message=f"{where}{model}: this rank's {total} images done; waiting for the other ranks",
                    concept=model,
                    batch=len(batches),
                    batches=len(batches),
                    completed=total,
                    total=total,
                    unit="images",
                ),
            )
    distributed.barrier()  # every rank's images and rank manifest are written
    if rank == 0:
        write_canonical_manifest(root, [job for m in models for job in jobs[m]])
    distributed.barrier()  # the merged manifest is in place
    have = read_manifest(root)
    absent = [job for m in models for job in jobs[m] if job.key not in have]
    if absent:
        raise CpeditError(
            f"{root}: {len(absent)} of the run's images (such as {absent[0].file}) are not there after the run"
            + (
                "; with several nodes the images folder must be on a filesystem every node shares"
                if launch is not None
                else "; was the folder changed while the run was going? Run again to make them"
            ),
            path=str(root),
            reason="images_missing",
            argument="folder",
        )
    if launch is not None:
        for model in models:
            _ready(on_progress, model, total=len(jobs[model]), reused=len(jobs[model]) - len(missing[model]))
    result.generated = sum(len(missing[m]) for m in models)
    result.edited = [have[j.key] for j in jobs["edited"]]
    result.base = [have[j.key] for j in jobs.get("base", [])]
    return result


def _say_damaged(root: Path, damaged: list[str], on_progress: ProgressCallback | None) -> None:
    """Warn (and tell the progress listener) that cached images are cut short and are rendered again."""
    message = (
        f"{root}: {len(damaged)} cached image(s) are cut short or not PNG files (such as {damaged[0]}); "
        "rendering them again"
    )
    warnings.warn(CpeditWarning(message), stacklevel=3)
    emit(on_progress, ProgressEvent(stage="sample", message=message, unit="images"))


def _ready(on_progress: ProgressCallback | None, model: Model, *, total: int, reused: int) -> None:
    emit(
        on_progress,
        ProgressEvent(
            stage="sample",
            message=f"{model}: {total} images ready ({reused} reused)",
            concept=model,
            completed=total,
            total=total,
            unit="images",
        ),
    )
