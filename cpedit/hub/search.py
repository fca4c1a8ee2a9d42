"""Finding text-to-image diffusers models on the Hub."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from cpedit.errors import CpeditError
from cpedit.hub.errors import service_errors

if TYPE_CHECKING:
    from huggingface_hub.hf_api import ExpandModelProperty_T

SortKey = Literal["downloads", "likes", "updated"]
SORT_KEYS: dict[str, Literal["downloads", "likes", "last_modified"]] = {
    "downloads": "downloads",
    "likes": "likes",
    "updated": "last_modified",
}
"""cpedit's sort names -> huggingface_hub's ``list_models(sort=...)`` values."""
_EXPAND: list[ExpandModelProperty_T] = [
    "downloads",
    "likes",
    "lastModified",
    "gated",
    "private",
    "pipeline_tag",
    "library_name",
]


@dataclass(frozen=True)
class ModelSummary:
    """One search result."""

    id: str
    downloads: int | None
    likes: int | None
    last_modified: datetime | None
    gated: str | bool
    private: bool

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (dates as ISO strings)."""
        return {
            "id": self.id,
            "downloads": self.downloads,
            "likes": self.likes,
            "last_modified": self.last_modified.isoformat() if self.last_modified else None,
            "gated": self.gated,
            "private": self.private,
        }


def search_models(*, query: str | None = None, limit: int = 20, sort: SortKey = "downloads") -> list[ModelSummary]:
    """Text-to-image diffusers models on the Hub (library ``diffusers``, pipeline tag ``text-to-image``).

    Args:
        query: Text the model id must contain (None: all).
        limit: How many results at most.
        sort: ``downloads``, ``likes`` or ``updated`` (most first / newest first).

    Returns:
        The models, best first.

    Raises:
        CpeditError: ``limit`` or ``sort`` is invalid.
        HubError: The Hub cannot be reached or refuses the request.
    """
    from huggingface_hub import HfApi

    if limit < 1:
        raise CpeditError(f"limit must be at least 1, got {limit}")
    if sort not in SORT_KEYS:
        raise CpeditError(f"unknown sort {sort!r}; use one of {', '.join(SORT_KEYS)}")
    api = HfApi()
    with service_errors("search models"):
        models = list(
            api.list_models(
                search=query or None,
                filter="diffusers",
                pipeline_tag="text-to-image",
                sort=SORT_KEYS[sort],
                limit=limit,
                expand=_EXPAND,
            )
        )
    return [
        ModelSummary(
            id=m.id,
            downloads=m.downloads,
            likes=m.likes,
            last_modified=m.last_modified,
            gated=m.gated if m.gated else False,
            private=bool(m.private),
        )
        for m in models
    ]
