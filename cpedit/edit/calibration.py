"""Calibration: the activation statistics ConceptPrune scores weights with.

For every denoiser call t < tau and every FFN output projection, the published
procedure accumulates, over all tokens of both classifier-free-guidance halves of all
prompts, the column sums of squares of the row-normalised input X of the projection,
separately for target and base prompts (see ``shared/reference/conceptprune.md``). A 1x1
convolution (Sana's feed-forward) reads ``[batch, channels, height, width]``: every spatial
position is a row (a token) and every channel a column, exactly as a linear layer's input.

The timestep t is the pipeline's scheduler step: in Stable Diffusion one step is one
denoiser call whose batch holds both guidance halves. Families that run the unconditional
half as a separate denoiser call in the same step (Chroma, Wan, FLUX.2 klein base, Qwen-Image
with a negative prompt) count both calls for step t, as the batched halves count in SD; so
the statistics of every family are those of its first tau steps, whatever its call layout.
Steps are counted at the scheduler's ``step`` (one per step in every diffusers pipeline; with
PNDM, N steps make N + 1 of them, as they make N + 1 denoiser calls).

Where the authors generate each prompt to the end (50 steps, VAE decode), one at a
time, copying activations to the CPU at every call, cpedit runs target and base
prompts together in batches through the pipeline's own call path, stops the
pipeline after the tau-th denoiser call, never decodes, and accumulates in float32 on
the device with no host copy.

Every prompt gets its own generator seeded with its pair's seed (the recipe's ``seed``, or
its ``pair_seeds`` entry), so each one draws exactly the random numbers (initial noise,
and any per-step noise of stochastic schedulers) that the paper's
``torch.manual_seed(seed)`` before each prompt gives it.

Batch layout: prompts are laid out (target, base, target, base, ...). With classifier-free
guidance the pipeline stacks the denoiser batch as [uncond; cond], each half in prompt
order, and both halves count for their prompt's group, as in the paper. A
guidance-distilled pipeline (FLUX) has no unconditional half: the denoiser batch is the
prompts themselves; the group of each item follows from the batch size either way. A routed
expert of a mixture-of-experts feed-forward (HiDream) sees only the tokens routed to it,
without a batch dimension: a hook on the block's router records which batch item each of
those rows comes from (:func:`cpedit.models.moe.expert_batch_items`), and each row counts for
its own prompt's group.

Padding: where a pipeline pads a batch's prompts to its longest (Qwen-Image's text encoder and
text stream; Z-Image's token sequences inside the transformer), a batched call shows the hooked
layers rows that the prompt run alone never has. Such layers name the mask that marks them
(:class:`cpedit.models.ffn.RowMask`: the block's or text encoder's mask argument) and those rows
are zeroed before accumulation, where they add nothing: the statistics stay those of one prompt at
a time. Padding that a lone prompt has too is counted, as the naive procedure counts it: CLIP's
and T5's fixed length, Z-Image's padding of each sequence to a multiple of 32 tokens, and the
padding of a prompt's unconditional half to its conditional half's length (or the reverse) where
both share one denoiser call.

The ``text-ffn`` target hooks the text encoders instead. As in the authors' text hook, the
hooks stay on for the pipeline call with the recipe's own sampling settings, so they see
every text-encoder forward that call makes: under classifier-free guidance the prompt's
encoding *and* the negative prompt's (the pipeline's default, the empty prompt; SDXL's
``force_zeros_for_empty_prompt`` zeroes those embeddings without encoding them), all
token rows of each, counted for the prompt's group. A pipeline that encodes the negative
prompt once for all its prompts (a batch of one; HiDream) has it counted once per prompt,
as each prompt's own call would. The call is stopped just before its
first denoiser call; the statistics form a single "timestep".

Under a multi-process launch (``torchrun``, ``accelerate launch``: see :mod:`cpedit.distributed`)
every rank lays the batches out as one process would (an automatic batch size is the smallest
any rank picks), runs batches ``R, R + N, ...`` and the statistics are added up in batch order
on every rank (:func:`cpedit.distributed.sum_in_order`): each rank ends with the statistics, and
so the masks, of one process.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from cpedit import distributed
from cpedit.edit import kernels
from cpedit.errors import CpeditError, CpeditWarning
from cpedit.models import moe
from cpedit.models.ffn import ExpertRoute, FFNLayer, RowMask, execution_device, get_denoiser
from cpedit.models.support import require_text_to_image_call
from cpedit.progress import ProgressCallback, ProgressEvent, check_cancel, emit
from cpedit.recipes.format import Recipe

TARGET = 0
"""Row of the accumulators holding target-prompt statistics."""
BASE = 1
"""Row of the accumulators holding base-prompt statistics."""


@dataclass
class ConceptStats:
    """The calibration statistics of one recipe.

    Attributes:
        recipe: The recipe calibrated.
        sums: Per FFN layer name, a float32 tensor ``[tau, 2, in_features]`` on the
            compute device: for call t and group g (:data:`TARGET` or :data:`BASE`),
            the sum over all rows of the squared row-normalised input, per column.
            Its square root is the paper's ``norm_j``.
            Keyed by :attr:`cpedit.models.ffn.FFNLayer.key`. For ``text-ffn`` tau is 1 (the text
            encoders' forwards of one pipeline call per prompt).
        denoiser_calls: Denoiser calls made (tau per batch, twice that in families whose
            unconditional half is a separate call; 0 for ``text-ffn``).
        batch_size: Prompts per batch actually used.
        batches: Number of batches run.
        seconds: Wall time of the calibration.
        accumulator_bytes: Size of the statistics buffers on the device (totals plus one
            batch's sums), the calibration's only memory beyond the pipeline's own.
        timesteps: The tau the statistics cover (1 for ``text-ffn``); any tau up to it can be
            selected from them.
        image_size: ``(height, width)`` in pixels the pipeline generated at: the recipe's size
            (or the native one), except where the family always runs its native area (HiDream);
            None for ``text-ffn``.
        idle_denoisers: Hooked denoiser components that ran none of the first tau steps (Wan 2.2's
            low-noise ``transformer_2`` when tau ends before the switch): their layers' statistics
            are zero, so nothing of them is pruned.
    """

    recipe: Recipe
    sums: dict[str, torch.Tensor]
    denoiser_calls: int
    batch_size: int
    batches: int
    seconds: float
    accumulator_bytes: int = 0
    timesteps: int = 0
    image_size: tuple[int, int] | None = None
    idle_denoisers: tuple[str, ...] = ()


class _Removable(Protocol):
    """A hook handle: a module hook's, or the scheduler step counter's."""

    def remove(self) -> None: ...


class _StopAfterTau(Exception):
    """Raised at the scheduler's step (``text-ffn``: the denoiser) to leave the pipeline after tau steps."""


def accumulate_normalised_column_squares(x: torch.Tensor, out: torch.Tensor, group_index: torch.Tensor) -> None:
    """Add one call's statistics into ``out`` (in place, on the device, float32).

    For each batch item b, ``sum over its rows r of x_rj**2 / ||x_r||**2`` (the squares
    of the L2-row-normalised input), added to ``out[group_index[b]]``. On CUDA with
    Triton available this runs as two fused kernels (see :mod:`cpedit.edit.kernels`).

    Args:
        x: FFN projection input, ``[batch, ..., in_features]`` in any float dtype.
        out: ``[groups, in_features]`` float32 accumulator.
        group_index: ``[batch]`` int64 group of each batch item.
    """
    batch, features = x.shape[0], x.shape[-1]
    x = x.reshape(batch, -1, features)
    if x.is_cuda and use_triton():
        per_item = kernels.per_item_normalised_column_squares(x)
    else:
        xf = x.float()
        squares = xf.square_() if xf is not x else xf.square()
        inverse_row_norms = squares.sum(-1, keepdim=True).clamp_min_(1e-30).reciprocal_()
        per_item = torch.bmm(inverse_row_norms.transpose(1, 2), squares).squeeze(1)
    out.index_add_(0, group_index, per_item)


def accumulate_routed_rows(x: torch.Tensor, out: torch.Tensor, row_groups: torch.Tensor) -> None:
    """Add the squared normalised rows of ``x`` (``[rows, in_features]``, no batch dimension) into ``out``.

    :func:`accumulate_normalised_column_squares` for the input of a routed expert, whose rows come
    from many batch items: row r is added to ``out[row_groups[r]]``.
    """
    squares = x.float().square()  # a new tensor: x is left as it is
    squares.mul_(squares.sum(-1, keepdim=True).clamp_min_(1e-30).reciprocal_())
    out.index_add_(0, row_groups, squares)


def use_triton() -> bool:
    """Whether the fused Triton kernels are used on CUDA (off with ``CPEDIT_DISABLE_TRITON=1``)."""
    return kernels.AVAILABLE and os.environ.get("CPEDIT_DISABLE_TRITON", "") not in ("1", "true", "yes")


def denoiser_calls(pipe: Any, steps: int) -> int:
    """How many scheduler steps (calibration timesteps) the pipeline makes for ``steps`` steps.

    PNDM with ``skip_prk_steps`` makes steps + 1; most schedulers make ``steps``. Each is one
    denoiser call, or two in a family whose unconditional half is a separate call.
    """
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    kwargs: dict[str, Any] = {}
    if (
        getattr(scheduler.config, "use_dynamic_shifting", False)
        and "mu" in inspect.signature(scheduler.set_timesteps).parameters
    ):
        kwargs["mu"] = 1.0  # resolution-dependent shift (FLUX, SD3.5): changes the values, not the count
    scheduler.set_timesteps(steps, **kwargs)
    return len(scheduler.timesteps)


def is_text_target(recipe: Recipe) -> bool:
    """Whether the recipe hooks the text encoders (no timesteps; tau is ignored)."""
    return recipe.prune.target == "text-ffn"


def native_size(pipe: Any) -> tuple[int, int]:
    """The ``(height, width)`` in pixels calibration runs at when the recipe gives none.

    The pipeline's default, as its ``__call__`` computes it; for a video family, the short
    clip's size of its spec (:attr:`~cpedit.models.architectures.ArchitectureSpec.default_size`).
    """
    from cpedit.models.architectures import spec_for_pipeline

    spec = spec_for_pipeline(pipe)
    if spec is not None and spec.default_size is not None:
        return spec.default_size
    sample_size = getattr(pipe, "default_sample_size", None)
    if not sample_size and spec is not None and spec.native_pixels is not None:
        return spec.native_pixels, spec.native_pixels  # a constant of the pipeline's __call__ (Z-Image)
    if not sample_size:
        config: Any = get_denoiser(pipe).config  # diffusers' FrozenDict, read by attribute
        sample_size = config.sample_size
    h, w = (sample_size, sample_size) if isinstance(sample_size, int) else sample_size
    return h * _spatial_scale(pipe), w * _spatial_scale(pipe)


def _spatial_scale(pipe: Any) -> int:
    """Pixels per latent pixel along each side (``vae_scale_factor``; Wan: ``vae_scale_factor_spatial``)."""
    scale: Any = getattr(pipe, "vae_scale_factor", None) or getattr(pipe, "vae_scale_factor_spatial", 8)
    return int(scale)


def run_size(pipe: Any, height: int, width: int) -> tuple[int, int]:
    """The ``(height, width)`` in pixels the pipeline generates at when asked for ``height`` x ``width``.

    The size asked, except for a family that always runs its native pixel area
    (:attr:`cpedit.models.architectures.ArchitectureSpec.native_area`, HiDream), computed as its
    ``__call__`` does.
    """
    from cpedit.models.architectures import spec_for_pipeline

    spec = spec_for_pipeline(pipe)
    if spec is None or not spec.native_area:
        return height, width
    division = pipe.vae_scale_factor * 2
    scale = math.sqrt((pipe.default_sample_size * pipe.vae_scale_factor) ** 2 / (width * height))
    return int(height * scale // division * division), int(width * scale // division * division)


def check_calibration_fits(pipe: Any, recipe: Recipe) -> None:
    """Check, before any calibration, that the pipeline can run ``recipe``.

    Raises:
        UnsupportedModelError: The pipeline is not text-to-image (see
            :func:`cpedit.models.support.require_text_to_image_call`).
        CpeditError: tau exceeds the steps the scheduler makes for ``sampling.steps``.
    """
    require_text_to_image_call(pipe)
    if is_text_target(recipe):
        return  # the text encoders run before the first denoiser call: no denoiser calls are needed
    available = denoiser_calls(pipe, recipe.sampling.steps)
    if recipe.prune.timesteps > available:
        raise CpeditError(
            f"{recipe.source}: prune.timesteps = {recipe.prune.timesteps} but {type(pipe.scheduler).__name__} makes "
            f"only {available} denoising steps for sampling.steps = {recipe.sampling.steps}; "
            "lower prune.timesteps or raise sampling.steps"
        )


def check_batch_size(batch_size: int | None) -> None:
    """Raise :class:`CpeditError` unless ``batch_size`` is None (automatic) or at least 1."""
    if batch_size is not None and batch_size < 1:
        raise CpeditError(f"batch size must be at least 1, got {batch_size}", argument="batch_size")


def _seeded(seed: int, device: torch.device) -> torch.Generator:
    """A generator in the state ``torch.manual_seed(seed)`` leaves ``device``'s default one in.

    On MPS the generator lives on the CPU, as diffusers recommends.
    """
    return torch.Generator(device="cpu" if device.type == "mps" else device).manual_seed(seed)


def auto_batch_size(
    pipe: Any, *, prompts: int, height: int, width: int, device: torch.device, guidance: bool, frames: int = 1
) -> int:
    """A batch size that should fit in memory: all prompts when they fit.

    The estimate is deliberately conservative (about 100 bytes per latent pixel, of every
    latent frame of a video clip of ``frames``, and base channel per denoiser batch item,
    half of the free memory); on CUDA an
    out-of-memory error still halves the batch and retries.
    """
    denoiser = get_denoiser(pipe)
    channels = (getattr(denoiser.config, "block_out_channels", None) or [320])[0]
    scale = _spatial_scale(pipe)
    latent_frames = (frames - 1) // int(getattr(pipe, "vae_scale_factor_temporal", 1) or 1) + 1
    latent_pixels = (height // scale) * (width // scale) * latent_frames
    per_prompt = 100 * latent_pixels * channels * denoiser.dtype.itemsize * (2 if guidance else 1)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
    else:
        free = _available_host_memory()
    return max(1, min(prompts, int(free * 0.5 // max(per_prompt, 1))))


def _available_host_memory() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 * 1024**3


def calibrate(
    pipe: Any,
    recipe: Recipe,
    layers: Sequence[FFNLayer],
    *,
    timesteps: int | None = None,
    batch_size: int | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> ConceptStats:
    """Run the first tau denoiser steps for every prompt of ``recipe`` and collect statistics.

    Args:
        pipe: A loaded text-to-image pipeline (already on its device).
        recipe: The concept's prompts and settings.
        layers: The layers to hook (see :func:`cpedit.models.architectures.find_target_layers`).
        timesteps: Calibrate this many steps instead of the recipe's tau (a larger tau
            keeps statistics for later re-selection; those of the first calls are the same).
            Ignored for ``text-ffn``.
        batch_size: Prompts per pipeline call, rounded down to an even number so that
            each target prompt shares its batch with its base prompt; ``None`` picks the
            largest that fits memory (under a launch: the smallest any rank picks, and an
            out-of-memory error is raised rather than retried with smaller batches).
        on_progress: Called when a batch starts (``timestep`` 0) and after every step.
        cancel: When set, the run stops at the next step with :class:`~cpedit.errors.Cancelled`.

    Raises:
        UnsupportedModelError: The pipeline is not a text-to-image pipeline.
        CpeditError: tau exceeds the steps the scheduler makes for ``sampling.steps``.
        Cancelled: ``cancel`` was set.
    """
    from cpedit.models.architectures import denoiser_components, guidance_arguments, spec_for_pipeline

    started = time.perf_counter()
    settings = recipe.sampling
    text = is_text_target(recipe)
    tau = 1 if text else (timesteps or recipe.prune.timesteps)
    check_calibration_fits(pipe, recipe)
    device = execution_device(pipe)
    spec = spec_for_pipeline(pipe)
    call_kwargs = dict(spec.call_kwargs) if spec is not None else {}
    # a recipe gives both height and width or neither (the native size)
    height, width = (settings.height, settings.width) if settings.height and settings.width else native_size(pipe)
    image_size = run_size(pipe, height, width)  # what the pipeline generates at (HiDream: always its native area)

    # Each target travels with its base: a pair always shares a batch (and so the exact
    # same arithmetic), so identical target and base prompts tie exactly, as in the paper.
    prompts = [prompt for pair in recipe.pairs() for prompt in pair]
    groups = [TARGET, BASE] * len(recipe.targets)
    seeds = [seed for seed in recipe.calibration_seeds() for _ in range(2)]  # a pair's prompts share its seed
    guidance_scale = settings.guidance_scale  # text-ffn too: under CFG the negative prompt is encoded and counted
    guidance = guidance_scale > 1.0 and (spec is None or spec.guidance == "cfg")
    automatic = batch_size is None
    size = batch_size or auto_batch_size(
        pipe,
        prompts=len(prompts),
        height=image_size[0],
        width=image_size[1],
        device=device,
        guidance=guidance,
        frames=int(call_kwargs.get("num_frames", 1)),
    )
    check_batch_size(size)
    size = max(1, size - size % 2)
    launch = distributed.setup()
    if launch is not None:
        size = distributed.smallest(size)  # every rank lays the batches out alike
    ours = (
        math.ceil(len(prompts) / size)
        if launch is None
        else len(range(launch.rank, math.ceil(len(prompts) / size), launch.world_size))
    )
    parts: dict[int, dict[str, torch.Tensor]] = {}  # under a launch: this rank's batches' sums, by batch index

    totals = {layer.key: torch.zeros(tau, 2, layer.in_features, device=device) for layer in layers}
    accumulator_bytes = 2 * sum(t.numel() * t.element_size() for t in totals.values())
    state = _CallState(tau=tau, accumulator_bytes=accumulator_bytes)
    handles: list[_Removable] = [layer.module.register_forward_pre_hook(state.ffn_hook(layer)) for layer in layers]
    routed = {id(layer.route.block): layer.route.block for layer in layers if layer.route is not None}
    handles += [moe.parts(block)[0].register_forward_hook(state.router_hook(block)) for block in routed.values()]
    # batch padding (prompts padded to the batch's longest): its rows are left out, as a lone prompt has none
    sources = {id(layer.padding.module): layer.padding for layer in layers if layer.padding is not None}
    handles += [
        rows.module.register_forward_pre_hook(state.mask_hook(rows), with_kwargs=True) for rows in sources.values()
    ]
    denoisers = denoiser_components(pipe)  # Wan 2.2: also the low-noise transformer_2, for the steps it runs
    for component, module in denoisers.items():
        if text:
            handles.append(module.register_forward_pre_hook(state.stop_before_denoiser))
        else:
            handles.append(module.register_forward_hook(state.denoiser_hook(component)))
    if not text:
        handles.append(_count_steps(pipe.scheduler, state.end_step))
    # Progress counts work units (steps; text-encoder batches for text-ffn). Work lost to an
    # out-of-memory retry stays counted (and is added to the total), so progress never moves back.
    position, batch_number, calls, done, wasted, ran = 0, 0, 0, 0, 0, 0
    ran_components: set[str] = set()
    calls_per_batch = 0 if text else tau  # denoiser calls of one batch: tau, or 2 tau with separate halves
    try:
        while position < len(prompts):
            batch = prompts[position : position + size]
            if launch is not None and batch_number % launch.world_size != launch.rank:
                position += len(batch)  # another rank's batch
                batch_number += 1
                continue
            if launch is None:
                ours = ran + math.ceil((len(prompts) - position) / size)  # an out-of-memory retry changes it
            state.begin_batch(
                sums={name: torch.zeros_like(t) for name, t in totals.items()},
                groups=torch.tensor(groups[position : position + size], device=device),
                report=_batch_reporter(
                    recipe, on_progress, cancel, ran + 1, ours, tau, done + wasted, accumulator_bytes
                ),
            )
            state.report(0)  # the batch starts: lets a front end show it before the first call ends
            try:
                pipe(
                    prompt=batch,
                    height=height,
                    width=width,
                    num_inference_steps=settings.steps,
                    generator=[_seeded(seed, device) for seed in seeds[position : position + size]],
                    output_type="latent",
                    return_dict=False,
                    **guidance_arguments(spec, guidance_scale, prompts=len(batch)),
                    **call_kwargs,
                )
            except _StopAfterTau:
                pass
            except torch.OutOfMemoryError:
                if not automatic or size == 1 or launch is not None:
                    raise
                wasted += 1 if text and state.reached_denoiser else state.steps
                size = max(1, size // 2 - (size // 2) % 2)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            if text and not state.reached_denoiser:
                raise CpeditError(f"{type(pipe).__name__} returned without calling its denoiser")
            if not text and state.steps != tau:
                raise CpeditError(f"{type(pipe).__name__} made {state.steps} steps instead of at least tau = {tau}")
            if launch is None:
                for name, sums in state.sums.items():
                    totals[name] += sums
            else:
                parts[batch_number] = {name: sums.cpu() for name, sums in state.sums.items()}
            calls += 0 if text else state.calls
            ran_components.update(state.calls_by_component)
            calls_per_batch = 0 if text else state.calls
            done += tau
            position += len(batch)
            batch_number += 1
            ran += 1
    finally:
        for handle in handles:
            handle.remove()
        state.sums = {}
    if launch is not None:  # every rank's batches, added up in batch order as one process adds them
        totals = {
            name: distributed.sum_in_order({i: p[name] for i, p in parts.items()}, count=batch_number, like=total)
            for name, total in totals.items()
        }
        calls = distributed.largest(calls_per_batch) * batch_number  # every batch makes as many calls
        # rank 0 ran batch 0, so it saw every denoiser that runs within tau
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    hooked = {layer.component for layer in layers}
    idle = () if text else tuple(name for name in denoisers if name in hooked and name not in ran_components)
    if idle and distributed.is_main_process():
        warnings.warn(
            CpeditWarning(
                f"{recipe.name}: {', '.join(idle)} ran no step within the first tau = {tau} steps (the other "
                "denoiser runs them), so its layers have no statistics and are left unpruned; raise "
                "prune.timesteps past the switch to edit it too"
            ),
            stacklevel=2,
        )
    return ConceptStats(
        recipe=recipe,
        sums=totals,
        denoiser_calls=calls,
        batch_size=size,
        batches=batch_number,
        seconds=time.perf_counter() - started,
        accumulator_bytes=accumulator_bytes,
        timesteps=tau,
        image_size=None if text else image_size,
        idle_denoisers=idle,
    )


def _batch_reporter(
    recipe: Recipe,
    on_progress: ProgressCallback | None,
    cancel: threading.Event | None,
    batch: int,
    batches: int,
    tau: int,
    units_before: int,
    accumulator_bytes: int,
) -> Callable[[int], None]:
    """The progress callback of one batch: ``units_before`` units were done before it."""

    def report(timestep: int) -> None:
        check_cancel(cancel, "during calibration")
        emit(
            on_progress,
            ProgressEvent(
                stage="calibrate",
                message=(
                    f"{recipe.name}: batch {batch}/{batches}, text encoders"
                    if is_text_target(recipe)
                    else f"{recipe.name}: batch {batch}/{batches}, denoiser step {timestep}/{tau}"
                ),
                concept=recipe.name,
                batch=batch,
                batches=batches,
                timestep=timestep,
                timesteps=tau,
                completed=units_before + timestep,
                total=units_before + (batches - batch + 1) * tau,
                unit="batches" if is_text_target(recipe) else "calls",
                accumulator_bytes=accumulator_bytes,
            ),
        )

    return report


class _CallState:
    """Shared state of the hooks during one pipeline call (one prompt batch)."""

    def __init__(self, *, tau: int, accumulator_bytes: int = 0) -> None:
        self.tau = tau
        self.accumulator_bytes = accumulator_bytes
        self.calls = 0  # denoiser calls of this batch
        self.calls_by_component: dict[str, int] = {}  # the same, per denoiser component
        self.steps = 0  # scheduler steps of this batch done: the timestep index of the calls in progress
        self.reached_denoiser = False
        self.sums: dict[str, torch.Tensor] = {}
        self._groups = torch.zeros(0, dtype=torch.long)
        self._expanded: dict[int, torch.Tensor] = {}
        self._routes: dict[int, tuple[int, list[torch.Tensor]]] = {}  # by block id: (batch, each expert's row items)
        self._masks: dict[int, torch.Tensor | None] = {}  # by id of the module called with it
        self.report: Callable[[int], None] = lambda timestep: None

    def begin_batch(
        self, *, sums: dict[str, torch.Tensor], groups: torch.Tensor, report: Callable[[int], None]
    ) -> None:
        self.calls = 0
        self.calls_by_component = {}
        self.steps = 0
        self.reached_denoiser = False
        self.sums = sums
        self._groups = groups
        self._expanded = {}
        self._routes = {}
        self._masks = {}
        self.report = report

    def _group_index(self, rows: int) -> torch.Tensor:
        """Group of each item of a hooked call's batch (``rows`` items), whole prompt batches in prompt order.

        The denoiser's guidance batch stacks [uncond; cond]; the text encoders run the prompts,
        then (under guidance) as many negative prompts, each counted for its prompt.
        """
        index = self._expanded.get(rows)
        if index is None:
            prompts = self._groups.shape[0]
            if rows % prompts:
                raise CpeditError(f"denoiser batch of {rows} items does not split into {prompts} prompts")
            index = self._groups.repeat(rows // prompts)
            self._expanded[rows] = index
        return index

    def ffn_hook(self, layer: FFNLayer) -> Any:
        name, columns, route, padding = layer.key, layer.columns, layer.route, layer.padding
        channels_first = layer.channels_first  # a 1x1 convolution's input: a row per position

        def hook(module: torch.nn.Module, args: tuple[Any, ...]) -> None:
            x = args[0]
            if channels_first:
                x = x.movedim(1, -1)  # [batch, channels, h, w] -> [batch, h, w, channels]: rows of features
            if columns is not None:
                x = x[..., columns[0] : columns[1]]
            out = self.sums[name][self.steps]
            if route is not None:
                # a routed expert: rows are the tokens routed to it, no batch dimension; each row has its item's group
                accumulate_routed_rows(x, out, self._routed_groups(route, x.shape[0], name))
                return
            prompts = self._groups.shape[0]
            if x.shape[0] == 1 < prompts:
                # one encoding the pipeline shares among all its prompts (HiDream encodes the negative
                # prompt once and repeats it): it counts once per prompt, as in a one-prompt-at-a-time run
                x = x.expand(prompts, *x.shape[1:])
            if padding is not None:
                x = _without_padding(x, self._masks.get(id(padding.module)), name, prompts=prompts)
            accumulate_normalised_column_squares(x, out, self._group_index(x.shape[0]))

        return hook

    def router_hook(self, block: torch.nn.Module) -> Any:
        """Record, per routed expert of ``block``, the batch item of each row its next call sees."""

        def hook(gate: torch.nn.Module, args: tuple[Any, ...], output: Any) -> None:
            self._routes[id(block)] = (args[0].shape[0], moe.expert_batch_items(block, args[0], output[0]))

        return hook

    def _routed_groups(self, route: ExpertRoute, rows: int, name: str) -> torch.Tensor:
        batch, items = self._routes[id(route.block)]
        mine = items[route.expert]
        if mine.shape[0] != rows:
            raise CpeditError(
                f"{name} saw {rows} routed tokens but its router sent it {mine.shape[0]}; "
                "this mixture-of-experts block routes tokens in a way cpedit does not know"
            )
        return self._group_index(batch)[mine]

    def mask_hook(self, rows: RowMask) -> Any:
        """Record the padding mask a block or text encoder is called with, for the FFN hooks inside it."""

        def hook(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            mask = kwargs.get(rows.keyword, args[rows.position] if len(args) > rows.position else None)
            self._masks[id(rows.module)] = mask if isinstance(mask, torch.Tensor) else None

        return hook

    def stop_before_denoiser(self, module: torch.nn.Module, args: Any) -> None:
        """``text-ffn``: the prompts are encoded; leave before the first denoiser call computes anything."""
        self.reached_denoiser = True
        self.report(1)
        raise _StopAfterTau

    def denoiser_hook(self, component: str) -> Any:
        """A forward hook counting one denoiser component's calls (their FFN inputs went to step :attr:`steps`)."""

        def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
            self.calls += 1
            self.calls_by_component[component] = self.calls_by_component.get(component, 0) + 1

        return hook

    def end_step(self) -> None:
        """The scheduler steps: the step's denoiser calls are done; leave after the tau-th."""
        self.steps += 1
        self.report(self.steps)
        if self.steps >= self.tau:
            raise _StopAfterTau


def _without_padding(x: torch.Tensor, mask: torch.Tensor | None, name: str, *, prompts: int) -> torch.Tensor:
    """``x`` (``[batch, rows, features]``) with the rows that only batching adds zeroed (a zero row adds nothing).

    A prompt run alone pads the items of its own call (its conditional and unconditional halves,
    where they share a call) to the longest of them, so those rows are kept: item b's rows are
    counted up to the longest unpadded length among the items of its prompt (b, b + prompts, ...).
    """
    if mask is None:
        return x
    if x.dim() != 3 or tuple(mask.shape) != tuple(x.shape[:2]) or x.shape[0] % prompts:
        raise CpeditError(
            f"{name}: padding mask of shape {tuple(mask.shape)} does not match its input rows {tuple(x.shape[:-1])}"
        )
    positions = torch.arange(1, mask.shape[1] + 1, device=mask.device)
    lengths = torch.where(mask != 0, positions, 0).amax(dim=1)  # one past each item's last real row
    if bool(((mask[:, 0] == 0) & (lengths > 0)).any()):  # padding before real rows: only right padding is handled
        raise CpeditError(f"{name}: its batch is padded on the left; cpedit handles padding after the real rows only")
    alone = lengths.view(-1, prompts).amax(dim=0).repeat(x.shape[0] // prompts)
    keep = positions[None, :] <= alone[:, None]
    return x * keep.unsqueeze(-1).to(x.dtype)


class _StepCounter:
    """A removable wrapper of a scheduler's ``step``: calls ``on_step`` before each step computes."""

    def __init__(self, scheduler: Any, on_step: Callable[[], None]) -> None:
        self._scheduler = scheduler
        self._own = scheduler.__dict__.get("step")  # an instance-level step already there (someone's wrapper)
        step = scheduler.step

        # keeps step's signature: pipelines read it to decide which arguments (``generator``, ``eta``) to pass
        @functools.wraps(step)
        def counted(*args: Any, **kwargs: Any) -> Any:
            on_step()
            return step(*args, **kwargs)

        scheduler.step = counted  # an instance attribute: shadows the class's method until removed

    def remove(self) -> None:
        """Restore the scheduler's ``step`` as it was."""
        if self._own is None:
            self._scheduler.__dict__.pop("step", None)
        else:
            self._scheduler.step = self._own


def _count_steps(scheduler: Any, on_step: Callable[[], None]) -> _StepCounter:
    """Count ``scheduler``'s steps (removed like a hook handle)."""
    return _StepCounter(scheduler, on_step)
