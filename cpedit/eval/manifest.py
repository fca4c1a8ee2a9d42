"""An evaluation's images folder and its ``manifest.jsonl``: the line format, its one validated reader, its writers.

An images folder holds ``edited/`` and ``base/`` (one PNG per image, named by its key) and
``manifest.jsonl`` (one JSON line per image, written after the image; see :mod:`cpedit.eval.engine`).
The folder may be one the user names, so it is checked as hostile before anything is rendered
(:func:`check_images_folder`): the manifest, the rank manifests and the two subfolders are never
symbolic links (cpedit would append to, or write PNGs into, whatever they point at), the manifest
is a file and the subfolders are folders. The reader (:func:`read_images_folder`) is bounded
(file size, line length) and strict: a line cpedit did not write (not its JSON, other fields, a
file name that is not the key's) is refused naming the file and the line, so a folder holding
someone else's manifest is never silently rewritten without their lines. Two things are not
errors: a killed run's cut-short last line (cpedit's own prefix, not JSON) is dropped, and a
listed image that is missing, a link or cut short (no PNG end chunk) counts as not there, so it is
rendered again (:attr:`ImagesFolder.damaged` lists the cut-short ones, to say so).
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cpedit import strict_json
from cpedit.errors import CpeditError
from cpedit.text import shown

MANIFEST = "manifest.jsonl"
RANK_MANIFEST = "manifest.rank-{rank}.jsonl"
"""Where rank ``R`` of a multi-process run lists its images until rank 0 merges them into :data:`MANIFEST`."""
_RANK_MANIFEST = re.compile(r"^manifest\.rank-(\d+)\.jsonl$")
MODELS = ("edited", "base")
"""The subfolders of an images folder, one per model."""
MAX_MANIFEST_BYTES = 256 * 2**20
"""A manifest larger than this is refused (a line is a few hundred bytes: about a million images)."""
MAX_MANIFEST_LINE_BYTES = 65_536
"""A manifest line longer than this is refused (a prompt is at most 4,096 characters)."""
_LINE_START = '{"prompt": '
"""How every line cpedit writes begins: a line with this start that is not JSON is a killed run's last one."""
_KEY = re.compile(r"^[0-9a-f]{64}$")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
"""The last 12 bytes of every complete PNG (the empty ``IEND`` chunk and its CRC)."""
Model = Literal["edited", "base"]

__all__ = [
    "MANIFEST",
    "RANK_MANIFEST",
    "ImageEntry",
    "ImageJob",
    "ImagesFolder",
    "append_manifest",
    "check_images_folder",
    "read_images_folder",
    "read_manifest",
    "write_canonical_manifest",
]

MAX_LINE_DEPTH = 4
"""A manifest line is one flat object; deeper nesting is not a line cpedit wrote."""


@dataclass(frozen=True)
class ImageJob:
    """One image to have: its prompt, seed and settings, and the key that names it in the manifest."""

    prompt: str
    seed: int
    guidance: float
    height: int | None
    width: int | None
    steps: int
    model: Model
    key: str

    @property
    def file(self) -> str:
        """Where the image lives, relative to the images folder."""
        return f"{self.model}/{self.key[:24]}.png"


@dataclass(frozen=True)
class ImageEntry:
    """One image of the folder (a manifest line whose file exists)."""

    prompt: str
    seed: int
    file: str
    model: Model
    key: str

    def path(self, folder: Path) -> Path:
        """The image file."""
        return folder / self.file


@dataclass
class ImagesFolder:
    """What an images folder holds: its usable images and the manifest lines that list them.

    Attributes:
        entries: The images there, by key (the first line of a key wins).
        lines: ``(entry, line)`` of the usable images in file order (the manifest's, then the rank manifests').
        damaged: Listed images whose file is cut short or not a PNG (relative paths): rendered again.
    """

    entries: dict[str, ImageEntry] = field(default_factory=dict)
    lines: list[tuple[ImageEntry, str]] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)


def _folder_error(path: Path, message: str, *, reason: str = "malformed") -> CpeditError:
    return CpeditError(f"{path}: {message}", path=str(path), reason=reason, argument="folder")


def _kind(info: os.stat_result) -> str:
    return "a symbolic link" if stat.S_ISLNK(info.st_mode) else "a folder" if stat.S_ISDIR(info.st_mode) else "a file"


def check_images_folder(root: Path) -> None:
    """Refuse an images folder cpedit cannot safely write into, before anything is rendered.

    Raises:
        CpeditError: ``argument="folder"``: ``root`` is not a folder (``not_folder``); the manifest or
            a rank manifest is a link (``link``) or not a regular file (``not_regular``); ``edited/``
            or ``base/`` is a link (``link``) or not a folder (``not_folder``).
    """
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise _folder_error(root, "the images folder is a file, not a folder", reason="not_folder") from None
    except OSError as exc:
        raise _folder_error(
            root, f"cannot read the images folder ({exc.strerror or exc})", reason="unreadable"
        ) from None
    for name in names:
        is_manifest = name == MANIFEST or _RANK_MANIFEST.match(name) is not None
        if not is_manifest and name not in MODELS:
            continue
        path = root / name
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode):
            raise _folder_error(
                path,
                "is a symbolic link; cpedit writes the images folder's manifest and images only in the folder itself",
                reason="link",
            )
        if is_manifest and not stat.S_ISREG(info.st_mode):
            raise _folder_error(path, f"the image manifest is {_kind(info)}, not a regular file", reason="not_regular")
        if not is_manifest and not stat.S_ISDIR(info.st_mode):
            raise _folder_error(
                path, f"is {_kind(info)}; it must be the folder of the {name} model's images", reason="not_folder"
            )


def _rank_manifests(root: Path) -> list[Path]:
    """The rank manifests in ``root`` (of a running or crashed multi-process run), in rank order."""
    try:
        names = os.listdir(root)
    except OSError:
        return []
    found = sorted((int(match.group(1)), root / name) for name in names if (match := _RANK_MANIFEST.match(name)))
    return [path for _, path in found]


def _entry(data: Any) -> ImageEntry:
    """The entry of a parsed line, or ValueError saying which field is not as cpedit writes it."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    prompt, seed, file, model, key = (data.get(k) for k in ("prompt", "seed", "file", "model", "key"))
    if not isinstance(prompt, str):
        raise ValueError(f"prompt: expected text, got {shown(prompt)}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed: expected a whole number, got {shown(seed)}")
    if model not in MODELS:
        raise ValueError(f"model: expected edited or base, got {shown(model)}")
    if not isinstance(key, str) or not _KEY.match(key):
        raise ValueError(f"key: expected 64 hexadecimal digits, got {shown(key)}")
    if file != f"{model}/{key[:24]}.png":
        raise ValueError(f"file: expected {model}/{key[:24]}.png, got {shown(file)}")
    for name in ("steps", "guidance", "height", "width"):
        value = data.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"{name}: expected a number, got {shown(value)}")
    return ImageEntry(prompt=prompt, seed=seed, file=file, model=model, key=key)


def image_problem(path: Path) -> str | None:
    """Why a cached image cannot be used (missing, a link, not a PNG, cut short), or None. Reads 20 bytes."""
    try:
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode):
            return "not a regular file"
        with open(path, "rb") as handle:
            head = handle.read(8)
            handle.seek(max(0, info.st_size - len(_PNG_END)))
            tail = handle.read(len(_PNG_END))
    except OSError:
        return "missing"
    if head != _PNG_SIGNATURE or tail != _PNG_END:
        return "cut short or not a PNG"
    return None


def _lines(path: Path) -> list[tuple[int, str]]:
    """The numbered lines of a manifest, bounded; the cut-short last line of a killed run left out."""
    with open(path, "rb") as handle:  # a link or special file was refused by check_images_folder
        if os.fstat(handle.fileno()).st_size > MAX_MANIFEST_BYTES:
            raise _folder_error(
                path, f"the image manifest is larger than {MAX_MANIFEST_BYTES // 2**20} MiB", reason="too_large"
            )
        numbered, number = [], 0
        while raw := handle.readline(MAX_MANIFEST_LINE_BYTES + 1):
            number += 1
            if len(raw) > MAX_MANIFEST_LINE_BYTES:
                raise _folder_error(
                    path, f"line {number} is longer than {MAX_MANIFEST_LINE_BYTES} bytes", reason="too_long"
                )
            try:
                numbered.append((number, raw.decode("utf-8").rstrip("\r\n")))
            except UnicodeDecodeError:
                raise _folder_error(path, f"line {number} is not UTF-8 text") from None
    return numbered


def read_images_folder(folder: str | os.PathLike[str]) -> ImagesFolder:
    """The images listed in ``folder/manifest.jsonl`` (then its rank manifests) that are there, checked.

    A line of a killed run (cpedit's start of a line, not JSON) and blank lines are skipped; a
    listed image that is missing, a link or cut short is left out (so it is rendered again). The
    rank manifests (``manifest.rank-R.jsonl``) of a multi-process run that crashed before merging
    them count too.

    Raises:
        CpeditError: ``argument="folder"``: a manifest is too large, has a line too long, not UTF-8,
            or not one cpedit writes (``reason="malformed"``); the message names the file, the line
            and the field. Links and non-files: see :func:`check_images_folder`, which runs first.
    """
    root = Path(folder)
    check_images_folder(root)
    result = ImagesFolder()
    manifest = root / MANIFEST
    for path in ([manifest] if manifest.exists() else []) + _rank_manifests(root):
        for number, line in _lines(path):
            if not line.strip():
                continue
            try:
                entry = _entry(strict_json.loads(line, max_depth=MAX_LINE_DEPTH))
            except ValueError as exc:  # strict_json.JsonProblem, or a field _entry refuses
                if isinstance(exc, strict_json.JsonProblem) and exc.syntax and line.startswith(_LINE_START):
                    continue  # cut short by a killed run: its image is rendered again
                raise _folder_error(
                    path,
                    f"line {number} is not a line cpedit writes ({exc}); the folder holds a manifest cpedit did not "
                    "write: give an images folder of its own, or remove the line",
                ) from None
            problem = image_problem(root / entry.file)
            if problem == "cut short or not a PNG":
                result.damaged.append(entry.file)
            if problem is None:
                result.lines.append((entry, line))
                result.entries.setdefault(entry.key, entry)
    return result


def read_manifest(folder: str | os.PathLike[str]) -> dict[str, ImageEntry]:
    """The images of an images folder that can be reused, by key (see :func:`read_images_folder`)."""
    return read_images_folder(folder).entries


def manifest_line(job: ImageJob) -> str:
    """The manifest line of an image (``{"prompt": ...}``, keys in this order)."""
    return json.dumps(
        {
            "prompt": job.prompt,
            "seed": job.seed,
            "file": job.file,
            "model": job.model,
            "key": job.key,
            "steps": job.steps,
            "guidance": job.guidance,
            "height": job.height,
            "width": job.width,
        }
    )


def append_manifest(folder: Path, job: ImageJob, *, name: str = MANIFEST) -> None:
    """List ``job``'s image (already written) at the end of manifest ``name``, synced to disk."""
    path = folder / name
    with open(path, "a+b") as handle:
        handle.seek(0, os.SEEK_END)
        start = b""
        if handle.tell() > 0:  # a killed run's last line may lack its newline: never glue onto it
            handle.seek(-1, os.SEEK_END)
            start = b"" if handle.read(1) == b"\n" else b"\n"
        handle.write(start + (manifest_line(job) + "\n").encode("utf-8"))
        handle.flush()
        os.fsync(handle.fileno())


def write_canonical_manifest(root: Path, order: Sequence[ImageJob]) -> None:
    """Rewrite ``manifest.jsonl`` (atomically) with the rank manifests merged in, in canonical order.

    The order is ``order``'s images that exist (this run's jobs), then the other usable entries in
    their previous order (the first of duplicate keys); cut-short lines and lines of missing
    images are dropped (every other line is cpedit's: :func:`read_images_folder` refuses a folder
    with any other). Then the merged rank manifests are removed. Whoever ran the jobs, and with
    how many processes, the manifest comes out the same, byte for byte. Nothing is written when
    the manifest is already so.
    """
    from cpedit.durable import write_bytes_atomically

    rank_files = _rank_manifests(root)
    lines = read_images_folder(root).lines
    present = {entry.key for entry, _ in lines}
    seen: set[str] = set()
    out: list[str] = []
    for job in order:
        if job.key in present and job.key not in seen:
            seen.add(job.key)
            out.append(manifest_line(job))
    for entry, line in lines:
        if entry.key not in seen:
            seen.add(entry.key)
            out.append(line)
    data = "".join(line + "\n" for line in out).encode("utf-8")
    manifest = root / MANIFEST
    try:
        current = manifest.read_bytes() if manifest.is_file() else None
    except OSError:
        current = None
    if current != data:
        write_bytes_atomically(manifest, data, what="the image manifest")
    for path in rank_files:  # merged: its lines are in manifest.jsonl now
        path.unlink(missing_ok=True)
