"""Judges and base-model scores kept across evaluations: a sweep loads each judge once.

An evaluation's judge (``classify``'s CLIP, NudeNet's detector, the CLIP scorer, the Inception
network, the shapes classifier) is a loaded model: loading it for every point of a sweep or
step of a tune costs more than scoring a few images with it. A :class:`JudgeCache` passed to
:func:`cpedit.eval.driver.evaluate` keeps every judge a benchmark loads (by what identifies it:
its model and device), and the base model's score of each phase it measured (by the images,
the options and the judge), so that many evaluations of edits of one base model load each
judge once and score the base model once.

A cache belongs to one run (a sweep, a tune) and lives in memory only; :meth:`JudgeCache.clear`
frees the judges.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

__all__ = ["JudgeCache"]

_T = TypeVar("_T")


class JudgeCache:
    """The judges loaded and the base scores measured during one run, reused by its later evaluations.

    Attributes:
        loads: How many judges were loaded (each key once), by the key's first element.
        scored: How many base-model phases were scored (each once).
    """

    def __init__(self) -> None:
        self._judges: dict[Hashable, Any] = {}
        self._scores: dict[Hashable, Any] = {}
        self._lock = threading.Lock()
        self.loads: dict[str, int] = {}
        self.scored = 0

    def judge(self, key: tuple[Hashable, ...], load: Callable[[], _T]) -> _T:
        """The judge named ``key`` (its kind first, then what identifies it), loaded by ``load`` the first time."""
        value, new = self._kept(self._judges, key, load)
        if new:
            self.loads[str(key[0])] = self.loads.get(str(key[0]), 0) + 1
        return value

    def base_score(self, key: Hashable, score: Callable[[], _T]) -> _T:
        """The base model's measurement named ``key``, computed by ``score`` the first time."""
        value, new = self._kept(self._scores, key, score)
        self.scored += int(new)
        return value

    def _kept(self, store: dict[Hashable, Any], key: Hashable, make: Callable[[], _T]) -> tuple[_T, bool]:
        """``store[key]``, made by ``make`` (outside the lock: it is slow) when missing; and whether it was made."""
        with self._lock:
            if key in store:
                return store[key], False
        value = make()
        with self._lock:
            new = key not in store
            return store.setdefault(key, value), new

    def clear(self) -> None:
        """Drop every judge and score (their memory is freed)."""
        with self._lock:
            self._judges.clear()
            self._scores.clear()
