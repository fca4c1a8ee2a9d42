"""Fault injection for the emulated Hub: failed requests, connections reset mid-upload, slow answers."""

from __future__ import annotations

import re
import threading
from typing import Any


class FaultInjection:
    """The emulator's injected faults (a mixin of :class:`~support.hub_emulator.emulator.HubEmulator`).

    Each fired fault is logged in ``faults``; :meth:`clear_faults` drops those still pending.
    """

    lock: threading.RLock
    faults: list[tuple[str, str, str]]

    def _init_faults(self) -> None:
        self._failures: list[dict[str, Any]] = []
        self._resets: list[dict[str, Any]] = []
        self._delays: list[tuple[re.Pattern[str], float]] = []

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
