"""Where things are in the repository, for tests wherever they sit."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The repository root (where ``cpedit/``, ``recipes/``, ``benchmarks/`` and ``devtools/`` are)."""

TESTS_DIR = REPO_ROOT / "tests"
