"""Loading a diffusers pipeline safely: a Hub id or a local folder, safetensors only.

Models come from strangers: weights are read from safetensors only and remote code is
never enabled. A Hub model is first resolved to a local snapshot folder (the standard
Hub cache), so the output can be a byte-for-byte copy of it with only the pruned UNet
weights changed.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cpedit.errors import CpeditError, ModelLoadError, UnsupportedModelError
from cpedit.hub.cache import infer_hub_snapshot
from cpedit.hub.download import download_files, fetch_file, list_files, resolve_commit
from cpedit.hub.errors import HubError
from cpedit.hub.pipeline_files import components_without_safetensors, pipeline_files
from cpedit.models.compute import DTYPE_ALIASES, DTYPE_NAMES, ComputeOptions
from cpedit.models.files import check_folder_files, check_safetensors, read_model_index
from cpedit.models.support import SupportInfo, describe_support, text_to_image_refusal
from cpedit.progress import ProgressCallback, ProgressEvent, check_cancel, emit
from cpedit.shapes.model import BUILTIN_MODEL_NAME, builtin_pipeline_path, is_builtin_model

DTYPES: dict[str, torch.dtype] = {name: getattr(torch, name) for name in DTYPE_NAMES}
"""The compute dtypes by name (:data:`cpedit.models.compute.DTYPE_NAMES`; short names: ``DTYPE_ALIASES``)."""


@dataclass(frozen=True)
class ModelSource:
    """Where a pipeline comes from.

    Attributes:
        ref: What the user gave (Hub id or folder).
        path: The local folder holding the pipeline (a Hub snapshot for Hub models).
        is_local: True when ``ref`` was a folder.
        revision: The revision asked for (Hub only).
        commit: The Hub commit the snapshot belongs to, when known (for a local Hub cache
            snapshot folder, the snapshot folder's name).
        repo_id: The Hub id the files come from: the id for a Hub download, ``NS/NAME`` for
            a local Hub cache snapshot folder (``.../models--NS--NAME/snapshots/COMMIT``),
            None for any other folder and for the built-in model.
    """

    ref: str
    path: Path
    is_local: bool
    revision: str | None = None
    commit: str | None = None
    repo_id: str | None = None


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
        raise CpeditError(
            f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps", reason="unknown", argument="device"
        ) from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise CpeditError(
                f"device {device!r} asked for, but this torch build sees no CUDA GPU; use the cpu device",
                reason="unavailable",
                argument="device",
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise CpeditError(
                f"device {device!r} asked for, but only {torch.cuda.device_count()} CUDA GPU(s) exist",
                reason="unavailable",
                argument="device",
            )
    elif resolved.type == "mps":
        if getattr(torch.backends, "mps", None) is None or not torch.backends.mps.is_available():
            raise CpeditError(
                "device 'mps' asked for, but Apple MPS is not available here; use the cpu device",
                reason="unavailable",
                argument="device",
            )
    elif resolved.type != "cpu":
        raise CpeditError(
            f"unsupported device {device!r}; use auto, cpu, cuda, cuda:N or mps", reason="unknown", argument="device"
        )
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
        raise CpeditError(
            f"unknown dtype {dtype!r}; use one of {', '.join([*DTYPES, *DTYPE_ALIASES])}",
            reason="unknown",
            argument="dtype",
        ) from None


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
            f"offload (model CPU offload) moves components between host memory and a CUDA GPU, but the device "
            f"is {resolved.type}; on the CPU the model already lives in host memory: turn offload off",
            reason="needs_cuda",
            argument="offload",
        )
    if importlib.util.find_spec("accelerate") is None:
        raise CpeditError(
            "offload needs the accelerate package: pip install accelerate",
            reason="missing_dependency",
            argument="offload",
        )
    return resolved


def resolve_source(
    model: str | os.PathLike[str],
    *,
    revision: str | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> ModelSource:
    """Find the local folder of a pipeline, downloading it from the Hub if needed.

    A Hub model is downloaded into the standard Hub cache by cpedit's one downloader
    (:mod:`cpedit.hub.download`): only the files a safetensors pipeline load needs (see
    :func:`pipeline_files`), reported as ``download`` events (bytes) instead of
    huggingface_hub's own progress bars.

    Args:
        model: A local diffusers pipeline folder, a Hub id such as
            ``CompVis/stable-diffusion-v1-4``, or ``builtin:shapes`` (the small model
            that ships with cpedit).
        revision: A Hub branch, tag or commit (Hub ids only).
        on_progress: Receives ``download`` events while a Hub model downloads: ``completed``
            and ``total`` count the bytes of all the files the pipeline needs (files already
            in the cache count as done), ``unit="bytes"``, and ``file``, ``file_index`` and
            ``files`` name the file the bytes belong to. It may be called from
            huggingface_hub's download threads, one call at a time.
        cancel: Set it (from another thread) to stop the download at its next chunk or file
            with :class:`~cpedit.errors.Cancelled`. Files already complete stay in the Hub
            cache (a later download fetches only the others); nothing else is written.

    Raises:
        ModelLoadError: The folder is not a diffusers pipeline, or the Hub model cannot
            be had; the message says what to do.
        Cancelled: ``cancel`` was set.
    """
    check_cancel(cancel, "before loading the model")
    ref = os.fspath(model)
    if is_builtin_model(ref):
        return _builtin_source(revision=revision)
    path = Path(ref).expanduser()
    if path.exists():
        if revision is not None:
            raise ModelLoadError(
                f"a revision applies to Hub models only; {ref} is a local folder",
                path=ref,
                reason="local",
                argument="revision",
            )
        if not (path / "model_index.json").is_file():
            raise ModelLoadError(
                f"{ref} is not a diffusers pipeline folder (no model_index.json); "
                "give a folder written by `save_pretrained` or a Hub id such as CompVis/stable-diffusion-v1-4"
            )
        check_pipeline_folder(path, ref=ref)
        resolved = path.resolve()
        snapshot = infer_hub_snapshot(resolved)
        repo_id, commit = snapshot if snapshot is not None else (None, None)
        return ModelSource(ref=ref, path=resolved, is_local=True, commit=commit, repo_id=repo_id)
    if ref.count("/") != 1 or ref.startswith((".", "/", "~")):
        raise ModelLoadError(f"{ref}: no such folder, and not a Hub id of the form namespace/name")
    source = _download(ref, revision=revision, on_progress=on_progress, cancel=cancel)
    check_pipeline_folder(source.path, ref=ref)
    return source


CONVERT_HINT = (
    "convert the weights to safetensors where you trust them (load with diffusers, then "
    "`save_pretrained(folder, safe_serialization=True)`), or pick a model that ships safetensors"
)
"""What to do about pickled weights, for messages."""
LOCAL_PIPELINE = "a local pipeline folder"
"""What a user can give instead of a Hub model, for offline and network messages."""


def check_pipeline_folder(folder: Path, *, ref: str) -> None:
    """Refuse a pipeline folder cpedit will not load, before anything heavy runs, saying why.

    Checked: no symbolic link leads outside the folder (nor to a folder, nowhere, or in a
    loop), model_index.json parses and names a diffusers pipeline class and library
    components (never custom code), every component it lists has its folder, every component
    with weights has safetensors ones (never only pickles), every safetensors file is
    complete (its header and data are all there), and the pipeline is a text-to-image one of
    a class cpedit edits (as ``cpedit models info`` judges it).

    Raises:
        UnsafeFileError: An unsafe link or special file, or a truncated safetensors file.
        ModelLoadError: Custom code, missing components, pickle-only weights, or not a
            text-to-image pipeline.
        UnsupportedModelError: A pipeline class cpedit does not edit.
    """
    check_folder_files(folder)
    index_file = folder / "model_index.json"
    index = read_model_index(index_file, shown_as=ref)
    name = index.get("_class_name")
    if not isinstance(name, str) or not _is_diffusers_pipeline(name):
        raise ModelLoadError(
            f"{ref}: its pipeline class {name!r} (model_index.json `_class_name`) is not a diffusers pipeline, so "
            "loading it would run code shipped with the model; cpedit never runs model code. Use a model saved "
            "with a standard diffusers pipeline class (e.g. StableDiffusionPipeline)",
            path=str(index_file),
            reason="custom_code",
        )
    files: dict[str, int] = {}
    for component, entry in index.items():
        if component.startswith("_") or not isinstance(entry, list):
            continue
        if len(entry) != 2 or entry == [None, None]:
            continue
        library = entry[0]
        if not isinstance(library, str) or not _is_known_library(library):
            raise ModelLoadError(
                f"{ref}: component {component} comes from {library!r}, not from diffusers or transformers: "
                "loading it would run code shipped with the model; cpedit never runs model code",
                path=str(index_file),
                reason="custom_code",
            )
        part = folder / component
        if not part.is_dir():
            raise ModelLoadError(
                f"{ref}: component {component} is listed in model_index.json but its folder {component}/ is "
                "missing; copy the complete pipeline folder",
                path=str(part),
                reason="missing_component",
            )
        for file in part.iterdir():
            if file.is_file():
                files[f"{component}/{file.name}"] = file.stat().st_size
    pickled = components_without_safetensors(index, files)
    if pickled:
        raise ModelLoadError(
            f"{ref}: {', '.join(pickled)} {'has' if len(pickled) == 1 else 'have'} weights only in pickle formats "
            f"(.bin, .ckpt, ...), which can run code when loaded; cpedit loads safetensors only: {CONVERT_HINT}",
            path=str(folder / pickled[0]),
            reason="no_safetensors",
        )
    for relative in sorted(files):
        if relative.endswith(".safetensors"):
            check_safetensors(folder / relative, shown_as=f"{ref}/{relative}")
    refusal = text_to_image_refusal(index)
    if refusal is not None:
        raise ModelLoadError(f"{ref}: {refusal}", path=str(index_file), reason="not_pipeline")
    support = describe_support(name)
    if not support.supported:  # the words require_support uses on a loaded pipeline
        raise UnsupportedModelError(f"{name} is not supported: {support.missing}", reason="unsupported")


def check_model_folder(folder: str | os.PathLike[str]) -> SupportInfo:
    """Check a local pipeline folder as a run does before loading it, and say how cpedit edits it.

    Nothing is loaded (no weights read): a front end can refuse a folder up front with the
    reason ``cpedit prune`` would give.

    Args:
        folder: The folder, as the user typed it (messages name it so).

    Returns:
        How cpedit edits the pipeline (:func:`~cpedit.models.support.describe_support`).

    Raises:
        ModelLoadError: No such folder, not a diffusers text-to-image pipeline folder, custom
            code, missing components or pickle-only weights (an :class:`UnsafeFileError` for
            unsafe links or truncated files).
        UnsupportedModelError: A pipeline class cpedit does not edit.
    """
    ref = os.fspath(folder)
    if not Path(ref).expanduser().exists():
        raise ModelLoadError(f"{ref}: no such folder", path=ref)
    source = resolve_source(ref)
    index = read_model_index(source.path / "model_index.json", shown_as=ref)
    return describe_support(str(index.get("_class_name")))


def _is_diffusers_pipeline(name: str) -> bool:
    import diffusers

    if not name.isidentifier():
        return False
    try:
        return isinstance(getattr(diffusers, name, None), type)
    except Exception:  # noqa: BLE001 - a lazy import that fails: not a usable class
        return False


def _is_known_library(library: str) -> bool:
    if library in ("diffusers", "transformers"):
        return True
    if not library.isidentifier():
        return False
    try:
        return importlib.util.find_spec(f"diffusers.pipelines.{library}") is not None
    except (ImportError, ValueError):
        return False


def _builtin_source(*, revision: str | None) -> ModelSource:
    """The shipped shapes model (``builtin:shapes``), a folder inside the package."""
    if revision is not None:
        raise ModelLoadError(
            f"a revision applies to Hub models only; {BUILTIN_MODEL_NAME} is the built-in model",
            reason="local",
            argument="revision",
        )
    path = builtin_pipeline_path()
    if not (path / "model_index.json").is_file():
        raise ModelLoadError(
            f"the built-in model's weights are missing from this install ({path}); reinstall cpedit, "
            "or rebuild them from a checkout of the cpedit repository with `python -m devtools.train_shapes`"
        )
    return ModelSource(ref=BUILTIN_MODEL_NAME, path=path, is_local=False)


def _download(
    repo_id: str,
    *,
    revision: str | None,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> ModelSource:
    """Download (or find in the Hub cache) the safetensors pipeline; every failure is a clear ModelLoadError.

    model_index.json comes first (one small file): a repo that is not a diffusers text-to-image
    pipeline is refused before any weight is downloaded. Then the repo's file listing (cached
    per commit after the first download) decides the files (:func:`pipeline_files`), and
    :func:`cpedit.hub.download.download_files` fetches those missing from the standard Hub cache
    as ``download`` events. With ``HF_HUB_OFFLINE=1`` the cache is used and the error says what
    is missing.
    """
    from cpedit.models.support import text_to_image_refusal

    emit(on_progress, ProgressEvent(stage="download", message=f"reading {repo_id}/model_index.json"))
    try:
        index_file = fetch_file(repo_id, "model_index.json", revision=revision, instead=LOCAL_PIPELINE)
    except HubError as exc:
        if exc.reason == "entry":
            raise ModelLoadError(
                f"{repo_id} is not a diffusers pipeline (it has no model_index.json); cpedit edits diffusers "
                "text-to-image pipelines such as CompVis/stable-diffusion-v1-4",
                repo_id=repo_id,
                reason="not_pipeline",
            ) from None
        raise _load_error(exc) from None
    index = read_model_index(index_file, shown_as=repo_id, repo_id=repo_id)
    refusal = text_to_image_refusal(index)
    if refusal is not None:
        raise ModelLoadError(f"{repo_id}: {refusal}", repo_id=repo_id, reason="not_pipeline")
    snapshot = index_file.parent
    check_cancel(cancel, "before the download")
    try:
        commit = (
            snapshot.name
            if snapshot.parent.name == "snapshots"
            else resolve_commit(repo_id, revision=revision, instead=LOCAL_PIPELINE)
        )
        files = list_files(repo_id, commit=commit, instead=LOCAL_PIPELINE)
    except HubError as exc:
        raise _load_error(exc) from None
    if components_without_safetensors(index, files):
        raise ModelLoadError(
            f"{repo_id} has no safetensors weights for its components; cpedit loads safetensors only "
            f"(pickled .bin/.ckpt weights can run code when loaded): {CONVERT_HINT}",
            repo_id=repo_id,
            reason="no_safetensors",
        )
    try:
        folder = download_files(
            repo_id,
            pipeline_files(index, files),
            commit=commit,
            instead=LOCAL_PIPELINE,
            on_progress=on_progress,
            cancel=cancel,
        )
    except HubError as exc:
        raise _load_error(exc) from None
    return ModelSource(ref=repo_id, path=folder, is_local=False, revision=revision, commit=commit, repo_id=repo_id)


def _load_error(exc: HubError) -> ModelLoadError:
    """The Hub failure as a ModelLoadError (what a model that cannot be had raises), its fields kept."""
    return ModelLoadError(str(exc), repo_id=exc.repo_id, reason=exc.reason, argument=exc.argument)


@contextmanager
def torch_dtype_accepted() -> Iterator[None]:
    """Silence diffusers' notice that ``torch_dtype`` is renamed ``dtype`` (>= 0.42).

    cpedit passes ``torch_dtype`` because older diffusers releases know only that name.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch_dtype.*deprecated", category=FutureWarning)
        yield


@contextmanager
def library_progress_bars_off() -> Iterator[None]:
    """diffusers' and transformers' progress bars off for the block (while a pipeline loads).

    Each library's setting is put back afterwards, so a caller that wants their bars
    elsewhere keeps them.
    """
    import diffusers.utils.logging as diffusers_logging

    modules: list[Any] = [diffusers_logging]
    if importlib.util.find_spec("transformers") is not None:
        import transformers.utils.logging as transformers_logging

        modules.append(transformers_logging)
    turned_off = [m for m in modules if m.is_progress_bar_enabled()]
    for module in turned_off:
        module.disable_progress_bar()
    try:
        yield
    finally:
        for module in turned_off:
            module.enable_progress_bar()


def load_pipeline(
    source: ModelSource,
    *,
    device: torch.device,
    dtype: torch.dtype,
    safety_checker: bool = False,
    offload: bool = False,
    cancel: threading.Event | None = None,
) -> Any:
    """Load a pipeline from its local folder: safetensors only, no remote code, no progress bars.

    Args:
        source: Where the pipeline is (see :func:`resolve_source`).
        device: Where to put it.
        dtype: Its compute dtype.
        safety_checker: Load the model's safety checker, if it has one. Calibration never
            decodes images, so pruning leaves it out (its files are still copied to the
            output unchanged); sampling keeps it unless asked not to.
        offload: Model CPU offload onto ``device`` (a CUDA GPU) instead of moving the
            whole pipeline there.
        cancel: Checked before the weights are read and before the pipeline moves to the
            device.

    Raises:
        ModelLoadError: The folder cannot be loaded as a diffusers pipeline.
        Cancelled: ``cancel`` was set.
    """
    from diffusers import DiffusionPipeline

    kwargs: dict[str, Any] = {}
    index = read_model_index(source.path / "model_index.json", shown_as=source.ref)
    if "safety_checker" in index and not safety_checker:
        kwargs["safety_checker"] = None
        kwargs["requires_safety_checker"] = False
    check_cancel(cancel, "before loading the model")
    try:
        with torch_dtype_accepted(), library_progress_bars_off():
            pipe = DiffusionPipeline.from_pretrained(
                source.path, torch_dtype=dtype, use_safetensors=True, trust_remote_code=False, **kwargs
            )
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        if "trust_remote_code" in str(exc) or "custom_pipeline" in str(exc):
            raise ModelLoadError(
                f"cannot load {source.ref}: it needs code shipped with the model, and cpedit never runs model code; "
                "use a model saved with standard diffusers and transformers classes",
                reason="custom_code",
            ) from None
        missing = missing_backends(index)
        if missing:
            raise ModelLoadError(
                f"cannot load {source.ref}: {missing}", path=str(source.path), reason="missing_dependency"
            ) from None
        raise ModelLoadError(f"cannot load {source.ref} as a diffusers pipeline (safetensors only): {exc}") from None
    check_cancel(cancel, "while loading the model")
    if offload:
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def missing_backends(index: Mapping[str, Any]) -> str | None:
    """Which components of a model index transformers cannot build here for a missing package, in words.

    transformers stands a placeholder (a class with ``_backends``) in for a class whose package
    is not installed: FLUX.2's tokenizer, a ``PixtralProcessor``, needs torchvision. None when
    every transformers component's class can be built.
    """
    if importlib.util.find_spec("transformers") is None:
        return None
    import transformers

    found, packages = [], []
    for component, entry in index.items():
        if not (isinstance(entry, list) and len(entry) == 2 and entry[0] == "transformers"):
            continue
        backends = getattr(getattr(transformers, str(entry[1]), None), "_backends", None)
        if isinstance(backends, (list, tuple)) and backends:
            found.append(f"its {component} component ({entry[1]}) needs {' and '.join(map(str, backends))}")
            packages += [str(b) for b in backends if str(b) not in packages]
    if not found:
        return None
    return f"{'; '.join(found)}, not installed here; install {' '.join(packages)} and retry"


def open_pipeline(
    model: str | os.PathLike[str],
    *,
    compute: ComputeOptions = ComputeOptions(),
    safety_checker: bool = False,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    before_load: Callable[[ModelSource], None] | None = None,
) -> tuple[ModelSource, Any]:
    """Resolve, download if needed, and load a pipeline in one call.

    Args:
        model: A Hub id or a local diffusers pipeline folder.
        compute: The device, dtype, offload (onto a CUDA device, see :func:`check_offload`) and
            Hub revision (Hub ids only) to load with.
        safety_checker: Load the model's safety checker (see :func:`load_pipeline`).
        on_progress: Receives ``download`` events while a Hub model downloads (see
            :func:`resolve_source`) and a ``load`` event before and after the load.
        cancel: Checked before and after the load, and during the download (see
            :func:`resolve_source`).
        before_load: Called with the resolved source once its files are here, before anything
            loads (e.g. to estimate the memory the run needs and refuse it); what it raises stops the call.

    Returns:
        The model's source and the loaded pipeline (on the device, progress bars off).

    Raises:
        CpeditError: The device is not available here, or offload cannot be used (no CUDA, no accelerate).
        ModelLoadError: The model cannot be found or loaded (a revision for a local folder).
        Cancelled: ``cancel`` was set.
    """
    compute_device = check_offload(compute.device) if compute.offload else resolve_device(compute.device)
    compute_dtype = resolve_dtype(compute.dtype, compute_device)
    check_cancel(cancel, "before loading the model")
    source = resolve_source(model, revision=compute.revision, on_progress=on_progress, cancel=cancel)
    if before_load is not None:
        before_load(source)
    dtype_name = str(compute_dtype).removeprefix("torch.")
    emit(on_progress, ProgressEvent(stage="load", message=f"loading {source.ref} ({dtype_name} on {compute_device})"))
    started = time.perf_counter()
    pipe = load_pipeline(
        source,
        device=compute_device,
        dtype=compute_dtype,
        safety_checker=safety_checker,
        offload=compute.offload,
        cancel=cancel,
    )
    check_cancel(cancel, "after loading the model")
    emit(
        on_progress,
        ProgressEvent(stage="load", message=f"loaded {type(pipe).__name__} in {time.perf_counter() - started:.1f} s"),
    )
    return source, pipe


def load_safety_checker(source: ModelSource, *, device: torch.device, dtype: torch.dtype) -> Any:
    """The model's safety checker from its folder (safetensors only, no remote code), or None when it has none.

    Pruning loads pipelines without it (calibration never decodes); an edit session loads it
    on first use when it renders images for people to look at.
    """
    import importlib

    try:
        index = read_model_index(source.path / "model_index.json", shown_as=source.ref)
    except ModelLoadError:
        return None
    entry = index.get("safety_checker")
    if not (isinstance(entry, list) and len(entry) == 2 and all(isinstance(e, str) for e in entry)):
        return None
    library, class_name = entry
    module_name = library if library in ("transformers", "diffusers") else f"diffusers.pipelines.{library}"
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError):
        return None
    with torch_dtype_accepted():
        checker = cls.from_pretrained(source.path / "safety_checker", torch_dtype=dtype, use_safetensors=True)
    return checker.to(device)


def load_base_components(
    pipe: Any,
    base_folder: str | os.PathLike[str],
    components: Sequence[str],
    *,
    cancel: threading.Event | None = None,
) -> None:
    """Replace each of ``components`` of ``pipe`` by the base model's own, in place (same class, dtype, device).

    How an edited pipeline renders "before": only the components a run edited differ from the
    base, so only they are loaded again (safetensors only) from ``base_folder``.

    Raises:
        Cancelled: ``cancel`` was set (components swapped so far stay swapped).
    """
    for component in components:
        check_cancel(cancel, "while loading the base model")
        edited_module = getattr(pipe, component)
        with torch_dtype_accepted():
            base_module = (
                type(edited_module)
                .from_pretrained(
                    base_folder, subfolder=component, torch_dtype=edited_module.dtype, use_safetensors=True
                )
                .to(edited_module.device)
            )
        setattr(pipe, component, base_module)
        del edited_module
