"""Evaluation over several processes: torchrun (gloo, CPU) makes the same images, manifest and result as one process.

Also: the launch environment (clear errors when it is half-set), the manifest's canonical
order, a crashed multi-process run's rank manifests picked up on resume, and rank 0 alone
writing the result.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.helpers import CPU, write_recipe

import cpedit
from cpedit import distributed
from cpedit.errors import CpeditError
from cpedit.eval.benchmark import BenchmarkResult
from cpedit.eval.driver import record_result
from cpedit.eval.engine import PromptSpec, read_manifest, render_images
from cpedit.output.record import evaluation_path, read_output

STEPS = 2
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE", "GROUP_RANK")


@pytest.fixture(scope="module")
def edited(tiny_sd_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cpedit output of the tiny SD pipeline."""
    root = tmp_path_factory.mktemp("eval_distributed")
    recipe = write_recipe(root / "recipes", name="eval-style", steps=4, tau=2)
    return cpedit.prune(tiny_sd_path, [recipe], out=root / "out", compute=CPU).output


@pytest.fixture
def single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """No launch variables, whatever the shell running the tests has."""
    for name in LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_torchrun_two_processes_write_what_one_process_writes(edited: Path, tiny_clip: Path, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.csv"
    prompts.write_text("prompt,seed\na photo of a cat,\na photo of a dog,\na red car,4\na blue house,\n")
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARIABLES}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
    result_file = evaluation_path(edited, "clip-score")

    def command(name: str) -> list[str]:
        return [
            *("-m", "cpedit", "eval", "clip-score", str(edited), "--prompts", str(prompts), "--base"),
            *("--steps", str(STEPS), "--image-batch-size", "2", "--device", "cpu", "--clip-model", str(tiny_clip)),
            *("--images-dir", str(tmp_path / name), "--json", str(tmp_path / f"{name}.json"), "--format", "json"),
        ]

    one = subprocess.run([sys.executable, *command("one")], env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    recorded_by_one = json.loads(result_file.read_text())
    result_file.unlink()
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    two = subprocess.run([*launcher, *command("two")], env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr

    # One result, printed once (only rank 0 prints), the same as one process's, recorded once.
    printed = json.loads(two.stdout)
    assert printed == json.loads(one.stdout) == recorded_by_one
    assert json.loads((tmp_path / "two.json").read_text()) == json.loads((tmp_path / "one.json").read_text())
    assert json.loads(result_file.read_text()) == recorded_by_one
    assert [p.name for p in result_file.parent.iterdir() if p.is_file()] == ["clip-score.json"]
    # The same images, byte for byte, and the same manifest; no rank manifest or temporary left.
    files_one, files_two = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert sorted(files_two) == sorted(files_one)
    assert files_two == files_one
    pngs = [f for f in files_two if f.endswith(".png") and f.startswith(("edited/", "base/"))]
    assert len(pngs) == 8 and set(files_two) == {"manifest.jsonl", *pngs}
    lines = [json.loads(line) for line in files_two["manifest.jsonl"].decode().splitlines()]
    seeds = [(line["model"], line["seed"]) for line in lines]
    assert seeds == [("edited", 0), ("edited", 0), ("edited", 4), ("edited", 0)] + [
        ("base", 0),
        ("base", 0),
        ("base", 4),
        ("base", 0),
    ]


def test_a_rank_renders_its_share_of_the_batches_into_its_own_manifest(
    edited: Path, tmp_path: Path, counted: list[int], monkeypatch: pytest.MonkeyPatch, single_process: None
) -> None:
    """Rank 1 of 2 renders batches 1, 3, ... of one process's batches; images it cannot see are a clear error."""
    monkeypatch.setattr(distributed, "setup", lambda: distributed.Launch(rank=1, world_size=2, local_rank=1))
    monkeypatch.setattr(distributed, "barrier", lambda: None)
    record = read_output(edited)
    prompts = [PromptSpec(f"a photo of a {s}") for s in ("cat", "dog", "car")] + [PromptSpec("a tree", guidance=2.0)]
    folder = tmp_path / "images"
    with pytest.raises(CpeditError, match="a filesystem every node shares") as info:
        render_images(record, prompts, folder=folder, steps=STEPS, batch_size=2, compute=CPU)
    assert info.value.reason == "images_missing"
    # One process's batches: [cat, dog], [car], [tree] (other guidance): rank 1 makes the second.
    assert counted == [1]
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == ["manifest.rank-1.jsonl"]
    assert [e.prompt for e in read_manifest(folder).values()] == ["a photo of a car"]


def test_a_crashed_runs_rank_manifests_are_reused_and_merged(
    edited: Path, tmp_path: Path, counted: list[int], single_process: None
) -> None:
    record = read_output(edited)
    prompts = [PromptSpec(f"a photo of a {s}") for s in ("cat", "dog", "car", "house")]
    folder = tmp_path / "images"
    options = dict(folder=folder, steps=STEPS, batch_size=1, compute=CPU)
    render_images(record, prompts[:3], **options)
    # As a 2-process run killed before its merge leaves them: each rank's images in its own
    # manifest (rank 1's last line half-written), no manifest.jsonl.
    lines = (folder / "manifest.jsonl").read_text().splitlines()
    (folder / "manifest.jsonl").unlink()
    (folder / "manifest.rank-0.jsonl").write_text(lines[0] + "\n" + lines[2] + "\n")
    (folder / "manifest.rank-1.jsonl").write_text(lines[1] + "\n" + lines[0][:25])
    assert len(read_manifest(folder)) == 3
    counted.clear()
    resumed = render_images(record, prompts, **options)
    assert counted == [1] and resumed.generated == 1 and resumed.reused == 3
    assert [e.prompt for e in resumed.edited] == [p.prompt for p in prompts]
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == ["manifest.jsonl"]
    merged = [json.loads(line)["prompt"] for line in (folder / "manifest.jsonl").read_text().splitlines()]
    assert merged == [p.prompt for p in prompts]


def test_the_manifest_ends_in_canonical_order(
    edited: Path, tmp_path: Path, counted: list[int], single_process: None
) -> None:
    """This run's images in prompt-set order, edited then base, then older entries as they were."""
    record = read_output(edited)
    a, b, c = PromptSpec("a cat"), PromptSpec("a dog"), PromptSpec("a car")
    folder = tmp_path / "images"
    render_images(record, [a, b], folder=folder, steps=STEPS, compute=CPU)
    render_images(record, [c, a], folder=folder, steps=STEPS, compute=CPU)
    manifest = folder / "manifest.jsonl"
    assert [json.loads(line)["prompt"] for line in manifest.read_text().splitlines()] == ["a car", "a cat", "a dog"]
    before = manifest.stat().st_mtime_ns, manifest.read_bytes()
    counted.clear()
    render_images(record, [c, a], folder=folder, steps=STEPS, compute=CPU)
    assert counted == [] and (manifest.stat().st_mtime_ns, manifest.read_bytes()) == before  # nothing rewritten


def test_the_launch_environment(monkeypatch: pytest.MonkeyPatch, single_process: None) -> None:
    assert distributed.launch_from_env({}) is None
    assert distributed.launch_from_env({"WORLD_SIZE": "1", "RANK": "0"}) is None
    full = {"WORLD_SIZE": "4", "RANK": "5", "LOCAL_RANK": "1", "MASTER_ADDR": "node1", "MASTER_PORT": "29500"}
    with pytest.raises(CpeditError, match=r"RANK=5, LOCAL_RANK=1 do not fit WORLD_SIZE=4") as info:
        distributed.launch_from_env(full)
    assert info.value.reason == "distributed_environment"
    launch = distributed.launch_from_env({**full, "RANK": "3"})
    assert launch == distributed.Launch(rank=3, world_size=4, local_rank=1) and not launch.is_main
    with pytest.raises(CpeditError, match=r"LOCAL_RANK, MASTER_PORT are not set; start the processes with torchrun"):
        distributed.launch_from_env({"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "x"})
    with pytest.raises(CpeditError, match=r"WORLD_SIZE='two' is not a whole number"):
        distributed.launch_from_env({"WORLD_SIZE": "two"})
    assert distributed.is_main_process() and distributed.rank_device("auto") == "auto"
    for name, value in {**full, "RANK": "1", "WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(name, value)
    assert not distributed.is_main_process()
    assert distributed.rank_device("cpu") == "cpu" and distributed.rank_device("cuda:3") == "cuda:3"


def test_a_half_set_launch_is_refused_before_loading(
    edited: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, single_process: None, no_model_loading: None
) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(CpeditError, match="RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT are not set") as info:
        render_images(read_output(edited), [PromptSpec("a cat")], folder=tmp_path / "i", steps=STEPS, compute=CPU)
    assert info.value.reason == "distributed_environment"
    assert not (tmp_path / "i" / "manifest.jsonl").exists()


def test_only_rank_0_records_the_result(
    edited: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, single_process: None
) -> None:
    result = BenchmarkResult(
        benchmark="test-metric", metrics={"m": {"after": 1.0}}, protocol={"benchmark": "test-metric"}
    )
    launch = {"WORLD_SIZE": "2", "LOCAL_RANK": "1", "RANK": "1", "MASTER_ADDR": "localhost", "MASTER_PORT": "1"}
    for name, value in launch.items():
        monkeypatch.setenv(name, value)
    path = record_result(edited, result, json_file=tmp_path / "r.json")
    assert path == evaluation_path(edited, "test-metric") and not path.exists() and not (tmp_path / "r.json").exists()
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert record_result(edited, result, json_file=tmp_path / "r.json").is_file()
    assert (tmp_path / "r.json").is_file()
    path.unlink()


def test_torchrun_downloads_a_hub_prompt_set_once(hub, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Rank 0 asks the Hub and downloads; rank 1 reads the cache they share (no request), or raises rank 0's error."""
    files = {"p.csv": b"prompt,seed\na cat,1\na dog,2\n", "README.md": b"# prompts\n"}
    commit = hub.seed_repo("acme/dist-prompts", files, repo_type="dataset")
    script = tmp_path / "load.py"
    script.write_text(
        "import json, os\n"
        "from cpedit.errors import CpeditError\n"
        "from cpedit.eval.prompt_sets import load_prompt_set\n"
        "try:\n"
        "    load_prompt_set('hub:acme/dist-missing')\n"
        "except CpeditError as exc:\n"
        "    missing = [type(exc).__name__, exc.reason, exc.argument, exc.repo_id, str(exc)]\n"
        "found = load_prompt_set('hub:acme/dist-prompts')\n"
        "print(json.dumps({'rank': os.environ['RANK'], 'missing': missing, 'revision': found.revision,\n"
        "                  'prompts': [[p.prompt, p.seed] for p in found.prompts]}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARIABLES}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    done = subprocess.run([*launcher, str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    results = sorted((json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")), key=str)
    assert [r.pop("rank") for r in results] == ["0", "1"]
    assert results[0] == results[1]  # the same prompts at the same commit, the same error
    assert results[0]["revision"] == commit and results[0]["prompts"] == [["a cat", 1], ["a dog", 2]]
    kind, reason, argument, repo_id, message = results[0]["missing"]
    assert (kind, reason, argument, repo_id) == ("CpeditError", "not_found", "prompts", "acme/dist-missing")
    assert "the dataset acme/dist-missing was not found" in message
    # One process asked the Hub: one look-up of each set, each file fetched once.
    asked = [path for _, path, _ in hub.requests]
    assert sum(1 for p in asked if p.startswith("/api/datasets/acme/dist-missing")) == 1
    assert sum(1 for p in asked if p.split("?")[0].split("/revision/")[0] == "/api/datasets/acme/dist-prompts") == 1
    for name in files:
        assert sum(1 for m, p, _ in hub.requests if m == "GET" and p.endswith(f"/resolve/{commit}/{name}")) == 1
