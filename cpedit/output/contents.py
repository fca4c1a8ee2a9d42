"""What belongs to a cpedit output folder, and what only lies in it (for ``push``: only the output is published).

An output is ``model_index.json``, the component folders it names, the top-level files copied
from the base (README, license), and ``conceptprune/``. Anything else found in the folder was
put there by someone else, or is a cache: an evaluation's images folder (any folder holding an
image manifest, such as ``conceptprune/eval/images/BENCH`` or an ``--images-dir`` given inside
the output) and top-level folders no component names. Those are not part of the output.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from cpedit.models.files import load_json_text
from cpedit.output.record import EVAL_DIR, IMAGES_DIR, RECORD_DIR, RecordError

MAX_INDEX_BYTES = 1 * 2**20
"""A ``model_index.json`` larger than this is refused."""
_MANIFEST = re.compile(r"^manifest(\.rank-\d+)?\.jsonl$")
"""The image manifest of an evaluation's images folder (see :mod:`cpedit.eval.manifest`) and its rank manifests."""

__all__ = ["OutputContents", "output_contents"]


@dataclass(frozen=True)
class OutputContents:
    """The files of an output folder (relative POSIX paths).

    Attributes:
        files: The output's own files (hidden entries and ``README.md``, which a push replaces, left out).
        not_output: What lies in the folder but is not part of the output: images folders and
            top-level folders no component names (a folder ends with ``/``).
    """

    files: list[str]
    not_output: list[str]


def _components(folder: Path) -> set[str]:
    index = folder / "model_index.json"
    try:
        if index.stat().st_size > MAX_INDEX_BYTES:
            raise ValueError(f"larger than {MAX_INDEX_BYTES // 2**20} MiB")
        data = load_json_text(index.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise RecordError(f"{index} cannot be read ({exc})", path=str(index), reason="malformed") from None
    if not isinstance(data, dict):
        raise RecordError(f"{index} is not a JSON object", path=str(index), reason="malformed")
    return {name for name, value in data.items() if not name.startswith("_") and isinstance(value, list)}


def output_contents(folder: str | os.PathLike[str]) -> OutputContents:
    """Sort the files of an output folder into the output's own and the rest (links are never followed).

    Raises:
        RecordError: ``model_index.json`` cannot be read.
    """
    root = Path(folder)
    belongs = _components(root) | {RECORD_DIR}
    files: list[str] = []
    not_output: list[str] = []
    for current, dirs, names in os.walk(root, followlinks=False):
        here = Path(current).relative_to(root)
        if here.parts == (RECORD_DIR, EVAL_DIR, IMAGES_DIR) or (here.parts and any(map(_MANIFEST.match, names))):
            not_output.append(here.as_posix() + "/")  # an evaluation's images folder: a cache
            dirs.clear()
            continue
        dirs.sort()
        if not here.parts:
            not_output.extend(f"{d}/" for d in dirs if not d.startswith(".") and d not in belongs)
            dirs[:] = [d for d in dirs if d in belongs]
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in sorted(names):
            path = Path(current) / name
            relative = (here / name).as_posix()
            if name.startswith(".") or relative == "README.md" or path.is_symlink() or not path.is_file():
                continue  # hidden; replaced by the card; links are refused by read_output, never followed here
            files.append(relative)
    return OutputContents(files=sorted(files, key=lambda p: p.split("/")), not_output=sorted(not_output))
