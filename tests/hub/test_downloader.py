"""The one downloader (``cpedit.hub.download``) for models, datasets and recipes, through its public API.

The loopback Hub emulator serves the repos (see conftest); downloads go through the real
huggingface_hub client into the test session's Hub cache.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import support.helpers as helpers
from support.hub_emulator import HubEmulator

from cpedit.errors import Cancelled
from cpedit.eval.prompt_sets import load_prompt_set
from cpedit.hub.download import download_files, fetch_file, list_files, resolve_commit, snapshot_folder
from cpedit.hub.errors import HubError
from cpedit.progress import ProgressEvent


def repo_files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.relative_to(folder).as_posix().startswith(".")
    }


def prompts_csv(rows: int) -> bytes:
    return ("prompt,seed\n" + "".join(f"prompt number {i} of a long set,{i}\n" for i in range(rows))).encode()


def test_one_downloader_fetches_a_dataset_and_a_model_with_byte_events(tiny_sd_path: Path, hub: HubEmulator) -> None:
    data = {"prompts.csv": prompts_csv(50), "README.md": b"# a prompt set\n", "other.csv": b"prompt\nnot asked\n"}
    model = repo_files(tiny_sd_path)
    repos = [
        ("acme/api-set", "dataset", data, ["prompts.csv", "README.md"]),
        ("acme/api-model", "model", model, [p for p in model if p.endswith((".json", ".safetensors", ".txt"))]),
    ]
    for repo_id, repo_type, content, wanted in repos:
        commit = hub.seed_repo(repo_id, content, repo_type=repo_type)
        assert resolve_commit(repo_id, repo_type=repo_type) == commit  # type: ignore[arg-type]
        listing = list_files(repo_id, commit=commit, repo_type=repo_type)  # type: ignore[arg-type]
        assert listing == {path: len(body) for path, body in content.items()}
        plan = {path: listing[path] for path in wanted}
        events: list[ProgressEvent] = []
        folder = download_files(repo_id, plan, commit=commit, repo_type=repo_type, on_progress=events.append)  # type: ignore[arg-type]

        assert folder == snapshot_folder(repo_id, commit=commit, repo_type=repo_type)  # type: ignore[arg-type]
        assert repo_files(folder) == {path: content[path] for path in wanted}  # byte for byte, nothing else
        prefix = "/datasets/" if repo_type == "dataset" else "/"
        assert any(path.startswith(f"{prefix}{repo_id}/resolve/{commit}/") for _, path, _ in hub.requests)
        progress = [e for e in events if e.stage == "download" and e.unit == "bytes"]
        total = sum(plan.values())
        assert progress and all(e.total == total and e.files == len(plan) for e in progress)
        completed = [e.completed for e in progress]
        assert completed == sorted(completed) and completed[-1] == total and completed[0] == 0
        named = [e for e in progress if e.file is not None]
        assert named and {e.file for e in named} <= set(plan)
        assert all(list(plan)[e.file_index - 1] == e.file and e.message == f"downloading {e.file}" for e in named)
        assert progress[-1].message == f"downloaded {repo_id} ({len(plan)} files)"

        # Everything cached: one event, no request at all (listing and files from the cache).
        hub.requests.clear()
        events.clear()
        assert list_files(repo_id, commit=commit, repo_type=repo_type) == listing  # type: ignore[arg-type]
        again = download_files(repo_id, plan, commit=commit, repo_type=repo_type, on_progress=events.append)  # type: ignore[arg-type]
        assert again == folder and hub.requests == []
        assert [(e.message, e.completed, e.total) for e in events] == [
            (f"{repo_id}: all {len(plan)} files are in the Hub cache", total, total)
        ]


def test_cancel_stops_a_dataset_download_at_the_next_chunk_and_it_resumes(
    hub: HubEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)  # many chunks per file
    content = {"big.csv": prompts_csv(40_000)}  # about 1.5 MB: an LFS file, many chunks
    commit = hub.seed_repo("acme/api-cancel", content, repo_type="dataset")
    total = len(content["big.csv"])
    cancel = threading.Event()
    events: list[ProgressEvent] = []

    def on_progress(event: ProgressEvent) -> None:
        events.append(event)
        if (event.completed or 0) > total // 4:
            cancel.set()

    plan = {"big.csv": total}
    with pytest.raises(Cancelled) as info:
        download_files(
            "acme/api-cancel", plan, commit=commit, repo_type="dataset", on_progress=on_progress, cancel=cancel
        )
    assert info.value.step == "during the download"
    assert total // 4 < events[-1].completed < total and (events[-2].completed or 0) <= total // 4  # no chunk after
    folder = snapshot_folder("acme/api-cancel", commit=commit, repo_type="dataset")
    assert not (folder / "big.csv").exists()
    assert not list((folder.parent.parent / "blobs").glob("*.incomplete"))  # huggingface_hub drops partial files

    set_before = threading.Event()
    set_before.set()
    hub.requests.clear()
    with pytest.raises(Cancelled):  # a cancel set before: no request
        download_files("acme/api-cancel", plan, commit=commit, repo_type="dataset", cancel=set_before)
    assert hub.requests == []
    assert repo_files(download_files("acme/api-cancel", plan, commit=commit, repo_type="dataset")) == content


def test_a_cached_prompt_set_is_read_offline_or_with_the_hub_down_without_a_request(
    hub: HubEmulator, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    import huggingface_hub.constants

    helpers.instant_hub_retries(monkeypatch)
    files = {"p.csv": b"prompt\na cat\n", "README.md": b"hi\n", "notes.txt": b"not a prompt file\n"}
    commit = hub.seed_repo("acme/api-offline", files, repo_type="dataset")
    online = load_prompt_set("hub:acme/api-offline")
    with hub.down():
        down = load_prompt_set("hub:acme/api-offline")  # the commit recorded for main, and the files, from the cache
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    hub.requests.clear()
    events: list[ProgressEvent] = []
    offline = load_prompt_set("hub:acme/api-offline", on_progress=events.append)
    assert online == down == offline and offline.revision == commit and [p.prompt for p in offline.prompts] == ["a cat"]
    assert hub.requests == []
    assert events[-1].message == "acme/api-offline: all 2 files are in the Hub cache"
    assert capfd.readouterr().err == ""  # nothing printed, not even huggingface_hub's notice of the fallback

    # A file of that commit never downloaded: offline says which is missing, and what else to give.
    with pytest.raises(HubError) as info:
        download_files("acme/api-offline", {"notes.txt": 18}, commit=commit, repo_type="dataset", instead="a file")
    message = str(info.value)
    assert (
        info.value.reason == "offline"
        and "the dataset acme/api-offline is not (fully) in the local Hub cache" in message
    )
    assert "1 file(s) are missing: notes.txt" in message and message.endswith("or give a file")


def test_fetch_file_and_resolve_commit_errors_are_hub_errors(hub: HubEmulator) -> None:
    commit = hub.seed_repo("acme/api-files", {"recipe.yaml": b"name: x\n"})
    path = fetch_file("acme/api-files", "recipe.yaml")
    assert path.read_bytes() == b"name: x\n" and path.parent.name == commit
    with pytest.raises(HubError) as info:
        fetch_file("acme/api-files", "nope.yaml", instead="a local recipe file")
    assert info.value.reason == "entry" and "acme/api-files has no nope.yaml at revision 'main'" in str(info.value)
    with pytest.raises(HubError) as info:
        resolve_commit("acme/api-missing", repo_type="dataset")
    assert info.value.reason == "not_found" and info.value.repo_id == "acme/api-missing"
    assert f"the dataset acme/api-missing was not found on {hub.url}" in str(info.value)
    assert f"check the id at {hub.url}/datasets/acme/api-missing" in str(info.value)
    with pytest.raises(HubError, match="acme/api-files has no not-there.yaml at revision") as info:
        download_files("acme/api-files", {"not-there.yaml": 3}, commit=commit)  # a plan naming a file not in the repo
    assert info.value.reason == "entry"
    with pytest.raises(HubError) as info:
        resolve_commit("acme/api-files", revision="v9")
    assert info.value.reason == "revision" and info.value.argument == "revision"
    assert resolve_commit("acme/api-files", revision=commit) == commit
