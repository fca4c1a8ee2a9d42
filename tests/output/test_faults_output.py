"""Faults while writing: kill -9 at several moments of `prune`, full disks, read-only or missing parents.

After any fault, the output folder either does not exist or is complete (it reads as a cpedit output and
its weights verify); the only leftovers are hidden temporaries named as cpedit.durable documents
(``.NAME.partial-PID-XXXXXXXX``, ``.NAME.old-PID-XXXXXXXX``), and the next run to the same place
removes them. Evaluations (`eval shapes`), `sample --out` images and previews are single files written
the same way.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import support.helpers as helpers
from click.testing import CliRunner
from support.masks import output_positions
from support.paths import REPO_ROOT

import cpedit
from cpedit import read_output
from cpedit.errors import CpeditError
from cpedit.models.compute import ComputeOptions
from cpedit.models.files import check_safetensors

SUBJECTS = ("red star on a white background", "blue circle on a black background")
REPO = REPO_ROOT


def tiny_recipe(folder: Path) -> Path:
    return helpers.write_recipe(
        folder,
        name="tiny-striped",
        concept="striped",
        subjects=SUBJECTS,
        target="a striped {subject}",
        base="a {subject}",
        tau=2,
        skill_ratio=0.2,
        prune_target="attn-value",
    )


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> cpedit.EditSession:
    """The built-in model with a tiny recipe calibrated, selected and applied once (save it as often as needed)."""
    recipe = tiny_recipe(tmp_path_factory.mktemp("faults-recipe"))
    opened = cpedit.EditSession.open("builtin:shapes", [recipe], compute=ComputeOptions(device="cpu"))
    opened.calibrate()
    opened.apply(opened.select())
    return opened


def temporaries(out: Path) -> list[str]:
    """The entries next to ``out`` that belong to it, other than ``out`` itself."""
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def assert_recognisable(names: list[str], out: Path, pids: set[int]) -> None:
    pattern = re.compile(rf"^\.{re.escape(out.name)}\.(partial|old)-(\d+)-[0-9a-f]{{8}}$")
    for name in names:
        match = pattern.match(name)
        assert match is not None, name
        assert int(match.group(2)) in pids, name


def assert_absent_or_complete(out: Path) -> None:
    """``out`` does not exist, or it is a complete output whose weights verify (pruned positions zero)."""
    if not out.exists():
        return
    record = read_output(out)
    for file in out.rglob("*.safetensors"):
        check_safetensors(file, shown_as=str(file))
    from safetensors.torch import load_file

    weights = load_file(out / record.report.denoiser_component / "diffusion_pytorch_model.safetensors")
    positions = output_positions(out)
    assert positions
    for name, mask in positions.items():
        assert bool(mask.any()) and bool((weights[f"{name}.weight"][mask] == 0).all()), name


def start_cli(args: list[str], *, cwd: Path, crash: str | None = None) -> subprocess.Popen[bytes]:
    """The real CLI in a subprocess; ``crash`` stops it (``os._exit``, as kill -9 does) at an exact point."""
    prelude = {
        None: "",
        # between moving the previous output aside and moving the new one into place
        "rename": (
            "import pathlib\n"
            "original = pathlib.Path.rename\n"
            "def rename(self, target):\n"
            "    if '.partial-' in self.name:\n"
            "        os._exit(137)\n"
            "    return original(self, target)\n"
            "pathlib.Path.rename = rename\n"
        ),
    }[crash]
    code = f"import os, sys\n{prelude}from cpedit.cli.main import main\nsys.argv = ['cpedit', *sys.argv[1:]]\nmain()\n"
    env = {**os.environ, "COLUMNS": "120", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def kill_when(process: subprocess.Popen[bytes], ready, *, timeout: float = 240) -> bool:  # type: ignore[no-untyped-def]
    """SIGKILL ``process`` as soon as ``ready()`` is true; False when it ended first."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        if ready():
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
            return True
        time.sleep(0.005)
    process.wait(timeout=30)
    return False


# --- kill -9 ------------------------------------------------------------------------------------


def test_kill_9_during_prune_never_leaves_an_output_that_looks_complete(
    session: cpedit.EditSession, tmp_path: Path
) -> None:
    recipe = tiny_recipe(tmp_path / "recipes")
    out = tmp_path / "OUT"
    args = ["prune", "--recipe", str(recipe), "--out", "OUT", "--device", "cpu"]

    # 1. killed during the save: once the UNet's weights are being written into the temporary folder
    first = start_cli(args, cwd=tmp_path)
    killed = kill_when(first, lambda: any(tmp_path.glob(".OUT.partial-*/unet/*.safetensors*")))
    assert killed, "the run ended before it could be killed during the save"
    assert_absent_or_complete(out)
    if killed:
        assert not out.exists()
        left = temporaries(out)
        assert left and all(".partial-" in name for name in left)
        assert_recognisable(left, out, {first.pid})
        with pytest.raises(CpeditError, match="unfinished"):
            read_output(tmp_path / left[0])  # never mistaken for an output

    # 2. the rerun to the same --out works and removes the leftovers
    session.save(out)
    assert temporaries(out) == []
    assert_absent_or_complete(out)
    previous = (out / "conceptprune" / "report.json").read_bytes()

    # 3. --overwrite, killed at the worst moment: the previous output moved aside, the new one not yet in place
    second = start_cli([*args, "--overwrite"], cwd=tmp_path, crash="rename")
    assert second.wait(timeout=600) == 137, second.stderr.read().decode() if second.stderr else ""
    assert not out.exists()  # nothing that looks complete, and nothing half-written under its name
    left = temporaries(out)
    assert sorted(name.split("-")[0] for name in left) == [".OUT.old", ".OUT.partial"]
    assert_recognisable(left, out, {second.pid})
    old = next(tmp_path / name for name in left if ".old-" in name)
    assert (old / "conceptprune" / "report.json").read_bytes() == previous  # the previous output, recoverable

    # 4. the next run to the same --out removes both before it starts (it checks --out first)
    cpedit.output.folder.check_output_target(out, overwrite=False)
    assert temporaries(out) == []
    session.save(out)
    assert_absent_or_complete(out)
    assert temporaries(out) == []


def test_a_running_process_temporaries_are_kept(tmp_path: Path) -> None:
    out = tmp_path / "OUT"
    mine = tmp_path / f".OUT.partial-{os.getpid()}-0123abcd"
    dead = tmp_path / ".OUT.old-999999999-0123abcd"
    older = tmp_path / ".OUT.partial"  # an older cpedit's name, recent: kept for a day
    unrelated = tmp_path / ".OUTER.partial-999999999-0123abcd"
    for folder in (mine, dead, older, unrelated):
        folder.mkdir()
    cpedit.output.folder.check_output_target(out, overwrite=False)
    assert temporaries(out) == [".OUT.partial", mine.name] and unrelated.exists()


# --- single files: evaluations, images, previews ------------------------------------------------

CRASH_WRITE = """
import os, sys
sys.path.insert(0, {repo!r})
import cpedit.durable
cpedit.durable._fsync = lambda fd: os._exit(137)  # killed with the temporary written, before the rename
from cpedit.output.record import Evaluation, write_evaluation
from cpedit.models.sampling import save_png
from PIL import Image
if sys.argv[1] == "eval":
    write_evaluation(sys.argv[2], Evaluation.from_dict("shapes", {data!r}, source="test"))
else:
    save_png(Image.new("RGB", (8, 8), "red"), sys.argv[2])
"""

EVAL = {
    "concepts": ["striped"],
    "images": 4,
    "erased": {"before": 0.9, "after": 0.5},
    "preserved": {"before": 0.9, "after": 0.875},
    "pruned_fraction": 0.001,
}


def crash_while_writing(kind: str, target: Path) -> None:
    code = CRASH_WRITE.format(repo=str(REPO), data=EVAL)
    done = subprocess.run([sys.executable, "-c", code, kind, str(target)], capture_output=True, timeout=120)
    assert done.returncode == 137, done.stderr.decode()


def test_kill_9_while_an_evaluation_is_kept_leaves_the_output_complete(
    session: cpedit.EditSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = session.save(tmp_path / "OUT").path
    crash_while_writing("eval", out)
    folder = out / "conceptprune" / "eval"
    assert not (folder / "shapes.json").exists()
    left = [p.name for p in folder.iterdir()]
    assert len(left) == 1 and re.fullmatch(r"\.shapes\.json\.partial-\d+-[0-9a-f]{8}", left[0]), left
    record = read_output(out)  # still a complete output: the leftover replaced nothing
    assert record.evaluations == []

    # the next `cpedit eval shapes` keeps its result through the same atomic write and removes the leftover
    # (the benchmark itself takes minutes: it is replaced by a known result; what the CLI writes is real)
    from cpedit.cli.main import cli

    writes = spy_atomic_writes(monkeypatch)
    import cpedit.eval.driver

    monkeypatch.setattr(cpedit.eval.driver, "evaluate", lambda *a, **k: _fake())
    ran = CliRunner().invoke(cli, ["eval", "shapes", str(out), "--images", "1", "--format", "json"])
    assert ran.exit_code == 0, ran.output
    assert writes == [folder / "shapes.json"]
    assert [p.name for p in folder.iterdir()] == ["shapes.json"]
    assert json.loads((folder / "shapes.json").read_text())["images"] == 4
    assert [e.benchmark for e in read_output(out).evaluations] == ["shapes"]


def spy_atomic_writes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The files written through cpedit.durable.write_bytes_atomically from now on."""
    import cpedit.durable

    calls: list[Path] = []
    original = cpedit.durable.write_bytes_atomically

    def spy(path: Path, data: bytes, **kwargs: object) -> Path:
        calls.append(Path(path))
        return original(path, data, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(cpedit.durable, "write_bytes_atomically", spy)
    import cpedit.output.record

    monkeypatch.setattr(cpedit.output.record, "write_bytes_atomically", spy)
    return calls


def _fake() -> object:
    """A stand-in shapes result for the CLI's table and JSON output."""
    from cpedit.eval.benchmark import BenchmarkResult
    from cpedit.output.record import Evaluation

    return BenchmarkResult(
        benchmark="shapes",
        metrics={"erased": {"before": 0.9, "after": 0.5}, "preserved": {"before": 0.9, "after": 0.875}},
        protocol={"concepts": ["striped"], "images": 4, "pruned_fraction": 0.001, "preserved_by_attribute": {}},
        evaluation=Evaluation.from_dict("shapes", dict(EVAL), source="test"),
    )


def test_kill_9_while_writing_an_image_leaves_no_half_file(tmp_path: Path) -> None:
    target = tmp_path / "grid.png"
    crash_while_writing("png", target)
    assert not target.exists()
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and re.fullmatch(r"\.grid\.png\.partial-\d+-[0-9a-f]{8}", left[0]), left
    from PIL import Image

    from cpedit.models.sampling import save_png

    save_png(Image.new("RGB", (8, 8), "blue"), target)  # what `sample --out grid.png` does last
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]
    assert Image.open(target).size == (8, 8)


def test_sample_out_is_written_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    import cpedit.cli.sample as sample_cli
    import cpedit.durable
    from cpedit.cli.main import cli

    monkeypatch.setattr(sample_cli, "render_samples", lambda *a, **k: Image.new("RGB", (8, 8)))
    writes = spy_atomic_writes(monkeypatch)
    out = tmp_path / "grid.png"
    ran = CliRunner().invoke(cli, ["sample", "builtin:shapes", "-p", "a red star", "--out", str(out)])
    assert ran.exit_code == 0, ran.output
    assert writes == [out] and [p.name for p in tmp_path.iterdir()] == ["grid.png"]

    def stop(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # Ctrl-C (or SIGTERM) just before the rename

    monkeypatch.setattr(cpedit.durable.os, "replace", stop)
    ran = CliRunner().invoke(cli, ["sample", "builtin:shapes", "-p", "a red star", "--out", str(tmp_path / "cut.png")])
    assert ran.exit_code == 130
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]  # nothing left behind


# --- full disks ---------------------------------------------------------------------------------


def test_too_little_free_space_is_refused_before_the_model_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_model_loading: None
) -> None:
    import cpedit.durable
    from cpedit.cli.main import cli

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(cpedit.durable.shutil, "disk_usage", lambda path: usage._replace(free=5_000_000))
    result = CliRunner().invoke(
        cli, ["prune", "--recipe", "shapes-striped", "--out", str(tmp_path / "OUT"), "--device", "cpu"]
    )
    assert result.exit_code == 1, result.output
    text = " ".join(result.stderr.split())
    needed = cpedit.output.folder.output_size(cpedit.shapes.model.builtin_pipeline_path())
    expected = cpedit.durable.format_bytes(needed)
    assert f"not enough space for the output folder {tmp_path / 'OUT'}: it needs about {expected}" in text
    assert "and 5 MB are free there; nothing was written" in text and "hint: choose another --out" in text
    assert list(tmp_path.iterdir()) == []


def test_a_disk_that_fills_up_while_saving_leaves_nothing_behind(
    session: cpedit.EditSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "OUT"
    copies = 0
    original = cpedit.output.folder.copy_file

    def copy_until_full(source: Path, target: Path, **kwargs: object) -> int:
        nonlocal copies
        copies += 1
        if copies == 3:
            target.write_bytes(b"half a file")
            raise OSError(errno.ENOSPC, "No space left on device", str(target))
        return original(source, target, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(cpedit.output.folder, "copy_file", copy_until_full)
    with pytest.raises(CpeditError) as caught:
        session.save(out)
    assert caught.value.reason == "no_space" and caught.value.path == str(out) and caught.value.argument == "out"
    needed = cpedit.output.folder.output_size(session.source.path)  # type: ignore[union-attr]
    message = str(caught.value)
    assert f"to write the output folder {out} (it needs about {cpedit.durable.format_bytes(needed)}, " in message
    assert "are free there); nothing was written" in message
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_reported_by_safetensors_is_recognised(
    session: cpedit.EditSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cpedit.output.folder

    def full(*args: object, **kwargs: object) -> None:
        raise RuntimeError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space" })')

    monkeypatch.setattr(cpedit.output.folder, "write_filled_file", full)
    with pytest.raises(CpeditError, match="no space left on the device to write the output folder"):
        session.save(tmp_path / "OUT")
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_while_writing_a_single_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cpedit.durable
    from cpedit.output.record import write_json_atomically

    class Full:
        def __init__(self, handle: object) -> None:
            self.handle = handle

        def __enter__(self) -> Full:
            return self

        def __exit__(self, *exc: object) -> None:
            self.handle.close()  # type: ignore[attr-defined]

        def write(self, data: bytes) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

    real_open = open
    monkeypatch.setattr(cpedit.durable, "open", lambda path, mode: Full(real_open(path, mode)), raising=False)
    target = tmp_path / "result.json"
    with pytest.raises(CpeditError) as caught:
        write_json_atomically(target, {"a": 1}, what="the result", argument="json_file")
    assert caught.value.reason == "no_space" and caught.value.argument == "json_file"
    assert f"no space left on the device to write the result {target} (it needs about 13 B" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


# --- read-only and missing parents --------------------------------------------------------------


def test_a_read_only_parent_is_refused_before_the_model_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_model_loading: None
) -> None:
    from cpedit.cli.main import cli

    parent = tmp_path / "readonly"
    parent.mkdir()
    if os.geteuid() != 0:  # root writes anywhere: the filesystem's answer is simulated then
        parent.chmod(0o555)
    else:
        import cpedit.output.folder

        def refuse(*args: object, **kwargs: object) -> str:
            raise OSError(errno.EROFS, "Read-only file system")

        monkeypatch.setattr(cpedit.output.folder.tempfile, "mkdtemp", refuse)
    try:
        result = CliRunner().invoke(
            cli, ["prune", "--recipe", "shapes-striped", "--out", str(parent / "new" / "OUT"), "--device", "cpu"]
        )
    finally:
        parent.chmod(0o755)
    assert result.exit_code == 1, result.output
    text = " ".join(result.stderr.split())
    assert f"cannot write the output folder {parent / 'new' / 'OUT'}: {parent} is not writable" in text
    assert list(parent.iterdir()) == []


def test_missing_parents_are_created_and_a_file_parent_is_refused(
    session: cpedit.EditSession, tmp_path: Path, no_model_loading: None
) -> None:
    out = session.save(tmp_path / "a" / "b" / "OUT").path  # like mkdir -p
    assert_absent_or_complete(out)
    assert out.exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(CpeditError, match="is not a folder") as caught:
        cpedit.output.folder.check_output_target(tmp_path / "file" / "sub" / "OUT", overwrite=False)
    assert caught.value.reason == "not_folder"
