"""Hub faults during `push`: 5xx, connections reset mid-upload, slow answers, kill -9.

Against the loopback emulator's fault injection (tests/hub_emulator.py): huggingface_hub retries the
upload requests itself (cpedit reports each retry as a progress event), a failure never leaves a
half commit (the commit is one call, made last), the message says plainly that the push failed and
what to do, and a rerun finishes the push without uploading again what the Hub already has.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import support.helpers as helpers
from support.hub_emulator import HubEmulator

import cpedit
from cpedit.hub.errors import HubError
from cpedit.models.compute import ComputeOptions
from cpedit.progress import ProgressEvent
from cpedit.publish.push import push_model

TOKEN = "hf_faults-token-never-printed"
SUBJECTS = ("red star on a white background", "blue circle on a black background")


@pytest.fixture(scope="module")
def output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cpedit output of the built-in model (a tiny recipe: well under a minute on 2 CPU cores)."""
    folder = tmp_path_factory.mktemp("faults-hub")
    recipe = folder / "tiny-striped.yaml"
    recipe.write_text(tiny_recipe(), encoding="utf-8")
    cpedit.prune("builtin:shapes", [recipe], out=folder / "out", compute=ComputeOptions(device="cpu"))
    return folder / "out"


def tiny_recipe() -> str:
    return helpers.recipe_text(
        name="tiny-striped",
        concept="striped",
        subjects=SUBJECTS,
        target="a striped {subject}",
        base="a {subject}",
        tau=2,
        skill_ratio=0.2,
        prune_target="attn-value",
    )


@pytest.fixture
def logged_in(hub: HubEmulator, monkeypatch: pytest.MonkeyPatch) -> HubEmulator:
    hub.add_token(TOKEN, "alice")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    return hub


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """huggingface_hub's backoff waits, recorded instead of slept (the policy is its own, untouched)."""
    from huggingface_hub.utils import _http

    slept: list[float] = []
    monkeypatch.setattr(_http, "time", types.SimpleNamespace(sleep=slept.append))
    return slept


def push(folder: Path, repo_id: str) -> tuple[list[ProgressEvent], object]:
    events: list[ProgressEvent] = []
    result = push_model(folder, repo_id=repo_id, on_progress=events.append)
    return events, result


def messages(events: list[ProgressEvent]) -> list[str]:
    return [event.message for event in events]


def lfs_paths(hub: HubEmulator, repo_id: str) -> dict[str, str]:
    repo = hub.repos[repo_id]
    files = repo.commits[repo.refs["main"]].files
    return {path: stored.lfs_sha256 for path, stored in files.items() if stored.lfs_sha256 is not None}


def commits(hub: HubEmulator, repo_id: str) -> list[str]:
    repo = hub.repos.get(repo_id)
    return [] if repo is None else [commit.title for commit in repo.commits.values()]


def test_server_errors_on_upload_requests_are_retried_with_backoff(
    output: Path, logged_in: HubEmulator, waits: list[float]
) -> None:
    hub = logged_in
    hub.fail_next(r"^/lfs-upload/", status=503, times=2)  # an object's PUT, twice
    hub.fail_next(r"/preupload/", status=500)  # and the call that asks how to upload
    hub.fail_next(r"/info/lfs/objects/batch$", status=502)
    events, result = push(output, "alice/faults-retried")
    assert [kind for kind, _, _ in hub.faults] == ["http 500", "http 502", "http 503", "http 503"]
    assert waits == [1, 1, 1, 2]  # huggingface_hub's exponential backoff, per request
    retried = [m for m in messages(events) if "retrying" in m]
    assert retried[-2:] == [
        "the Hub answered 503 (PUT); retrying in 1s (retry 1 of 5)",
        "the Hub answered 503 (PUT); retrying in 2s (retry 2 of 5)",
    ]
    assert len(retried) == 4 and all(hub.url not in m for m in retried)  # no URL (they can be pre-signed)
    assert commits(hub, "alice/faults-retried") == ["initial commit", "Upload pruned pipeline (cpedit)"]
    uploaded = [oid for oid, _ in hub.uploads]
    assert sorted(uploaded) == sorted(set(lfs_paths(hub, "alice/faults-retried").values()))  # each once
    assert result.commit == hub.repos["alice/faults-retried"].refs["main"]


def test_a_connection_reset_mid_upload_is_retried(output: Path, logged_in: HubEmulator, waits: list[float]) -> None:
    hub = logged_in
    hub.reset_connection_during_upload(times=1)
    events, _ = push(output, "alice/faults-reset")
    assert [kind for kind, _, _ in hub.faults] == ["reset"]
    assert any(m.startswith("the connection broke (PUT); retrying in 1s") for m in messages(events)), messages(events)
    stored = lfs_paths(hub, "alice/faults-reset")
    for path, sha in stored.items():
        local = (output / path).read_bytes()
        assert path.endswith("report.json") or hub.file_bytes("alice/faults-reset", path) == local
        assert [oid for oid, _ in hub.uploads].count(sha) == 1  # the cut-off attempt stored nothing


def test_a_persistent_failure_is_reported_plainly_and_commits_nothing(
    output: Path, logged_in: HubEmulator, waits: list[float]
) -> None:
    hub = logged_in
    repo_id = "alice/faults-persistent"
    unet = hashlib.sha256((output / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()).hexdigest()
    hub.fail_next(rf"^/lfs-upload/.*/{unet}$", status=500, times=6)  # the UNet's upload, and all 5 retries
    events: list[ProgressEvent] = []
    with pytest.raises(HubError) as caught:
        push_model(output, repo_id=repo_id, on_progress=events.append)
    message = str(caught.value)
    assert message.startswith(f"push to {repo_id} failed while uploading unet/diffusion_pytorch_model.safetensors")
    assert f"the upload to {repo_id} failed: the Hub at {hub.url} answered 500" in message
    assert "(after 5 retries)" in message and "Nothing was committed (the repo is as it was): push again" in message
    assert caught.value.reason == "http" and caught.value.repo_id == repo_id
    assert TOKEN not in message and "size=" not in message  # no URL query (a real upload URL's is a signature)
    assert commits(hub, repo_id) == ["initial commit"]  # created, but no half commit
    assert not any("/commit/" in path for _, path, _ in hub.requests)
    before = set(hub.repo_objects.get(repo_id, set()))
    assert before  # some objects made it before the failure
    count = len(hub.uploads)

    events, _ = push(output, repo_id)  # the rerun finishes it
    assert commits(hub, repo_id) == ["initial commit", "Upload pruned pipeline (cpedit)"]
    assert hub.uploads[count:] and not any(oid in before for oid, _ in hub.uploads[count:])  # nothing twice
    assert sorted(oid for oid, _ in hub.uploads) == sorted(set(lfs_paths(hub, repo_id).values()))


def test_a_failed_commit_leaves_no_commit_and_the_rerun_uploads_nothing_again(
    output: Path, logged_in: HubEmulator, waits: list[float]
) -> None:
    hub = logged_in
    repo_id = "alice/faults-commit"
    hub.fail_next(r"/commit/main$", status=500)
    with pytest.raises(HubError) as caught:
        push(output, repo_id)
    message = str(caught.value)
    assert message.startswith(f"push to {repo_id} failed at the commit, after all ")
    assert "answered 500" in message and "push again (nothing is uploaded twice" in message
    assert waits == []  # a commit is never retried: one that went through must not be made twice
    assert commits(hub, repo_id) == ["initial commit"]
    uploaded = list(hub.uploads)
    assert uploaded  # every LFS object was uploaded before the commit call

    events, result = push(output, repo_id)
    assert hub.uploads == uploaded  # the rerun uploaded nothing
    already = [m for m in messages(events) if m.endswith("is already on the Hub; not uploaded again")]
    assert len(already) == len(uploaded)
    assert commits(hub, repo_id) == ["initial commit", "Upload pruned pipeline (cpedit)"]
    assert set(lfs_paths(hub, repo_id).values()) == {oid for oid, _ in uploaded}

    events, again = push(output, repo_id)  # once more: nothing changed, no new commit
    assert "nothing changed since the last commit; no new commit" in messages(events)
    assert len(commits(hub, repo_id)) == 2 and again.commit == result.commit


def test_slow_answers_only_slow_the_push(output: Path, logged_in: HubEmulator) -> None:
    hub = logged_in
    hub.slow(0.3, r"^/lfs-upload/|/commit/")
    started = time.monotonic()
    events, _ = push(output, "alice/faults-slow")
    assert time.monotonic() - started >= 0.6
    assert commits(hub, "alice/faults-slow") == ["initial commit", "Upload pruned pipeline (cpedit)"]
    assert not any("retrying" in m for m in messages(events))
    assert any(kind == "slow 0.3" for kind, _, _ in hub.faults)


def test_kill_9_during_the_upload_commits_nothing_and_a_rerun_finishes(
    output: Path, logged_in: HubEmulator, tmp_path: Path
) -> None:
    hub = logged_in
    repo_id = "alice/faults-killed"
    hub.slow(1.0, r"^/lfs-upload/")  # time to kill it with uploads going on
    env = {**os.environ, "HF_TOKEN": TOKEN, "COLUMNS": "120"}
    with open(tmp_path / "stderr.txt", "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "cpedit.cli.main", "push", str(output), "--repo", repo_id],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            deadline = time.monotonic() + 60
            while not hub.repo_objects.get(repo_id) and time.monotonic() < deadline and process.poll() is None:
                time.sleep(0.05)  # the first object stored and verified: more to go, each a second late
            assert hub.repo_objects.get(repo_id), (tmp_path / "stderr.txt").read_text()
            process.send_signal(signal.SIGKILL)
        finally:
            process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert commits(hub, repo_id) == ["initial commit"]  # nothing committed
    hub.clear_faults()
    time.sleep(1.2)  # uploads the killed process had sent finish on the emulator's side
    before = set(hub.repo_objects.get(repo_id, set()))
    count = len(hub.uploads)

    events, _ = push(output, repo_id)
    assert commits(hub, repo_id) == ["initial commit", "Upload pruned pipeline (cpedit)"]
    assert not any(oid in before for oid, _ in hub.uploads[count:])  # nothing uploaded twice
    assert set(lfs_paths(hub, repo_id).values()) <= {oid for oid, _ in hub.uploads}
    assert any(m.endswith("not uploaded again") for m in messages(events))


def test_the_cli_reports_a_failed_push_plainly(output: Path, logged_in: HubEmulator, waits: list[float]) -> None:
    from click.testing import CliRunner

    from cpedit.cli.main import cli

    hub = logged_in
    hub.fail_next(r"/commit/main$", status=503)
    result = CliRunner().invoke(cli, ["push", str(output), "--repo", "alice/faults-cli"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    text = " ".join(result.stderr.split())
    assert "Error: push to alice/faults-cli failed at the commit" in text and "answered 503" in text
    assert TOKEN not in result.output
