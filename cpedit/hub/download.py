"""Downloading from the Hub into the standard Hub cache: one monitored downloader for models, datasets and recipes.

Every download in cpedit goes through here, and so behaves one way:

- it lands in the standard Hub cache (``HF_HOME``), where huggingface_hub and diffusers find it;
- what the cache holds is not asked for again (:func:`download_files` makes no request at all
  when every file is there), and an interrupted file resumes where it stopped;
- huggingface_hub's own tqdm bars never show: :func:`download_files` reports ``download``
  progress events instead (bytes done and total over all the files, and the file they belong to);
- ``cancel`` stops it at the next chunk or file with :class:`~cpedit.errors.Cancelled`: files
  already complete stay in the cache, partial ones are dropped;
- ``HF_HUB_OFFLINE=1`` reads the cache only; every failure is a :class:`~cpedit.hub.errors.HubError`
  whose message says what to do (:func:`~cpedit.hub.errors.hub_error`), the token never shown.

The steps, each usable alone: :func:`fetch_file` (one small file, such as a recipe or a
pipeline's ``model_index.json``), :func:`resolve_commit` (a branch or tag to its commit),
:func:`list_files` (a commit's files and sizes) and :func:`download_files` (those files, with
events). Models (:func:`cpedit.models.loading.resolve_source`), prompt sets
(:func:`cpedit.eval.prompt_sets.load_prompt_set`) and Hub recipes
(:func:`cpedit.recipes.hub.load_hub_recipe`) compose them.

Importing this module costs no huggingface_hub import: it happens on first use.
"""

from __future__ import annotations

import functools
import glob
import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cpedit.errors import CpeditError
from cpedit.hub.errors import HubError, hub_error, repo_label
from cpedit.hub.kinds import RepoType
from cpedit.hub.refs import check_revision
from cpedit.progress import ProgressCallback, ProgressEvent, check_cancel, emit

__all__ = ["download_files", "fetch_file", "list_files", "resolve_commit", "snapshot_folder"]


def snapshot_folder(repo_id: str, *, commit: str, repo_type: RepoType = "model") -> Path:
    """Where the Hub cache keeps the files of ``repo_id`` at ``commit`` (whether or not any is there yet)."""
    check_revision(commit, repo_id=repo_id)
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    return Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type=repo_type) / "snapshots" / commit


def fetch_file(
    repo_id: str,
    filename: str,
    *,
    repo_type: RepoType = "model",
    revision: str | None = None,
    instead: str | None = None,
    cancel: threading.Event | None = None,
) -> Path:
    """One file of a repo in the Hub cache (downloaded if missing or stale): its path in the snapshot folder.

    For small files (a recipe, a ``model_index.json``): no progress event, no bar. Its folder's
    name is the commit the file was read at.

    Args:
        repo_id: ``NAMESPACE/NAME``.
        filename: The file's path in the repo.
        repo_type: ``model`` or ``dataset``.
        revision: A branch, tag or commit (default: the main branch).
        instead: What the user can give instead (``a local recipe file``), for offline and network messages.
        cancel: Checked before the request.

    Raises:
        HubError: The file cannot be had (``reason`` ``entry`` when the repo has no such file, as
            :func:`~cpedit.hub.errors.describe_hub_error` otherwise).
        Cancelled: ``cancel`` was set.
    """
    check_revision(revision, repo_id=repo_id)
    from huggingface_hub import hf_hub_download

    check_cancel(cancel, "before the download")
    try:
        return Path(
            hf_hub_download(repo_id, filename, repo_type=repo_type, revision=revision, tqdm_class=_event_bar(None))
        )
    except Exception as exc:  # noqa: BLE001 - every failure gets a clear message (the token redacted)
        raise hub_error(
            exc, repo_id=repo_id, repo_type=repo_type, revision=revision, filename=filename, instead=instead
        ) from None


def resolve_commit(
    repo_id: str, *, repo_type: RepoType = "model", revision: str | None = None, instead: str | None = None
) -> str:
    """The commit that ``revision`` (default: the main branch) names now.

    One request to the Hub, whose answer is recorded in the cache; offline (``HF_HUB_OFFLINE=1``)
    or when the Hub cannot be reached, the commit recorded by the last download is used. A
    commit hash is returned as it is, without a request.

    Raises:
        HubError: The repo or revision does not exist, is gated or private, or the Hub cannot be
            reached and the cache does not know the revision.
        CpeditError: ``revision`` is not a plain branch, tag or commit name (``reason="invalid"``).
    """
    check_revision(revision, repo_id=repo_id)
    from huggingface_hub import HfApi, constants

    try:
        with _api_warnings_off():  # its "using the cached commit" notice: cpedit never prints
            resolved = HfApi().resolve_revision(
                repo_id, repo_type=repo_type, revision=revision, local_files_only=bool(constants.HF_HUB_OFFLINE)
            )
    except Exception as exc:  # noqa: BLE001
        raise hub_error(exc, repo_id=repo_id, repo_type=repo_type, revision=revision, instead=instead) from None
    return str(resolved.resolved)


def list_files(
    repo_id: str, *, commit: str, repo_type: RepoType = "model", instead: str | None = None
) -> dict[str, int]:
    """The files of ``repo_id`` at ``commit`` and their sizes in bytes (path -> size).

    The listing the cache holds for the commit (written by every download) is used without a
    request; else it is asked of the Hub (one request per page).

    Raises:
        HubError: The Hub cannot give it (and the cache does not have it).
    """
    check_revision(commit, repo_id=repo_id)
    from huggingface_hub import HfApi, RepoFile, get_cached_repo_tree

    try:
        return {f.path: int(f.size or 0) for f in get_cached_repo_tree(repo_id, repo_type=repo_type, revision=commit)}
    except Exception:  # noqa: BLE001 - not cached (or unreadable): ask the Hub
        pass
    try:
        entries = HfApi().list_repo_tree(repo_id, recursive=True, revision=commit, repo_type=repo_type)
        return {e.path: int(e.size or 0) for e in entries if isinstance(e, RepoFile)}
    except Exception as exc:  # noqa: BLE001
        raise hub_error(exc, repo_id=repo_id, repo_type=repo_type, revision=commit, instead=instead) from None


def download_files(
    repo_id: str,
    files: Mapping[str, int],
    *,
    commit: str,
    repo_type: RepoType = "model",
    instead: str | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> Path:
    """Have ``files`` of ``repo_id`` at ``commit`` in the Hub cache; their snapshot folder.

    Files already in the cache are not fetched again; when all are there no request is made.
    The others come through huggingface_hub's ``snapshot_download`` (resuming a file whose
    connection dropped with a range request), its progress turned into ``download`` events.

    Args:
        repo_id: ``NAMESPACE/NAME``.
        files: The files to have (path in the repo -> size in bytes, as :func:`list_files` gives).
        commit: The commit (see :func:`resolve_commit`): every file comes from the same one.
        repo_type: ``model`` or ``dataset``.
        instead: What the user can give instead, for offline and network messages.
        on_progress: Receives ``download`` events: ``completed`` and ``total`` count the bytes of
            all ``files`` (those in the cache count as done), ``unit="bytes"``, and ``file``,
            ``file_index`` and ``files`` name the file the bytes belong to. It may be called from
            huggingface_hub's download threads, one call at a time.
        cancel: Set it (from another thread) to stop at the next chunk or file with
            :class:`~cpedit.errors.Cancelled`; files already complete stay in the cache (a later
            download fetches only the others), partial ones are dropped.

    Raises:
        HubError: The files cannot be had (``reason="entry"``: one is not in the repo at ``commit``);
            offline, the message lists those missing from the cache.
        Cancelled: ``cancel`` was set.
    """
    check_revision(commit, repo_id=repo_id)
    from huggingface_hub import snapshot_download

    check_cancel(cancel, "before the download")
    folder = snapshot_folder(repo_id, commit=commit, repo_type=repo_type)
    plan = dict(files)
    monitor = _DownloadMonitor(
        repo_id, plan, {p for p in plan if (folder / p).is_file()}, on_progress=on_progress, cancel=cancel
    )
    monitor.start()
    if not monitor.pending:
        return folder
    try:
        folder = Path(
            snapshot_download(
                repo_id,
                repo_type=repo_type,
                revision=commit,
                allow_patterns=[glob.escape(p) for p in plan],
                tqdm_class=_event_bar(monitor),
            )
        )
    except CpeditError:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure gets a clear message (the token redacted)
        check_cancel(cancel, "during the download")
        raise hub_error(
            exc, repo_id=repo_id, repo_type=repo_type, revision=commit, files=list(plan), instead=instead
        ) from None
    check_cancel(cancel, "during the download")
    absent = [p for p in plan if not (folder / p).is_file()]
    if absent:  # not in the repo at that commit: snapshot_download skips what no file matches
        raise HubError(
            f"{repo_label(repo_id, repo_type=repo_type)} has no {', '.join(absent)} at revision {commit!r}",
            reason="entry",
            repo_id=repo_id,
        )
    monitor.finish()
    return folder


_quiet_lock = threading.Lock()
_quiet_depth = 0
_quiet_level = logging.NOTSET


@contextmanager
def _api_warnings_off() -> Iterator[None]:
    """huggingface_hub's API warnings (``huggingface_hub.hf_api``) off for the block, from any thread."""
    global _quiet_depth, _quiet_level
    logger = logging.getLogger("huggingface_hub.hf_api")
    with _quiet_lock:
        if _quiet_depth == 0:
            _quiet_level = logger.level
            logger.setLevel(logging.ERROR)
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                logger.setLevel(_quiet_level)


class _DownloadMonitor:
    """Turns huggingface_hub's progress-bar updates of one snapshot download into ``download`` events.

    snapshot_download reports the bytes written for every file on one aggregate bar, from
    the worker thread downloading the file; each file announces itself by growing that
    bar's total by its size, in that thread. The monitor maps each worker thread to the file
    it announced (the next pending file of that size), so every event names its file.
    Updates from threads it does not know (hf_xet's progress threads) are attributed to the
    file announced last and never raise: cancelling is seen in the download threads (at the
    next chunk or file) and between files.
    """

    def __init__(
        self,
        repo_id: str,
        plan: dict[str, int],
        cached: set[str],
        on_progress: ProgressCallback | None,
        cancel: threading.Event | None,
    ) -> None:
        self.repo_id = repo_id
        self.order = list(plan)
        self.sizes = plan
        self.total = sum(plan.values())
        self.cached_bytes = sum(plan[p] for p in cached)
        self.pending = [p for p in self.order if p not in cached]
        self.done: dict[str, int] = {}
        self.unattributed = 0
        self.by_thread: dict[int, str] = {}
        self.raising_threads = {threading.get_ident()}
        self.last_file: str | None = None
        self.reported = self.cached_bytes
        self.on_progress = on_progress
        self.cancel = cancel
        self.lock = threading.RLock()

    def check(self) -> None:
        """Raise Cancelled if the download was cancelled (only in threads where raising stops it)."""
        if threading.get_ident() in self.raising_threads:
            check_cancel(self.cancel, "during the download")

    def event(self, message: str, *, completed: int, file: str | None = None) -> None:
        emit(
            self.on_progress,
            ProgressEvent(
                stage="download",
                message=message,
                completed=completed,
                total=self.total,
                unit="bytes",
                file=file,
                file_index=self.order.index(file) + 1 if file is not None else None,
                files=len(self.order),
            ),
        )

    def start(self) -> None:
        waiting = len(self.pending)
        if waiting:
            size = sum(self.sizes[p] for p in self.pending)
            message = f"downloading {self.repo_id}: {waiting} of {len(self.order)} files ({size / 1e6:.1f} MB)"
            self.event(message, completed=self.cached_bytes)
        else:
            self.event(f"{self.repo_id}: all {len(self.order)} files are in the Hub cache", completed=self.total)

    def file_started(self, size: int) -> None:
        with self.lock:
            ident = threading.get_ident()
            self.raising_threads.add(ident)
            self.check()
            file = next((p for p in self.pending if self.sizes[p] == size), self.pending[0] if self.pending else None)
            if file is not None:
                self.pending.remove(file)
                self.by_thread[ident] = file
                self.done[file] = 0
                self.last_file = file

    def add_bytes(self, count: int) -> None:
        with self.lock:
            self.check()
            file = self.by_thread.get(threading.get_ident())
            if file is not None:
                self.done[file] += count
            else:  # a thread that announced no file (hf_xet's): counted, shown under the file announced last
                self.unattributed += count
                file = self.last_file
            completed = self.cached_bytes + self.unattributed
            completed += sum(min(max(n, 0), self.sizes[p]) for p, n in self.done.items())
            completed = max(self.reported, min(completed, self.total))  # never decreases (a retry rewinds a file)
            self.reported = completed
            if count > 0:
                self.event(
                    f"downloading {file}" if file else f"downloading {self.repo_id}", completed=completed, file=file
                )

    def file_finished(self) -> None:
        with self.lock:
            self.check()

    def finish(self) -> None:
        self.reported = self.total
        self.event(f"downloaded {self.repo_id} ({len(self.order)} files)", completed=self.total)


@functools.cache
def _event_bar_base() -> type:
    """huggingface_hub's tqdm class, made silent and reporting to a :class:`_DownloadMonitor` (built lazily)."""
    from huggingface_hub.utils import tqdm as hf_tqdm

    class EventBar(hf_tqdm):
        """A progress bar that never displays; its updates go to the class's ``_cpedit_monitor`` (None: ignored).

        snapshot_download makes three: the files count (``unit`` not bytes), the network
        transfer (ignored: bytes received, estimated total) and the bytes written, whose
        total grows by each file's size as the file starts.
        """

        _cpedit_monitor: _DownloadMonitor | None = None

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            name = str(kwargs.pop("name", None) or "")
            description = str(kwargs.get("desc") or "")
            if kwargs.get("unit", "it") != "B":
                self._role = "files"
            elif name.endswith(".transfer") or description.startswith("Downloading bytes"):
                self._role = "transfer"
            else:
                self._role = "bytes"
            self._total: float | None = None
            kwargs["disable"] = True  # never display, whatever the caller or the environment asks
            super().__init__(*args, **kwargs)

        @property
        def total(self) -> float | None:
            return self._total

        @total.setter
        def total(self, value: float | None) -> None:
            previous, self._total = getattr(self, "_total", None), value
            if (
                self._cpedit_monitor is not None
                and self._role == "bytes"
                and previous is not None
                and value is not None
            ):
                if value > previous:
                    self._cpedit_monitor.file_started(int(value - previous))

        def update(self, n: float | None = 1) -> bool | None:
            count = n or 0
            self.n += count
            if self._cpedit_monitor is not None:
                if self._role == "bytes":
                    self._cpedit_monitor.add_bytes(int(count))
                elif self._role == "files":
                    self._cpedit_monitor.file_finished()
            return None

    return EventBar


def _event_bar(monitor: _DownloadMonitor | None) -> type:
    """A silent tqdm class for huggingface_hub's ``tqdm_class`` reporting to ``monitor`` (None: silent only)."""
    base = _event_bar_base()
    return type("DownloadBar", (base,), {"_cpedit_monitor": monitor})
