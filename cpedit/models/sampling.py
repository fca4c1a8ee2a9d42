"""Rendering seeded samples and before/after grids.

Sampling is for looking at results; it is never part of calibration.
"""

from __future__ import annotations

import inspect
import math
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw

from cpedit.errors import CpeditError, CpeditWarning
from cpedit.models import loading
from cpedit.models.compute import ComputeOptions
from cpedit.models.settings import SampleSettings, check_sample_settings
from cpedit.progress import ProgressCallback, ProgressEvent, check_cancel, emit, step_events

MIN_CELL = 128
"""Grid cells are at least this many pixels wide (small images are enlarged, pixel for pixel)."""
FRAMES_INFO = "cpedit.frames"
"""Key of a video sample's frames in its frame strip's ``Image.info`` (:func:`clip_frames`)."""
ANIMATION_FPS = 16
"""Frames per second of the animated files (Wan renders 16 frames a second)."""


def truncated_prompts(pipe: Any, prompts: Sequence[str]) -> list[str]:
    """The prompts longer than the pipeline's (first) tokenizer takes: the model sees only their start."""
    tokenizer = getattr(pipe, "tokenizer", None)
    limit = getattr(tokenizer, "model_max_length", None)
    if tokenizer is None or not isinstance(limit, int) or limit > 100_000:
        return []
    cut = []
    for prompt in dict.fromkeys(prompts):
        try:
            ids = tokenizer(prompt, truncation=False).input_ids
        except Exception:  # noqa: BLE001 - a tokenizer that cannot tell: nothing to warn about
            continue
        if len(ids) > limit:
            cut.append(prompt)
    return cut


def warn_truncated(pipe: Any, prompts: Sequence[str]) -> None:
    """Warn (:class:`~cpedit.errors.CpeditWarning`) about prompts the text encoder will cut short."""
    cut = truncated_prompts(pipe, prompts)
    if cut:
        limit = pipe.tokenizer.model_max_length
        example = cut[0] if len(cut[0]) <= 60 else cut[0][:57] + "..."
        warnings.warn(
            CpeditWarning(
                f"{len(cut)} prompt(s) are longer than the {limit} tokens the text encoder reads, so only their "
                f"start is used (e.g. {example!r}); shorten them"
            ),
            stacklevel=3,
        )


@contextmanager
def safety_checker_set(pipe: Any, checker: Any) -> Iterator[None]:
    """Run the block with ``pipe``'s ``safety_checker`` component set to ``checker`` (None: no filter).

    Diffusers has no per-call switch for the checker: a Stable Diffusion pipeline filters its
    images whenever the component is set. So the component is swapped through the pipeline's
    public attribute (diffusers' ``__setattr__`` keeps its config in step) and the pipeline's own
    is put back afterwards, also after an error or a cancel, so a later ``save_pretrained`` writes
    the components the pipeline came with. A pipeline without that component is left alone.
    """
    if not hasattr(pipe, "safety_checker"):
        yield
        return
    own = pipe.safety_checker
    pipe.safety_checker = checker
    try:
        yield
    finally:
        pipe.safety_checker = own


def generate(
    pipe: Any,
    prompts: Sequence[str],
    settings: SampleSettings,
    *,
    label: str = "sample",
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> list[Image.Image]:
    """One image per prompt, each from a generator seeded with ``settings.seed``.

    Emits a ``sample`` event per image (``completed``/``total`` count images, ``batch``/``batches``
    the image being rendered, ``batch_size`` 1) and one per denoising step (``timestep``/``timesteps``: the
    denoiser calls of the image done and in all); checks ``cancel`` before every image and
    after every denoising step.

    A video pipeline (Wan) renders a short clip per prompt (the family's
    :attr:`~cpedit.models.architectures.ArchitectureSpec.sample_frames`; the pipeline's own size
    unless ``settings`` give one); its "image" is the clip's frame strip (frames side by side,
    :func:`frame_strip`), which carries the frames for the animated file (:func:`clip_frames`).

    Raises:
        Cancelled: ``cancel`` was set.
    """
    from cpedit.models.architectures import guidance_arguments, spec_for_pipeline

    check_sample_settings(settings, pipe)
    warn_truncated(pipe, prompts)
    images: list[Image.Image] = []
    device = pipe.device if pipe.device.type != "mps" else torch.device("cpu")
    size, video = call_size(pipe, height=settings.height, width=settings.width)
    for index, prompt in enumerate(prompts):
        check_cancel(cancel, "while rendering")
        event = ProgressEvent(
            stage="sample",
            message=f"{label}: {prompt}",
            concept=label,
            batch=index + 1,
            batches=len(prompts),
            batch_size=1,
            completed=index,
            total=len(prompts),
            unit="images",
        )
        emit(on_progress, event)
        extra = step_callback(pipe, cancel, on_step=step_events(on_progress, event, steps=settings.steps))
        guidance = guidance_arguments(spec_for_pipeline(pipe), settings.guidance_scale, prompts=1)
        try:
            result = pipe(
                prompt=prompt,  # by name: FLUX.2's first parameter is a conditioning image
                num_inference_steps=settings.steps,
                **guidance,
                generator=torch.Generator(device=device).manual_seed(settings.seed),
                **size,
                **video,
                **extra,
            )
        except (torch.OutOfMemoryError, MemoryError) as exc:
            raise _out_of_memory(settings, exc) from None
        except RuntimeError as exc:
            if "memory" not in str(exc).lower() and "alloc" not in str(exc).lower():
                raise
            raise _out_of_memory(settings, exc) from None
        check_cancel(cancel, "while rendering")
        images.append(frame_strip(list(result.frames[0])) if video else result.images[0])
    emit(
        on_progress,
        ProgressEvent(
            stage="sample",
            message=f"{label}: done",
            concept=label,
            completed=len(prompts),
            total=len(prompts),
            unit="images",
        ),
    )
    return images


def call_size(pipe: Any, *, height: int | None, width: int | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The size arguments of a rendering call of ``pipe``, and the clip arguments of a video pipeline.

    A video family (Wan) renders :attr:`~cpedit.models.architectures.ArchitectureSpec.sample_frames`
    frames as PIL images; its pipeline takes no None size, so an unset size is left to its default.
    Image pipelines get both sizes as given (None: their native size) and no clip arguments.
    """
    from cpedit.models.architectures import spec_for_pipeline

    spec = spec_for_pipeline(pipe)
    size = {"height": height, "width": width}
    if spec is None or spec.sample_frames is None:
        return size, {}
    return {k: v for k, v in size.items() if v is not None}, {"num_frames": spec.sample_frames, "output_type": "pil"}


def _out_of_memory(settings: SampleSettings, exc: BaseException) -> CpeditError:
    size = f"{settings.height}x{settings.width}" if settings.height else "the native size"
    detail = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
    return CpeditError(
        f"not enough memory to render at {size} ({detail}); "
        "use a smaller height and width, or a device with more memory",
        reason="out_of_memory",
        argument="height" if settings.height else "device",
    )


def step_callback(
    pipe: Any, cancel: threading.Event | None, *, on_step: Callable[[int, int | None], None] | None = None
) -> dict[str, Any]:
    """``callback_on_step_end`` for one pipeline call: cancel within it, and report each denoising step.

    Once ``cancel`` is set the pipeline is stopped (``pipe._interrupt``: diffusers pipelines skip
    their remaining steps; the caller then raises :class:`~cpedit.errors.Cancelled`).
    ``on_step(done, calls)`` gets the denoiser calls finished so far and the call's number of
    calls (the pipeline's ``num_timesteps``; None when it does not say). Pipelines without the
    argument are checked between calls only, and report no steps.
    """
    if (cancel is None and on_step is None) or "callback_on_step_end" not in inspect.signature(
        pipe.__call__
    ).parameters:
        return {}

    def on_step_end(pipeline: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        if cancel is not None and cancel.is_set():
            pipeline._interrupt = True
        if on_step is not None:
            calls = getattr(pipeline, "num_timesteps", None)
            on_step(step + 1, calls if isinstance(calls, int) and calls > 0 else None)
        return {}

    return {"callback_on_step_end": on_step_end}


def frame_strip(frames: Sequence[Image.Image]) -> Image.Image:
    """A video clip's frames side by side, left to right; its ``info`` keeps the frames (:func:`clip_frames`)."""
    if not frames:
        raise ValueError("a clip without frames")
    width, height = frames[0].size
    strip = Image.new("RGB", (width * len(frames), height), "white")
    for index, frame in enumerate(frames):
        strip.paste(frame.convert("RGB"), (index * width, 0))
    strip.info[FRAMES_INFO] = tuple(frames)
    return strip


def clip_frames(image: Image.Image) -> list[Image.Image]:
    """The frames of a video sample's strip or of a grid of them, in order (empty for a still image).

    For a grid (:func:`image_grid` of strips), frame i is the same grid of every clip's frame i:
    the frames of the animated file.
    """
    frames = image.info.get(FRAMES_INFO)
    return list(frames) if isinstance(frames, tuple) else []


def image_grid(
    columns: Sequence[Sequence[Image.Image]], *, column_labels: Sequence[str], row_labels: Sequence[str]
) -> Image.Image:
    """Lay out images in a labelled grid: one column per model, one row per prompt.

    Video samples (frame strips) make a grid of strips; when every cell is a clip of the same
    length, the grid carries the frames of its animated version (:func:`clip_frames`).
    """
    if not columns or not columns[0]:
        raise ValueError("nothing to lay out")
    grid = _grid(columns, column_labels=column_labels, row_labels=row_labels)
    clips = [[clip_frames(cell) for cell in column] for column in columns]
    lengths = {len(clip) for column in clips for clip in column}
    if len(lengths) == 1 and 0 not in lengths:
        grid.info[FRAMES_INFO] = tuple(
            _grid(
                [[clip[i] for clip in column] for column in clips], column_labels=column_labels, row_labels=row_labels
            )
            for i in range(lengths.pop())
        )
    return grid


def _grid(
    columns: Sequence[Sequence[Image.Image]], *, column_labels: Sequence[str], row_labels: Sequence[str]
) -> Image.Image:
    cell_w, cell_h = columns[0][0].size
    scale = max(1, math.ceil(MIN_CELL / max(cell_w, 1)))  # small models' images: enlarge so labels fit
    cell_w, cell_h = cell_w * scale, cell_h * scale
    label_h, row_label_h = 18, 16
    rows = len(columns[0])
    grid = Image.new("RGB", (cell_w * len(columns), label_h + rows * (cell_h + row_label_h)), "white")
    draw = ImageDraw.Draw(grid)
    for c, label in enumerate(column_labels):
        draw.text((c * cell_w + 4, 3), label, fill="black")
    for r in range(rows):
        top = label_h + r * (cell_h + row_label_h)
        draw.text((4, top + 1), _clip(row_labels[r], cell_w * len(columns) // 6), fill="black")
        for c, column in enumerate(columns):
            grid.paste(column[r].resize((cell_w, cell_h), Image.Resampling.NEAREST), (c * cell_w, top + row_label_h))
    return grid


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 1, 1)] + "…"


def render_samples(
    model: str,
    *,
    prompts: Sequence[str],
    settings: SampleSettings,
    compute: ComputeOptions = ComputeOptions(),
    safety_checker: bool = True,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> Image.Image:
    """Load ``model`` (Hub id or folder) and render one seeded image per prompt, as a one-column grid.

    ``compute`` says where and how the model loads (device, dtype, offload, revision). The model's
    safety checker, if it has one, filters the images unless ``safety_checker`` is False.

    Raises:
        CpeditError: Bad sampling values (checked before the model loads).
        ModelLoadError: The model cannot be loaded.
    """
    check_sample_settings(settings)
    _, pipe = loading.open_pipeline(
        model,
        compute=compute,
        safety_checker=safety_checker,
        on_progress=on_progress,
        cancel=cancel,
    )
    images = generate(pipe, prompts, settings, label=str(model), on_progress=on_progress, cancel=cancel)
    return image_grid([images], column_labels=[str(model)], row_labels=list(prompts))


def animation_path(png: str | os.PathLike[str]) -> Path:
    """Where the animated file of a video grid written to ``png`` goes: beside it, ``.gif`` for ``.png``."""
    return Path(png).with_suffix(".gif")


def save_animation(
    image: Image.Image, target: str | os.PathLike[str], *, what: str = "the animation", argument: str | None = None
) -> Path:
    """Write a video sample's or grid's frames (:func:`clip_frames`) as a looping animated GIF, atomically.

    GIF, written by Pillow, plays everywhere a model card or a terminal image viewer goes;
    :data:`ANIMATION_FPS` frames a second.

    Raises:
        ValueError: ``image`` has no frames (a still image).
        CpeditError: The disk is full or ``target`` is not writable.
    """
    import io

    from cpedit.durable import write_bytes_atomically

    frames = clip_frames(image)
    if not frames:
        raise ValueError("a still image has no frames to animate")
    buffer = io.BytesIO()
    first, *rest = (frame.convert("RGB") for frame in frames)
    first.save(buffer, format="GIF", save_all=True, append_images=rest, duration=1000 // ANIMATION_FPS, loop=0)
    return write_bytes_atomically(Path(target), buffer.getvalue(), what=what, argument=argument)


def save_png(
    image: Image.Image, target: str | os.PathLike[str], *, what: str = "the image", argument: str | None = None
) -> Path:
    """Write ``image`` as PNG to ``target`` through a hidden temporary file, ``fsync`` and a rename.

    Never half-written, whatever stops the process; see :func:`cpedit.durable.write_bytes_atomically`.

    Raises:
        CpeditError: The disk is full (the message says how much space is needed) or ``target`` is not writable.
    """
    import io

    from cpedit.durable import write_bytes_atomically

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return write_bytes_atomically(Path(target), buffer.getvalue(), what=what, argument=argument)
