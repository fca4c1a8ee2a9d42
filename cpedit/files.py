"""The files of a diffusers pipeline: weight formats, variants, and which files a pull needs (no torch).

Shared by the loader (which files to download), the writer (which files to copy and rewrite),
``cpedit models info`` (what a pull downloads) and the offline error messages (what is
missing from the cache), so they agree on every name.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from cpedit.errors import UnsafeFileError

UNSAFE_WEIGHT_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl", ".msgpack", ".h5", ".onnx", ".pb")
"""Weight formats cpedit never loads nor copies: they can run code when loaded, or would carry unpruned weights."""

_SHARD = re.compile(r"-\d+-of-\d+$")


def variant_of(filename: str) -> str:
    """The variant of a safetensors file name, ``""`` for the default one.

    ``diffusion_pytorch_model.fp16.safetensors`` -> ``fp16``; shards keep their variant, in
    either naming: ``model-00001-of-00002.fp16.safetensors`` and ``model.fp16-00001-of-00002.safetensors``
    -> ``fp16``; ``model-00001-of-00002.safetensors`` -> ``""``.
    """
    stem = filename.removesuffix(".safetensors")
    parts = [_SHARD.sub("", part) for part in stem.split(".")[1:]]
    parts = [part for part in parts if part]
    return parts[-1] if parts else ""


def pull_safetensors(index: dict[str, Any], files: dict[str, int]) -> dict[str, int]:
    """The safetensors files (path -> size) a pull downloads: the components' default-variant weights.

    A component with only variant files (e.g. ``*.fp16.safetensors``) counts those.
    """
    components = {k for k, v in index.items() if not k.startswith("_") and isinstance(v, list)}
    chosen: dict[str, int] = {}
    for component in sorted(components):
        weights = {
            p: s
            for p, s in files.items()
            if p.startswith(component + "/") and p.count("/") == 1 and p.endswith(".safetensors")
        }
        default = {p: s for p, s in weights.items() if variant_of(p.split("/")[1]) == ""}
        chosen.update(default or weights)
    return chosen


_SKIPPED_SUFFIXES = (*UNSAFE_WEIGHT_SUFFIXES, ".onnx_data", ".gguf", ".py", ".pyc")
"""Files of a component folder never downloaded: weights in formats other than safetensors, code."""
_UNSAFE_INDEX = re.compile(r"\.(?:bin|ckpt|pt|pth|pkl|msgpack|h5|onnx|pb)\.index(?:\.[^./]+)?\.json$")
_SHARD_ANYWHERE = re.compile(r"-\d+-of-\d+")


def _index_variant_needed(index_name: str, chosen: list[str]) -> bool:
    """Whether a safetensors index file (``X.safetensors.index[.VARIANT].json``) belongs to a chosen weight file."""
    stem, _, rest = index_name.partition(".safetensors.index")
    variant = rest[1 : -len(".json")] if rest != ".json" else ""
    for name in chosen:
        base = name[: -len(".safetensors")]
        if base.startswith(stem) and _SHARD_ANYWHERE.sub("", base[len(stem) :]).lstrip(".") == variant:
            return True
    return False


def pipeline_files(index: dict[str, Any], files: dict[str, int]) -> dict[str, int]:
    """The files of a Hub repo that loading its pipeline from safetensors needs, in the repo's order.

    That is what diffusers fetches for ``use_safetensors=True``: ``model_index.json``; for
    each component model_index.json lists, the files directly in its folder (configs,
    tokenizer and scheduler files) and its safetensors weights of the default variant (or the
    variant files when the component has only those; the rule of
    :func:`pull_safetensors`), with the safetensors index files of those
    weights. Never weights in other formats (``.bin``, ``.ckpt``, ``.pt``, ``.pth``,
    ``.msgpack``, ``.h5``, ``.onnx``, ...), code files, hidden files, or files of folders
    that are not components.

    Args:
        index: The parsed model_index.json.
        files: The repo's files (path -> size in bytes).

    Returns:
        path -> size of the files to download.
    """
    components = {k for k, v in index.items() if not k.startswith("_") and isinstance(v, list)}
    weights = pull_safetensors(index, files)
    chosen: dict[str, list[str]] = {}
    for path in weights:
        component, name = path.split("/", 1)
        chosen.setdefault(component, []).append(name)
    needed: dict[str, int] = {}
    for path, size in files.items():
        if path == "model_index.json" or path in weights:
            needed[path] = size
            continue
        component, _, name = path.partition("/")
        if component not in components or not name or "/" in name or name.startswith("."):
            continue
        if name.endswith((".safetensors", *_SKIPPED_SUFFIXES)) or _UNSAFE_INDEX.search(name):
            continue
        if ".safetensors.index" in name and not _index_variant_needed(name, chosen.get(component, [])):
            continue
        needed[path] = size
    return needed


def components_without_safetensors(index: dict[str, Any], files: dict[str, int]) -> list[str]:
    """The components whose folder holds weights, but none in safetensors (cpedit cannot load those)."""
    with_safetensors = {path.split("/", 1)[0] for path in pull_safetensors(index, files)}
    missing = set()
    for path in files:
        component, _, name = path.partition("/")
        if isinstance(index.get(component), list) and "/" not in name and name.endswith(UNSAFE_WEIGHT_SUFFIXES):
            if component not in with_safetensors:
                missing.add(component)
    return sorted(missing)


# --- Safety of the files in a folder --------------------------------------------------------
#
# Model folders and output folders come from strangers. Nothing outside the folder may be read,
# copied or uploaded through it: a symbolic link is followed only when it stays inside (a Hub
# cache snapshot's links point to its repo's blobs, which count as inside), and links to
# folders, link loops, dangling links and special files (FIFOs, devices) are refused up front.


def _hub_storage(folder: Path) -> Path | None:
    """The repo storage folder (``models--NS--NAME``) when ``folder`` is a Hub cache snapshot, else None."""
    if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--"):
        return folder.parent.parent
    return None


def allowed_root(folder: Path) -> Path:
    """Where links of ``folder`` may point: the folder itself, or its repo's storage for a Hub cache snapshot."""
    resolved = folder.resolve()
    return _hub_storage(resolved) or resolved


def check_entry(entry: Path, *, root: Path, shown_as: str) -> None:
    """Refuse ``entry`` unless it is a folder or a regular file, any link in it staying under ``root``.

    Raises:
        UnsafeFileError: A link that points outside ``root``, to a folder, nowhere, or into a
            loop; or a FIFO, device or socket.
    """
    if entry.is_symlink():
        try:
            info = entry.stat()
        except FileNotFoundError:
            raise UnsafeFileError(
                f"{shown_as} is a dangling symbolic link (its target does not exist); remove it or replace it "
                "with the file",
                path=str(entry),
                reason="dangling_link",
            ) from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafeFileError(
                    f"{shown_as} is a symbolic link loop; remove it", path=str(entry), reason="link_loop"
                ) from None
            raise UnsafeFileError(
                f"{shown_as} cannot be read ({exc.strerror})", path=str(entry), reason="unreadable"
            ) from None
        target = Path(os.path.realpath(entry))
        if target != root and root not in target.parents:
            raise UnsafeFileError(
                f"{shown_as} is a symbolic link to {target}, outside the folder; cpedit never reads, copies or "
                "uploads files from outside it: replace the link with a copy of the file if you mean to ship it",
                path=str(entry),
                reason="link_outside",
            )
        if stat.S_ISDIR(info.st_mode):
            raise UnsafeFileError(
                f"{shown_as} is a symbolic link to a folder ({target}); replace it with a real folder",
                path=str(entry),
                reason="link_to_folder",
            )
    else:
        try:
            info = entry.lstat()
        except OSError as exc:
            raise UnsafeFileError(
                f"{shown_as} cannot be read ({exc.strerror})", path=str(entry), reason="unreadable"
            ) from None
    if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
        raise UnsafeFileError(
            f"{shown_as} is not a regular file (a FIFO, device or socket); remove it",
            path=str(entry),
            reason="not_regular",
        )


def check_folder_files(folder: Path, *, root: Path | None = None, hidden: bool = False) -> None:
    """Check every entry under ``folder`` with :func:`check_entry` (links never followed into folders).

    Args:
        folder: The model or output folder.
        root: Where links may point; default :func:`allowed_root` of ``folder``.
        hidden: Also check hidden entries (names starting with ``.``; cpedit never copies them).

    Raises:
        UnsafeFileError: The first unsafe entry, named relative to ``folder``.
    """
    root = root or allowed_root(folder)
    for current, dirs, names in os.walk(folder, followlinks=False):
        if not hidden:
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            names = [n for n in names if not n.startswith(".")]
        for name in sorted([*dirs, *names]):
            entry = Path(current) / name
            check_entry(entry, root=root, shown_as=f"{folder}/{entry.relative_to(folder).as_posix()}")


SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024
"""The largest safetensors header accepted (the format's own limit)."""


def safetensors_problem(path: Path) -> str | None:
    """What is wrong with a safetensors file's framing, or None: the header parses and the data is all there.

    Reads the 8-byte length and the JSON header only (never the tensors): a file cut short by
    an interrupted download or copy, or one that is not safetensors at all, is caught here.
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                return f"it is {size} bytes, too short for a safetensors header"
            length = int.from_bytes(head, "little")
            if length > SAFETENSORS_MAX_HEADER or 8 + length > size:
                return f"its header claims {length:,} bytes but the file is {size:,} bytes (truncated?)"
            header = load_json_text(handle.read(length).decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        return f"its header cannot be read ({exc})"
    if not isinstance(header, dict):
        return "its header is not a JSON object"
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)
            and offsets[0] <= offsets[1]
        ):
            return f"tensor {name!r} has malformed data_offsets"
        end = max(end, offsets[1])
    data = size - 8 - length
    if end > data:
        return f"it holds {data:,} bytes of tensor data but its header needs {end:,} (truncated)"
    return None


def check_safetensors(path: Path, *, shown_as: str | None = None) -> None:
    """Refuse a safetensors file that is truncated or malformed (see :func:`safetensors_problem`).

    Raises:
        UnsafeFileError: With ``reason="truncated"``, naming the file.
    """
    problem = safetensors_problem(path)
    if problem is not None:
        raise UnsafeFileError(
            f"{shown_as or path} is not a complete safetensors file: {problem}; download or write it again",
            path=str(path),
            reason="truncated",
        )


def load_json_text(text: str) -> Any:
    """``json.loads`` for files from strangers: too-deep nesting is a ValueError, not a RecursionError."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("it is nested too deeply") from None
