"""Shared test configuration: a loopback Hub emulator instead of the Hub, tiny random SD pipelines."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from support.hub_emulator import HubEmulator  # noqa: E402  (stdlib only: huggingface_hub is not imported yet)

# Must run before anything imports huggingface_hub (it reads these at import time). The Hub is the
# loopback emulator: nothing can reach the real Hub, so offline mode is off and tests that need it
# turn it on themselves (see `offline_hub`).
HUB = HubEmulator()
os.environ["HF_ENDPOINT"] = HUB.url
os.environ["HF_HUB_OFFLINE"] = "0"
os.environ.pop("TRANSFORMERS_OFFLINE", None)
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_IMPLICIT_TOKEN"] = "0"
os.environ["HF_HUB_ETAG_TIMEOUT"] = "5"
os.environ["HF_HUB_DOWNLOAD_TIMEOUT"] = "5"
for _name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_CACHE", "HF_TOKEN_PATH"):
    os.environ.pop(_name, None)
_HF_HOME = tempfile.mkdtemp(prefix="cpedit-test-hf-home-")
os.environ["HF_HOME"] = _HF_HOME
atexit.register(shutil.rmtree, _HF_HOME, ignore_errors=True)
atexit.register(HUB.stop)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_sd_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight SD 1.x-shaped pipeline (PNDM scheduler), saved once per session."""
    from devtools.builders import build_random_sd_pipeline

    return build_random_sd_pipeline(tmp_path_factory.mktemp("tiny_sd"), size="tiny", scheduler="pndm", seed=0)


@pytest.fixture(scope="session")
def tiny_sd_ddim_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same tiny pipeline with a DDIM scheduler, saved once per session."""
    from devtools.builders import build_random_sd_pipeline

    return build_random_sd_pipeline(tmp_path_factory.mktemp("tiny_sd_ddim"), size="tiny", scheduler="ddim", seed=0)


@pytest.fixture
def no_model_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the run or command gets as far as resolving or loading a model."""
    import cpedit.edit.session
    import cpedit.models.loading

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was resolved or loaded although the run should have stopped before")

    monkeypatch.setattr(cpedit.edit.session, "open_pipeline", refuse)
    # cpedit.models.loading's own names: its open_pipeline and cpedit.models.sampling look them up there when they run
    monkeypatch.setattr(cpedit.models.loading, "resolve_source", refuse)
    monkeypatch.setattr(cpedit.models.loading, "load_pipeline", refuse)


@pytest.fixture
def hub() -> Iterator[HubEmulator]:
    """The Hub emulator (HF_ENDPOINT points at it): no tokens, request log empty, default page sizes.

    Repos persist for the session (the Hub cache in HF_HOME does too), so each test seeds repos
    under names of its own.
    """
    HUB.new_test()
    yield HUB
    HUB.new_test()


@pytest.fixture
def offline_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_HUB_OFFLINE=1 for this test (huggingface_hub reads the constant at call time)."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory):
    """``tiny_model_path(architecture)``: a tiny random pipeline of that architecture, saved once per session."""
    from devtools.builders import build_random_pipeline

    built: dict[str, Path] = {}

    def get(architecture: str) -> Path:
        if architecture not in built:
            folder = tmp_path_factory.mktemp(f"tiny_{architecture}")
            built[architecture] = build_random_pipeline(folder, architecture=architecture, seed=0)
        return built[architecture]

    return get


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random CLIP folder (safetensors, the real CLIP tokenizer, a 32-pixel image processor)."""
    from devtools.builders import build_tiny_clip_folder

    return build_tiny_clip_folder(tmp_path_factory.mktemp("tiny_clip"))


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the pipeline calls the evaluation engine makes (every one counted)."""
    from cpedit.eval import engine

    calls: list[int] = []
    original = engine.render_batch

    def counting(pipe, jobs, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(len(jobs))
        return original(pipe, jobs, **kwargs)

    monkeypatch.setattr(engine, "render_batch", counting)
    return calls
