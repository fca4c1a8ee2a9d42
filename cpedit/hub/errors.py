"""Turning huggingface_hub failures into clear, actionable cpedit errors.

Every Hub call in cpedit goes through :func:`hub_errors`, :func:`hub_error` or
:func:`describe_hub_error`, so a missing repo, a gated model or dataset, a rejected token, an
unknown revision, a missing file, offline mode and a network outage each get one message that
says what to do. Messages never contain the
token: they are built from the repo id and the kind of failure, and anything echoed from an
exception passes through :func:`redact` first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from cpedit.errors import CpeditError

if TYPE_CHECKING:
    from cpedit.hub.kinds import RepoType

LOGIN_HINT = "log in with `hf auth login` or set HF_TOKEN"


class HubError(CpeditError):
    """A Hub operation failed; the message says why and what to do.

    Attributes:
        reason: ``not_found``, ``gated``, ``auth``, ``forbidden``, ``revision``, ``entry``,
            ``offline``, ``network``, ``not_pipeline``, ``no_safetensors``, ``invalid`` or ``http``.
    """

    def __init__(self, message: str, *, reason: str = "http", repo_id: str | None = None) -> None:
        super().__init__(message, reason=reason, repo_id=repo_id, argument="revision" if reason == "revision" else None)


def endpoint() -> str:
    """The Hub endpoint in use (``HF_ENDPOINT``, default https://huggingface.co), without a trailing slash.

    Credentials written into it (``https://user:secret@host``) are replaced by ``***``: the
    result goes into messages.
    """
    from huggingface_hub import constants

    return redact_url_credentials(constants.ENDPOINT.rstrip("/"))


_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@")


def redact_url_credentials(text: str) -> str:
    """``text`` with the ``user:password@`` part of every URL in it replaced by ``***@``."""
    return _URL_CREDENTIALS.sub(lambda m: m.group(1) + "***@", text)


def repo_url(repo_id: str, *, repo_type: RepoType = "model") -> str:
    """The web address of a repo (a model's, or a dataset's under ``/datasets/``) on the Hub in use."""
    return f"{endpoint()}/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}"


def repo_label(repo_id: str, *, repo_type: RepoType = "model") -> str:
    """How messages name a repo: ``NAMESPACE/NAME`` for a model, ``the dataset NAMESPACE/NAME`` for a dataset."""
    return f"the dataset {repo_id}" if repo_type == "dataset" else repo_id


def has_token() -> bool:
    """Whether huggingface_hub finds a token (HF_TOKEN or `hf auth login`); the token itself is not returned."""
    from huggingface_hub import get_token

    try:
        return bool(get_token())
    except Exception:  # noqa: BLE001 - a broken token setup counts as no token
        return False


_TOKEN_PATTERNS = (
    re.compile(r"hf_[A-Za-z0-9]{8,}"),
    re.compile(r"(?i)(bearer\s+)\S+"),
    re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)[^'\",\s}]+"),
)


_URL_QUERY = re.compile(r"""(?i)\b([a-z][a-z0-9+.-]*://[^\s'"?#]+)\?[^\s'"#]+""")


def redact(text: str) -> str:
    """``text`` with the current token, anything that looks like a token or an auth header, and URL queries removed."""
    from huggingface_hub import get_token

    try:
        token = get_token()
    except Exception:  # noqa: BLE001
        token = None
    if token:
        text = text.replace(token, "***")
    for pattern in _TOKEN_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "***", text)
    text = _URL_QUERY.sub(r"\1?***", text)  # upload URLs are pre-signed: their query is a credential
    return redact_url_credentials(text)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def is_network_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or its cause) is a failure to reach the Hub (refused, DNS, timeout)."""
    try:
        import httpx2

        transport: tuple[type[BaseException], ...] = (httpx2.TransportError,)
    except ImportError:  # pragma: no cover - huggingface_hub 2.x depends on httpx2
        transport = ()
    for item in _chain(exc):
        if transport and isinstance(item, transport):
            return True
        if isinstance(item, (ConnectionRefusedError, TimeoutError)) or type(item).__name__ in (
            "ConnectError",
            "ConnectTimeout",
            "ReadTimeout",
            "ConnectionError",
        ):
            return True
    return False


def cache_status(
    repo_id: str,
    revision: str | None = None,
    *,
    repo_type: RepoType = "model",
    files: Collection[str] | None = None,
) -> str:
    """What of ``repo_id`` is missing from the local Hub cache, in words (for offline messages).

    Args:
        repo_id: The repo.
        revision: The branch, tag or commit asked for (default: the main branch).
        repo_type: ``model`` or ``dataset``.
        files: The files wanted. By default, for a model: those a pipeline pull downloads (known
            when its model_index.json and file listing are cached).
    """
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    storage = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type=repo_type)
    if not storage.is_dir():
        return "nothing of it is in the cache"
    ref = revision or "main"
    if re.fullmatch(r"[0-9a-f]{40}", ref):
        commit: str | None = ref
    else:
        ref_file = storage / "refs" / ref
        commit = ref_file.read_text(encoding="utf-8").strip() if ref_file.is_file() else None
    if commit is None:
        return f"revision {ref!r} was never downloaded"
    snapshot = storage / "snapshots" / commit
    if files is None:
        if repo_type != "model":
            return "the files asked for are not all in the cache"
        expected = _pipeline_files_in_cache(repo_id, snapshot, commit)
        if isinstance(expected, str):
            return expected
        files = expected
    missing = sorted(p for p in files if not (snapshot / p).is_file())
    if not missing:
        return "its files are cached, but something else is missing"
    shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    return f"{len(missing)} file(s) are missing: {shown}"


def _pipeline_files_in_cache(repo_id: str, snapshot: Path, commit: str) -> list[str] | str:
    """The files a pull of the pipeline at ``commit`` downloads, from the cache; or why they cannot be known."""
    from huggingface_hub import get_cached_repo_tree

    if not (snapshot / "model_index.json").is_file():
        return "model_index.json is missing"
    if (snapshot / "model_index.json").stat().st_size > 1 << 20:  # a few hundred bytes when genuine
        return "its model_index.json is too large to be a pipeline's"
    try:
        index = json.loads((snapshot / "model_index.json").read_text(encoding="utf-8"))
        tree = get_cached_repo_tree(repo_id, revision=commit)
    except Exception:  # noqa: BLE001 - best effort: the listing may never have been cached
        return "its file listing is not cached, so it cannot be checked"
    from cpedit.hub.pipeline_files import pipeline_files

    if not isinstance(index, dict):
        return "its model_index.json is not a JSON object"
    return list(pipeline_files(index, {f.path: int(f.size or 0) for f in tree}))  # what a pull downloads


def describe_hub_error(
    exc: BaseException,
    *,
    repo_id: str,
    repo_type: RepoType = "model",
    revision: str | None = None,
    filename: str | None = None,
    files: Collection[str] | None = None,
    action: str = "download",
    instead: str | None = None,
) -> tuple[str, str] | None:
    """A clear message for a failed Hub call, or None when ``exc`` is not a Hub failure.

    Args:
        exc: The exception raised (its cause chain is searched too).
        repo_id: The repo the call was about.
        repo_type: ``model`` or ``dataset`` (messages name "the dataset", and link its page).
        revision: The revision asked for, if any.
        filename: The file asked for, if any.
        files: The files a download wanted, if known (offline messages list those missing).
        action: ``download`` (reading from the Hub) or ``upload`` (publishing): the offline
            and network messages say what was being done and what to do about it.
        instead: What the user can give instead of the Hub repo (``a local prompt file``), for
            the offline and network messages.

    Returns:
        ``(reason, message)``; reasons as in :class:`HubError`.
    """
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
        RevisionResolutionError,
    )

    chain = list(_chain(exc))

    def first(kind: type[BaseException] | tuple[type[BaseException], ...]) -> BaseException | None:
        return next((item for item in chain if isinstance(item, kind)), None)

    dataset = repo_type == "dataset"
    subject = repo_label(repo_id, repo_type=repo_type)
    url = repo_url(repo_id, repo_type=repo_type)
    page = f"at {url}" if dataset else f"on {url}"
    otherwise = f", or give {instead}" if instead else ""
    http = first(HfHubHTTPError)
    if first(GatedRepoError) is not None or (
        dataset and http is not None and _status(http) == 403 and first(RepositoryNotFoundError) is None
    ):
        if has_token():
            return "gated", (
                f"{subject} is gated and your account has no access yet: request access {page} "
                "(accept its conditions), then retry; if you did, check that HF_TOKEN or `hf auth login` "
                "holds a token of that account"
            )
        return "gated", f"{subject} is gated: request access {page}, then {LOGIN_HINT}"
    if first(RevisionNotFoundError) is not None:
        return "revision", f"{subject} has no revision {revision or 'main'!r} on {endpoint()}; check the revision"
    if first(RepositoryNotFoundError) is not None:
        return "not_found", (
            f"{subject} was not found on {endpoint()} (check the id at {url}; if it is private, {LOGIN_HINT} "
            "with an account that can read it)"
        )
    if http is not None and _status(http) == 401:
        if has_token():
            return "auth", f"the Hub rejected your token (401 Unauthorized); {LOGIN_HINT} with a valid token"
        return "auth", f"you are not logged in to {endpoint()} (401 Unauthorized); {LOGIN_HINT}"
    if http is not None and _status(http) == 403:
        return "forbidden", (
            f"your token is not allowed to do this on {repo_id} (403 Forbidden); use a token with write "
            f"access to its namespace ({LOGIN_HINT})"
        )
    offline = constants.HF_HUB_OFFLINE or first(OfflineModeIsEnabled) is not None
    if action == "upload" and offline:
        return "offline", f"cannot upload to {repo_id}: HF_HUB_OFFLINE=1 forbids Hub requests; unset it to publish"
    if action == "upload" and is_network_error(exc):
        connect = any(type(item).__name__ in ("ConnectError", "ConnectionRefusedError") for item in chain)
        what = "cannot reach the Hub at" if connect else "the connection broke (or timed out) to the Hub at"
        return "network", (
            f"{what} {endpoint()} to upload to {repo_id}; nothing was committed: check your "
            "network connection (and HF_ENDPOINT), then push again"
        )
    if offline:
        status = cache_status(repo_id, revision, repo_type=repo_type, files=files)
        return "offline", (
            f"{subject} is not (fully) in the local Hub cache and HF_HUB_OFFLINE=1 forbids downloading "
            f"({status}); unset HF_HUB_OFFLINE and connect to download it once{otherwise}"
        )
    if is_network_error(exc) or first((LocalEntryNotFoundError, RevisionResolutionError)) is not None:
        status = cache_status(repo_id, revision, repo_type=repo_type, files=files)
        return "network", (
            f"cannot reach the Hub at {endpoint()} to get {subject}, and it is not (fully) in the local cache "
            f"({status}); check your network connection (and HF_ENDPOINT), or set HF_HUB_OFFLINE=1 to use "
            f"the cache only{otherwise}"
        )
    if first(EntryNotFoundError) is not None:
        what = filename or "the file asked for"
        return "entry", f"{subject} has no {what} at revision {revision or 'main'!r}"
    if http is not None:
        status_code = _status(http)
        detail = redact(str(http).splitlines()[0]) if str(http) else ""
        if action == "upload":
            return "http", f"the upload to {repo_id} failed: the Hub at {endpoint()} answered {status_code}: {detail}"
        return "http", f"the Hub at {endpoint()} answered {status_code} for {subject}: {detail}"
    return None


def hub_error(
    exc: BaseException,
    *,
    repo_id: str,
    repo_type: RepoType = "model",
    revision: str | None = None,
    filename: str | None = None,
    files: Collection[str] | None = None,
    instead: str | None = None,
) -> HubError:
    """The :class:`HubError` for a failed download from ``repo_id``, whatever ``exc`` is.

    A Hub failure gets :func:`describe_hub_error`'s message; anything else (a disk error, an
    unexpected exception) says the download failed, with the exception's first line (redacted).
    Arguments as for :func:`describe_hub_error`.
    """
    described = describe_hub_error(
        exc,
        repo_id=repo_id,
        repo_type=repo_type,
        revision=revision,
        filename=filename,
        files=files,
        instead=instead,
    )
    if described is None:
        subject = repo_label(repo_id, repo_type=repo_type)
        detail = redact(str(exc).splitlines()[0]) if str(exc) else type(exc).__name__
        return HubError(f"cannot download {subject}: {detail}", reason="http", repo_id=repo_id)
    reason, message = described
    return HubError(message, reason=reason, repo_id=repo_id)


@contextmanager
def hub_errors(
    repo_id: str, *, revision: str | None = None, filename: str | None = None, action: str = "download"
) -> Iterator[None]:
    """Run Hub calls; a Hub failure becomes a :class:`HubError` with a clear message.

    ``action`` is ``download`` or ``upload`` (see :func:`describe_hub_error`).

    Raises:
        HubError: For any failure :func:`describe_hub_error` recognises.
    """
    try:
        yield
    except CpeditError:
        raise
    except Exception as exc:
        described = describe_hub_error(exc, repo_id=repo_id, revision=revision, filename=filename, action=action)
        if described is None:
            raise
        reason, message = described
        raise HubError(message, reason=reason, repo_id=repo_id) from None


@contextmanager
def service_errors(action: str) -> Iterator[None]:
    """Run a Hub call that is not about one repo (search, whoami); failures become a :class:`HubError`.

    Args:
        action: What is being done, for the message (``search models``).

    Raises:
        HubError: Offline mode, network down, token rejected, or another HTTP error.
    """
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError, OfflineModeIsEnabled

    try:
        yield
    except CpeditError:
        raise
    except Exception as exc:
        chain = list(_chain(exc))
        if any(isinstance(e, LocalTokenNotFoundError) for e in chain):
            raise HubError(f"you are not logged in, which is needed to {action}; {LOGIN_HINT}", reason="auth") from None
        if constants.HF_HUB_OFFLINE or any(isinstance(e, OfflineModeIsEnabled) for e in chain):
            raise HubError(
                f"cannot {action}: HF_HUB_OFFLINE=1 forbids Hub requests; unset it", reason="offline"
            ) from None
        if is_network_error(exc):
            raise HubError(
                f"cannot reach the Hub at {endpoint()} to {action}; check your network connection (and HF_ENDPOINT)",
                reason="network",
            ) from None
        http = next((e for e in chain if isinstance(e, HfHubHTTPError)), None)
        if http is not None and _status(http) == 401:
            if has_token():
                raise HubError(
                    f"the Hub rejected your token (401 Unauthorized) when trying to {action}; {LOGIN_HINT} "
                    "with a valid token",
                    reason="auth",
                ) from None
            raise HubError(
                f"you are not logged in to {endpoint()} (401 Unauthorized), which is needed to {action}; {LOGIN_HINT}",
                reason="auth",
            ) from None
        if http is not None:
            detail = redact(str(http).splitlines()[0]) if str(http) else ""
            raise HubError(
                f"the Hub at {endpoint()} answered {_status(http)} when trying to {action}: {detail}", reason="http"
            ) from None
        raise
