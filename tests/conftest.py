"""Shared test configuration: strictly offline Hugging Face, tiny random SD pipelines."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

# Must run before anything imports huggingface_hub (it reads these at import time).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
_HF_HOME = tempfile.mkdtemp(prefix="cpedit-test-hf-home-")
os.environ["HF_HOME"] = _HF_HOME
atexit.register(shutil.rmtree, _HF_HOME, ignore_errors=True)

# Make tests/ helper modules (naive_reference) importable whatever pytest's import mode.
_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_sd_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight SD 1.x-shaped pipeline (PNDM scheduler), saved once per session."""
    from cpedit.testing import build_random_sd_pipeline

    return build_random_sd_pipeline(tmp_path_factory.mktemp("tiny_sd"), size="tiny", scheduler="pndm", seed=0)


@pytest.fixture(scope="session")
def tiny_sd_ddim_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same tiny pipeline with a DDIM scheduler, saved once per session."""
    from cpedit.testing import build_random_sd_pipeline

    return build_random_sd_pipeline(tmp_path_factory.mktemp("tiny_sd_ddim"), size="tiny", scheduler="ddim", seed=0)


@pytest.fixture
def no_model_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the run or command gets as far as resolving or loading a model."""
    import cpedit.api
    import cpedit.loading

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was resolved or loaded although the run should have stopped before")

    monkeypatch.setattr(cpedit.api, "open_pipeline", refuse)
    # cpedit.loading's own names: its open_pipeline and cpedit.sampling look them up there when they run
    monkeypatch.setattr(cpedit.loading, "resolve_source", refuse)
    monkeypatch.setattr(cpedit.loading, "load_pipeline", refuse)


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory):
    """``tiny_model_path(architecture)``: a tiny random pipeline of that architecture, saved once per session."""
    from cpedit.testing import build_random_pipeline

    built: dict[str, Path] = {}

    def get(architecture: str) -> Path:
        if architecture not in built:
            folder = tmp_path_factory.mktemp(f"tiny_{architecture}")
            built[architecture] = build_random_pipeline(folder, architecture=architecture, seed=0)
        return built[architecture]

    return get
