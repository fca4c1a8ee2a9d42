"""Hugging Face Hub access: downloads, ``hub:`` references, searching models, repo ids and accounts, the cache, errors.

Everything that talks to the Hub goes through here: downloads of models, prompt-set datasets
and recipes through one downloader (:mod:`cpedit.hub.download`: the standard Hub cache, progress
events, cancel, offline mode), ``hub:`` references through one type (:class:`~cpedit.hub.refs.HubRef`),
and failures become :class:`~cpedit.hub.errors.HubError` (a :class:`~cpedit.errors.CpeditError`)
with a message that says what to do. The token is huggingface_hub's (``HF_TOKEN``,
``hf auth login``); cpedit never reads, prints or stores it. ``HF_ENDPOINT`` selects the Hub.
The names below are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cpedit._lazy import lazy_exports

if TYPE_CHECKING:
    from cpedit.hub.download import download_files, fetch_file, list_files, resolve_commit
    from cpedit.hub.errors import HubError
    from cpedit.hub.refs import HUB_PREFIX, HubRef, HubRefError, is_hub_ref
    from cpedit.hub.repos import check_repo_id, whoami
    from cpedit.hub.search import ModelSummary, search_models

_EXPORTS = {
    "check_repo_id": "cpedit.hub.repos",
    "download_files": "cpedit.hub.download",
    "fetch_file": "cpedit.hub.download",
    "HUB_PREFIX": "cpedit.hub.refs",
    "HubError": "cpedit.hub.errors",
    "HubRef": "cpedit.hub.refs",
    "HubRefError": "cpedit.hub.refs",
    "is_hub_ref": "cpedit.hub.refs",
    "list_files": "cpedit.hub.download",
    "ModelSummary": "cpedit.hub.search",
    "resolve_commit": "cpedit.hub.download",
    "search_models": "cpedit.hub.search",
    "whoami": "cpedit.hub.repos",
}
"""Public name -> the module that defines it (imported when the name is first used)."""

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
