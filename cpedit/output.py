"""Writing a pruned pipeline: a standard diffusers folder, atomically.

The output is a copy of the base pipeline folder in which only the pruned denoiser
weights differ: the denoiser's safetensors files are rewritten with the skilled weights
set to zero (in the file's own dtype, whatever dtype calibration ran in), everything else
is copied byte for byte. Beside it, ``conceptprune/`` records what was done:

- ``pruned.safetensors``: per layer, the flat indices (int32, 4 bytes per pruned
  weight) of the zeroed weights; no dense mask.
- ``recipes/NAME.yaml``: each recipe used, verbatim.
- ``report.json``: layers, counts, fractions, base model, versions, timings.

Everything is written into a hidden temporary folder next to the target and renamed
into place at the end, so an interrupted run never leaves a folder that looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from cpedit.errors import CpeditError, OutputExistsError
from cpedit.recipes import Recipe

RECORD_DIR = "conceptprune"
POSITIONS_FILE = "pruned.safetensors"
REPORT_FILE = "report.json"
PREVIEW_FILE = "preview.png"
"""``conceptprune/preview.png``: the before/after grid of the recipes' preview prompts (``prune --preview``)."""
POSITIONS_FORMAT = "cpedit-pruned-positions/1"
UNSAFE_WEIGHT_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl", ".msgpack", ".h5", ".onnx", ".pb")
"""Weight formats never copied to an output: they would hold unpruned (or unsafe) weights."""


def check_output_target(out: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """Fail early (before any model loads) if ``out`` cannot be written.

    Raises:
        OutputExistsError: ``out`` exists and ``overwrite`` is False.
        CpeditError: ``out`` exists and is a file.
    """
    path = Path(out).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CpeditError(f"{path} exists and is not a folder; choose another --out")
        if not overwrite:
            raise OutputExistsError(f"{path} already exists; choose another --out or pass --overwrite to replace it")
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
        raise CpeditError(f"--out {out} is (or contains) the base model folder {base}; choose another --out")


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
                raise OutputExistsError(f"{out} appeared while the run was going; nothing was written")
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


def copy_pipeline_folder(source: Path, destination: Path) -> list[str]:
    """Copy a diffusers pipeline folder, resolving links (Hub cache snapshots are links to blobs).

    Copied: ``model_index.json``, the component folders it lists, and other top-level
    files that are not weights (README, license). Skipped, and returned: top-level weight
    files (e.g. a single-file ``v1-5-pruned.safetensors`` checkpoint, which would ship the
    unpruned model) and non-safetensors weight files anywhere (a ``use_safetensors=False``
    load could pick them up). Hidden entries are not copied.

    Returns:
        The skipped paths, relative to ``source``.
    """
    index = json.loads((source / "model_index.json").read_text(encoding="utf-8"))
    components = {name for name, value in index.items() if not name.startswith("_") and isinstance(value, list)}
    skipped: list[str] = []
    destination.mkdir(parents=True, exist_ok=True)

    def ignore(folder: str, names: list[str]) -> set[str]:
        ignored = set()
        for name in names:
            path = os.path.join(folder, name)
            if name.startswith("."):
                ignored.add(name)
            elif name.endswith(UNSAFE_WEIGHT_SUFFIXES) and os.path.isfile(path):
                ignored.add(name)
                skipped.append(os.path.relpath(path, source))
        return ignored

    for entry in sorted(source.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            if entry.name in components:
                shutil.copytree(entry, destination / entry.name, symlinks=False, ignore=ignore)
            else:
                skipped.append(entry.name + "/")
        elif entry.name.endswith(UNSAFE_WEIGHT_SUFFIXES + (".safetensors",)):
            skipped.append(entry.name)
        else:
            shutil.copy2(entry, destination / entry.name)
    return sorted(skipped)


def zero_weights_in_files(folder: Path, masks: dict[str, torch.Tensor]) -> list[str]:
    """Zero the masked weights inside every safetensors file of a component folder.

    Each file is rewritten with the same tensor names, dtypes and metadata; only the
    masked values change. Every variant (e.g. ``*.fp16.safetensors``) is rewritten.

    Args:
        folder: The denoiser folder (e.g. ``OUT/unet``).
        masks: Per layer name, a bool mask shaped like ``name + ".weight"``.

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
        found_by_variant.setdefault(_variant_of(file.name), set()).update(present)
        if not present:
            continue
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


def _variant_of(filename: str) -> str:
    """``diffusion_pytorch_model.fp16.safetensors`` -> ``fp16``; shards keep their variant."""
    stem = filename[: -len(".safetensors")]
    parts = stem.split(".")
    parts = [p for p in parts[1:] if "-of-" not in p]
    return parts[-1] if parts else ""


def save_positions(path: Path, masks: dict[str, torch.Tensor], *, denoiser: str) -> None:
    """Write the pruned positions compactly: per layer, sorted int32 flat indices."""
    tensors = {name: mask.flatten().nonzero().flatten().to(torch.int32).contiguous() for name, mask in masks.items()}
    shapes = {name: list(mask.shape) for name, mask in masks.items()}
    save_file(tensors, path, metadata={"format": POSITIONS_FORMAT, "denoiser": denoiser, "shapes": json.dumps(shapes)})
    path.chmod(0o644)  # safetensors creates files private; this one is meant to be shared


def load_positions(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a ``pruned.safetensors`` file back into dense bool masks (per layer).

    Raises:
        CpeditError: The file is not a cpedit positions file.
    """
    with safe_open(path, framework="pt") as handle:
        metadata = handle.metadata() or {}
        if metadata.get("format") != POSITIONS_FORMAT:
            raise CpeditError(f"{path} is not a cpedit pruned-positions file")
        shapes = json.loads(metadata["shapes"])
        masks = {}
        for name, shape in shapes.items():
            mask = torch.zeros(shape[0] * shape[1], dtype=torch.bool)
            mask[handle.get_tensor(name).long()] = True
            masks[name] = mask.view(shape[0], shape[1])
    return masks


def write_record(
    folder: Path, *, masks: dict[str, torch.Tensor], recipes: list[Recipe], report: dict[str, Any], denoiser: str
) -> None:
    """Write ``conceptprune/`` (positions, recipes verbatim, report) into an output folder."""
    record = folder / RECORD_DIR
    (record / "recipes").mkdir(parents=True, exist_ok=True)
    save_positions(record / POSITIONS_FILE, masks, denoiser=denoiser)
    for recipe in recipes:
        (record / "recipes" / f"{recipe.name}.yaml").write_text(recipe.text, encoding="utf-8")
    (record / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def read_report(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``conceptprune/report.json`` of a cpedit output folder.

    Raises:
        CpeditError: ``folder`` is not a cpedit output.
    """
    path = Path(folder) / RECORD_DIR / REPORT_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CpeditError(f"{folder} is not a cpedit output (no {RECORD_DIR}/{REPORT_FILE})") from None
    except ValueError as exc:
        raise CpeditError(f"{path} is not valid JSON: {exc}") from None
