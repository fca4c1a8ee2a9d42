"""The app's first screen appears before torch, diffusers or transformers is imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PAINT = """
import asyncio, json, sys
from tui.app import CpeditApp

async def main():
    app = CpeditApp(image_mode="halfcell")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        shown = app.query_one("#model-chosen").render()
        heavy = sorted(m for m in ("torch", "diffusers", "transformers") if m in sys.modules)
        print(json.dumps({"heavy": heavy, "shown": str(shown)}))

asyncio.run(main())
"""


def test_the_first_screen_paints_before_the_model_libraries_load() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PAINT], capture_output=True, text=True, timeout=120, cwd=REPO, check=True
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert "builtin:shapes" in report["shown"]
    assert report["heavy"] == []
