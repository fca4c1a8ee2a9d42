"""The emulated Hub's HTTP side: one request handler routing the endpoints ``huggingface_hub`` calls."""

from __future__ import annotations

from typing import TYPE_CHECKING

from support.hub_emulator.cards import validate_card_metadata
from support.hub_emulator.storage import INVALID_CREDENTIALS, REPO_ID, HubError, Repo, StoredFile, now

if TYPE_CHECKING:
    from support.hub_emulator.emulator import HubEmulator


import base64
import hashlib
import json
import re
import socket
import struct
import time
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit


class Handler(BaseHTTPRequestHandler):
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
        repo = Repo(repo_id=repo_id, owner=namespace, private=payload.get("visibility") == "private", created=now())
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
