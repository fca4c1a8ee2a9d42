"""``cpedit tui`` in a real terminal (tmux): keys in, screen text out, the main flow end to end.

tmux runs the installed ``cpedit`` console script in a detached session on a private socket;
``send-keys`` types, ``capture-pane`` reads the screen. CI installs tmux (``.ci/run``), so this
never skips there; elsewhere it skips only when tmux is missing and ``CI`` is not set.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

TMUX = shutil.which("tmux")
if TMUX is None and os.environ.get("CI"):
    raise RuntimeError("tmux is required in CI (.ci/run installs it with apt-get)")
pytestmark = pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install -y tmux)")


class Terminal:
    """One tmux session running a command, 100x30."""

    def __init__(self, command: list[str], *, env: dict[str, str], cwd: Path) -> None:
        self.socket = f"cpedit-test-{uuid.uuid4().hex[:8]}"
        self.name = "app"
        exports = [item for key, value in env.items() for item in ("-e", f"{key}={value}")]
        self.tmux(
            "new-session",
            "-d",
            "-s",
            self.name,
            "-x",
            "100",
            "-y",
            "30",
            "-c",
            str(cwd),
            *exports,
            " ".join(_quote(part) for part in command) + "; sleep 30",
        )

    def tmux(self, *args: str) -> str:
        done = subprocess.run([TMUX, "-L", self.socket, *args], capture_output=True, text=True, timeout=30)
        return done.stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.name)

    def keys(self, *keys: str) -> None:
        for key in keys:
            self.tmux("send-keys", "-t", self.name, key)
            time.sleep(0.15)

    def wait_for(self, text: str, *, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} did not appear on screen within {timeout} s; the screen:\n{self.screen()}")

    def close(self) -> None:
        self.tmux("kill-server")


def _quote(part: str) -> str:
    return "'" + part.replace("'", "'\\''") + "'"


@pytest.fixture
def terminal_env(tmp_path: Path) -> dict[str, str]:
    keep = ("PATH", "HOME", "HF_ENDPOINT", "HF_HOME", "HF_HUB_DISABLE_XET", "HF_HUB_OFFLINE", "XDG_CONFIG_HOME")
    env = {key: os.environ[key] for key in keep if key in os.environ}
    env["TERM"] = "xterm-256color"
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env


@pytest.fixture
def terminal(terminal_env: dict[str, str], tmp_path: Path) -> Iterator[Terminal]:
    out = tmp_path / "out"
    cpedit = str(Path(sys.executable).parent / "cpedit")
    term = Terminal(
        [cpedit, "tui", "--images", "halfcell", "--recipe", "shapes-striped", "--out", str(out), "--device", "cpu"],
        env=terminal_env,
        cwd=tmp_path,
    )
    yield term
    term.close()


def test_the_main_flow_in_a_real_terminal(terminal: Terminal, tmp_path: Path) -> None:
    terminal.wait_for("Quit", timeout=30)  # the footer shows the keys
    assert "1 Model" in terminal.wait_for("base model: builtin:shapes")
    terminal.keys("3")
    terminal.wait_for("shapes-striped")
    terminal.keys("C-r")
    terminal.wait_for("calibrated 1 concept", timeout=120)
    assert " done " in terminal.screen() and "ctrl+s saves to" in terminal.screen()  # what to do next
    terminal.keys("4")
    tune = terminal.wait_for("weights pruned")
    assert "shapes-striped" in tune and "skill ratio" in tune
    terminal.keys("C-s")
    terminal.wait_for("saved to", timeout=60)
    assert (tmp_path / "out" / "conceptprune" / "report.json").is_file()
    terminal.keys("?")
    terminal.wait_for("command palette")
    terminal.keys("Escape", "C-q")
    deadline = time.monotonic() + 15
    while "1 Model" in terminal.screen() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "1 Model" not in terminal.screen()  # the app quit (the shell's `sleep` holds the pane)
