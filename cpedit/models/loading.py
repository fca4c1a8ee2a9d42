"""Loading a diffusers pipeline safely: a Hub id or a local folder, safetensors only.

Models come from strangers: weights are read from safetensors only and remote code is
never enabled. A Hub model is first resolved to a local snapshot folder (the standard
Hub cache), so the output can be a byte-for-byte copy of it with only the pruned UNet
weights changed.
"""

from __future__ import annotations

import functools
import glob
import importlib.util
import os
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cpedit.errors import CpeditError, ModelLoadError
from cpedit.hub.cache import infer_hub_snapshot
from cpedit.hub.pipeline_files import components_without_safetensors, pipeline_files
from cpedit.models.files import check_folder_files, check_safetensors, load_json_text
from cpedit.progress import ProgressCallback, ProgressEvent, check_cancel, emit
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
            reason="missing_package",
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

    A Hub model is downloaded into the standard Hub cache: only the files a safetensors
    pipeline load needs (see :func:`pipeline_files`), reported as ``download`` events (bytes)
    instead of huggingface_hub's own progress bars.

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


def check_pipeline_folder(folder: Path, *, ref: str) -> None:
    """Refuse a pipeline folder cpedit will not load, before anything heavy runs, saying why.

    Checked: no symbolic link leads outside the folder (nor to a folder, nowhere, or in a
    loop), model_index.json parses and names a diffusers pipeline class and library
    components (never custom code), every component it lists has its folder, every component
    with weights has safetensors ones (never only pickles), and every safetensors file is
    complete (its header and data are all there).

    Raises:
        UnsafeFileError: An unsafe link or special file, or a truncated safetensors file.
        ModelLoadError: Custom code, missing components or pickle-only weights.
    """
    check_folder_files(folder)
    index_file = folder / "model_index.json"
    try:
        index = load_json_text(index_file.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{ref}: cannot read model_index.json ({exc})", path=str(index_file)) from None
    if not isinstance(index, dict):
        raise ModelLoadError(f"{ref}: model_index.json is not a JSON object", path=str(index_file))
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


class _DownloadMonitor:
    """Turns huggingface_hub's progress-bar updates of one snapshot download into ``download`` events.

    snapshot_download reports the bytes written for every file on one aggregate bar, from
    the worker thread downloading the file; each file announces itself by growing that
    bar's total by its size, in that thread. The monitor maps each worker thread to the file
    it announced (the next pending file of that size), so every event names its file.
    Updates from threads it does not know (hf_xet's progress threads) are attributed to the
    file announced last and never raise: cancelling is seen in the download threads (at the
    next chunk or file) and between files.
    """

    def __init__(
        self,
        repo_id: str,
        plan: dict[str, int],
        cached: set[str],
        on_progress: ProgressCallback | None,
        cancel: threading.Event | None,
    ) -> None:
        self.repo_id = repo_id
        self.order = list(plan)
        self.sizes = plan
        self.total = sum(plan.values())
        self.cached_bytes = sum(plan[p] for p in cached)
        self.pending = [p for p in self.order if p not in cached]
        self.done: dict[str, int] = {}
        self.unattributed = 0
        self.by_thread: dict[int, str] = {}
        self.raising_threads = {threading.get_ident()}
        self.last_file: str | None = None
        self.reported = self.cached_bytes
        self.on_progress = on_progress
        self.cancel = cancel
        self.lock = threading.RLock()

    def check(self) -> None:
        """Raise Cancelled if the download was cancelled (only in threads where raising stops it)."""
        if threading.get_ident() in self.raising_threads:
            check_cancel(self.cancel, "during the download")

    def event(self, message: str, *, completed: int, file: str | None = None) -> None:
        emit(
            self.on_progress,
            ProgressEvent(
                stage="download",
                message=message,
                completed=completed,
                total=self.total,
                unit="bytes",
                file=file,
                file_index=self.order.index(file) + 1 if file is not None else None,
                files=len(self.order),
            ),
        )

    def start(self) -> None:
        waiting = len(self.pending)
        if waiting:
            size = sum(self.sizes[p] for p in self.pending)
            message = f"downloading {self.repo_id}: {waiting} of {len(self.order)} files ({size / 1e6:.1f} MB)"
            self.event(message, completed=self.cached_bytes)
        else:
            self.event(f"{self.repo_id}: all {len(self.order)} files are in the Hub cache", completed=self.total)

    def file_started(self, size: int) -> None:
        with self.lock:
            ident = threading.get_ident()
            self.raising_threads.add(ident)
            self.check()
            file = next((p for p in self.pending if self.sizes[p] == size), self.pending[0] if self.pending else None)
            if file is not None:
                self.pending.remove(file)
                self.by_thread[ident] = file
                self.done[file] = 0
                self.last_file = file

    def add_bytes(self, count: int) -> None:
        with self.lock:
            self.check()
            file = self.by_thread.get(threading.get_ident())
            if file is not None:
                self.done[file] += count
            else:  # a thread that announced no file (hf_xet's): counted, shown under the file announced last
                self.unattributed += count
                file = self.last_file
            completed = self.cached_bytes + self.unattributed
            completed += sum(min(max(n, 0), self.sizes[p]) for p, n in self.done.items())
            completed = max(self.reported, min(completed, self.total))  # never decreases (a retry rewinds a file)
            self.reported = completed
            if count > 0:
                self.event(
                    f"downloading {file}" if file else f"downloading {self.repo_id}", completed=completed, file=file
                )

    def file_finished(self) -> None:
        with self.lock:
            self.check()

    def finish(self) -> None:
        self.reported = self.total
        self.event(f"downloaded {self.repo_id} ({len(self.order)} files)", completed=self.total)


@functools.cache
def _event_bar_base() -> type:
    """huggingface_hub's tqdm class, made silent and reporting to a :class:`_DownloadMonitor` (built lazily)."""
    from huggingface_hub.utils import tqdm as hf_tqdm

    class EventBar(hf_tqdm):  # type: ignore[misc, valid-type]
        """A progress bar that never displays; its updates go to the class's ``_cpedit_monitor`` (None: ignored).

        snapshot_download makes three: the files count (``unit`` not bytes), the network
        transfer (ignored: bytes received, estimated total) and the bytes written, whose
        total grows by each file's size as the file starts.
        """

        _cpedit_monitor: _DownloadMonitor | None = None

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            name = str(kwargs.pop("name", None) or "")
            description = str(kwargs.get("desc") or "")
            if kwargs.get("unit", "it") != "B":
                self._role = "files"
            elif name.endswith(".transfer") or description.startswith("Downloading bytes"):
                self._role = "transfer"
            else:
                self._role = "bytes"
            self._total: float | None = None
            kwargs["disable"] = True  # never display, whatever the caller or the environment asks
            super().__init__(*args, **kwargs)

        @property
        def total(self) -> float | None:  # type: ignore[override]
            return self._total

        @total.setter
        def total(self, value: float | None) -> None:
            previous, self._total = getattr(self, "_total", None), value
            if (
                self._cpedit_monitor is not None
                and self._role == "bytes"
                and previous is not None
                and value is not None
            ):
                if value > previous:
                    self._cpedit_monitor.file_started(int(value - previous))

        def update(self, n: float | None = 1) -> bool | None:
            count = n or 0
            self.n += count
            if self._cpedit_monitor is not None:
                if self._role == "bytes":
                    self._cpedit_monitor.add_bytes(int(count))
                elif self._role == "files":
                    self._cpedit_monitor.file_finished()
            return None

    return EventBar


def _event_bar(monitor: _DownloadMonitor | None) -> type:
    """A silent tqdm class for huggingface_hub's ``tqdm_class`` reporting to ``monitor`` (None: silent only)."""
    base = _event_bar_base()
    return type("DownloadBar", (base,), {"_cpedit_monitor": monitor})


def _repo_files(repo_id: str, commit: str | None, revision: str | None) -> dict[str, int]:
    """The repo's files (path -> size): the listing cached for ``commit`` if any (no request), else from the Hub."""
    from huggingface_hub import HfApi, RepoFile, get_cached_repo_tree

    if commit is not None:
        try:
            return {f.path: int(f.size or 0) for f in get_cached_repo_tree(repo_id, revision=commit)}
        except Exception:  # noqa: BLE001 - not cached (or unreadable): ask the Hub
            pass
    entries = HfApi().list_repo_tree(repo_id, recursive=True, revision=commit or revision)
    return {e.path: int(e.size or 0) for e in entries if isinstance(e, RepoFile)}


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
    ``snapshot_download`` fetches those missing from the standard Hub cache, its progress
    turned into ``download`` events (no progress bar is displayed). With ``HF_HUB_OFFLINE=1``
    the cache is used and the error says what is missing.
    """
    from huggingface_hub import hf_hub_download, snapshot_download

    from cpedit.hub.errors import describe_hub_error
    from cpedit.models.support import text_to_image_refusal

    def fail(exc: BaseException, filename: str | None = None) -> ModelLoadError:
        described = describe_hub_error(exc, repo_id=repo_id, revision=revision, filename=filename)
        if described is None:
            from cpedit.hub.errors import redact

            return ModelLoadError(f"cannot download {repo_id}: {redact(str(exc))}", repo_id=repo_id)
        reason, message = described
        if reason == "entry" and filename == "model_index.json":
            reason = "not_pipeline"
            message = (
                f"{repo_id} is not a diffusers pipeline (it has no model_index.json); cpedit edits diffusers "
                "text-to-image pipelines such as CompVis/stable-diffusion-v1-4"
            )
        return ModelLoadError(
            message, repo_id=repo_id, reason=reason, argument="revision" if reason == "revision" else None
        )

    emit(on_progress, ProgressEvent(stage="download", message=f"reading {repo_id}/model_index.json"))
    try:
        index_file = hf_hub_download(repo_id, "model_index.json", revision=revision, tqdm_class=_event_bar(None))
    except Exception as exc:  # noqa: BLE001 - mapped to a clear message, or re-worded with the token redacted
        raise fail(exc, "model_index.json") from None
    try:
        index = load_json_text(Path(index_file).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{repo_id}: its model_index.json cannot be read ({exc})", repo_id=repo_id) from None
    refusal = text_to_image_refusal(index)
    if refusal is not None:
        raise ModelLoadError(f"{repo_id}: {refusal}", repo_id=repo_id, reason="not_pipeline")
    snapshot = Path(index_file).parent
    commit = snapshot.name if snapshot.parent.name == "snapshots" else None
    check_cancel(cancel, "before the download")
    try:
        files = _repo_files(repo_id, commit, revision)
    except Exception as exc:  # noqa: BLE001
        raise fail(exc) from None
    if components_without_safetensors(index, files):
        raise ModelLoadError(
            f"{repo_id} has no safetensors weights for its components; cpedit loads safetensors only "
            f"(pickled .bin/.ckpt weights can run code when loaded): {CONVERT_HINT}",
            repo_id=repo_id,
            reason="no_safetensors",
        )
    plan = pipeline_files(index, files)
    monitor = _DownloadMonitor(
        repo_id, plan, {p for p in plan if (snapshot / p).is_file()}, on_progress=on_progress, cancel=cancel
    )
    monitor.start()
    folder = snapshot
    if monitor.pending:  # else everything is cached: no request beyond model_index.json's
        try:
            folder = Path(
                snapshot_download(
                    repo_id,
                    revision=commit or revision,
                    allow_patterns=[glob.escape(p) for p in plan],
                    tqdm_class=_event_bar(monitor),
                )
            )
        except CpeditError:
            raise
        except Exception as exc:  # noqa: BLE001
            check_cancel(cancel, "during the download")
            raise fail(exc) from None
        check_cancel(cancel, "during the download")
        monitor.finish()
    return ModelSource(
        ref=repo_id, path=folder, is_local=False, revision=revision, commit=commit or None, repo_id=repo_id
    )


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
    try:
        index = load_json_text((source.path / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{source.ref}: cannot read model_index.json ({exc})") from None
    if not isinstance(index, dict):
        raise ModelLoadError(f"{source.ref}: model_index.json is not a JSON object")
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
        raise ModelLoadError(f"cannot load {source.ref} as a diffusers pipeline (safetensors only): {exc}") from None
    check_cancel(cancel, "while loading the model")
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
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> tuple[ModelSource, Any]:
    """Resolve, download if needed, and load a pipeline in one call.

    Args:
        model: A Hub id or a local diffusers pipeline folder.
        revision: Hub branch, tag or commit (Hub ids only).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        dtype: ``float32``, ``float16`` or ``bfloat16``; default float16 on CUDA, else float32.
        safety_checker: Load the model's safety checker (see :func:`load_pipeline`).
        offload: Model CPU offload onto the (CUDA) device (see :func:`check_offload`).
        on_progress: Receives ``download`` events while a Hub model downloads (see
            :func:`resolve_source`) and a ``load`` event before and after the load.
        cancel: Checked before and after the load, and during the download (see
            :func:`resolve_source`).

    Returns:
        The model's source and the loaded pipeline (on the device, progress bars off).

    Raises:
        CpeditError: Bad device or dtype.
        ModelLoadError: The model cannot be found or loaded.
        Cancelled: ``cancel`` was set.
    """
    compute_device = check_offload(device) if offload else resolve_device(device)
    compute_dtype = resolve_dtype(dtype, compute_device)
    check_cancel(cancel, "before loading the model")
    source = resolve_source(model, revision=revision, on_progress=on_progress, cancel=cancel)
    dtype_name = str(compute_dtype).removeprefix("torch.")
    emit(on_progress, ProgressEvent(stage="load", message=f"loading {source.ref} ({dtype_name} on {compute_device})"))
    started = time.perf_counter()
    pipe = load_pipeline(
        source,
        device=compute_device,
        dtype=compute_dtype,
        safety_checker=safety_checker,
        offload=offload,
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
        index = load_json_text((source.path / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    entry = index.get("safety_checker") if isinstance(index, dict) else None
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
