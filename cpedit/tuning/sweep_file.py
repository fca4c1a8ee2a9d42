"""The one validated reader of ``sweep.json``: bounded size and depth, finite numbers, checked types.

``sweep.json`` is read back by a rerun (its finished points are kept) and by the TUI's Tune
screen. A tampered or damaged file (``NaN``/``Infinity``, strings for numbers, deep nesting,
megabytes of it) must give one clear :class:`~cpedit.errors.CpeditError` naming the file and
the field, never a traceback, and never a value that is written back as invalid JSON.
"""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path
from typing import Any

from cpedit import strict_json
from cpedit.errors import CpeditError
from cpedit.output.collapse import CollapseCheck

MAX_SWEEP_BYTES = 16 * 2**20
"""A ``sweep.json`` larger than this is refused (a grid of thousands of points is a few MB)."""
MAX_DEPTH = 16
"""Nesting deeper than this is refused (the format nests 4 levels)."""

__all__ = ["MAX_DEPTH", "MAX_SWEEP_BYTES", "load_sweep_json"]


class _Malformed(ValueError):
    """A problem at a field (``where``)."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}" if where else message)


def _number(value: Any, where: str, *, whole: bool = False, optional: bool = False) -> None:
    if value is None and optional:
        return
    kinds = (int,) if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
        raise _Malformed(where, f"expected a finite {'whole ' if whole else ''}number, got {type(value).__name__}")


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Malformed(where, f"expected an object, got {type(value).__name__}")
    return value


def _numbers(value: Any, where: str) -> None:
    for key, number in _mapping(value, where).items():
        _number(number, f"{where}.{key}")


def _check_point(point: Any, where: str) -> None:
    point = _mapping(point, where)
    settings = _mapping(point.get("settings"), f"{where}.settings")
    _number(settings.get("skill_ratio"), f"{where}.settings.skill_ratio")
    _number(settings.get("timesteps"), f"{where}.settings.timesteps", whole=True, optional=True)
    _number(settings.get("select_ratio"), f"{where}.settings.select_ratio", optional=True)
    if settings.get("target") is not None and not isinstance(settings["target"], str):
        raise _Malformed(f"{where}.settings.target", "expected text")
    _number(point.get("pruned"), f"{where}.pruned", whole=True)
    for key in ("pruned_percent", "drop"):
        _number(point.get(key), f"{where}.{key}")
    _number(point.get("seconds", 0), f"{where}.seconds")
    for key in ("erased", "preserved"):
        _numbers(point.get(key), f"{where}.{key}")
        if "after" not in point[key]:
            raise _Malformed(f"{where}.{key}", "has no 'after'")
    for name, values in _mapping(point.get("metrics", {}), f"{where}.metrics").items():
        _numbers(values, f"{where}.metrics.{name}")
    _number(point.get("images", 0), f"{where}.images", whole=True)
    if point.get("collapse_check") is not None:  # a CollapseProblem (a ValueError) names the field
        check = CollapseCheck.from_dict(point["collapse_check"], where=f"{where}.collapse_check")
        if point.get("collapsed", check.collapsed) is not check.collapsed:
            raise _Malformed(f"{where}.collapsed", "disagrees with collapse_check.collapsed")
    for name, interval in _mapping(point.get("intervals", {}), f"{where}.intervals").items():
        at = f"{where}.intervals.{name}"
        if name not in ("erased", "drop"):
            raise _Malformed(at, "expected erased or drop")
        interval = _mapping(interval, at)
        for key in ("value", "low", "high"):
            _number(interval.get(key), f"{at}.{key}")
        _number(interval.get("n"), f"{at}.n", whole=True)
        if not isinstance(interval.get("method"), str) or len(interval["method"]) > 40:
            raise _Malformed(f"{at}.method", "expected a method name")


def load_sweep_json(path: Path, *, format_version: int) -> dict[str, Any]:
    """``path`` read and checked as a sweep file of ``format_version``.

    Raises:
        CpeditError: ``reason="malformed"`` (``argument="out"``): a link, not a regular file,
            too large, not UTF-8 JSON, ``NaN``/``Infinity``, nested too deep, or a field of the
            wrong type or not finite; the message names the file and the field.
    """
    try:
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
            raise _Malformed("", "not a regular file (a link, folder or device)")
        if info.st_size > MAX_SWEEP_BYTES:
            raise _Malformed("", f"larger than {MAX_SWEEP_BYTES // 2**20} MiB")
        with open(path, "rb") as handle:
            raw = handle.read(MAX_SWEEP_BYTES + 1)
        if len(raw) > MAX_SWEEP_BYTES:
            raise _Malformed("", f"larger than {MAX_SWEEP_BYTES // 2**20} MiB")
        data = strict_json.loads(raw, max_depth=MAX_DEPTH)
        data = _mapping(data, "")
        if data.get("sweep") != format_version:
            raise _Malformed("sweep", f"not a cpedit sweep file of format {format_version}")
        points = data.get("points")
        if not isinstance(points, list):
            raise _Malformed("points", "expected a list")
        for index, point in enumerate(points):
            _check_point(point, f"points[{index}]")
        calibrations = data.get("calibrations", [])
        if not isinstance(calibrations, list) or not all(isinstance(c, dict) for c in calibrations):
            raise _Malformed("calibrations", "expected a list of objects")
    except (ValueError, OSError) as exc:  # strict_json.JsonProblem is a ValueError
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise CpeditError(
            f"{path} is not a cpedit sweep file ({detail}); remove it or choose another sweep folder",
            path=str(path),
            reason="malformed",
            argument="out",
        ) from None
    return data
