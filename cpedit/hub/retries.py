"""What huggingface_hub retries during a push, reported as cpedit progress events.

huggingface_hub retries the upload requests itself (``http_backoff``: the preupload call, the LFS
batch call, each object's PUT and its verify call), on connection errors, timeouts and the HTTP
statuses 408, 429, 500, 502, 503 and 504, five times at most, waiting 1, 2, 4, 8 then 8 seconds
(or what a 429's ``Retry-After`` says). It does not retry the commit call (a commit that did go
through must not be made twice); neither does cpedit. cpedit relies on that policy rather than
adding its own, and turns huggingface_hub's log lines about it into ``upload`` events (never with
the URLs, which can be pre-signed) instead of letting them print:

- a retry: ``the Hub answered 503 (PUT); retrying in 2s (retry 2 of 5)``;
- an object the Hub already has (uploaded by an earlier, interrupted push): ``X is already on the
  Hub; not uploaded again``;
- a commit with no change: ``nothing changed since the last commit; no new commit``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from cpedit.progress import ProgressCallback, ProgressEvent, emit

_LOGGERS = (
    "huggingface_hub.utils._http",
    "huggingface_hub._commit_api",
    "huggingface_hub.lfs",
    "huggingface_hub.hf_api",
)
_STATUS = re.compile(r"^HTTP Error (\d+) thrown while requesting (\w+) ")
_EXCEPTION = re.compile(r"^'(.*)' thrown while requesting (\w+) ", re.DOTALL)
_RETRY = re.compile(r"Retrying in ([\d.]+)s \[Retry (\d+)/(\d+)\]")
_RATE_LIMIT = re.compile(r"^Rate limited\. Waiting ([\d.]+)s before retry \[Retry (\d+)/(\d+)\]")
_PRESENT = re.compile(r"^Content of file (.+) is already present upstream - skipping upload")
_NO_CHANGE = "No files have been modified since last commit"


@dataclass
class RetryLog:
    """What happened during the block: retries made, the last problem, objects the Hub already had."""

    retries: int = 0
    last_problem: str | None = None
    already_there: list[str] = field(default_factory=list)


class _Translate(logging.Filter):
    """Turns huggingface_hub's retry and skip log records into events; drops them (and debug records)."""

    def __init__(self, log: RetryLog, on_progress: ProgressCallback | None, threshold: int) -> None:
        super().__init__()
        self.log = log
        self.on_progress = on_progress
        self.threshold = threshold

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is not ours to fix
            return record.levelno >= self.threshold
        if match := _STATUS.match(text):
            self.log.last_problem = f"the Hub answered {match.group(1)} ({match.group(2)})"
            return False
        if match := _EXCEPTION.match(text):
            kind = "the connection broke" if "reset" in text.lower() or "disconnect" in text.lower() else "no answer"
            self.log.last_problem = f"{kind} ({match.group(2)})"
            return False
        if (match := _RETRY.search(text)) or (match := _RATE_LIMIT.match(text)):
            self.log.retries += 1
            wait, attempt, most = match.groups()
            problem = self.log.last_problem or "the request failed"
            emit(
                self.on_progress,
                ProgressEvent(
                    stage="upload", message=f"{problem}; retrying in {float(wait):g}s (retry {attempt} of {most})"
                ),
            )
            return False
        if match := _PRESENT.match(text):
            path = match.group(1).rstrip(".")
            self.log.already_there.append(path)
            emit(
                self.on_progress,
                ProgressEvent(stage="upload", message=f"{path} is already on the Hub; not uploaded again"),
            )
            return False
        if _NO_CHANGE in text:
            emit(
                self.on_progress,
                ProgressEvent(stage="upload", message="nothing changed since the last commit; no new commit"),
            )
            return False
        return record.levelno >= self.threshold


@contextmanager
def hub_retry_events(on_progress: ProgressCallback | None) -> Iterator[RetryLog]:
    """For the block: huggingface_hub's retry and skip messages become ``upload`` events (see the module).

    Its other log records pass as before; the loggers' levels are put back afterwards.

    Yields:
        A :class:`RetryLog` of what happened (retries, for the failure message).
    """
    log = RetryLog()
    saved = []
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        threshold = logger.getEffectiveLevel()
        translate = _Translate(log, on_progress, threshold)
        saved.append((logger, logger.level, translate))
        logger.addFilter(translate)
        logger.setLevel(min(threshold, logging.DEBUG))  # the skip message is a debug record
    try:
        yield log
    finally:
        for logger, level, translate in saved:
            logger.removeFilter(translate)
            logger.setLevel(level)
