"""What the local Hugging Face cache tells: which repo and commit a snapshot folder holds."""

from __future__ import annotations

import os
import re
from pathlib import Path

_SNAPSHOT = re.compile(r"(?:^|/)models--(?P<ns>[^/]+?)--(?P<name>[^/]+)/snapshots/(?P<commit>[0-9a-f]{40})/?$")


def infer_hub_snapshot(path: str | os.PathLike[str]) -> tuple[str, str] | None:
    """``(repo_id, commit)`` when ``path`` is a Hub cache snapshot folder (``models--NS--NAME/snapshots/COMMIT``)."""
    match = _SNAPSHOT.search(Path(path).as_posix())
    if match is None:
        return None
    return f"{match.group('ns')}/{match.group('name')}", match.group("commit")
