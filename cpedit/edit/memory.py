"""How much memory an edit needs, told before the model loads: fits, tight, or will not fit.

Read from the pipeline folder alone (the safetensors headers and the components' ``config.json``,
never the weights): the weights at the compute dtype, the calibration statistics buffers and the
activations of one calibration batch, against the memory free on the compute device and the host.
A run that cannot fit is refused with the numbers (:func:`refuse_if_it_cannot_fit`) before minutes
go into loading a model only to run out of memory.

Where things live: on the CPU (and on Apple MPS, whose memory is the host's) everything is host
memory. On CUDA the device holds the weights, statistics and activations; the host holds the
largest component while it loads (diffusers reads each component on the host, then moves it).
With model offload the host holds every weight and the device the largest component at a time.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from cpedit.durable import format_bytes
from cpedit.errors import CpeditError
from cpedit.hub.pipeline_files import variant_of
from cpedit.models.compute import ComputeOptions
from cpedit.models.files import SafetensorsProblem, read_json_object, read_safetensors_header
from cpedit.models.loading import resolve_device, resolve_dtype
from cpedit.models.matrices import matrix_shape
from cpedit.recipes.format import Recipe

Verdict = Literal["fits", "tight", "will not fit", "unknown"]

TIGHT = 0.8
"""A need above this share of the free memory is ``tight`` (other programs, fragmentation, spikes)."""

ACTIVATION_BYTES_PER_LATENT_PIXEL_CHANNEL = 100
"""Activations of one denoiser batch item, per latent pixel and base channel, in units of the dtype's size.

The same conservative figure the automatic calibration batch size uses."""

_FLOAT_DTYPES = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"}
_ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "I16": 2, "U16": 2, "I32": 4, "U32": 4, "I64": 8, "U64": 8}


@dataclass(frozen=True)
class MemorySide:
    """The need and the free memory of one place (the compute device or the host).

    Attributes:
        name: ``host`` or the device (``cuda:0``).
        need: Bytes the run needs there at its peak.
        free: Bytes free there now (None when it cannot be told).
    """

    name: str
    need: int
    free: int | None

    @property
    def verdict(self) -> Verdict:
        """``fits`` (under 80% of the free memory), ``tight``, ``will not fit`` or ``unknown``."""
        if self.free is None:
            return "unknown"
        if self.need <= TIGHT * self.free:
            return "fits"
        return "tight" if self.need <= self.free else "will not fit"


@dataclass(frozen=True)
class MemoryEstimate:
    """What an edit run needs in memory, and whether it fits (see :func:`estimate_memory`).

    Attributes:
        device: The compute device (``cpu``, ``cuda:0``, ``mps``).
        dtype: The compute dtype (``float32``, ...).
        offload: Whether model CPU offload is on.
        batch_size: The calibration batch the activations are counted for (prompts).
        weights: Bytes of every loaded component's weights at ``dtype``.
        largest_component: Bytes of the largest component at ``dtype`` (what offload puts on the device).
        statistics: Bytes of the calibration statistics buffers, at most (every linear layer of the
            hooked components, tau calls, two groups, running totals and one batch's sums).
        activations: Bytes of one calibration batch's activations.
        sides: The compute device's side, then the host's (one side when they are the same memory).
        advice: What to change when it is not ``fits``: dtype, offload, batch size (plain words).
    """

    device: str
    dtype: str
    offload: bool
    batch_size: int
    weights: int
    largest_component: int
    statistics: int
    activations: int
    sides: tuple[MemorySide, ...]
    advice: tuple[str, ...]

    @property
    def verdict(self) -> Verdict:
        """The worst side's verdict (``unknown`` only when no side can be told)."""
        order: list[Verdict] = ["will not fit", "tight", "fits"]
        known = [side.verdict for side in self.sides if side.verdict != "unknown"]
        return next((v for v in order if v in known), "unknown")

    def describe(self) -> str:
        """One plain line: the verdict, the need against the free memory per side, and the advice."""
        parts = []
        for side in self.sides:
            free = "free memory unknown" if side.free is None else f"{format_bytes(side.free)} free"
            parts.append(f"{side.name}: needs about {format_bytes(side.need)}, {free}")
        detail = (
            f"weights {format_bytes(self.weights)} in {self.dtype}, statistics {format_bytes(self.statistics)}, "
            f"activations {format_bytes(self.activations)} at batch size {self.batch_size}"
        )
        text = f"memory: {self.verdict} ({'; '.join(parts)}; {detail})"
        return text + (f"; to need less: {'; '.join(self.advice)}" if self.advice else "")


def estimate_memory(
    folder: str | os.PathLike[str],
    recipes: Sequence[Recipe],
    *,
    compute: ComputeOptions = ComputeOptions(),
    batch_size: int | None = None,
) -> MemoryEstimate:
    """Estimate what editing the pipeline in ``folder`` with ``recipes`` needs, against the memory free now.

    Args:
        folder: A local diffusers pipeline folder (a Hub snapshot included).
        recipes: The recipes (their tau, size and guidance set the statistics and activations).
        compute: The device, dtype (None: float16 on CUDA, else float32) and offload the run uses
            (as for :meth:`cpedit.EditSession.open`).
        batch_size: Prompts per calibration batch; None counts one prompt (the automatic batch
            size picks what fits, down to one).

    Raises:
        CpeditError: Bad device or dtype; a component file cannot be read (``malformed``).
    """
    offload = compute.offload
    device = resolve_device(compute.device)
    compute_dtype = resolve_dtype(compute.dtype, device)
    root = Path(folder)
    index = _json(root / "model_index.json")
    sizes: dict[str, int] = {}
    linear_columns: dict[str, int] = {}
    for name, value in index.items():
        if name.startswith("_") or not isinstance(value, list) or name == "safety_checker":
            continue
        sizes[name], linear_columns[name] = _component_weights(root / name, compute_dtype.itemsize)
    weights, largest = sum(sizes.values()), max(sizes.values(), default=0)
    denoiser = "transformer" if "transformer" in sizes else "unet"
    statistics = 0
    for recipe in recipes:
        text = recipe.prune.target == "text-ffn"
        # Wan 2.2's low-noise transformer_2 is hooked as well (its own statistics)
        hooked = [n for n in linear_columns if n.startswith("text_encoder")] if text else [denoiser, "transformer_2"]
        tau = 1 if text else recipe.prune.timesteps
        statistics += 2 * tau * 2 * 4 * sum(linear_columns.get(n, 0) for n in hooked)
    batch = batch_size or 1
    activations = max(
        (_activations(root, recipe, batch=batch, itemsize=compute_dtype.itemsize) for recipe in recipes), default=0
    )
    working = statistics + activations
    sides: tuple[MemorySide, ...]
    if device.type == "cuda":
        device_free = int(torch.cuda.mem_get_info(device)[0])
        device_need = (largest if offload else weights) + working
        sides = (
            MemorySide(name=str(device), need=device_need, free=device_free),
            MemorySide(name="host", need=weights if offload else largest, free=available_host_memory()),
        )
    else:
        sides = (
            MemorySide(
                name="host" if device.type == "cpu" else str(device),
                need=weights + working,
                free=available_host_memory(),
            ),
        )
    estimate = MemoryEstimate(
        device=str(device),
        dtype=str(compute_dtype).removeprefix("torch."),
        offload=offload,
        batch_size=batch,
        weights=weights,
        largest_component=largest,
        statistics=statistics,
        activations=activations,
        sides=sides,
        advice=(),
    )
    return dataclasses.replace(estimate, advice=_advice(estimate, device, compute_dtype))


def refuse_if_it_cannot_fit(estimate: MemoryEstimate) -> None:
    """Refuse a run whose estimate is ``will not fit``, with the numbers and what to change.

    Raises:
        CpeditError: ``reason="out_of_memory"``, ``argument="memory_check"``.
    """
    if estimate.verdict == "will not fit":
        raise CpeditError(
            f"this run will not fit in memory: {estimate.describe().removeprefix('memory: will not fit ')}; "
            "nothing was loaded (turn the memory check off to go ahead anyway)",
            reason="out_of_memory",
            argument="memory_check",
        )


def available_host_memory() -> int | None:
    """Bytes of host memory available to a new allocation (psutil if installed, else /proc/meminfo); None if unknown."""
    try:
        import psutil  # type: ignore[import-untyped]

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _advice(estimate: MemoryEstimate, compute: torch.device, dtype: torch.dtype) -> tuple[str, ...]:
    if estimate.verdict in ("fits", "unknown"):
        return ()
    advice = []
    if dtype.itemsize == 4:
        advice.append(f"dtype float16 or bfloat16 (weights about {format_bytes(estimate.weights // 2)})")
    if compute.type == "cuda" and not estimate.offload:
        advice.append(
            f"model offload (the GPU then holds the largest component, {format_bytes(estimate.largest_component)})"
        )
    if estimate.batch_size > 1:
        per_prompt = estimate.activations // estimate.batch_size
        advice.append(f"a smaller batch size (activations about {format_bytes(per_prompt)} per prompt)")
    if not advice:
        advice.append("a machine or device with more free memory")
    return tuple(advice)


def _json(path: Path) -> dict[str, Any]:
    """A small JSON object of the pipeline folder, through the model folder's one bounded reader."""
    return read_json_object(path, shown_as=str(path.parent), reason="malformed")


def _component_weights(folder: Path, itemsize: int) -> tuple[int, int]:
    """A component's weight bytes at ``itemsize`` (floats; other tensors as stored) and its linear layers' columns.

    One set of files is counted: the default one, else the first variant (every variant holds the same tensors).
    """
    files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    variants = sorted({variant_of(file.name) for file in files})
    chosen = "" if "" in variants else (variants[0] if variants else None)
    seen: set[str] = set()
    total, columns = 0, 0
    for file in files:
        if variant_of(file.name) != chosen:
            continue
        try:
            header = read_safetensors_header(file)
        except (SafetensorsProblem, OSError) as exc:
            raise CpeditError(f"{file} cannot be read: {exc}", path=str(file), reason="malformed") from None
        for entry in header.tensors.values():
            if entry.name in seen:
                continue
            seen.add(entry.name)
            numel = 1
            for n in entry.shape:
                numel *= n
            total += numel * (itemsize if entry.dtype in _FLOAT_DTYPES else _ITEMSIZE.get(entry.dtype, 4))
            matrix = matrix_shape(entry.shape)
            if matrix is not None and entry.name.endswith(".weight"):  # linear layers and 1x1 convolutions
                columns += matrix[1]
    return total, columns


def _activations(root: Path, recipe: Recipe, *, batch: int, itemsize: int) -> int:
    """One calibration batch's activations (the automatic batch size's figure; 0 for ``text-ffn``)."""
    if recipe.prune.target == "text-ffn":
        return 0
    denoiser = "transformer" if (root / "transformer").is_dir() else "unet"
    config = _json(root / denoiser / "config.json") if (root / denoiser / "config.json").is_file() else {}
    vae = _json(root / "vae" / "config.json") if (root / "vae" / "config.json").is_file() else {}
    levels = vae.get("block_out_channels") or vae.get("encoder_block_out_channels")  # KL; DC (Sana: 32x)
    scale = 2 ** (len(levels or [0, 0, 0, 0]) - 1)
    channels = (config.get("block_out_channels") or [320])[0]
    sample = config.get("sample_size") or 64
    native = sample if isinstance(sample, int) else max(sample)
    sampling = recipe.sampling
    height = sampling.height or native * scale
    width = sampling.width or native * scale
    pixels = (height // scale) * (width // scale)
    guidance = 2 if sampling.guidance_scale > 1.0 else 1
    return ACTIVATION_BYTES_PER_LATENT_PIXEL_CHANNEL * pixels * int(channels) * itemsize * guidance * batch
