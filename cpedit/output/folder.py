"""Writing a pruned pipeline: a standard diffusers folder, atomically.

The output is a copy of the base pipeline folder in which only the pruned weights differ:
the edited components' safetensors files are rewritten with the skilled weights set to zero
(in the file's own dtype, whatever dtype calibration ran in), everything else is copied byte
for byte. Beside it, ``conceptprune/`` records what was done (its format, writer and reader
are :mod:`cpedit.output.record`).

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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from cpedit.durable import (
    check_name_fits,
    format_bytes,
    free_bytes,
    fsync_folder,
    fsync_tree,
    is_no_space,
    no_space_error,
    remove_stale_temporaries,
    temporary_name,
)
from cpedit.errors import CpeditError, OutputExistsError
from cpedit.hub.pipeline_files import UNSAFE_WEIGHT_SUFFIXES, variant_of
from cpedit.models.files import allowed_root, check_entry, check_folder_files, load_json_text
from cpedit.output.record import RECORD_DIR, REPORT_FILE
from cpedit.ownership import has_markers, remove_folder, set_aside
from cpedit.progress import ProgressCallback, ProgressEvent, check_cancel, emit


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
            ``current_folder``, ``link``, ``builtin``, ``hub_cache``, ``unwritable``, ``too_long``: a name
            whose temporary name would not fit the filesystem).
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
    check_name_fits(path, argument="out")
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


OUTPUT_MARKERS = (f"{RECORD_DIR}/{REPORT_FILE}", "model_index.json")
"""The files that prove a folder is a cpedit output (cpedit deletes or replaces only such folders)."""


def _is_cpedit_output(path: Path) -> bool:
    return has_markers(path, OUTPUT_MARKERS)


def remove_output_folder(path: Path, *, argument: str | None = None) -> bool:
    """Delete an output folder cpedit wrote (see :func:`cpedit.ownership.remove_folder`); False if absent.

    Raises:
        NotOursError: ``path`` is not a cpedit output; it is left as it was.
    """
    return remove_folder(path, markers=OUTPUT_MARKERS, argument=argument)


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


def remove_stale_partials(out: Path) -> list[Path]:
    """Remove the temporaries next to ``out`` left by runs that were killed (their PID is gone).

    ``.NAME.partial-PID-*`` holds a half-written (or finished but not yet renamed) output, with
    unpruned weights until the zeroing is done; ``.NAME.old-PID-*`` a previous output that an
    ``overwrite`` was replacing. A running process's own folders are never touched; an older
    cpedit's (no PID in the name) only once they are a day old. Returns the entries removed.
    """
    return remove_stale_temporaries(out.parent, out.name, kinds=("partial", "old"))


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
def atomic_folder(out: Path, *, overwrite: bool, needed: int | None = None) -> Iterator[Path]:
    """Yield a temporary folder that replaces ``out`` only if the block succeeds.

    The folder is ``.NAME.partial-PID-XXXXXXXX`` next to ``out`` (missing parents are created).
    Before the rename every file and folder in it is flushed to the disk (``fsync``), and the
    parent after it, so not even a power loss leaves an ``out`` that looks complete but is not.
    On any exception (KeyboardInterrupt included) the temporary folder is removed and ``out``
    is left as it was; a kill -9 leaves only the temporary (see :mod:`cpedit.durable`).

    Args:
        out: The output folder.
        overwrite: Replace ``out`` if it exists and is a cpedit output or empty (it waits as
            ``.NAME.old-PID-*`` until the new one is in place).
        needed: The bytes the block writes, when known: a full disk's message says it.

    Raises:
        CpeditError: The disk filled up (``reason="no_space"``, with the space needed and free) or
            the place is not writable (``unwritable``); nothing was written.
        OutputExistsError: ``out`` appeared meanwhile and ``overwrite`` is False.
        NotOursError: ``out`` is (now) not a cpedit output nor empty, so it is not replaced.
    """
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.parent / temporary_name(out.name)
        tmp.mkdir()
    except OSError as exc:
        raise _write_error(out, exc, needed=needed) from None
    try:
        yield tmp
        fsync_tree(tmp)
        if out.exists():
            if not overwrite:
                raise OutputExistsError(
                    f"{out} appeared while the run was going; nothing was written",
                    path=str(out),
                    reason="exists",
                    argument="out",
                )
            # proven again now: the folder may have been replaced since check_output_target looked
            old = set_aside(out, markers=OUTPUT_MARKERS, allow_empty=True, argument="out")
            try:
                tmp.rename(out)
            except BaseException:
                if old is not None:
                    old.rename(out)  # put the previous output back
                raise
            fsync_folder(out.parent)
            if old is not None:
                remove_folder(old)
        else:
            tmp.rename(out)
            fsync_folder(out.parent)
    except BaseException as exc:
        remove_folder(tmp)
        if isinstance(exc, OSError) or is_no_space(exc):
            raise _write_error(out, exc, needed=needed) from None
        raise


def _write_error(out: Path, exc: BaseException, *, needed: int | None = None) -> CpeditError:
    """An OS error while writing the output, as a message about the output (not the file being copied from)."""
    if is_no_space(exc):
        return no_space_error(out, needed=needed, what="the output folder")
    return CpeditError(
        f"cannot write the output folder {out} ({getattr(exc, 'strerror', None) or exc}); nothing was written",
        path=str(out),
        reason="unwritable",
        argument="out",
    )


def _copy_plan(source: Path) -> tuple[list[str], list[str]]:
    """``(files to copy, files skipped)`` of a pipeline folder, relative to it (see :func:`copy_pipeline_folder`)."""
    index = load_json_text((source / "model_index.json").read_text(encoding="utf-8"))
    components = {name for name, value in index.items() if not name.startswith("_") and isinstance(value, list)}
    skipped: list[str] = []
    plan: list[str] = []  # the files to copy: decided first, so progress has its total and the space is known
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
    return plan, skipped


def output_size(source: str | os.PathLike[str]) -> int:
    """The bytes an output written from the pipeline folder ``source`` takes while it is written.

    The files :func:`copy_pipeline_folder` copies, plus the largest safetensors file among them
    (an edited component's file is rewritten through a temporary copy beside it), plus 1 MiB for
    ``conceptprune/`` (the pruned positions: 4 bytes per pruned weight, a small share of them).
    """
    source = Path(source)
    plan, _ = _copy_plan(source)
    sizes = {relative: (source / relative).stat().st_size for relative in plan}
    largest = max((size for relative, size in sizes.items() if relative.endswith(".safetensors")), default=0)
    return sum(sizes.values()) + largest + 2**20


def local_output_size(model: object) -> int | None:
    """:func:`output_size` for a model given as ``builtin:shapes`` or a local folder; None otherwise.

    None too for a folder that cannot be read as a pipeline (loading it then says why).
    """
    from cpedit.shapes.model import builtin_pipeline_path, is_builtin_model

    if not isinstance(model, (str, os.PathLike)):
        return None
    folder = builtin_pipeline_path() if is_builtin_model(os.fspath(model)) else Path(model).expanduser()
    if not (folder / "model_index.json").is_file():
        return None
    try:
        return output_size(folder)
    except (OSError, ValueError, CpeditError):
        return None


def check_free_space(out: str | os.PathLike[str], needed: int) -> None:
    """Refuse (before any heavy work) an output folder whose filesystem has less than ``needed`` bytes free.

    A replaced output (``overwrite``) is removed only once the new one is in place, so it frees
    nothing meanwhile. Where free space cannot be told, nothing is refused.

    Raises:
        CpeditError: ``reason="no_space"``; the message gives the space needed and free.
    """
    path = Path(out).expanduser()
    free = free_bytes(path.parent)
    if free is not None and free < needed:
        raise CpeditError(
            f"not enough space for the output folder {path}: it needs about {format_bytes(needed)}, and "
            f"{format_bytes(free)} {'is' if free < 1000 else 'are'} free there; nothing was written: free space "
            "or choose an output folder on another disk",
            path=str(path),
            reason="no_space",
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
    plan, skipped = _copy_plan(source)
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


def fill_weights_in_files(
    folder: Path,
    masks: dict[str, torch.Tensor],
    *,
    values: dict[str, torch.Tensor] | None = None,
    cancel: threading.Event | None = None,
) -> list[str]:
    """Set the masked weights inside every safetensors file of a component folder: to zero, or to given values.

    Each file is rewritten with the same tensor names, dtypes and metadata; only the masked values
    change. Every variant (e.g. ``*.fp16.safetensors``) is rewritten. With ``values``, a layer's
    masked entries get its values instead of zeros (cast to each file's dtype), so every variant
    holds what the in-memory model holds.

    Args:
        folder: The component folder (e.g. ``OUT/unet``).
        masks: Per layer name, a bool mask shaped like ``name + ".weight"``.
        values: Per layer name, one value per masked entry in row-major order (the order of
            ``mask.flatten().nonzero()``); a layer without values is zeroed.
        cancel: Checked before every file (a file is rewritten through a temporary copy and a
            rename, so it is never half-written).

    Returns:
        The rewritten files (relative to ``folder``).

    Raises:
        CpeditError: A masked weight was not found in the files, its shape differs, or its
            values do not match its mask.
    """
    values = values or {}
    for name, mask in masks.items():
        if name in values and int(values[name].numel()) != int(mask.sum()):
            raise CpeditError(
                f"{name}: {int(values[name].numel())} fill values for {int(mask.sum())} masked weights",
                argument="values",
            )
    keys = {f"{name}.weight": mask for name, mask in masks.items() if bool(mask.any())}
    fills = {f"{name}.weight": value for name, value in values.items()}
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
            fill = fills.get(key)
            tensor[mask.to(tensor.device)] = 0 if fill is None else fill.to(tensor.device, tensor.dtype)
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
