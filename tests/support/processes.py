"""Running ``cpedit`` as a real process (the code of this checkout), with faults injected before it starts.

The faults are Python code (a *prelude*) the process runs before the CLI: a full disk or a
read-only folder cannot be had in a test without root or a tiny filesystem, so the system
calls that write are made to fail as they would there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support.paths import REPO_ROOT

WIDTH = 80

FAIL_WRITES_UNDER = """
import builtins, errno, os
_ROOT = os.path.realpath({root!r})
_ERRNO = errno.{name}


def _under(path):
    try:
        return os.path.realpath(os.fspath(path)).startswith(_ROOT)
    except TypeError:
        return False


def _refuse(path):
    raise OSError(_ERRNO, os.strerror(_ERRNO), os.fspath(path))


_open, _mkdir, _os_open = builtins.open, os.mkdir, os.open


def _guarded_open(file, mode="r", *args, **kwargs):
    if any(flag in mode for flag in "wxa+") and _under(file):
        _refuse(file)
    return _open(file, mode, *args, **kwargs)


def _guarded_mkdir(path, *args, **kwargs):
    if _under(path) and not os.path.isdir(path):
        _refuse(path)
    return _mkdir(path, *args, **kwargs)


def _guarded_os_open(path, flags, *args, **kwargs):
    if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and _under(path):
        _refuse(path)
    return _os_open(path, flags, *args, **kwargs)


builtins.open, os.mkdir, os.open = _guarded_open, _guarded_mkdir, _guarded_os_open
"""
"""A prelude: every write, new file or new folder under ``root`` fails with ``errno.NAME`` (``EROFS``, ``ENOSPC``)."""


def fail_writes_under(root: Path, *, errno_name: str) -> str:
    """The prelude that makes writes under ``root`` fail like a read-only (``EROFS``) or full (``ENOSPC``) disk."""
    return FAIL_WRITES_UNDER.format(root=str(root), name=errno_name)


def run_cli(
    *args: object, cwd: Path, env: dict[str, str] | None = None, prelude: str = "", timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """``cpedit ARGS`` in a fresh process at 80 columns, stdout and stderr piped.

    ``prelude`` is Python code the process runs first (a fault, a stand-in evaluator).
    """
    environment = {**os.environ, "COLUMNS": str(WIDTH), "LINES": "24", **(env or {})}
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR"):
        environment.pop(name, None)
    environment["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])
    start = [sys.executable, "-m", "cpedit"]
    if prelude:
        start = [sys.executable, "-c", f"{prelude}\nfrom cpedit.cli.main import main\nmain()"]
    return subprocess.run(
        [*start, *map(str, args)],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
