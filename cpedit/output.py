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

import json
import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from cpedit.errors import CpeditError, OutputExistsError
from cpedit.files import UNSAFE_WEIGHT_SUFFIXES, variant_of
from cpedit.progress import ProgressCallback, ProgressEvent, check_cancel, emit


def check_output_target(out: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """Fail early (before any model loads) if ``out`` cannot be written.

    Raises:
        OutputExistsError: ``out`` exists and ``overwrite`` is False.
        CpeditError: ``out`` exists and is a file.
    """
    path = Path(out).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CpeditError(
                f"{path} exists and is not a folder; choose another output folder",
                path=str(path),
                reason="not_folder",
                argument="out",
            )
        if not overwrite:
            raise OutputExistsError(
                f"{path} already exists; choose another output folder or allow overwriting it",
                path=str(path),
                reason="exists",
                argument="out",
            )
    return path


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
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
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
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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
    index = json.loads((source / "model_index.json").read_text(encoding="utf-8"))
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
            for folder, dirs, names in os.walk(entry, followlinks=True):
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
