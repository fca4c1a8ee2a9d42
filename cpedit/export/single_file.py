"""``export_single_file``: an edited pipeline folder as one ``.safetensors`` checkpoint for ComfyUI, A1111 and Forge.

The folder is a cpedit output (read with :func:`cpedit.output.record.read_output`, its weight files
with :func:`cpedit.models.files.read_safetensors_header`). Its components are written in the
original checkpoint layout of their family (:mod:`cpedit.export.layouts`), one tensor at a time:
the file's header is known before any tensor is read (names, shapes, dtypes), so each tensor is
read from the folder, put together from its pieces, cast and written at its place, and only
its pieces are ever in memory. The file is written under a hidden temporary name, flushed and
renamed into place; an existing file is replaced only when asked and only when cpedit wrote it
(its ``__metadata__`` carries :data:`FORMAT`).

The file's ``__metadata__`` records the edit: cpedit's version, the family, the base model's Hub id
and revision (never a local path), the recipes' names, the pruned count and the SHA-256 of
``conceptprune/pruned.safetensors``. No token is ever in it: none is read here.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cpedit.durable import (
    format_bytes,
    fsync_folder,
    is_no_space,
    no_space_error,
    remove_stale_temporaries,
    temporary_name,
)
from cpedit.errors import CpeditError, OutputExistsError
from cpedit.export.layouts import (
    FAMILIES,
    FAMILY_LABELS,
    ComponentLayout,
    Target,
    check_with_converter,
    family_of,
    numel,
    plan_component,
)
from cpedit.hub.pipeline_files import variant_of
from cpedit.models.files import (
    SAFETENSORS_ITEMSIZES,
    SafetensorsProblem,
    TensorEntry,
    read_json_object,
    read_model_index,
    read_safetensors_header,
)
from cpedit.output.record import POSITIONS_FILE, RECORD_DIR, OutputRecord, read_output
from cpedit.ownership import NotOursError
from cpedit.progress import ProgressCallback, ProgressEvent, check_cancel, emit
from cpedit.versions import library_versions

FORMAT = "cpedit-single-file/1"
"""``__metadata__["format"]`` of the files cpedit writes: the proof that it may replace one."""

DTYPES = ("float32", "float16", "bfloat16")
"""The dtypes a single file can be written in (None: each tensor as stored)."""

_SAFETENSORS_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}
_FLOATS = ("F64", "F32", "F16", "BF16")


@dataclass(frozen=True)
class SingleFileExport:
    """What :func:`export_single_file` wrote.

    Attributes:
        path: The file.
        family: ``sd1``, ``sd2``, ``sdxl``, ``sd3`` or ``flux``.
        components: The pipeline components in it, in the file's order.
        tensors: Tensors written.
        size: The file's size in bytes.
        metadata: Its ``__metadata__``.
        checked: The components whose layout diffusers' own converter read back (key and shape);
            FLUX transformers narrower than FLUX.1 are not (see :func:`cpedit.export.layouts.forward_converter`).
    """

    path: Path
    family: str
    components: tuple[str, ...]
    tensors: int
    size: int
    metadata: dict[str, str]
    checked: tuple[str, ...]


def check_single_file_target(out: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """Refuse early a single-file target that cannot be written or must not be replaced.

    Raises:
        CpeditError: ``out`` does not end in ``.safetensors`` (``suffix``), is a link or a folder
            (``link``, ``not_folder``: it must be a file).
        OutputExistsError: It exists and ``overwrite`` is False.
        NotOursError: It exists and cpedit did not write it (no ``format`` of :data:`FORMAT` in its metadata).
    """
    path = Path(out).expanduser()
    if path.suffix != ".safetensors":
        raise CpeditError(
            f"{path}: a single-file checkpoint is written as .safetensors; give a name ending in .safetensors",
            path=str(path),
            reason="suffix",
            argument="out",
        )
    if path.is_symlink():
        raise CpeditError(f"{path} is a symbolic link; give the file itself (or a new name)", path=str(path),
                          reason="link", argument="out")  # fmt: skip
    if path.exists():
        if not path.is_file():
            raise CpeditError(f"{path} exists and is not a file; choose another name", path=str(path),
                              reason="not_folder", argument="out")  # fmt: skip
        if not overwrite:
            raise OutputExistsError(
                f"{path} already exists; choose another name or allow overwriting it",
                path=str(path),
                reason="exists",
                argument="out",
            )
        if not _written_by_cpedit(path):
            raise NotOursError(
                f"{path} was not written by cpedit (its metadata has no format {FORMAT}), so cpedit will not "
                "replace it; move it away yourself or choose another name",
                path=str(path),
                reason="not_ours",
                argument="out",
            )
    return path


def _written_by_cpedit(path: Path) -> bool:
    try:
        header = read_safetensors_header(path)
    except (SafetensorsProblem, OSError):
        return False
    return (header.metadata or {}).get("format") == FORMAT


def export_single_file(
    folder: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    dtype: str | None = None,
    overwrite: bool = False,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> SingleFileExport:
    """Write the cpedit output ``folder`` as one single-file checkpoint ``out`` (the original checkpoint layout).

    SD 1.x/2.x and SDXL: UNet, VAE and text encoders; SD3: MMDiT, VAE, both CLIPs and T5 (when the
    folder has it); FLUX.1: the transformer alone, as ComfyUI and Forge load it. Every tensor of those
    components is written, the pruned entries with them (zeros, or the concealing fill).

    Args:
        folder: A cpedit output folder.
        out: The ``.safetensors`` file to write.
        dtype: ``float32``, ``float16`` or ``bfloat16`` for the floating-point tensors; None keeps
            each tensor's stored dtype.
        overwrite: Replace ``out`` if cpedit wrote it.
        on_progress: Receives ``export`` events (``completed``/``total`` in bytes).
        cancel: Checked before every tensor; nothing is left behind when it is set.

    Raises:
        RecordError: ``folder`` is not a complete cpedit output.
        CpeditError: The family has no single-file layout (``unsupported``), the edit changed a
            component the family's file does not hold (``unsupported``), a tensor has no place in the
            layout (``mismatch``), ``dtype`` is unknown (``unknown``), or ``out`` cannot be written.
        Cancelled: ``cancel`` was set.
    """
    if dtype is not None and dtype not in DTYPES:
        raise CpeditError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}", reason="unknown",
                          argument="dtype")  # fmt: skip
    if sys.byteorder != "little":
        raise CpeditError("single files are written on little-endian machines only (safetensors is little-endian)",
                          reason="unsupported")  # fmt: skip
    target = check_single_file_target(out, overwrite=overwrite)
    record = read_output(folder)
    root = record.folder
    family = _family(record)
    layouts = [layout for layout in FAMILIES[family] if layout.required or (root / layout.component).is_dir()]
    _check_edit_fits(record, family, layouts)
    sources: dict[str, dict[str, tuple[Path, TensorEntry]]] = {}
    targets: list[Target] = []
    checked = []
    for layout in layouts:
        entries = _component_tensors(root, layout.component)
        shapes = {key: entry.shape for key, (_, entry) in entries.items()}
        config = read_json_object(root / layout.component / "config.json", shown_as=f"{root}/{layout.component}")
        planned = plan_component(layout, shapes, config)
        if check_with_converter(layout, planned, shapes, config):
            checked.append(layout.component)
        sources[layout.component] = entries
        targets.extend(planned)
    metadata = provenance(record, family=family, dtype=dtype)
    header, size = _header(targets, sources, dtype=dtype, metadata=metadata)
    _write(target, header, size, targets, sources, dtype=dtype, overwrite=overwrite, on_progress=on_progress,
           cancel=cancel)  # fmt: skip
    return SingleFileExport(
        path=target,
        family=family,
        components=tuple(layout.component for layout in layouts),
        tensors=len(targets),
        size=size,
        metadata=metadata,
        checked=tuple(checked),
    )


def _family(record: OutputRecord) -> str:
    root = record.folder
    index = read_model_index(root / "model_index.json", shown_as=str(root))
    pipeline = index.get("_class_name")
    text_encoder = root / "text_encoder" / "config.json"
    config = read_json_object(text_encoder, shown_as=f"{root}/text_encoder") if text_encoder.is_file() else {}
    family = family_of(pipeline if isinstance(pipeline, str) else "", config)
    if family is None:
        known = ", ".join(FAMILY_LABELS.values())
        raise CpeditError(
            f"{root}: {pipeline} has no single-file checkpoint layout cpedit writes (it writes {known}); "
            "share the folder itself instead",
            path=str(root),
            reason="unsupported",
        )
    return family


def _check_edit_fits(record: OutputRecord, family: str, layouts: list[ComponentLayout]) -> None:
    """Refuse an edit of a component the file leaves out: the file would silently drop the edit."""
    held = {layout.component for layout in layouts}
    left_out = [c for c in record.report.edited_components if c not in held]
    if left_out:
        raise CpeditError(
            f"{record.folder}: the edit changed {', '.join(left_out)}, which a {FAMILY_LABELS[family]} single file "
            f"does not hold (it holds {', '.join(sorted(held))}); the exported file would not carry the edit",
            path=str(record.folder),
            reason="unsupported",
        )


def _component_tensors(root: Path, component: str) -> dict[str, tuple[Path, TensorEntry]]:
    """Every tensor of a component's weights (the default variant, else the first; all its shards)."""
    folder = root / component
    files = sorted(folder.glob("*.safetensors"))
    variants = sorted({variant_of(file.name) for file in files})
    if not variants:
        raise CpeditError(f"{folder} holds no safetensors weights", path=str(folder), reason="missing_component")
    chosen = "" if "" in variants else variants[0]
    tensors: dict[str, tuple[Path, TensorEntry]] = {}
    for file in files:
        if variant_of(file.name) != chosen:
            continue
        try:
            header = read_safetensors_header(file)
        except SafetensorsProblem as exc:
            raise CpeditError(f"{file} is not a valid safetensors file: {exc}", path=str(file),
                              reason="malformed") from None  # fmt: skip
        for name, entry in header.tensors.items():
            if name in tensors:
                raise CpeditError(f"{folder}: tensor {name} is in two files", path=str(file), reason="malformed")
            if entry.dtype not in SAFETENSORS_ITEMSIZES:
                raise CpeditError(f"{file}: tensor {name} is stored as {entry.dtype}, which cpedit does not export",
                                  path=str(file), reason="unsupported")  # fmt: skip
            tensors[name] = (file, entry)
    return tensors


def positions_digest(folder: Path) -> str | None:
    """The SHA-256 of ``conceptprune/pruned.safetensors`` (hex), None when the folder has none (a concealed edit)."""
    path = folder / RECORD_DIR / POSITIONS_FILE
    if not path.is_file() or path.is_symlink():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def provenance(record: OutputRecord, *, family: str, dtype: str | None) -> dict[str, str]:
    """The single file's ``__metadata__``: what the edit was, never a local path or a token.

    The base model is named by its Hub id and revision when it came from the Hub (or a Hub cache
    snapshot); a base loaded from another local folder is recorded as ``local`` only.
    """
    report = record.report
    base = report.base_model
    repo_id = record.base_repo_id
    metadata = {
        "format": FORMAT,
        "cpedit_version": library_versions()["cpedit"],
        "family": family,
        "base_model": repo_id or ("builtin:shapes" if record.base_is_builtin else "local"),
        "recipes": json.dumps([concept.name for concept in report.concepts]),
        "pruned_weights": str(report.totals.pruned_weights),
        "edited_components": json.dumps(list(report.edited_components)),
        "conceal": report.conceal.mode,
        "dtype": dtype or "as stored",
    }
    if repo_id is not None and (base.commit or base.revision):
        metadata["base_revision"] = str(base.commit or base.revision)
    digest = positions_digest(record.folder)
    if digest is not None:
        metadata["positions_sha256"] = digest
    return metadata


def _out_dtype(entry: TensorEntry, dtype: str | None) -> str:
    return _SAFETENSORS_DTYPES[dtype] if dtype is not None and entry.dtype in _FLOATS else entry.dtype


def _header(
    targets: list[Target],
    sources: Mapping[str, Mapping[str, tuple[Path, TensorEntry]]],
    *,
    dtype: str | None,
    metadata: dict[str, str],
) -> tuple[bytes, int]:
    """The file's header bytes (length prefix included, padded to 8 bytes as safetensors does) and the file's size."""
    entries: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for target in targets:
        first = sources[target.component][target.pieces[0].key][1]
        out_dtype = _out_dtype(first, dtype)
        length = numel(target.shape) * SAFETENSORS_ITEMSIZES[out_dtype]
        entries[target.name] = {
            "dtype": out_dtype,
            "shape": list(target.shape),
            "data_offsets": [offset, offset + length],
        }
        offset += length
    text = json.dumps(entries, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text, 8 + len(text) + offset


@contextmanager
def _temporary(target: Path) -> Iterator[Path]:
    """A hidden temporary file next to ``target``, removed unless the block renamed it into place."""
    remove_stale_temporaries(target.parent, target.name)
    temporary = target.with_name(temporary_name(target.name))
    try:
        yield temporary
    finally:
        temporary.unlink(missing_ok=True)


def _write(
    target: Path,
    header: bytes,
    size: int,
    targets: list[Target],
    sources: Mapping[str, Mapping[str, tuple[Path, TensorEntry]]],
    *,
    dtype: str | None,
    overwrite: bool,
    on_progress: ProgressCallback | None,
    cancel: threading.Event | None,
) -> None:
    from safetensors import safe_open

    def event(message: str, done: int) -> ProgressEvent:
        return ProgressEvent(stage="export", message=message, completed=done, total=size, unit="bytes",
                             file=target.name, file_index=1, files=1)  # fmt: skip

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with _temporary(target) as temporary, ExitStack() as stack, open(temporary, "xb") as handle:
            handles: dict[Path, Any] = {}
            handle.write(header)
            done = len(header)
            for index, item in enumerate(targets):
                check_cancel(cancel, "while writing the single file")
                emit(on_progress, event(f"writing {item.name} ({index + 1}/{len(targets)})", done))
                tensor = _assemble(item, sources[item.component], handles, stack, safe_open)
                first = sources[item.component][item.pieces[0].key][1]
                done += _write_tensor(handle, tensor, _out_dtype(first, dtype))
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            if done != size:
                raise CpeditError(f"{target}: wrote {done} bytes, expected {size}", path=str(target),
                                  reason="mismatch")  # fmt: skip
            check_single_file_target(target, overwrite=overwrite)  # again: it may have appeared meanwhile
            os.replace(temporary, target)
            fsync_folder(target.parent)
    except OSError as exc:
        if is_no_space(exc):
            raise no_space_error(target, needed=size, what="the single file") from None
        raise CpeditError(f"cannot write the single file {target} ({exc.strerror or exc}); nothing was written",
                          path=str(target), reason="unwritable", argument="out") from None  # fmt: skip
    emit(on_progress, event(f"wrote {target.name} ({format_bytes(size)})", size))


def _assemble(
    item: Target,
    entries: Mapping[str, tuple[Path, TensorEntry]],
    handles: dict[Path, Any],
    stack: ExitStack,
    safe_open: Any,
) -> Any:
    """The checkpoint tensor ``item`` from its pieces (read one by one from the component's files)."""
    import torch

    parts = []
    for piece in item.pieces:
        file = entries[piece.key][0]
        if file not in handles:
            handles[file] = stack.enter_context(safe_open(file, framework="pt"))
        tensor = handles[file].get_tensor(piece.key)
        if piece.op == "swap_halves":
            first, second = tensor.chunk(2, dim=0)
            tensor = torch.cat([second, first], dim=0)
        elif piece.op == "transpose":
            tensor = tensor.T
        parts.append(tensor)
    tensor = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
    return tensor.reshape(item.shape)


def _write_tensor(handle: Any, tensor: Any, out_dtype: str) -> int:
    """Write ``tensor`` cast to ``out_dtype`` as little-endian bytes; the bytes written."""
    import torch

    from cpedit.output.weights_files import TORCH_DTYPES

    if out_dtype in TORCH_DTYPES:
        tensor = tensor.to(TORCH_DTYPES[out_dtype])
    data = tensor.contiguous().reshape(-1).view(torch.uint8).numpy() if tensor.numel() else b""
    view = memoryview(data)
    handle.write(view)
    return len(view)
