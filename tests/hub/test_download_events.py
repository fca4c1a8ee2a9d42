"""Downloads and uploads as progress events, cancellable, and never a raw tqdm bar.

A tiny pipeline is published on the loopback Hub emulator (see conftest); downloads go through
the real huggingface_hub client (``snapshot_download`` with cpedit's silent tqdm class), uploads
through ``preupload_lfs_files`` and ``create_commit``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import support.helpers as helpers
from click.testing import CliRunner, Result
from support.helpers import CPU
from support.hub_emulator import HubEmulator

import cpedit
from cpedit.cli.main import cli
from cpedit.errors import Cancelled
from cpedit.models.loading import ModelSource, resolve_source
from cpedit.progress import ProgressEvent

TOKEN = "hf_DownloadEventsToken0123456789"
BASE = "acme/dl-base"
PREVIEW = ("a cat in the style of Van Gogh", "a red bicycle")
TQDM_MARKS = ("it/s]", "s/it]", "B/s]", "%|", "Fetching ", "Downloading bytes", "Reconstructing", "Loading pipeline")
"""What tqdm bars (huggingface_hub's, diffusers', transformers') print; cpedit's rich display prints none of it."""
UNNEEDED = {
    "unet/diffusion_pytorch_model.bin": b"pickled weights, never fetched" * 10,
    "unet/diffusion_pytorch_model.fp16.safetensors": b"\0fp16 variant, not the default" * 10,
    "text_encoder/pytorch_model.bin": b"pickled weights" * 10,
    "unet/custom_code.py": b"print('remote code')\n",
    "v1-5-pruned.ckpt": b"a single-file checkpoint" * 10,
    "extras/notes.txt": b"not a component\n",
}
"""Files a repo may hold that a safetensors pipeline load does not need."""


def repo_files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.relative_to(folder).as_posix().startswith(".")
    }


def invoke(*args: object) -> Result:
    return CliRunner(env={"COLUMNS": "200"}).invoke(cli, [str(a) for a in args], catch_exceptions=True)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result


def byte_events(events: list[ProgressEvent], stage: str) -> list[ProgressEvent]:
    return [e for e in events if e.stage == stage and e.unit == "bytes"]


def assert_no_tqdm(*texts: str) -> None:
    for text in texts:
        for mark in TQDM_MARKS:
            assert mark not in text, f"a tqdm bar was printed ({mark!r}):\n{text}"


def run_cpedit(
    *args: object, env: dict[str, str] | None = None, code: str | None = None
) -> subprocess.CompletedProcess:
    """cpedit in a fresh process, stderr captured, with huggingface_hub's bars forced on (``TQDM_POSITION=-1``)."""
    command = [sys.executable, "-c", code or "from cpedit.cli.main import main; main()", *map(str, args)]
    full_env = {**os.environ, "TQDM_POSITION": "-1", "COLUMNS": "200", **(env or {})}
    return subprocess.run(command, capture_output=True, text=True, env=full_env, timeout=600, check=False)


@pytest.fixture(scope="module")
def pruned_out(tiny_sd_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``acme/dl-base`` (the tiny pipeline) on the emulator, pruned from its Hub id, without a preview."""
    from conftest import HUB

    HUB.seed_repo(BASE, repo_files(tiny_sd_path))
    folder = tmp_path_factory.mktemp("dl")
    recipe = helpers.write_recipe(folder / "r", name="vg-dl", tau=2, steps=4, preview=PREVIEW)
    out = folder / "out"
    cpedit.prune(BASE, [recipe], out=out, compute=CPU)
    assert not (out / "conceptprune" / "preview.png").exists()
    return out


# --- downloads ------------------------------------------------------------------------------


def test_download_reports_bytes_per_file_and_fetches_only_what_the_pipeline_needs(
    tiny_sd_path: Path, hub: HubEmulator
) -> None:
    needed = repo_files(tiny_sd_path)
    commit = hub.seed_repo("acme/dl-events", {**needed, **UNNEEDED})
    events: list[ProgressEvent] = []
    source = resolve_source("acme/dl-events", on_progress=events.append)

    assert source == ModelSource(
        ref="acme/dl-events", path=source.path, is_local=False, commit=commit, repo_id="acme/dl-events"
    )
    assert repo_files(source.path) == needed  # byte for byte, and nothing else
    fetched = {path.split(f"/resolve/{commit}/", 1)[1] for _, path, _ in hub.requests if f"/resolve/{commit}/" in path}
    assert fetched == set(needed) - {"model_index.json"}  # model_index.json came first, from main
    assert not any(p in path for _, path, _ in hub.requests for p in UNNEEDED)

    progress = byte_events(events, "download")
    assert progress and all(e.total == sum(len(c) for c in needed.values()) for e in progress)
    completed = [e.completed for e in progress]
    assert completed == sorted(completed) and completed[-1] == progress[-1].total  # never decreases, reaches it
    order = sorted(needed)
    per_file = [e for e in progress if e.file is not None]
    assert {e.file for e in per_file} == set(needed) - {"model_index.json"}  # every file fetched is named
    assert all(e.files == len(needed) and order[e.file_index - 1] == e.file for e in per_file)
    assert all(e.message == f"downloading {e.file}" for e in per_file)
    # model_index.json (read first) is in the cache already: its bytes count as done from the start
    assert progress[0].file is None and "9 of 10 files" in progress[0].message
    assert progress[0].completed == len(needed["model_index.json"])

    # Once cached: one event, everything done, no file fetched again.
    hub.requests.clear()
    events.clear()
    again = resolve_source("acme/dl-events", on_progress=events.append)
    assert again.path == source.path
    assert [(e.completed, e.total, e.file) for e in byte_events(events, "download")] == [
        (progress[-1].total, progress[-1].total, None)
    ]
    assert not any("/resolve/" in path and "model_index.json" not in path for _, path, _ in hub.requests)
    assert not any("/tree/" in path for _, path, _ in hub.requests)  # the listing is cached per commit


def test_a_cached_model_resolves_with_the_network_down(
    tiny_sd_path: Path, hub: HubEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    helpers.instant_hub_retries(monkeypatch)
    commit = hub.seed_repo("acme/dl-down", repo_files(tiny_sd_path))
    downloaded = resolve_source("acme/dl-down")
    events: list[ProgressEvent] = []
    with hub.down():
        source = resolve_source("acme/dl-down", on_progress=events.append)
    assert source.path == downloaded.path and source.commit == commit
    assert [e.message for e in byte_events(events, "download")] == ["acme/dl-down: all 10 files are in the Hub cache"]


def test_a_hub_cache_snapshot_folder_knows_its_repo_id(tiny_sd_path: Path, hub: HubEmulator) -> None:
    commit = hub.seed_repo("acme/dl-snapshot", repo_files(tiny_sd_path))
    downloaded = resolve_source("acme/dl-snapshot")
    local = resolve_source(downloaded.path)
    assert local.is_local and local.repo_id == "acme/dl-snapshot" and local.commit == commit == downloaded.commit
    assert resolve_source(tiny_sd_path).repo_id is None


def test_cancel_during_the_download_stops_it_and_writes_nothing(
    tiny_sd_path: Path, tmp_path: Path, hub: HubEmulator
) -> None:
    needed = repo_files(tiny_sd_path)
    commit = hub.seed_repo("acme/dl-cancel", needed)
    recipe = helpers.write_recipe(tmp_path / "r", name="vg-cancel", tau=2, steps=4)
    cancel = threading.Event()
    events: list[ProgressEvent] = []

    def on_progress(event: ProgressEvent) -> None:
        events.append(event)
        if event.stage == "download" and event.file is not None:
            cancel.set()  # after the first bytes

    out = tmp_path / "out"
    with pytest.raises(Cancelled) as info:
        cpedit.prune("acme/dl-cancel", [recipe], out=out, compute=CPU, on_progress=on_progress, cancel=cancel)
    assert info.value.step == "during the download" and "nothing was written" in str(info.value)
    assert not out.exists() and list(tmp_path.iterdir()) == [tmp_path / "r"]
    assert sum(1 for e in events if e.stage == "download" and e.file is not None) == 1  # stopped at the next chunk
    assert not any(e.stage == "calibrate" for e in events)

    # The download resumes where it stopped: the files complete in the cache at the cancel are not fetched
    # again. (Which files those are depends on the download threads' timing: the file the first event
    # named may still have been in flight in its own thread when the cancel reached it.)
    from huggingface_hub import try_to_load_from_cache

    complete = {
        name for name in needed if isinstance(try_to_load_from_cache("acme/dl-cancel", name, revision=commit), str)
    }
    assert complete < set(needed)  # the cancel did stop the download before the end
    hub.requests.clear()
    source = resolve_source("acme/dl-cancel")
    assert repo_files(source.path) == needed
    gets = {path for method, path, _ in hub.requests if method == "GET"}
    # a small file comes from its resolve URL, a large (LFS) one from the CDN by its sha256
    fetched = {
        name
        for name, content in needed.items()
        if any(p.endswith("/" + name) or p.endswith("/" + hashlib.sha256(content).hexdigest()) for p in gets)
    }
    assert fetched == set(needed) - complete


def test_cancel_mid_file_stops_at_the_next_chunk_and_leaves_no_partial_file(
    tiny_sd_path: Path, hub: HubEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)  # many chunks per file
    needed = repo_files(tiny_sd_path)
    total = sum(len(c) for c in needed.values())
    hub.seed_repo("acme/dl-midfile", needed)
    cancel = threading.Event()
    events: list[ProgressEvent] = []

    def on_progress(event: ProgressEvent) -> None:
        events.append(event)
        if event.stage == "download" and (event.completed or 0) > total // 3:
            cancel.set()

    with pytest.raises(Cancelled):
        resolve_source("acme/dl-midfile", on_progress=on_progress, cancel=cancel)
    progress = byte_events(events, "download")
    assert total // 3 < progress[-1].completed < total
    assert (progress[-2].completed or 0) <= total // 3  # no event (no chunk) after the one that cancelled
    storage = Path(os.environ["HF_HOME"]) / "hub" / "models--acme--dl-midfile"
    assert not list((storage / "blobs").glob("*.incomplete"))  # huggingface_hub drops partial files
    assert repo_files(resolve_source("acme/dl-midfile").path) == needed


def test_a_dropped_connection_resumes_with_a_range_request(
    tiny_sd_path: Path, hub: HubEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)
    needed = repo_files(tiny_sd_path)
    total = sum(len(c) for c in needed.values())
    hub.seed_repo("acme/dl-dropped", needed)
    unet = "unet/diffusion_pytorch_model.safetensors"
    hub.cut_once.add(hashlib.sha256(needed[unet]).hexdigest())  # the CDN drops it halfway, once
    events: list[ProgressEvent] = []
    source = resolve_source("acme/dl-dropped", on_progress=events.append)
    assert repo_files(source.path) == needed
    [(_, asked)] = hub.range_requests  # one resume, from the last whole chunk received
    offset, half = int(asked.removeprefix("bytes=").removesuffix("-")), len(needed[unet]) // 2
    assert 0 < offset <= half
    assert hub.bytes_served == total + half - offset  # the retry fetched only the rest
    progress = byte_events(events, "download")
    completed = [e.completed for e in progress]
    assert completed == sorted(completed) and completed[-1] == total
    unet_done = [e.completed for e in progress if e.file == unet]
    assert unet_done == sorted(unet_done)


def test_a_cancel_set_before_the_download_makes_no_request(hub: HubEmulator) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        resolve_source("acme/never-downloaded", cancel=cancel)
    assert hub.requests == []


# --- uploads ------------------------------------------------------------------------------


def test_upload_events_name_each_file_and_count_bytes(
    pruned_out: Path, hub: HubEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cpedit.publish.push import push_model

    hub.add_token(TOKEN, "alice")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    events: list[ProgressEvent] = []
    result = push_model(pruned_out, repo_id="alice/ul-events", on_progress=events.append)

    repo = hub.repos["alice/ul-events"]
    head = repo.commits[repo.refs["main"]]
    sizes = {path: head.files[path].size for path in result.files}
    progress = byte_events(events, "upload")
    assert all(e.total == sum(sizes.values()) for e in progress)
    completed = [e.completed for e in progress]
    assert completed == sorted(completed) and completed[-1] == sum(sizes.values())
    named = [e for e in progress if e.file is not None]
    assert [e.file for e in named] == [path for path in result.files for _ in range(2)]  # before and after each
    for before, after in zip(named[::2], named[1::2], strict=True):
        assert before.file_index == after.file_index == result.files.index(before.file) + 1
        assert before.files == len(result.files) and after.completed - before.completed == sizes[before.file]
        assert before.message == f"uploading {before.file}" and after.message == f"uploaded {after.file}"
    assert progress[-1].file is None and progress[-1].message == f"committing {len(result.files)} files"


def test_cancel_during_the_push_commits_nothing(
    pruned_out: Path, tmp_path: Path, hub: HubEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cpedit.publish.push import push_model, push_recipes

    hub.add_token(TOKEN, "alice")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    head = hub.seed_repo("alice/ul-cancel", {"README.md": b"# already here\n"})
    cancel = threading.Event()

    def on_progress(event: ProgressEvent) -> None:
        if event.stage == "upload" and event.message.startswith("uploaded"):
            cancel.set()  # after the first file

    with pytest.raises(Cancelled, match="cancelled during the upload"):
        push_model(pruned_out, repo_id="alice/ul-cancel", on_progress=on_progress, cancel=cancel)
    repo = hub.repos["alice/ul-cancel"]
    assert repo.refs == {"main": head} and list(repo.commits) == [head]  # no new commit
    assert not any("/commit/" in path for _, path, _ in hub.requests)

    hub.requests.clear()
    recipe = helpers.write_recipe(tmp_path, name="never-pushed")
    with pytest.raises(Cancelled):
        push_recipes([recipe], repo_id="alice/ul-cancel", cancel=cancel)  # already set: not even whoami
    assert hub.requests == []


# --- the CLI and the library print no tqdm bar ----------------------------------------------------


def test_the_cli_never_prints_a_tqdm_bar(
    pruned_out: Path, tiny_sd_path: Path, tmp_path: Path, hub: HubEmulator
) -> None:
    hub.seed_repo("acme/dl-cli", repo_files(tiny_sd_path))
    recipe = helpers.write_recipe(tmp_path / "r", name="vg-cli", tau=2, steps=4)
    pruned = run_cpedit("prune", "acme/dl-cli", "-r", recipe, "--out", tmp_path / "out", "--device", "cpu")
    assert pruned.returncode == 0, pruned.stderr
    assert_no_tqdm(pruned.stdout, pruned.stderr)
    assert re.search(r"download .*?([\d.]+)/\1 MB", pruned.stderr)  # the rich byte bar, at 100%

    hub.add_token(TOKEN, "alice")
    pushed = run_cpedit("push", pruned_out, "--repo", "alice/dl-cli", env={"HF_TOKEN": TOKEN})
    assert pushed.returncode == 0, pushed.stderr
    assert_no_tqdm(pushed.stdout, pushed.stderr)
    assert re.search(r"upload .*?([\d.]+)/\1 MB", pushed.stderr) and "committing" in pushed.stderr
    assert pushed.stdout.strip().splitlines()[-1] == f"{hub.url}/alice/dl-cli"


def test_the_library_never_prints_a_tqdm_bar(tiny_sd_path: Path, hub: HubEmulator) -> None:
    hub.seed_repo("acme/dl-library", repo_files(tiny_sd_path))
    code = (
        "import sys; from cpedit.models.compute import ComputeOptions; "
        "from cpedit.models.loading import open_pipeline; "
        "source, pipe = open_pipeline('acme/dl-library', compute=ComputeOptions(device='cpu')); "
        "print(type(pipe).__name__, source.commit)"
    )
    loaded = run_cpedit(code=code)  # nothing turned huggingface_hub's, diffusers' or transformers' bars off
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split()[0] == "StableDiffusionPipeline"
    assert_no_tqdm(loaded.stdout, loaded.stderr)


# --- push --preview, --base-model ---------------------------------------------------------------------


def test_push_says_when_there_is_no_preview_and_renders_it_with_preview(
    pruned_out: Path, tmp_path: Path, hub: HubEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.add_token(TOKEN, "alice")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    out = tmp_path / "out"
    shutil.copytree(pruned_out, out)

    result = ok(invoke("push", out, "--repo", "alice/pv-none"))
    note = " ".join(result.stderr.split())
    assert f"Note: {out} has no conceptprune/preview.png" in note and "add --preview" in note
    repo = hub.repos["alice/pv-none"]
    assert "conceptprune/preview.png" not in repo.commits[repo.refs["main"]].files
    assert "before/after" not in hub.file_bytes("alice/pv-none", "README.md").decode()

    result = ok(invoke("push", out, "--repo", "alice/pv-yes", "--preview", "--preview-steps", 2, "--device", "cpu"))
    assert "has no conceptprune/preview.png" not in result.stderr
    repo = hub.repos["alice/pv-yes"]
    files = repo.commits[repo.refs["main"]].files
    assert files["conceptprune/preview.png"].lfs_sha256 is not None
    assert (
        hub.file_bytes("alice/pv-yes", "conceptprune/preview.png")
        == (out / "conceptprune" / "preview.png").read_bytes()
    )
    assert "![before/after](conceptprune/preview.png)" in hub.file_bytes("alice/pv-yes", "README.md").decode()


def test_push_base_model_names_the_base_of_a_local_prune(
    tiny_sd_path: Path, tmp_path: Path, hub: HubEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import ModelCard

    recipe = helpers.write_recipe(tmp_path / "r", name="vg-local", tau=2, steps=4)
    out = tmp_path / "out"
    cpedit.prune(tiny_sd_path, [recipe], out=out, compute=CPU)
    result = invoke("push", out, "--repo", "alice/bm", "--base-model", "nope")
    message = " ".join(result.stderr.split())
    assert (
        result.exit_code == 1
        and "base model 'nope': give NAMESPACE/NAME" in message
        and "hint: see --base-model" in message
    )
    assert hub.requests == []
    hub.add_token(TOKEN, "alice")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    ok(invoke("push", out, "--repo", "alice/bm", "--base-model", "acme/tiny-sd-original"))
    metadata = ModelCard(hub.file_bytes("alice/bm", "README.md").decode()).data.to_dict()
    assert metadata["base_model"] == "acme/tiny-sd-original" and metadata["base_model_relation"] == "finetune"
    shared = json.loads(hub.file_bytes("alice/bm", "conceptprune/report.json"))
    assert shared["base_model"]["path"] is None  # still never the local path


# --- the rich displays ------------------------------------------------------------------------------------


def test_progress_and_transfer_views_show_bytes() -> None:
    from rich.console import Console

    from cpedit.cli.render import ProgressView, TransferView

    def feed(view_class: type, stages: tuple[str, ...]) -> str:
        console = Console(file=io.StringIO(), width=200)
        with view_class(console) as view:
            for stage in stages:
                for done, file, index in (
                    (0, None, None),
                    (1_500_000, "unet/w.safetensors", 1),
                    (2_000_000, None, None),
                ):
                    message = f"{stage} {file}" if file else f"{stage}ing x"
                    view(
                        ProgressEvent(
                            stage=stage,
                            message=message,
                            completed=done,
                            total=2_000_000,
                            unit="bytes",
                            file=file,
                            file_index=index,
                            files=2,
                        )
                    )
            view(ProgressEvent(stage="load", message="loading something"))
        return console.file.getvalue()

    shown = feed(ProgressView, ("download",))
    assert "2.0/2.0 MB" in shown and "downloading x" in shown and "loading something" in shown
    shown = feed(TransferView, ("download", "upload"))
    assert shown.count("2.0/2.0 MB") == 2 and "downloading x" in shown and "uploading x" in shown


def test_progress_view_draws_counted_steps_as_bars_not_log_lines() -> None:
    """Per-layer scoring and per-file copying events fill one bar each instead of one log line per event."""
    from rich.console import Console

    from cpedit.cli.render import ProgressView

    console = Console(file=io.StringIO(), width=200)
    with ProgressView(console) as view:
        for index in range(16):
            view(
                ProgressEvent(
                    stage="score", message=f"scoring v{index}", concept="v", completed=index, total=16, unit="layers"
                )
            )
        for index in range(1, 21):
            view(
                ProgressEvent(
                    stage="save", message=f"copying f{index}", file=f"f{index}", file_index=index, files=20,
                    completed=index - 1, total=20, unit="files",
                )
            )  # fmt: skip
        view(ProgressEvent(stage="prune", message="pruning 12 weights"))
    shown = console.file.getvalue()
    assert "score v" in shown and "15/16" in shown and "save" in shown and "19/20" in shown
    assert "scoring v3" not in shown and "copying f7" not in shown
    assert "pruning 12 weights" in shown  # uncounted events stay log lines
