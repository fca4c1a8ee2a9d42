"""What the emulated Hub stores: files (regular or LFS), commits, repos, and its error type."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

LFS_EXTENSIONS = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".png", ".jpg", ".jpeg", ".msgpack", ".h5", ".onnx")
LFS_THRESHOLD = 10 * 1024 * 1024
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


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
