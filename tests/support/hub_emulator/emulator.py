"""The emulated Hub's state and lifecycle: repos, users and tokens, commits, listings; it serves itself over HTTP."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from support.hub_emulator.cards import parse_card_metadata, validate_card_metadata
from support.hub_emulator.faults import FaultInjection
from support.hub_emulator.server import Handler
from support.hub_emulator.storage import (
    EXPANDABLE,
    INVALID_CREDENTIALS,
    LFS_EXTENSIONS,
    LFS_THRESHOLD,
    Commit,
    HubError,
    Repo,
    StoredFile,
    lfs_pointer,
    now,
    repo_key,
)


class HubEmulator(FaultInjection):
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
        self._init_faults()
        self._counter = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self.port = 0
        self.start()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
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
                created=now(),
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
        repo.commits[sha] = Commit(sha=sha, files=files, parent=parent, title=title, date=now())
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


def folder_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def seed_pipeline(hub: HubEmulator, repo_id: str, folder: Path, **kwargs: object) -> str:
    files = {path: content for path, content in folder_files(folder).items() if not path.startswith(".")}
    return hub.seed_repo(repo_id, files, **kwargs)  # type: ignore[arg-type]
