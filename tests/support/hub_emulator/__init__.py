"""A loopback Hugging Face Hub for the test suite (stdlib only, no huggingface_hub import).

It serves exactly the endpoints the real ``huggingface_hub`` client (2.x, Xet disabled) calls
for what cpedit does, and it is as strict as the real Hub about what it checks:

- ``GET /api/whoami-v2``: 401 without a valid token.
- ``POST /api/repos/create``: 409 when the repo exists, 403 outside the user's namespaces.
- ``POST /api/validate-yaml``: the model card metadata (400 with ``errors`` when invalid).
- ``POST /api/models/{repo}/preupload/{rev}``: upload mode per file (``lfs``/``regular``) and the
  remote oid of files already there.
- ``POST /{repo}.git/info/lfs/objects/batch``, then the ``upload`` (PUT, sha256 and size
  checked) and ``verify`` actions it hands out.
- ``POST /api/models/{repo}/branch/{branch}``: a branch from ``startingPoint`` (409 if it exists).
- ``POST /api/models/{repo}/commit/{rev}`` (NDJSON): LFS objects must have been uploaded with
  the announced size, ``parentCommit`` must be the branch head (412), ``create_pr=1`` opens a
  ``refs/pr/N`` branch.
- ``GET /api/models/{repo}[/revision/{rev}]``: model info (``expand[]``, ``blobs``).
- ``GET /api/models/{repo}/tree/{rev}[/{path}]``: listing, paged with a ``Link`` header.
- ``HEAD|GET /{repo}/resolve/{rev}/{path}``: regular files directly (``ETag``,
  ``X-Repo-Commit``, ``Content-Length``); LFS files with a 302 to a "CDN" on another host name
  (``localhost`` instead of ``127.0.0.1``) carrying ``X-Linked-Etag``/``X-Linked-Size``. The CDN
  records any request that arrives with an ``Authorization`` header (a token leak). Both honour
  ``Range: bytes=START-[END]`` (206 with ``Content-Range``, 416 past the end), which a download
  resumed after a dropped connection sends (:attr:`HubEmulator.cut_once` drops one). ``snapshot_download``
  lists files with the tree endpoint above.
- ``GET /api/models?search=&author=&filter=&pipeline_tag=&sort=&direction=&limit=&expand[]=``:
  listing with ``Link`` header paging (``limit`` is the page size, as on the Hub).
- Dataset repos (seeded with ``seed_repo(..., repo_type="dataset")``, kept apart from models of the
  same id) are read through the same routes under their dataset prefixes, as ``snapshot_download``
  and ``hf_hub_download`` with ``repo_type="dataset"`` call them: ``GET /api/datasets/{repo}[/revision/{rev}]``,
  ``GET /api/datasets/{repo}/tree/{rev}[/{path}]`` and ``HEAD|GET /datasets/{repo}/resolve/{rev}/{path}``,
  gated and private ones included (the gated message says "dataset").

Errors carry the headers the client maps to its exceptions: ``X-Error-Code: RepoNotFound``
(404, or 401 without a token), ``GatedRepo`` (401 anonymous, 403 without access),
``RevisionNotFound``, ``EntryNotFound``; a bad token gets 401 with ``X-Error-Message: Invalid
credentials in Authorization header``.

:meth:`HubEmulator.down` closes the listening socket (connections are refused, as when the
network is down) and brings it back on the same port afterwards.

Fault injection (cleared by :meth:`HubEmulator.new_test` and :meth:`HubEmulator.reset`; each fired fault
is logged in :attr:`HubEmulator.faults`):

- :meth:`HubEmulator.fail_next`: the next N requests whose path matches a pattern get an HTTP error
  (500 by default) instead of being served; nothing of them is applied.
- :meth:`HubEmulator.reset_connection_during_upload`: the next N LFS object uploads (PUT) are cut off
  halfway: the emulator reads part of the body, then resets the connection (TCP RST).
- :meth:`HubEmulator.slow`: requests whose path matches a pattern wait before they are served.

:attr:`HubEmulator.uploads` records every LFS object stored by an upload (PUT), so a test can check
that nothing is uploaded twice.

The package is split by concern: :mod:`.storage` (files, commits, repos, the error type),
:mod:`.cards` (card metadata validation), :mod:`.faults` (fault injection), :mod:`.emulator`
(the state and lifecycle) and :mod:`.server` (the HTTP routes).
"""

from __future__ import annotations

from support.hub_emulator.cards import validate_card_metadata
from support.hub_emulator.emulator import HubEmulator, folder_files, seed_pipeline
from support.hub_emulator.storage import HubError

__all__ = ["HubEmulator", "HubError", "folder_files", "seed_pipeline", "validate_card_metadata"]
