"""Hugging Face Hub access: searching models, repo ids and accounts, the cache, and Hub errors.

Everything that talks to the Hub goes through here: failures become :class:`~cpedit.hub.errors.HubError`
(a :class:`~cpedit.errors.CpeditError`) with a message that says what to do. The token is
huggingface_hub's (``HF_TOKEN``, ``hf auth login``); cpedit never reads, prints or stores it.
``HF_ENDPOINT`` selects the Hub. The names below are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cpedit._lazy import lazy_exports

if TYPE_CHECKING:
    from cpedit.hub.errors import HubError
    from cpedit.hub.repos import check_repo_id, whoami
    from cpedit.hub.search import ModelSummary, search_models

_EXPORTS = {
    "check_repo_id": "cpedit.hub.repos",
    "HubError": "cpedit.hub.errors",
    "ModelSummary": "cpedit.hub.search",
    "search_models": "cpedit.hub.search",
    "whoami": "cpedit.hub.repos",
}
"""Public name -> the module that defines it (imported when the name is first used)."""

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
