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
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import yaml

LFS_EXTENSIONS = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".png", ".jpg", ".jpeg", ".msgpack", ".h5", ".onnx")
LFS_THRESHOLD = 10 * 1024 * 1024
LICENSES = {
    "apache-2.0",
    "mit",
    "openrail",
    "openrail++",
    "creativeml-openrail-m",
    "bigscience-openrail-m",
    "cc-by-4.0",
    "cc-by-nc-4.0",
    "cc-by-sa-4.0",
    "bsd-3-clause",
    "llama3",
    "gemma",
    "other",
    "unknown",
}
PIPELINE_TAGS = {"text-to-image", "image-to-image", "unconditional-image-generation", "text-generation", "other"}
BASE_MODEL_RELATIONS = {"adapter", "merge", "quantized", "finetune"}
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"
EXPANDABLE = {
    "author", "baseModels", "cardData", "config", "createdAt", "disabled", "downloads", "downloadsAllTime", "gated",
    "lastModified", "library_name", "likes", "pipeline_tag", "private", "safetensors", "sha", "siblings", "spaces",
    "tags", "trendingScore", "usedStorage",
}  # fmt: skip


def git_blob_oid(content: bytes) -> str:
    """The git blob id of ``content`` (what the Hub reports as a regular file's oid)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass
class StoredFile:
    """One file of a commit: inline content (regular) or an LFS object id."""

    size: int
    content: bytes | None = None
    lfs_sha256: str | None = None

    @property
    def oid(self) -> str:
        if self.lfs_sha256 is not None:
            return git_blob_oid(lfs_pointer(self.lfs_sha256, self.size))
        assert self.content is not None
        return git_blob_oid(self.content)


@dataclass
class Commit:
    sha: str
    files: dict[str, StoredFile]
    parent: str | None
    title: str
    date: str


@dataclass
class Repo:
    repo_id: str
    owner: str
    repo_type: str = "model"
    """``model`` or ``dataset``."""
    private: bool = False
    gated: str | bool = False
    """False, or "auto"/"manual" like the Hub."""
    granted: set[str] = field(default_factory=set)
    """Users given access to a gated repo."""
    downloads: int = 0
    likes: int = 0
    refs: dict[str, str] = field(default_factory=dict)
    """Branch (or ``refs/pr/N``) name -> commit sha."""
    commits: dict[str, Commit] = field(default_factory=dict)
    created: str = ""
    pull_requests: int = 0

    def head(self, revision: str) -> Commit | None:
        if revision in self.refs:
            return self.commits[self.refs[revision]]
        if revision in self.commits:
            return self.commits[revision]
        return None


class HubError(Exception):
    """An error response: status, X-Error-Code and message."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}
        self.extra = extra or {}


def repo_key(repo_id: str, repo_type: str = "model") -> str:
    """Where a repo is kept in :attr:`HubEmulator.repos`: models by id, other kinds under ``datasets/ID`` etc."""
    if repo_type not in ("model", "dataset"):
        raise ValueError(f"the emulator hosts model and dataset repos, not {repo_type!r}")
    return repo_id if repo_type == "model" else f"{repo_type}s/{repo_id}"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def parse_card_metadata(text: str) -> dict[str, Any] | None:
    """The YAML front matter of a README (None when there is none). Raises ValueError if it is not a mapping."""
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, re.DOTALL)
    if match is None:
        return None
    data = yaml.safe_load(match.group(1))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError("the metadata must be a YAML mapping")
    return data


def validate_card_metadata(text: str) -> tuple[list[str], list[str]]:
    """``(errors, warnings)`` for a model card, checked like the Hub's validate-yaml."""
    try:
        data = parse_card_metadata(text)
    except (yaml.YAMLError, ValueError) as exc:
        return [f"Invalid YAML metadata: {exc}"], []
    if not data:
        return [], ["Empty or missing yaml metadata in repo card"]
    errors: list[str] = []
    license_ = data.get("license")
    if license_ is not None and (not isinstance(license_, str) or license_ not in LICENSES):
        errors.append(f'"license" must be one of the Hub licenses, got {license_!r}')
    base = data.get("base_model")
    bases = base if isinstance(base, list) else [base] if base is not None else []
    if any(not isinstance(b, str) or not REPO_ID.match(b) for b in bases):
        errors.append(f'"base_model" must be a repo id or a list of repo ids, got {base!r}')
    relation = data.get("base_model_relation")
    if relation is not None:
        if relation not in BASE_MODEL_RELATIONS:
            errors.append(f'"base_model_relation" must be one of {sorted(BASE_MODEL_RELATIONS)}, got {relation!r}')
        if not bases:
            errors.append('"base_model_relation" needs "base_model"')
    tag = data.get("pipeline_tag")
    if tag is not None and tag not in PIPELINE_TAGS:
        errors.append(f'"pipeline_tag" must be a known task, got {tag!r}')
    tags = data.get("tags")
    if tags is not None and (not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags)):
        errors.append('"tags" must be a list of strings')
    library = data.get("library_name")
    if library is not None and not isinstance(library, str):
        errors.append('"library_name" must be a string')
    return errors, []


class HubEmulator:
    """The emulated Hub: state, plus a ThreadingHTTPServer on 127.0.0.1 serving it from a thread."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.repos: dict[str, Repo] = {}
        self.users: dict[str, set[str]] = {"alice": {"acme"}}
        """User -> organisations."""
        self.tokens: dict[str, tuple[str, str]] = {}
        """Token -> (user, role)."""
        self.lfs_objects: dict[str, bytes] = {}
        self.verified: set[str] = set()
        self.repo_objects: dict[str, set[str]] = {}
        """Repo id -> the LFS objects uploaded and verified for it (or seeded): the batch endpoint answers
        "already there" (no upload action) for those only, as the Hub's per-repo LFS storage does."""
        self.requests: list[tuple[str, str, bool]] = []
        """(method, path, had an Authorization header)."""
        self.cdn_auth_leaks: list[str] = []
        self.range_requests: list[tuple[str, str]] = []
        """(path, Range header) of every content GET that asked for a byte range (a resumed download)."""
        self.bytes_served = 0
        """Bytes of file content sent (regular files and LFS objects), to check that a resume sends only the rest."""
        self.cut_once: set[str] = set()
        """Repo file paths or LFS sha256s whose next full GET is cut off halfway (the connection drops)."""
        self.page_size = 1000
        self.tree_page_size = 1000
        self.uploads: list[tuple[str, int]] = []
        """(sha256, size) of every LFS object an upload (PUT) stored, in order."""
        self.faults: list[tuple[str, str, str]] = []
        """(kind, method, path) of every injected fault that fired: ``http 500``, ``reset``, ``slow 0.5``."""
        self._failures: list[dict[str, Any]] = []
        self._resets: list[dict[str, Any]] = []
        self._delays: list[tuple[re.Pattern[str], float]] = []
        self._counter = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self.port = 0
        self.start()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _Handler)
        server.daemon_threads = True
        server.emulator = self  # type: ignore[attr-defined]
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, name="hub-emulator", daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @contextmanager
    def down(self) -> Iterator[None]:
        """The network is down: connections to the Hub are refused until the block ends."""
        self.stop()
        try:
            yield
        finally:
            for _ in range(50):
                try:
                    self.start()
                    break
                except OSError:
                    time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def cdn_url(self) -> str:
        """The same server under another host name, so the client treats it as a CDN (no token sent)."""
        return f"http://localhost:{self.port}"

    # -- seeding ---------------------------------------------------------------------------

    def add_token(self, token: str, user: str = "alice", role: str = "write") -> None:
        self.tokens[token] = (user, role)

    # -- fault injection -------------------------------------------------------------------

    def fail_next(self, pattern: str, *, status: int = 500, times: int = 1, method: str | None = None) -> None:
        """The next ``times`` requests whose path matches ``pattern`` (``re.search``) get ``status`` instead.

        The request body is read first (so the client sees the status, not a broken pipe); nothing of
        the request is applied. ``method`` restricts it to one HTTP method.
        """
        with self.lock:
            self._failures.append({"pattern": re.compile(pattern), "status": status, "times": times, "method": method})

    def reset_connection_during_upload(self, *, times: int = 1, pattern: str = r"^/lfs-upload/") -> None:
        """The next ``times`` LFS uploads (PUT) are cut off: half the body is read, then the connection is reset."""
        with self.lock:
            self._resets.append({"pattern": re.compile(pattern), "times": times})

    def slow(self, seconds: float, pattern: str = "") -> None:
        """Every request whose path matches ``pattern`` (all, by default) waits ``seconds`` before it is served."""
        with self.lock:
            self._delays.append((re.compile(pattern), seconds))

    def clear_faults(self) -> None:
        """No more injected failures, resets or delays (the log of fired faults and uploads is kept)."""
        with self.lock:
            self._failures.clear()
            self._resets.clear()
            self._delays.clear()

    def _take_fault(self, method: str, path: str) -> tuple[float, int | None, bool]:
        """``(delay, status to fail with or None, reset the upload)`` for a request, consuming one-shot faults."""
        with self.lock:
            delay = sum(seconds for pattern, seconds in self._delays if pattern.search(path))
            if delay:
                self.faults.append((f"slow {delay:g}", method, path))
            for failure in self._failures:
                if failure["times"] > 0 and failure["pattern"].search(path):
                    if failure["method"] in (None, method):
                        failure["times"] -= 1
                        self.faults.append((f"http {failure['status']}", method, path))
                        return delay, failure["status"], False
            if method == "PUT":
                for reset in self._resets:
                    if reset["times"] > 0 and reset["pattern"].search(path):
                        reset["times"] -= 1
                        self.faults.append(("reset", method, path))
                        return delay, None, True
            return delay, None, False

    def new_test(self) -> None:
        """Forget tokens, logged requests and leaks; default page sizes (repos stay)."""
        with self.lock:
            self.tokens.clear()
            self.requests.clear()
            self.cdn_auth_leaks.clear()
            self.range_requests.clear()
            self.bytes_served = 0
            self.cut_once.clear()
            self.page_size = self.tree_page_size = 1000
            self.uploads.clear()
            self.faults.clear()
            self.clear_faults()

    def reset(self) -> None:
        with self.lock:
            self.repos.clear()
            self.lfs_objects.clear()
            self.verified.clear()
            self.repo_objects.clear()
            self.requests.clear()
            self.cdn_auth_leaks.clear()
            self.range_requests.clear()
            self.bytes_served = 0
            self.cut_once.clear()
            self.tokens.clear()
            self.page_size = self.tree_page_size = 1000
            self.uploads.clear()
            self.faults.clear()
            self.clear_faults()

    def seed_repo(
        self,
        repo_id: str,
        files: dict[str, bytes],
        *,
        card_metadata: dict[str, Any] | None = None,
        gated: str | bool = False,
        private: bool = False,
        downloads: int = 0,
        likes: int = 0,
        owner: str | None = None,
        granted: set[str] | None = None,
        repo_type: str = "model",
    ) -> str:
        """Create a repo with one commit holding ``files`` (a README with ``card_metadata`` if given).

        ``repo_type="dataset"`` seeds a dataset repo (served under ``/api/datasets/`` and ``/datasets/``).

        Returns:
            The commit sha.
        """
        files = dict(files)
        if card_metadata is not None:
            body = files.get("README.md", b"# model\n").decode()
            files["README.md"] = ("---\n" + yaml.safe_dump(card_metadata, sort_keys=False) + "---\n" + body).encode()
        with self.lock:
            repo = Repo(
                repo_id=repo_id,
                owner=owner or repo_id.split("/")[0],
                repo_type=repo_type,
                private=private,
                gated=gated,
                granted=set(granted or ()),
                downloads=downloads,
                likes=likes,
                created=_now(),
            )
            self.repos[repo_key(repo_id, repo_type)] = repo
            stored = {}
            for path, content in files.items():
                if self._is_lfs(path, len(content), content[:512]):
                    sha = hashlib.sha256(content).hexdigest()
                    self.lfs_objects[sha] = content
                    self.repo_objects.setdefault(repo_id, set()).add(sha)
                    stored[path] = StoredFile(size=len(content), lfs_sha256=sha)
                else:
                    stored[path] = StoredFile(size=len(content), content=content)
            return self._commit(repo, "main", stored, title="initial commit")

    def file_bytes(self, repo_id: str, path: str, revision: str = "main", *, repo_type: str = "model") -> bytes:
        """A file's content as stored (for assertions)."""
        commit = self.repos[repo_key(repo_id, repo_type)].head(revision)
        assert commit is not None
        stored = commit.files[path]
        return stored.content if stored.content is not None else self.lfs_objects[stored.lfs_sha256]  # type: ignore[index,return-value]

    def _commit(self, repo: Repo, branch: str, files: dict[str, StoredFile], *, title: str) -> str:
        parent = repo.refs.get(branch)
        sha = hashlib.sha1(f"{repo.repo_id}:{next(self._counter)}:{time.time_ns()}".encode()).hexdigest()
        repo.commits[sha] = Commit(sha=sha, files=files, parent=parent, title=title, date=_now())
        repo.refs[branch] = sha
        return sha

    @staticmethod
    def _is_lfs(path: str, size: int, sample: bytes) -> bool:
        return path.lower().endswith(LFS_EXTENSIONS) or size >= LFS_THRESHOLD or b"\0" in sample

    # -- request handling ------------------------------------------------------------------

    def user_for(self, headers: Any) -> str | None:
        """The authenticated user, None when anonymous. Raises 401 for an unknown token."""
        auth = headers.get("Authorization")
        if not auth:
            return None
        if not auth.startswith("Bearer "):
            raise HubError(401, INVALID_CREDENTIALS, headers={"X-Error-Message": INVALID_CREDENTIALS})
        token = auth[len("Bearer ") :]
        if token not in self.tokens:
            raise HubError(401, INVALID_CREDENTIALS, headers={"X-Error-Message": INVALID_CREDENTIALS})
        return self.tokens[token][0]

    def writer_for(self, headers: Any, namespace: str) -> str:
        """The user, who must have a write token and write access to ``namespace``."""
        user = self.user_for(headers)
        if user is None:
            raise HubError(401, "You must be authenticated to do this", headers={"X-Error-Message": "Unauthorized"})
        token = headers.get("Authorization")[len("Bearer ") :]
        if self.tokens[token][1] != "write":
            raise HubError(403, "This token has no write access", headers={"X-Error-Message": "Forbidden"})
        if namespace != user and namespace not in self.users.get(user, set()):
            raise HubError(403, f"You don't have the rights to write to {namespace}")
        return user

    def readable_repo(self, repo_id: str, user: str | None, repo_type: str = "model") -> Repo:
        repo = self.repos.get(repo_key(repo_id, repo_type))
        if repo is None or (repo.private and not self._can_write(user, repo)):
            status = 401 if user is None else 404
            raise HubError(status, "Repository not found", "RepoNotFound")
        return repo

    def _can_write(self, user: str | None, repo: Repo) -> bool:
        if user is None:
            return False
        namespace = repo.repo_id.split("/")[0]
        return namespace == user or namespace in self.users.get(user, set())

    def check_gate(self, repo: Repo, user: str | None) -> None:
        if not repo.gated or self._can_write(user, repo) or (user is not None and user in repo.granted):
            return
        message = (
            f"Access to {repo.repo_type} {repo.repo_id} is restricted. You must have access to it and be authenticated."
        )
        raise HubError(401 if user is None else 403, message, "GatedRepo")

    def commit_at(self, repo: Repo, revision: str) -> Commit:
        commit = repo.head(revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    def model_json(self, repo: Repo, commit: Commit, *, blobs: bool, expand: list[str] | None) -> dict[str, Any]:
        unknown = sorted(set(expand or ()) - EXPANDABLE)
        if unknown:
            raise HubError(400, f"Invalid expand parameter(s): {', '.join(unknown)}")
        readme = commit.files.get("README.md")
        card = None
        if readme is not None:
            try:
                card = parse_card_metadata(self._content(readme).decode())
            except (ValueError, yaml.YAMLError):
                card = None
        tags = list(card.get("tags") or []) if card else []
        library = card.get("library_name") if card else None
        pipeline_tag = card.get("pipeline_tag") if card else None
        if library is None and "model_index.json" in commit.files:
            library = "diffusers"
        for tag in (library, pipeline_tag):
            if tag and tag not in tags:
                tags.append(tag)
        if card and isinstance(card.get("license"), str):
            tags.append(f"license:{card['license']}")
        siblings = []
        for path in sorted(commit.files):
            stored = commit.files[path]
            entry: dict[str, Any] = {"rfilename": path}
            if blobs:
                entry["size"] = stored.size
                entry["blobId"] = stored.oid
                if stored.lfs_sha256 is not None:
                    pointer = lfs_pointer(stored.lfs_sha256, stored.size)
                    entry["lfs"] = {"size": stored.size, "sha256": stored.lfs_sha256, "pointerSize": len(pointer)}
            siblings.append(entry)
        full: dict[str, Any] = {
            "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": commit.sha,
            "lastModified": commit.date,
            "createdAt": repo.created,
            "private": repo.private,
            "gated": repo.gated,
            "disabled": False,
            "downloads": repo.downloads,
            "likes": repo.likes,
            "library_name": library,
            "pipeline_tag": pipeline_tag,
            "tags": tags,
            "cardData": card,
            "siblings": siblings,
            "trendingScore": 0,
        }
        if repo.repo_type == "dataset":  # what /api/datasets answers: no model fields
            for key in ("modelId", "library_name", "pipeline_tag"):
                del full[key]
        if expand:
            return {"_id": full["_id"], "id": full["id"], **{k: full[k] for k in expand if k in full}}
        return full

    def _content(self, stored: StoredFile) -> bytes:
        return stored.content if stored.content is not None else self.lfs_objects[stored.lfs_sha256]  # type: ignore[index,return-value]

    def list_models(self, query: dict[str, list[str]], user: str | None) -> list[dict[str, Any]]:
        search = (query.get("search") or [""])[0].lower()
        author = (query.get("author") or [None])[0]
        filters = query.get("filter", [])
        pipeline_tag = (query.get("pipeline_tag") or [None])[0]
        expand = query.get("expand[]") or query.get("expand")
        if expand and set(expand) - EXPANDABLE:
            raise HubError(400, f"Invalid expand parameter(s): {', '.join(sorted(set(expand) - EXPANDABLE))}")
        results = []
        for repo in self.repos.values():
            if repo.repo_type != "model" or (repo.private and not self._can_write(user, repo)):
                continue
            if search and search not in repo.repo_id.lower():
                continue
            if author and repo.repo_id.split("/")[0] != author:
                continue
            item = self.model_json(repo, repo.commits[repo.refs["main"]], blobs=False, expand=None)
            if any(f not in item["tags"] for f in filters):
                continue
            if pipeline_tag and item["pipeline_tag"] != pipeline_tag:
                continue
            results.append(item)
        sort = (query.get("sort") or [None])[0]
        if sort is not None:
            if sort not in ("downloads", "likes", "lastModified", "createdAt", "trendingScore", "id"):
                raise HubError(400, f"Invalid sort parameter {sort!r}")
            direction = int((query.get("direction") or ["-1"])[0])
            results.sort(key=lambda m: (m[sort], m["id"]), reverse=direction < 0)
        default_fields = (
            "_id",
            "id",
            "likes",
            "trendingScore",
            "private",
            "downloads",
            "tags",
            "pipeline_tag",
            "library_name",
            "createdAt",
            "modelId",
        )
        keys = ["_id", "id", *expand] if expand else list(default_fields)
        return [{k: m[k] for k in keys if k in m} for m in results]

    def tree(self, commit: Commit, path: str, *, recursive: bool) -> list[dict[str, Any]]:
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        if prefix and prefix.rstrip("/") in commit.files:
            raise HubError(400, f"{path} is a file, not a folder")
        if prefix and not any(p.startswith(prefix) for p in commit.files):
            raise HubError(404, f"{path} does not exist on this revision", "EntryNotFound")
        entries: dict[str, dict[str, Any]] = {}
        for file_path in sorted(commit.files):
            if not file_path.startswith(prefix):
                continue
            rest = file_path[len(prefix) :].split("/")
            for depth in range(1, len(rest)):
                folder = prefix + "/".join(rest[:depth])
                if depth == 1 or recursive:
                    entries.setdefault(
                        folder,
                        {
                            "type": "directory",
                            "oid": hashlib.sha1(folder.encode()).hexdigest(),
                            "size": 0,
                            "path": folder,
                        },
                    )
            if len(rest) == 1 or recursive:
                stored = commit.files[file_path]
                entry: dict[str, Any] = {"type": "file", "oid": stored.oid, "size": stored.size, "path": file_path}
                if stored.lfs_sha256 is not None:
                    pointer = lfs_pointer(stored.lfs_sha256, stored.size)
                    entry["lfs"] = {"oid": stored.lfs_sha256, "size": stored.size, "pointerSize": len(pointer)}
                entries[file_path] = entry
        return [entries[k] for k in sorted(entries)]

    def apply_commit(self, repo: Repo, revision: str, body: bytes, *, create_pr: bool) -> dict[str, Any]:
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "The first line must be the commit header")
        header = lines[0]["value"]
        if not isinstance(header.get("summary"), str) or not header["summary"].strip():
            raise HubError(400, "A commit needs a summary")
        head = self.commit_at(repo, revision)
        if revision not in repo.refs:
            raise HubError(400, f"Can only commit to a branch, not to {revision}")
        parent = header.get("parentCommit")
        if parent is not None and parent != head.sha:
            raise HubError(
                412, f"A commit has happened since {parent}: the head of {revision} is {head.sha}. Please retry."
            )
        files = dict(head.files)
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value", {})
            path = value.get("path", "")
            if not path or path.startswith("/") or ".." in path.split("/") or path.startswith(".git/"):
                raise HubError(400, f"Invalid path {path!r}")
            if key == "file":
                if value.get("encoding") != "base64":
                    raise HubError(400, "file content must be base64-encoded")
                content = base64.b64decode(value["content"])
                if self._is_lfs(path, len(content), content[:512]):
                    raise HubError(400, f"{path} must be uploaded with LFS (binary or large file)")
                files[path] = StoredFile(size=len(content), content=content)
            elif key == "lfsFile":
                oid, size = value.get("oid"), value.get("size")
                if value.get("algo") != "sha256" or oid not in self.lfs_objects:
                    raise HubError(422, f"LFS object {oid} of {path} was not uploaded")
                if oid not in self.verified:
                    raise HubError(422, f"LFS object {oid} of {path} was not verified")
                if size is not None and size != len(self.lfs_objects[oid]):
                    raise HubError(422, f"LFS object {oid} of {path}: size {size} != uploaded size")
                files[path] = StoredFile(size=len(self.lfs_objects[oid]), lfs_sha256=oid)
            elif key == "deletedFile":
                if files.pop(path, None) is None:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
            elif key == "deletedFolder":
                for p in [p for p in files if p.startswith(path.rstrip("/") + "/")]:
                    del files[p]
            else:
                raise HubError(400, f"Unknown commit operation {key!r}")
        if "README.md" in files and files["README.md"].content is not None:
            errors, _ = validate_card_metadata(files["README.md"].content.decode())
            if errors:
                raise HubError(400, "Invalid metadata in README.md: " + "; ".join(errors))
        branch = revision
        pr_url = None
        if create_pr:
            repo.pull_requests += 1
            branch = f"refs/pr/{repo.pull_requests}"
            repo.refs[branch] = head.sha
            pr_url = f"{self.url}/{repo.repo_id}/discussions/{repo.pull_requests}"
        sha = self._commit(repo, branch, files, title=header["summary"])
        return {
            "success": True,
            "commitOid": sha,
            "commitUrl": f"{self.url}/{repo.repo_id}/commit/{sha}",
            "pullRequestUrl": pr_url,
            "hookOutput": "",
        }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "HubEmulator/1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass  # quiet

    @property
    def hub(self) -> HubEmulator:
        return self.server.emulator  # type: ignore[attr-defined]

    # -- plumbing --------------------------------------------------------------------------

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, *, head: bool = False
    ) -> None:
        self.send_response(status)
        headers = dict(headers or {})
        headers.setdefault("Content-Type", "application/json")
        headers.setdefault("Content-Length", str(len(body)))
        headers["Connection"] = "close"
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if body and not head:
            self.wfile.write(body)
        self.close_connection = True

    def _send_content(self, content: bytes, headers: dict[str, str], *, head: bool, key: str) -> None:
        """A file's content: all of it (200), or the part a ``Range: bytes=START-[END]`` header asks for (206).

        As the Hub and its CDN do: a range starting past the end is refused with 416 (``Content-Range:
        bytes */SIZE``); a header of another form is ignored (the whole file is sent). ``key`` (the
        path, or the LFS sha256) in :attr:`HubEmulator.cut_once`: this full GET stops halfway.
        """
        wanted = self.headers.get("Range")
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", wanted.strip()) if wanted and not head else None
        if match is None:
            if not head and key in self.hub.cut_once:
                self.hub.cut_once.discard(key)
                half = len(content) // 2
                self.hub.bytes_served += half
                self.send_response(200)
                for name, value in {**headers, "Content-Length": str(len(content)), "Connection": "close"}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(content[:half])  # then the connection closes: the body is incomplete
                self.close_connection = True
                return
            with self.hub.lock:
                self.hub.bytes_served += 0 if head else len(content)
            self._send(200, content, headers, head=head)
            return
        start = int(match.group(1))
        end = min(int(match.group(2)) if match.group(2) else len(content) - 1, len(content) - 1)
        with self.hub.lock:
            self.hub.range_requests.append((urlsplit(self.path).path, wanted))
        if start >= len(content) or end < start:
            raise HubError(416, "Requested range not satisfiable", headers={"Content-Range": f"bytes */{len(content)}"})
        part = content[start : end + 1]
        with self.hub.lock:
            self.hub.bytes_served += len(part)
        self._send(206, part, {**headers, "Content-Range": f"bytes {start}-{end}/{len(content)}"})

    def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(data).encode(), headers)

    def _error(self, error: HubError, *, head: bool = False) -> None:
        headers = {"X-Error-Message": error.message, **error.headers}
        if error.code:
            headers["X-Error-Code"] = error.code
        self._send(error.status, json.dumps({"error": error.message, **error.extra}).encode(), headers, head=head)

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        query = parse_qs(split.query, keep_blank_values=True)
        segments = [unquote(s) for s in split.path.split("/")[1:]]
        host = (self.headers.get("Host") or "").split(":")[0]
        with self.hub.lock:
            self.hub.requests.append((method, split.path, bool(self.headers.get("Authorization"))))
        delay, fail_status, reset = self.hub._take_fault(method, split.path)
        if delay:
            time.sleep(delay)  # outside the lock: other requests go on meanwhile
        if reset:
            self._reset_connection()
            return
        body = self._body() if method in ("POST", "PUT") else b""
        if fail_status is not None:
            self._error(HubError(fail_status, f"injected failure ({fail_status})"), head=method == "HEAD")
            return
        try:
            with self.hub.lock:
                self._route(method, segments, query, body, host=host, raw_path=split.path)
        except HubError as error:
            self._error(error, head=method == "HEAD")

    def _reset_connection(self) -> None:
        """Read half the announced body, then reset the connection (TCP RST): an upload cut off midway."""
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(max(1, length // 2))
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True
        self._aborted = True

    def finish(self) -> None:
        if getattr(self, "_aborted", False):
            return  # the socket is gone: nothing to flush
        super().finish()

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("HEAD")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    # -- routes ----------------------------------------------------------------------------

    def _route(
        self, method: str, seg: list[str], query: dict[str, list[str]], body: bytes, *, host: str, raw_path: str
    ) -> None:
        hub = self.hub
        if seg[:1] == ["cdn"] and len(seg) == 2 and method in ("GET", "HEAD"):
            if host != "localhost":
                raise HubError(404, "not found")
            if self.headers.get("Authorization"):
                hub.cdn_auth_leaks.append(raw_path)
            content = hub.lfs_objects.get(seg[1])
            if content is None:
                raise HubError(404, "no such object")
            self._send_content(content, {"Content-Type": "application/octet-stream"}, head=method == "HEAD", key=seg[1])
            return
        if host == "localhost":
            raise HubError(404, "the CDN serves LFS objects only")
        if seg == ["api", "whoami-v2"] and method == "GET":
            user = hub.user_for(self.headers)
            if user is None:
                raise HubError(401, "Invalid user token.", headers={"X-Error-Message": INVALID_CREDENTIALS})
            token = self.headers["Authorization"][len("Bearer ") :]
            self._json(
                200,
                {
                    "type": "user",
                    "name": user,
                    "fullname": user.title(),
                    "orgs": [{"name": org, "type": "org"} for org in sorted(hub.users.get(user, set()))],
                    "auth": {
                        "type": "access_token",
                        "accessToken": {"displayName": "test", "role": hub.tokens[token][1]},
                    },
                },
            )
            return
        if seg == ["api", "repos", "create"] and method == "POST":
            self._create_repo(json.loads(body or b"{}"))
            return
        if seg == ["api", "validate-yaml"] and method == "POST":
            payload = json.loads(body or b"{}")
            errors, warnings = validate_card_metadata(payload.get("content", ""))
            status = 400 if errors else 200
            self._json(
                status,
                {"errors": [{"message": e} for e in errors], "warnings": [{"message": w} for w in warnings]},
            )
            return
        if seg == ["api", "models"] and method == "GET":
            self._list_models(query)
            return
        if len(seg) >= 4 and seg[0] == "api" and seg[1] == "models":
            self._model_api(method, seg[2] + "/" + seg[3], seg[4:], query, body)
            return
        if len(seg) >= 4 and seg[0] == "api" and seg[1] == "datasets":
            self._model_api(method, seg[2] + "/" + seg[3], seg[4:], query, body, repo_type="dataset")
            return
        if len(seg) >= 6 and seg[0] == "datasets" and seg[3] == "resolve" and method in ("GET", "HEAD"):
            self._resolve(method, seg[1] + "/" + seg[2], seg[4], "/".join(seg[5:]), repo_type="dataset")
            return
        if len(seg) == 6 and seg[1].endswith(".git") and seg[2:] == ["info", "lfs", "objects", "batch"]:
            self._lfs_batch(seg[0] + "/" + seg[1][: -len(".git")], json.loads(body or b"{}"))
            return
        if len(seg) == 4 and seg[0] in ("lfs-upload", "lfs-verify"):
            self._lfs_transfer(seg[0], seg[1] + "/" + seg[2], seg[3], body)
            return
        if len(seg) >= 5 and seg[2] == "resolve" and method in ("GET", "HEAD"):
            self._resolve(method, seg[0] + "/" + seg[1], seg[3], "/".join(seg[4:]))
            return
        raise HubError(404, f"no route for {method} {raw_path}")

    def _create_repo(self, payload: dict[str, Any]) -> None:
        hub = self.hub
        name, organization = payload.get("name"), payload.get("organization")
        if payload.get("type") not in (None, "model"):
            raise HubError(400, "the emulator hosts model repos only")
        user = hub.user_for(self.headers)
        namespace = organization or user
        if namespace is None:
            raise HubError(401, "You must be authenticated to create a repo")
        hub.writer_for(self.headers, namespace)
        repo_id = f"{namespace}/{name}"
        if not isinstance(name, str) or not REPO_ID.match(repo_id):
            raise HubError(400, f"Invalid repo name {name!r}")
        if repo_id in hub.repos:
            raise HubError(
                409,
                "You already created this model repo",
                headers={"X-Error-Message": "Conflict"},
                extra={"url": f"{hub.url}/{repo_id}"},
            )
        repo = Repo(repo_id=repo_id, owner=namespace, private=payload.get("visibility") == "private", created=_now())
        hub.repos[repo_id] = repo
        hub._commit(repo, "main", {".gitattributes": StoredFile(size=0, content=b"")}, title="initial commit")
        self._json(200, {"url": f"{hub.url}/{repo_id}", "name": repo_id, "id": repo_id})

    def _list_models(self, query: dict[str, list[str]]) -> None:
        hub = self.hub
        results = hub.list_models(query, hub.user_for(self.headers))
        page_size = int((query.get("limit") or [str(hub.page_size)])[0])
        page_size = min(page_size, hub.page_size)
        cursor = int((query.get("cursor") or ["0"])[0])
        page = results[cursor : cursor + page_size]
        headers = {}
        if cursor + page_size < len(results):
            rest = {k: v for k, v in query.items() if k != "cursor"}
            pairs = [(k, v) for k, values in rest.items() for v in values] + [("cursor", str(cursor + page_size))]
            link = f"{hub.url}/api/models?" + "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs)
            headers["Link"] = f'<{link}>; rel="next"'
        self._json(200, page, headers)

    def _model_api(
        self,
        method: str,
        repo_id: str,
        rest: list[str],
        query: dict[str, list[str]],
        body: bytes,
        *,
        repo_type: str = "model",
    ) -> None:
        hub = self.hub
        user = hub.user_for(self.headers)
        repo = hub.readable_repo(repo_id, user, repo_type)
        if method == "GET" and (not rest or rest[0] == "revision"):
            revision = rest[1] if rest else "main"
            if rest and len(rest) != 2:
                raise HubError(404, "no route")
            commit = hub.commit_at(repo, revision)
            expand = query.get("expand[]") or query.get("expand")
            blobs = (query.get("blobs") or ["false"])[0].lower() in ("1", "true")
            self._json(200, hub.model_json(repo, commit, blobs=blobs, expand=expand))
            return
        if method == "GET" and rest and rest[0] == "tree" and len(rest) >= 2:
            hub.check_gate(repo, user)
            commit = hub.commit_at(repo, rest[1])
            recursive = (query.get("recursive") or ["false"])[0].lower() in ("1", "true")
            entries = hub.tree(commit, "/".join(rest[2:]), recursive=recursive)
            cursor = int((query.get("cursor") or ["0"])[0])
            page = entries[cursor : cursor + hub.tree_page_size]
            headers = {}
            if cursor + hub.tree_page_size < len(entries):
                path = "/".join(quote(s, safe="") for s in ["api", f"{repo_type}s", *repo_id.split("/"), *rest])
                after = cursor + hub.tree_page_size
                link = f"{hub.url}/{path}?recursive={str(recursive).lower()}&expand=false&cursor={after}"
                headers["Link"] = f'<{link}>; rel="next"'
            self._json(200, page, headers)
            return
        if repo_type != "model":
            raise HubError(404, f"the emulator serves reads only for {repo_type} repos")
        if method == "POST" and rest and rest[0] == "preupload" and len(rest) == 2:
            hub.writer_for(self.headers, repo_id.split("/")[0])
            commit = hub.commit_at(repo, rest[1])
            files = []
            for item in json.loads(body or b"{}").get("files", []):
                sample = base64.b64decode(item["sample"])
                mode = "lfs" if hub._is_lfs(item["path"], item["size"], sample) else "regular"
                existing = commit.files.get(item["path"])
                oid = None
                if existing is not None:
                    oid = existing.lfs_sha256 if existing.lfs_sha256 is not None else existing.oid
                files.append({"path": item["path"], "uploadMode": mode, "shouldIgnore": False, "oid": oid})
            self._json(200, {"files": files, "commitOid": commit.sha})
            return
        if method == "POST" and rest and rest[0] == "branch" and len(rest) >= 2:
            hub.writer_for(self.headers, repo_id.split("/")[0])
            branch = "/".join(rest[1:])
            if branch in repo.refs:
                raise HubError(409, f"Branch {branch} already exists")
            start = json.loads(body or b"{}").get("startingPoint") or "main"
            repo.refs[branch] = hub.commit_at(repo, start).sha
            self._json(200, {})
            return
        if method == "POST" and rest and rest[0] == "commit" and len(rest) == 2:
            hub.writer_for(self.headers, repo_id.split("/")[0])
            if self.headers.get("Content-Type") != "application/x-ndjson":
                raise HubError(400, "a commit is sent as application/x-ndjson")
            create_pr = (query.get("create_pr") or ["0"])[0] in ("1", "true")
            self._json(200, hub.apply_commit(repo, rest[1], body, create_pr=create_pr))
            return
        raise HubError(404, f"no route for {method} /api/models/{repo_id}/{'/'.join(rest)}")

    def _lfs_batch(self, repo_id: str, payload: dict[str, Any]) -> None:
        hub = self.hub
        repo = hub.readable_repo(repo_id, hub.user_for(self.headers))
        hub.writer_for(self.headers, repo.repo_id.split("/")[0])
        if payload.get("operation") != "upload" or payload.get("hash_algo", "sha256") != "sha256":
            raise HubError(400, "only sha256 uploads are supported")
        objects = []
        for obj in payload.get("objects", []):
            oid, size = obj.get("oid"), obj.get("size")
            if not isinstance(oid, str) or not re.fullmatch(r"[0-9a-f]{64}", oid) or not isinstance(size, int):
                objects.append({"oid": str(oid), "size": int(size or 0), "error": {"code": 422, "message": "bad oid"}})
                continue
            there = oid in hub.lfs_objects and len(hub.lfs_objects[oid]) == size
            if there and oid in hub.verified and oid in hub.repo_objects.get(repo.repo_id, set()):
                objects.append({"oid": oid, "size": size})  # already there: no action
                continue
            objects.append(
                {
                    "oid": oid,
                    "size": size,
                    "authenticated": True,
                    "actions": {
                        "upload": {"href": f"{hub.url}/lfs-upload/{repo_id}/{oid}?size={size}"},
                        "verify": {"href": f"{hub.url}/lfs-verify/{repo_id}/{oid}"},
                    },
                }
            )
        self._json(200, {"transfer": "basic", "objects": objects}, {"Content-Type": "application/vnd.git-lfs+json"})

    def _lfs_transfer(self, kind: str, repo_id: str, oid: str, body: bytes) -> None:
        hub = self.hub
        query = parse_qs(urlsplit(self.path).query)
        if kind == "lfs-upload":
            if self.command != "PUT":
                raise HubError(405, "PUT the object")
            expected = int((query.get("size") or ["-1"])[0])
            if len(body) != expected:
                raise HubError(400, f"size mismatch: got {len(body)} bytes, announced {expected}")
            if hashlib.sha256(body).hexdigest() != oid:
                raise HubError(400, "sha256 mismatch: the uploaded content does not hash to the oid")
            hub.lfs_objects[oid] = body
            hub.uploads.append((oid, len(body)))
            self._send(200)
            return
        hub.writer_for(self.headers, repo_id.split("/")[0])
        payload = json.loads(body or b"{}")
        if payload.get("oid") != oid or oid not in hub.lfs_objects:
            raise HubError(404, f"object {oid} was not uploaded")
        if payload.get("size") != len(hub.lfs_objects[oid]):
            raise HubError(422, f"object {oid}: size {payload.get('size')} != {len(hub.lfs_objects[oid])}")
        hub.verified.add(oid)
        hub.repo_objects.setdefault(repo_id, set()).add(oid)
        self._json(200, {"success": True})

    def _resolve(self, method: str, repo_id: str, revision: str, path: str, *, repo_type: str = "model") -> None:
        hub = self.hub
        head = method == "HEAD"
        user = hub.user_for(self.headers)
        repo = hub.readable_repo(repo_id, user, repo_type)
        if path not in ("README.md", ".gitattributes"):
            hub.check_gate(repo, user)
        commit = hub.commit_at(repo, revision)
        stored = commit.files.get(path)
        if stored is None:
            raise HubError(404, "Entry not found", "EntryNotFound", headers={"X-Repo-Commit": commit.sha})
        headers = {"X-Repo-Commit": commit.sha, "ETag": f'"{stored.oid}"', "Accept-Ranges": "bytes"}
        if stored.lfs_sha256 is not None:
            headers.update(
                {
                    "X-Linked-Etag": f'"{stored.lfs_sha256}"',
                    "X-Linked-Size": str(stored.size),
                    "Location": f"{hub.cdn_url}/cdn/{stored.lfs_sha256}",
                }
            )
            self._send(302, b"", headers, head=head)
            return
        headers["Content-Type"] = "application/octet-stream"
        self._send_content(stored.content or b"", headers, head=head, key=path)


def folder_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def seed_pipeline(hub: HubEmulator, repo_id: str, folder: Path, **kwargs: object) -> str:
    files = {path: content for path, content in folder_files(folder).items() if not path.startswith(".")}
    return hub.seed_repo(repo_id, files, **kwargs)  # type: ignore[arg-type]
