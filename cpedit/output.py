"""Writing a pruned pipeline: a standard diffusers folder, atomically.

The output is a copy of the base pipeline folder in which only the pruned weights differ:
the edited components' safetensors files are rewritten with the skilled weights set to zero
(in the file's own dtype, whatever dtype calibration ran in), everything else is copied byte
for byte. Beside it, ``conceptprune/`` records what was done (its format, writer and reader
are :mod:`cpedit.record`).

Everything is written into a hidden temporary folder next to the target and renamed
into place at the end, so an interrupted run never leaves a folder that looks complete.
Copying and zeroing check the run's cancel event between files.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from cpedit.errors import CpeditError, OutputExistsError
from cpedit.files import (
    UNSAFE_WEIGHT_SUFFIXES,
    allowed_root,
    check_entry,
    check_folder_files,
    load_json_text,
    variant_of,
)
from cpedit.progress import ProgressCallback, ProgressEvent, check_cancel, emit
from cpedit.record import RECORD_DIR, REPORT_FILE


def check_output_target(out: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """Fail early (before any model loads) if ``out`` cannot be written, or must not be replaced.

    Refused: a file; an existing folder without ``overwrite``; with ``overwrite``, a folder
    that is not a cpedit output (its files would be lost; an empty folder is fine); the
    current folder or one above it; a symbolic link (dangling or not); the built-in model's
    folder and anything inside the Hub cache; a path under a file; a place where no folder
    can be created (read-only, no space). Leftovers of earlier runs that were killed
    (``.NAME.partial-*`` folders of processes that no longer run) are removed.

    Raises:
        OutputExistsError: ``out`` exists and ``overwrite`` is False.
        CpeditError: Any other refusal above (``reason``: ``not_folder``, ``not_output``,
            ``current_folder``, ``link``, ``builtin``, ``hub_cache``, ``unwritable``).
    """
    path = Path(out).expanduser()

    def refuse(message: str, reason: str) -> CpeditError:
        return CpeditError(message, path=str(path), reason=reason, argument="out")

    if path.is_symlink():
        raise refuse(f"{path} is a symbolic link; give the folder itself (or a new name)", "link")
    resolved = path.resolve()
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents or not path.name or path.name in (".", ".."):
        raise refuse(f"{out} is the current folder (or one above it); give a new folder name", "current_folder")
    _check_protected(resolved, path)
    if path.exists():
        if not path.is_dir():
            raise refuse(f"{path} exists and is not a folder; choose another output folder", "not_folder")
        if not overwrite:
            raise OutputExistsError(
                f"{path} already exists; choose another output folder or allow overwriting it",
                path=str(path),
                reason="exists",
                argument="out",
            )
        if not _is_cpedit_output(path) and any(path.iterdir()):
            raise refuse(
                f"{path} is not a cpedit output (no {RECORD_DIR}/{REPORT_FILE}), so overwriting it would delete "
                "files cpedit did not write; choose another output folder, or move it away yourself",
                "not_output",
            )
    _check_writable(path)
    remove_stale_partials(path)
    return path


def _is_cpedit_output(path: Path) -> bool:
    return (path / RECORD_DIR / REPORT_FILE).is_file() and (path / "model_index.json").is_file()


def _check_protected(resolved: Path, path: Path) -> None:
    """Refuse writing into (or replacing something holding) the built-in model or the Hub cache."""
    from cpedit.shapes.model import builtin_pipeline_path

    protected = [(builtin_pipeline_path().resolve(), "builtin", "the built-in model's folder")]
    try:
        from huggingface_hub import constants

        protected.append((Path(constants.HF_HUB_CACHE).expanduser().resolve(), "hub_cache", "the Hub cache"))
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency
        pass
    for folder, reason, label in protected:
        if resolved == folder or folder in resolved.parents or resolved in folder.parents:
            raise CpeditError(
                f"{path} is (or is inside, or holds) {label} ({folder}); cpedit never writes there: "
                "choose another output folder",
                path=str(path),
                reason=reason,
                argument="out",
            )


def _check_writable(path: Path) -> None:
    """Refuse ``path`` if its nearest existing parent is not a folder, or no folder can be made in it."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        if parent.is_symlink():
            break  # a dangling link among the parents: creating it fails below
        parent = parent.parent
    if not parent.is_dir():
        raise CpeditError(
            f"cannot create {path}: {parent} is not a folder", path=str(path), reason="not_folder", argument="out"
        )
    try:
        probe = Path(tempfile.mkdtemp(prefix=".cpedit-write-check-", dir=parent))
    except OSError as exc:
        raise CpeditError(
            f"cannot write the output folder {path}: {parent} is not writable ({exc.strerror or exc})",
            path=str(path),
            reason="no_space" if exc.errno == errno.ENOSPC else "unwritable",
            argument="out",
        ) from None
    probe.rmdir()


def _partial_prefix(out: Path) -> str:
    return f".{out.name}.partial-"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # it exists (another user's), or cannot tell: keep its folder
    return True


def remove_stale_partials(out: Path) -> list[Path]:
    """Remove ``.NAME.partial-PID-*`` folders next to ``out`` left by runs that were killed (their PID is gone).

    Such a folder holds a half-written output (with unpruned weights); a running process's
    own folder is never touched. Returns the folders removed.
    """
    parent = out.parent
    if not parent.is_dir():
        return []
    removed = []
    prefix = _partial_prefix(out)
    for entry in parent.iterdir():
        if not entry.name.startswith(prefix) or entry.is_symlink() or not entry.is_dir():
            continue
        pid_text = entry.name[len(prefix) :].split("-", 1)[0]
        if pid_text.isdigit() and _process_alive(int(pid_text)):
            continue
        if not pid_text.isdigit() and time.time() - entry.stat().st_mtime < 24 * 3600:
            continue  # an older cpedit's folder (no PID in its name): only once it is a day old
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def check_not_inside(out: Path, model: str | os.PathLike[str]) -> None:
    """Refuse an output folder that is, or contains, the local base model folder.

    Raises:
        CpeditError: Writing ``out`` (with ``--overwrite``) would delete the base model.
    """
    base = Path(model).expanduser()
    if not base.exists():
        return  # a Hub id: its files live in the Hub cache
    target, base = out.expanduser().resolve(), base.resolve()
    if target == base or target in base.parents:
        raise CpeditError(
            f"the output folder {out} is (or contains) the base model folder {base}; choose another output folder",
            path=str(out),
            reason="contains_base",
            argument="out",
        )


@contextmanager
def atomic_folder(out: Path, *, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary folder that replaces ``out`` only if the block succeeds.

    On any exception (KeyboardInterrupt included) the temporary folder is removed and
    ``out`` is left as it was.
    """
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.parent / f"{_partial_prefix(out)}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
    except OSError as exc:
        raise _write_error(out, exc) from None
    try:
        yield tmp
        if out.exists():
            if not overwrite:
                raise OutputExistsError(
                    f"{out} appeared while the run was going; nothing was written",
                    path=str(out),
                    reason="exists",
                    argument="out",
                )
            old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            out.rename(old)
            try:
                tmp.rename(out)
            except BaseException:
                old.rename(out)  # put the previous output back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise _write_error(out, exc) from None
        raise


def _write_error(out: Path, exc: OSError) -> CpeditError:
    """An OS error while writing the output, as a message about the output (not the file being copied from)."""
    if exc.errno == errno.ENOSPC:
        return CpeditError(
            f"no space left on the device of the output folder {out}; nothing was written: free space "
            "or choose an output folder on another disk",
            path=str(out),
            reason="no_space",
            argument="out",
        )
    return CpeditError(
        f"cannot write the output folder {out} ({exc.strerror or exc}); nothing was written",
        path=str(out),
        reason="unwritable",
        argument="out",
    )


def copy_pipeline_folder(
    source: Path,
    destination: Path,
    *,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> list[str]:
    """Copy a diffusers pipeline folder, resolving links (Hub cache snapshots are links to blobs).

    Copied: ``model_index.json``, the component folders it lists, and other top-level
    files that are not weights (README, license). Skipped, and returned: top-level weight
    files (e.g. a single-file ``v1-5-pruned.safetensors`` checkpoint, which would ship the
    unpruned model) and non-safetensors weight files anywhere (a ``use_safetensors=False``
    load could pick them up). Hidden entries are not copied.

    Args:
        source: The base pipeline folder.
        destination: The (temporary) output folder.
        on_progress: Receives a ``save`` event per copied file (``file``, ``file_index``, ``files``).
        cancel: Checked before every file.

    Returns:
        The skipped paths, relative to ``source``.

    Raises:
        Cancelled: ``cancel`` was set (the caller's temporary folder is then removed).
    """
    check_folder_files(source)  # no link out of the folder, to a folder, nowhere or in a loop; no FIFOs
    root = allowed_root(source)
    index = load_json_text((source / "model_index.json").read_text(encoding="utf-8"))
    components = {name for name, value in index.items() if not name.startswith("_") and isinstance(value, list)}
    skipped: list[str] = []
    plan: list[str] = []  # the files to copy, relative to source: decided first, so progress has its total
    for entry in sorted(source.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            if entry.name not in components:
                skipped.append(entry.name + "/")
                continue
            for folder, dirs, names in os.walk(entry, followlinks=False):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(names):
                    relative = os.path.relpath(os.path.join(folder, name), source)
                    if name.startswith("."):
                        continue
                    if name.endswith(UNSAFE_WEIGHT_SUFFIXES):
                        skipped.append(relative)
                    else:
                        plan.append(relative)
        elif entry.name.endswith(UNSAFE_WEIGHT_SUFFIXES + (".safetensors",)):
            skipped.append(entry.name)
        else:
            plan.append(entry.name)
    destination.mkdir(parents=True, exist_ok=True)
    for index_, relative in enumerate(plan, 1):
        check_cancel(cancel, "while copying the pipeline")
        emit(
            on_progress,
            ProgressEvent(
                stage="save",
                message=f"copying {relative}",
                file=relative,
                file_index=index_,
                files=len(plan),
                completed=index_ - 1,
                total=len(plan),
                unit="files",
            ),
        )
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        check_entry(source / relative, root=root, shown_as=f"{source}/{relative}")  # again, just before the copy
        shutil.copy2(source / relative, target)  # follows links: a Hub snapshot's files are links to blobs
    emit(
        on_progress,
        ProgressEvent(
            stage="save",
            message=f"copied {len(plan)} files",
            files=len(plan),
            completed=len(plan),
            total=len(plan),
            unit="files",
        ),
    )
    return sorted(skipped)


def zero_weights_in_files(
    folder: Path, masks: dict[str, torch.Tensor], *, cancel: threading.Event | None = None
) -> list[str]:
    """Zero the masked weights inside every safetensors file of a component folder.

    Each file is rewritten with the same tensor names, dtypes and metadata; only the
    masked values change. Every variant (e.g. ``*.fp16.safetensors``) is rewritten.

    Args:
        folder: The denoiser folder (e.g. ``OUT/unet``).
        masks: Per layer name, a bool mask shaped like ``name + ".weight"``.
        cancel: Checked before every file (a file is rewritten through a ``.partial`` copy
            and a rename, so it is never half-written).

    Returns:
        The rewritten files (relative to ``folder``).

    Raises:
        CpeditError: A masked weight was not found in the files, or its shape differs.
    """
    keys = {f"{name}.weight": mask for name, mask in masks.items() if bool(mask.any())}
    files = sorted(folder.glob("*.safetensors"))
    rewritten: list[str] = []
    found_by_variant: dict[str, set[str]] = {}
    for file in files:
        with safe_open(file, framework="pt") as handle:
            present = set(handle.keys()) & keys.keys()
            metadata = handle.metadata()
        found_by_variant.setdefault(variant_of(file.name), set()).update(present)
        if not present:
            continue
        check_cancel(cancel, "while zeroing the pruned weights")
        tensors = load_file(file)
        for key in present:
            tensor, mask = tensors[key], keys[key]
            if tuple(tensor.shape) != tuple(mask.shape):
                raise CpeditError(f"{file.name}: {key} has shape {tuple(tensor.shape)}, expected {tuple(mask.shape)}")
            tensor[mask.to(tensor.device)] = 0
        partial = file.with_name(file.name + ".partial")
        save_file(tensors, partial, metadata=metadata)
        shutil.copymode(file, partial)
        partial.replace(file)
        rewritten.append(file.name)
    for variant, found in found_by_variant.items():
        missing = keys.keys() - found
        if missing:
            label = f"{variant} variant" if variant else "safetensors files"
            raise CpeditError(
                f"{folder}: weight {sorted(missing)[0]} ({len(missing)} in all) not found in its {label}; "
                "the folder does not match the loaded model"
            )
    if keys and not found_by_variant:
        raise CpeditError(f"{folder} holds no safetensors weights to prune")
    return rewritten
