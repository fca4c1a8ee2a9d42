"""Writing a pruned pipeline: a standard diffusers folder, atomically.

The output is a copy of the base pipeline folder in which only the pruned weights differ:
in the edited components' safetensors files the skilled weights are set to zero (or to the
concealing fill; in the file's own dtype, whatever dtype calibration ran in), everything else is
copied byte for byte. Each output byte is written once (:mod:`cpedit.output.weights_files`).
Beside it, ``conceptprune/`` records what was done (its format, writer and reader are
:mod:`cpedit.output.record`).

Everything is written into a hidden temporary folder next to the target and renamed
into place at the end, so an interrupted run never leaves a folder that looks complete.
Copying and zeroing check the run's cancel event between files.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

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
from cpedit.models.files import allowed_root, check_entry, check_folder_files, read_model_index, read_safetensors_header
from cpedit.output.record import RECORD_DIR, REPORT_FILE
from cpedit.output.weights_files import TensorFill, copy_file, tensor_digests, write_filled_file
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
    index = read_model_index(source / "model_index.json", shown_as=str(source))
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

    The files :func:`write_pipeline_folder` writes (each once: an edited file is patched in place,
    never rewritten through a temporary copy), plus 1 MiB for ``conceptprune/`` (the pruned
    positions: 4 bytes per pruned weight, a small share of them).
    """
    source = Path(source)
    plan, _ = _copy_plan(source)
    return sum((source / relative).stat().st_size for relative in plan) + 2**20


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


@dataclass(frozen=True)
class WrittenFolder:
    """What :func:`write_pipeline_folder` wrote.

    Attributes:
        skipped: The base folder's files left out (relative to it; see :func:`copy_pipeline_folder`).
        bytes_written: The data bytes written (a reflinked file counts 0): about the output's size.
        rewritten_whole: Files that could not be patched in place and were rewritten whole, with why.
        base_weights_digest: :func:`combined_digest` of the pruned weights' bytes in the base
            folder's files (None when nothing was pruned).
    """

    skipped: list[str]
    bytes_written: int
    rewritten_whole: dict[str, str]
    base_weights_digest: str | None = None


DIGEST_PREFIX = "sha256:"
"""How a recorded base weights digest starts (the algorithm)."""


def combined_digest(per_file: Mapping[str, Mapping[str, str]]) -> str | None:
    """One digest of the pruned weights of a base folder: ``sha256:`` and 64 hex digits; None if there are none.

    Args:
        per_file: Per safetensors file (relative to the folder, POSIX), per pruned tensor, the
            :func:`~cpedit.output.weights_files.tensor_digest` of its bytes there.

    The SHA-256 of the lines ``FILE<TAB>TENSOR<TAB>DIGEST``, sorted: a base whose pruned weights
    differ in any byte, in any file (each variant, each shard), or that holds them in other files,
    has another digest.
    """
    lines = sorted(
        f"{file}\t{name}\t{digest}\n" for file, tensors in per_file.items() for name, digest in tensors.items()
    )
    if not lines:
        return None
    return DIGEST_PREFIX + hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()


def _edited_files(
    plan: list[str], edits: Mapping[str, Mapping[str, TensorFill]]
) -> dict[str, Mapping[str, TensorFill]]:
    """The files of ``plan`` that a save fills in (safetensors files directly in an edited component's folder)."""
    return {
        relative: edits[Path(relative).parent.as_posix()]
        for relative in plan
        if relative.endswith(".safetensors") and Path(relative).parent.as_posix() in edits
    }


def base_weights_digest(
    source: Path,
    edits: Mapping[str, Mapping[str, TensorFill]],
    *,
    cancel: threading.Event | None = None,
) -> str | None:
    """:func:`combined_digest` of the weights ``edits`` would fill, as the pipeline folder ``source`` holds them.

    What :func:`write_pipeline_folder` records as :attr:`WrittenFolder.base_weights_digest`,
    computed without writing anything (only the pruned tensors are read, one at a time), to tell
    whether a base folder is the one an edit was made on.

    Raises:
        CpeditError: A file is not valid safetensors, or links out of the folder.
        Cancelled: ``cancel`` was set.
    """
    check_folder_files(source)
    plan, _ = _copy_plan(source)
    per_file = {
        relative: tensor_digests(source / relative, sorted(fills), cancel=cancel)
        for relative, fills in _edited_files(plan, edits).items()
    }
    return combined_digest(per_file)


def weight_fills(
    masks: Mapping[str, torch.Tensor], values: Mapping[str, torch.Tensor] | None = None
) -> dict[str, TensorFill]:
    """Per weight (``NAME.weight``), what a save writes: the masked entries set to zero, or to given values.

    Args:
        masks: Per layer name, a bool mask shaped like ``NAME.weight``; layers with nothing masked are left out.
        values: Per layer name, one value per masked entry in row-major order (the order of
            ``mask.flatten().nonzero()``); a layer without values is zeroed.

    Raises:
        CpeditError: A layer's values do not match its mask.
    """
    values = values or {}
    fills = {}
    for name, mask in masks.items():
        value = values.get(name)
        if value is not None and int(value.numel()) != int(mask.sum()):
            raise CpeditError(
                f"{name}: {int(value.numel())} fill values for {int(mask.sum())} masked weights", argument="values"
            )
        if bool(mask.any()):
            fills[f"{name}.weight"] = TensorFill(mask=mask, values=value)
    return fills


def copy_pipeline_folder(
    source: Path,
    destination: Path,
    *,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> list[str]:
    """Copy a diffusers pipeline folder unchanged (:func:`write_pipeline_folder` without edits); the skipped paths."""
    return write_pipeline_folder(source, destination, on_progress=on_progress, cancel=cancel).skipped


def write_pipeline_folder(
    source: Path,
    destination: Path,
    *,
    edits: Mapping[str, Mapping[str, TensorFill]] | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> WrittenFolder:
    """Write a diffusers pipeline folder, with pruned weights filled in, each byte once.

    Copied (resolving links: Hub cache snapshots are links to blobs): ``model_index.json``, the
    component folders it lists, and other top-level files that are not weights (README, license),
    the cheapest correct way (:func:`cpedit.output.weights_files.copy_file`). Skipped, and
    returned: top-level weight files (e.g. a single-file ``v1-5-pruned.safetensors`` checkpoint,
    which would ship the unpruned model) and non-safetensors weight files anywhere (a
    ``use_safetensors=False`` load could pick them up). Hidden entries are not copied.

    Every safetensors file directly in an edited component's folder (every shard and every variant,
    e.g. ``*.fp16.safetensors``) is written with its masked weights filled in, in its own dtype
    (:func:`cpedit.output.weights_files.write_filled_file`): only those tensors' bytes are
    produced in memory; the rest is copied.

    Args:
        source: The base pipeline folder.
        destination: The (temporary) output folder.
        edits: Per component folder (``unet``), per weight (``NAME.weight``), what to fill
            (:func:`weight_fills`).
        on_progress: Receives a ``save`` event per file (``file``, ``file_index``, ``files``).
        cancel: Checked before every file and between chunks of a large one.

    Raises:
        Cancelled: ``cancel`` was set (the caller's temporary folder is then removed).
        CpeditError: An edited weight is not in the component's files (in each variant), its shape
            differs, or a file is not valid safetensors.
    """
    edits = edits or {}
    check_folder_files(source)  # no link out of the folder, to a folder, nowhere or in a loop; no FIFOs
    root = allowed_root(source)
    plan, skipped = _copy_plan(source)
    destination.mkdir(parents=True, exist_ok=True)
    found: dict[str, dict[str, set[str]]] = {component: {} for component in edits}  # per component, per variant
    edited = _edited_files(plan, edits)
    digests: dict[str, dict[str, str]] = {}
    written, whole = 0, {}
    for index_, relative in enumerate(plan, 1):
        check_cancel(cancel, "while copying the pipeline")
        component = Path(relative).parent.as_posix()
        fills = edited.get(relative)
        emit(
            on_progress,
            ProgressEvent(
                stage="save",
                message=f"{'writing' if fills else 'copying'} {relative}",
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
        if fills is None:
            written += copy_file(source / relative, target, cancel=cancel)
            continue
        size, reason = write_filled_file(
            source / relative, target, fills, base_digests=digests.setdefault(relative, {}), cancel=cancel
        )
        written += size
        if reason is not None:
            whole[relative] = reason
        present = read_safetensors_header(target).tensors.keys() & fills.keys()
        found[component].setdefault(variant_of(Path(relative).name), set()).update(present)
    for component, fills in edits.items():
        _check_all_found(destination / component, fills, found[component])
    emit(
        on_progress,
        ProgressEvent(
            stage="save",
            message=f"wrote {len(plan)} files ({format_bytes(written)})",
            files=len(plan),
            completed=len(plan),
            total=len(plan),
            unit="files",
        ),
    )
    return WrittenFolder(
        skipped=sorted(skipped),
        bytes_written=written,
        rewritten_whole=whole,
        base_weights_digest=combined_digest(digests),
    )


def _check_all_found(folder: Path, fills: Mapping[str, TensorFill], found_by_variant: dict[str, set[str]]) -> None:
    """Every filled weight was in the component's files, in each variant of them."""
    for variant, found in found_by_variant.items():
        missing = fills.keys() - found
        if missing:
            label = f"{variant} variant" if variant else "safetensors files"
            raise CpeditError(
                f"{folder}: weight {sorted(missing)[0]} ({len(missing)} in all) not found in its {label}; "
                "the folder does not match the loaded model",
                path=str(folder),
                reason="mismatch",
            )
    if fills and not found_by_variant:
        raise CpeditError(f"{folder} holds no safetensors weights to prune", path=str(folder), reason="missing")
