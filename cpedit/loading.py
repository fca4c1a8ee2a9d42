"""Loading a diffusers pipeline safely: a Hub id or a local folder, safetensors only.

Models come from strangers: weights are read from safetensors only and remote code is
never enabled. A Hub model is first resolved to a local snapshot folder (the standard
Hub cache), so the output can be a byte-for-byte copy of it with only the pruned UNet
weights changed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cpedit.errors import CpeditError, ModelLoadError
from cpedit.shapes.model import BUILTIN_MODEL_NAME, builtin_pipeline_path, is_builtin_model

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
DTYPE_ALIASES: dict[str, str] = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
"""Short dtype names accepted wherever a dtype name is (``--dtype bf16``)."""


@dataclass(frozen=True)
class ModelSource:
    """Where a pipeline comes from.

    Attributes:
        ref: What the user gave (Hub id or folder).
        path: The local folder holding the pipeline (a Hub snapshot for Hub models).
        is_local: True when ``ref`` was a folder.
        revision: The revision asked for (Hub only).
        commit: The Hub commit the snapshot belongs to, when known.
    """

    ref: str
    path: Path
    is_local: bool
    revision: str | None = None
    commit: str | None = None


def resolve_device(device: str = "auto") -> torch.device:
    """Turn ``auto|cpu|cuda[:N]|mps`` into a device, checking it exists.

    Raises:
        CpeditError: The device is unknown or not available here.
    """
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise CpeditError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise CpeditError(f"device {device!r} asked for, but this torch build sees no CUDA GPU; use --device cpu")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise CpeditError(f"device {device!r} asked for, but only {torch.cuda.device_count()} CUDA GPU(s) exist")
    elif resolved.type == "mps":
        if getattr(torch.backends, "mps", None) is None or not torch.backends.mps.is_available():
            raise CpeditError("device 'mps' asked for, but Apple MPS is not available here; use --device cpu")
    elif resolved.type != "cpu":
        raise CpeditError(f"unsupported device {device!r}; use auto, cpu, cuda, cuda:N or mps")
    return resolved


def resolve_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    """The compute dtype: as asked, else float16 on CUDA and float32 elsewhere.

    Raises:
        CpeditError: Unknown dtype name.
    """
    if dtype is None:
        return torch.float16 if device.type == "cuda" else torch.float32
    try:
        return DTYPES[DTYPE_ALIASES.get(dtype, dtype)]
    except KeyError:
        raise CpeditError(f"unknown dtype {dtype!r}; use one of {', '.join([*DTYPES, *DTYPE_ALIASES])}") from None


def check_offload(device: str) -> torch.device:
    """Check that model CPU offload can be used with ``device`` (a CUDA GPU), before anything loads.

    Offload keeps components in host memory and moves each to the GPU only while it runs;
    on the CPU everything already lives in host memory, so asking for it there is a
    mistake worth stopping on rather than a silent no-op.

    Raises:
        CpeditError: ``device`` is not a CUDA GPU, or accelerate is missing.
    """
    resolved = resolve_device(device)
    if resolved.type != "cuda":
        raise CpeditError(
            f"--offload (model CPU offload) moves components between host memory and a CUDA GPU, but the device "
            f"is {resolved.type}; on the CPU the model already lives in host memory: drop --offload"
        )
    if importlib.util.find_spec("accelerate") is None:
        raise CpeditError("--offload needs the accelerate package: pip install accelerate")
    return resolved


def resolve_source(model: str | os.PathLike[str], *, revision: str | None = None) -> ModelSource:
    """Find the local folder of a pipeline, downloading it from the Hub if needed.

    Args:
        model: A local diffusers pipeline folder, a Hub id such as
            ``CompVis/stable-diffusion-v1-4``, or ``builtin:shapes`` (the small model
            that ships with cpedit).
        revision: A Hub branch, tag or commit (Hub ids only).

    Raises:
        ModelLoadError: The folder is not a diffusers pipeline, or the Hub model cannot
            be had; the message says what to do.
    """
    ref = os.fspath(model)
    if is_builtin_model(ref):
        return _builtin_source(revision=revision)
    path = Path(ref).expanduser()
    if path.exists():
        if revision is not None:
            raise ModelLoadError(f"--revision applies to Hub models only; {ref} is a local folder")
        if not (path / "model_index.json").is_file():
            raise ModelLoadError(
                f"{ref} is not a diffusers pipeline folder (no model_index.json); "
                "give a folder written by `save_pretrained` or a Hub id such as CompVis/stable-diffusion-v1-4"
            )
        return ModelSource(ref=ref, path=path.resolve(), is_local=True)
    if ref.count("/") != 1 or ref.startswith((".", "/", "~")):
        raise ModelLoadError(f"{ref}: no such folder, and not a Hub id of the form namespace/name")
    return _download(ref, revision=revision)


def _builtin_source(*, revision: str | None) -> ModelSource:
    """The shipped shapes model (``builtin:shapes``), a folder inside the package."""
    if revision is not None:
        raise ModelLoadError(f"--revision applies to Hub models only; {BUILTIN_MODEL_NAME} is the built-in model")
    path = builtin_pipeline_path()
    if not (path / "model_index.json").is_file():
        raise ModelLoadError(
            f"the built-in model's weights are missing from this install ({path}); reinstall cpedit, "
            "or rebuild them with `python -m cpedit.shapes.train`"
        )
    return ModelSource(ref=BUILTIN_MODEL_NAME, path=path, is_local=False)


def _download(repo_id: str, *, revision: str | None) -> ModelSource:
    """Download (or find in the Hub cache) the safetensors pipeline; every failure is a clear ModelLoadError.

    model_index.json comes first (one small file): a repo that is not a diffusers text-to-image
    pipeline is refused before any weight is downloaded. huggingface_hub shows download progress
    (tqdm on stderr) and keeps the files in the standard Hub cache; with ``HF_HUB_OFFLINE=1`` the
    cache is used and the error says what is missing.
    """
    from diffusers import DiffusionPipeline
    from huggingface_hub import hf_hub_download

    from cpedit.hub.errors import describe_hub_error
    from cpedit.hub.info import text_to_image_refusal

    def fail(exc: BaseException, filename: str | None = None) -> ModelLoadError:
        described = describe_hub_error(exc, repo_id=repo_id, revision=revision, filename=filename)
        if described is None:
            from cpedit.hub.errors import redact

            return ModelLoadError(f"cannot download {repo_id}: {redact(str(exc))}")
        reason, message = described
        if reason == "entry" and filename == "model_index.json":
            message = (
                f"{repo_id} is not a diffusers pipeline (it has no model_index.json); cpedit edits diffusers "
                "text-to-image pipelines such as CompVis/stable-diffusion-v1-4"
            )
        return ModelLoadError(message)

    try:
        index_file = hf_hub_download(repo_id, "model_index.json", revision=revision)
    except Exception as exc:  # noqa: BLE001 - mapped to a clear message, or re-worded with the token redacted
        raise fail(exc, "model_index.json") from None
    try:
        index = json.loads(Path(index_file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{repo_id}: its model_index.json cannot be read ({exc})") from None
    refusal = text_to_image_refusal(index)
    if refusal is not None:
        raise ModelLoadError(f"{repo_id}: {refusal}")
    try:
        folder = DiffusionPipeline.download(repo_id, revision=revision, use_safetensors=True)
    except Exception as exc:  # noqa: BLE001
        if "safetensors" in str(exc) and "Could not find" in str(exc):
            raise ModelLoadError(
                f"{repo_id} has no safetensors weights for its components; cpedit loads safetensors only "
                "(pickled .bin/.ckpt weights can run code). Convert it, or pick another repo"
            ) from None
        raise fail(exc) from None
    folder_path = Path(folder)
    commit = folder_path.name if folder_path.parent.name == "snapshots" else None
    return ModelSource(ref=repo_id, path=folder_path, is_local=False, revision=revision, commit=commit)


@contextmanager
def torch_dtype_accepted() -> Iterator[None]:
    """Silence diffusers' notice that ``torch_dtype`` is renamed ``dtype`` (>= 0.42).

    cpedit passes ``torch_dtype`` because older diffusers releases know only that name.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch_dtype.*deprecated", category=FutureWarning)
        yield


def load_pipeline(
    source: ModelSource,
    *,
    device: torch.device,
    dtype: torch.dtype,
    safety_checker: bool = False,
    offload: bool = False,
) -> Any:
    """Load a pipeline from its local folder: safetensors only, no remote code.

    Args:
        source: Where the pipeline is (see :func:`resolve_source`).
        device: Where to put it.
        dtype: Its compute dtype.
        safety_checker: Load the model's safety checker, if it has one. Calibration never
            decodes images, so pruning leaves it out (its files are still copied to the
            output unchanged); sampling keeps it unless asked not to.
        offload: Model CPU offload onto ``device`` (a CUDA GPU) instead of moving the
            whole pipeline there.

    Raises:
        ModelLoadError: The folder cannot be loaded as a diffusers pipeline.
    """
    from diffusers import DiffusionPipeline

    kwargs: dict[str, Any] = {}
    try:
        index = json.loads((source.path / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{source.ref}: cannot read model_index.json ({exc})") from None
    if not isinstance(index, dict):
        raise ModelLoadError(f"{source.ref}: model_index.json is not a JSON object")
    if "safety_checker" in index and not safety_checker:
        kwargs["safety_checker"] = None
        kwargs["requires_safety_checker"] = False
    try:
        with torch_dtype_accepted():
            pipe = DiffusionPipeline.from_pretrained(
                source.path, torch_dtype=dtype, use_safetensors=True, trust_remote_code=False, **kwargs
            )
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ModelLoadError(f"cannot load {source.ref} as a diffusers pipeline (safetensors only): {exc}") from None
    if offload:
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def open_pipeline(
    model: str | os.PathLike[str],
    *,
    revision: str | None = None,
    device: str = "auto",
    dtype: str | None = None,
    safety_checker: bool = False,
    offload: bool = False,
) -> tuple[ModelSource, Any]:
    """Resolve, download if needed, and load a pipeline in one call.

    Args:
        model: A Hub id or a local diffusers pipeline folder.
        revision: Hub branch, tag or commit (Hub ids only).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        dtype: ``float32``, ``float16`` or ``bfloat16``; default float16 on CUDA, else float32.
        safety_checker: Load the model's safety checker (see :func:`load_pipeline`).
        offload: Model CPU offload onto the (CUDA) device (see :func:`check_offload`).

    Returns:
        The model's source and the loaded pipeline (on the device, progress bars off).

    Raises:
        CpeditError: Bad device or dtype.
        ModelLoadError: The model cannot be found or loaded.
    """
    compute_device = check_offload(device) if offload else resolve_device(device)
    compute_dtype = resolve_dtype(dtype, compute_device)
    source = resolve_source(model, revision=revision)
    pipe = load_pipeline(
        source, device=compute_device, dtype=compute_dtype, safety_checker=safety_checker, offload=offload
    )
    return source, pipe
