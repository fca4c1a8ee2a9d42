"""Careless and hostile runs of ``eval``, ``sample``, ``sweep`` and ``tune`` (issue 22's Medium and Low items).

Where the behaviour is the command line's (exit status, message, hint, no traceback), the test
runs ``cpedit`` as a real process; a full disk or a read-only folder is simulated there by a
prelude that makes the writes under one folder fail (:mod:`support.processes`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from support.helpers import CPU
from support.processes import fail_writes_under, run_cli

import cpedit
from cpedit.errors import CpeditError
from cpedit.eval.driver import evaluate
from cpedit.eval.engine import load_prompts
from cpedit.eval.options import ImageOptions
from cpedit.eval.shapes import ShapesOptions

NO_LOADING = """
import cpedit.models.loading as loading


def refuse(*args, **kwargs):
    raise SystemExit("the model was loaded although the run should have stopped before")


loading.load_pipeline = loading.resolve_source = refuse
"""
"""A prelude: the process stops with a message (not a cpedit error) if it gets as far as loading a model."""

SMALL_EVAL = ["--images", "2", "--steps", "2", "--device", "cpu"]
SWEEP = ["sweep", "--recipe", "shapes-striped", "--eval", "shapes", "--skill-ratio", "0.1", "--out", "sw"]


@pytest.fixture(scope="module")
def pruned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cpedit output of the built-in shapes model (pruned once per module)."""
    out = tmp_path_factory.mktemp("hostile-runs") / "pruned"
    cpedit.prune("builtin:shapes", ["shapes-striped"], out=out, compute=CPU)
    return out


def _copy(pruned: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "out"
    shutil.copytree(pruned, copy)
    return copy


def _failed_cleanly(process: object) -> str:
    """The output of a process that failed with cpedit's own error (status 1, no traceback)."""
    text = process.stdout + process.stderr  # type: ignore[attr-defined]
    assert process.returncode == 1, text  # type: ignore[attr-defined]
    assert "Traceback" not in text and "Error:" in text, text
    return text


# --- tune --out: a user's recipe of the tuned recipe's name ---------------------------------


def test_tune_refuses_to_replace_a_users_recipe_of_the_same_name(tmp_path: Path) -> None:
    mine = tmp_path / "t" / "shapes-striped.yaml"
    mine.parent.mkdir()
    mine.write_text("name: shapes-striped\n# my own edits\n", encoding="utf-8")
    prelude = "import cpedit.tuning.search as s\ns.PointEvaluator = None  # any measurement would fail\n"
    process = run_cli(
        "tune", "--recipe", "shapes-striped", "--eval", "shapes", "--erased-at-most", "0.5", "--max-drop", "0.5",
        "--out", tmp_path / "t", cwd=tmp_path, prelude=prelude,
    )  # fmt: skip
    text = _failed_cleanly(process)
    assert "not written by cpedit" in text and str(mine) in text and "--out" in text
    assert mine.read_text(encoding="utf-8") == "name: shapes-striped\n# my own edits\n"
    assert sorted(p.name for p in mine.parent.iterdir()) == ["shapes-striped.yaml"]


# --- full disks and read-only outputs --------------------------------------------------------


def test_eval_into_a_read_only_output_names_the_folder(pruned: Path, tmp_path: Path) -> None:
    out = _copy(pruned, tmp_path)
    process = run_cli(
        "eval", "shapes", out, *SMALL_EVAL, cwd=tmp_path, prelude=fail_writes_under(out, errno_name="EROFS")
    )
    text = _failed_cleanly(process)
    assert "cannot write the evaluation images" in text and str(out / "conceptprune" / "eval") in text
    assert "Read-only file system" in text and "--images-dir" in text


def test_eval_keeps_the_json_elsewhere_when_the_output_is_full(pruned: Path, tmp_path: Path) -> None:
    out = _copy(pruned, tmp_path)
    result = tmp_path / "result.json"
    process = run_cli(
        "eval", "shapes", out, *SMALL_EVAL, "--images-dir", tmp_path / "images", "--json", result,
        cwd=tmp_path, prelude=fail_writes_under(out, errno_name="ENOSPC"),
    )  # fmt: skip
    text = _failed_cleanly(process)
    assert "no space left on the device to write the evaluation result" in text
    assert f"{result} was written" in text
    assert json.loads(result.read_text(encoding="utf-8"))["concepts"] == ["striped"]
    assert "erased accuracy" in process.stdout  # the table is shown before it is kept
    assert not (out / "conceptprune" / "eval").exists()


def test_sample_writes_out_when_the_preview_cannot_be_written(pruned: Path, tmp_path: Path) -> None:
    out = _copy(pruned, tmp_path)
    grid = tmp_path / "grid.png"
    process = run_cli(
        "sample", out, "--compare", "--save-preview", "--out", grid, "-p", "a striped square", "--steps", "2",
        "--device", "cpu", cwd=tmp_path, prelude=fail_writes_under(out, errno_name="ENOSPC"),
    )  # fmt: skip
    text = _failed_cleanly(process)
    assert "no space left on the device to write the preview" in text and f"{grid} was written" in text
    assert grid.read_bytes().startswith(b"\x89PNG") and not (out / "conceptprune" / "preview.png").exists()


# --- bounds checked before any loading -------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["eval", "shapes", "{out}", "--steps", "5000"], "--steps"),
        (["eval", "shapes", "{out}", "--images", "20000"], "--images"),
        (["eval", "clip-score", "{out}", "--prompts", "{prompts}", "--images-per-prompt", "5000"],
         "--images-per-prompt"),
        (["eval", "shapes", "{out}", "--seed", str(2**64)], "--seed"),
        (["sample", "builtin:shapes", "-p", "x", "--seed", str(2**70), "--out", "x.png"], "--seed"),
        ([*SWEEP, "--steps", "5000"], "--steps"),
        ([*SWEEP, "--timesteps", "99999"], "--timesteps"),
    ],
)  # fmt: skip
def test_out_of_bound_settings_are_refused_before_loading(
    args: list[str], flag: str, pruned: Path, tmp_path: Path
) -> None:
    (tmp_path / "prompts.txt").write_text("a cat\n", encoding="utf-8")
    filled = [a.format(out=pruned, prompts=tmp_path / "prompts.txt") for a in args]
    text = _failed_cleanly(run_cli(*filled, cwd=tmp_path, prelude=NO_LOADING))
    assert f"hint: see {flag}" in text, text
    assert "--recipe" not in text.split("hint:")[1]


def test_bounds_hold_in_the_library() -> None:
    for options, argument in (
        ({"steps": 1001}, "steps"),
        ({"images_per_prompt": 1001}, "images_per_prompt"),
        ({"seed": 2**63}, "seed"),
        ({"seed": -1}, "seed"),
        ({"seed": float("nan")}, "seed"),
    ):
        with pytest.raises(CpeditError) as info:
            ImageOptions(**options)  # type: ignore[arg-type]
        assert info.value.argument == argument
    ImageOptions(steps=1000, images_per_prompt=1000, seed=2**63 - 1)
    with pytest.raises(CpeditError, match="10,000|10000"):
        ShapesOptions(images=10_001)


# --- prompt files ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", ["1e999", "-1e999", "NaN", str(2**64), "1.5"])
def test_prompt_file_seeds_out_of_range_name_the_line(seed: str, tmp_path: Path) -> None:
    file = tmp_path / "p.jsonl"
    file.write_text('{"prompt": "a cat"}\n{"prompt": "a dog", "seed": ' + seed + "}\n", encoding="utf-8")
    with pytest.raises(CpeditError, match=r"p\.jsonl:2: .*seed") as info:
        load_prompts(file)
    assert info.value.argument == "prompts"


def test_a_csv_cell_over_the_csv_modules_limit_names_the_file_and_line(tmp_path: Path) -> None:
    file = tmp_path / "p.csv"
    cell = ("x" * 60_000 + "\n") * 3  # each line under cpedit's line bound, the cell over the csv module's
    file.write_text(f'prompt,seed\n"a cat",1\n"{cell}",2\n', encoding="utf-8")
    with pytest.raises(CpeditError, match=r"p\.csv:\d+: a cell is longer than") as info:
        load_prompts(file)
    assert info.value.reason == "too_long" and int(str(info.value).split(":")[1]) >= 3


# --- an output replaced while it is evaluated ------------------------------------------------


def test_eval_refuses_a_result_when_the_output_was_replaced_meanwhile(pruned: Path, tmp_path: Path) -> None:
    out = _copy(pruned, tmp_path)
    replaced: list[bool] = []

    def overwrite_meanwhile(event: object) -> None:  # another run's `prune --overwrite`: a new folder moved in
        if getattr(event, "stage", None) == "evaluate" and not replaced:
            shutil.copytree(out, tmp_path / "new")
            os.rename(out, tmp_path / "old")
            os.rename(tmp_path / "new", out)
            replaced.append(True)

    with pytest.raises(CpeditError, match="replaced or changed while it was evaluated") as info:
        evaluate(
            "shapes", out, ShapesOptions(images=1), images=ImageOptions(steps=1, batch_size=8), compute=CPU,
            images_dir=tmp_path / "images", on_progress=overwrite_meanwhile,
        )  # fmt: skip
    assert replaced and info.value.reason == "mismatch"


# --- Low items: odd inputs refused with what they are ---------------------------------------


def test_a_device_as_recipe_is_not_a_regular_file_not_missing(tmp_path: Path) -> None:
    process = run_cli("prune", "builtin:shapes", "-r", "/dev/zero", "--out", "z", cwd=tmp_path, prelude=NO_LOADING)
    text = _failed_cleanly(process)
    assert "not a regular file" in text and "not found" not in text


def test_an_output_name_whose_temporary_would_be_too_long_is_refused_before_loading(tmp_path: Path) -> None:
    name = "n" * 240  # fits 255 bytes, but .NAME.partial-PID-XXXXXXXX does not
    process = run_cli(
        "prune", "builtin:shapes", "-r", "shapes-striped", "--out", name, cwd=tmp_path, prelude=NO_LOADING
    )
    text = _failed_cleanly(process)
    assert "240 bytes long" in text and "at most 226 bytes" in text and "--out" in text
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("revision", ["../../../tmp", "refs/../../x", "main\x1b]0;x\x07"])
def test_a_hub_revision_that_could_leave_the_cache_is_refused_unasked(
    revision: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cpedit.hub.download import resolve_commit, snapshot_folder
    from cpedit.models.loading import resolve_source

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for call in (
        lambda: resolve_source("alice/model", revision=revision),
        lambda: resolve_commit("alice/prompts", repo_type="dataset", revision=revision),
        lambda: snapshot_folder("alice/model", commit=revision),
    ):
        with pytest.raises(CpeditError, match="is not a branch, tag or commit name") as info:
            call()
        assert info.value.argument == "revision" and info.value.reason == "invalid"
        assert "\x1b" not in str(info.value)


@pytest.mark.parametrize("folder", ["../x", "a/../../x", "a//b", "a\\b", "a/\x1b[2Jb"])
def test_recipes_push_refuses_a_path_in_repo_outside_the_repo(folder: str, tmp_path: Path) -> None:
    from support.paths import REPO_ROOT

    recipe = REPO_ROOT / "recipes" / "shapes" / "shapes-striped.yaml"
    process = run_cli("recipes", "push", recipe, "--repo", "alice/recipes", "--path-in-repo", folder, cwd=tmp_path)
    text = _failed_cleanly(process)
    assert "the path in the repo" in text and "hint: see --path-in-repo" in text and "\x1b" not in text


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path: Path) -> None:
    from PIL import Image

    from cpedit.eval.image_files import MAX_IMAGE_PIXELS, read_rgb
    from cpedit.eval.metrics import load_images

    bomb = tmp_path / "bomb.png"
    Image.new("1", (9000, 9000)).save(bomb)  # a few kB on disk, 243 MB once decoded as RGB
    assert bomb.stat().st_size < 100_000 and 9000 * 9000 > MAX_IMAGE_PIXELS
    for read in (read_rgb, lambda path: load_images([path])):
        with pytest.raises(CpeditError, match="9000 x 9000 pixels") as info:
            read(bomb)
        assert info.value.reason == "too_large" and info.value.path == str(bomb)
    small = tmp_path / "small.png"
    Image.new("RGB", (8, 8), "red").save(small)
    assert read_rgb(small).getpixel((0, 0)) == (255, 0, 0)
    (tmp_path / "cut.png").write_bytes(small.read_bytes()[:40])
    with pytest.raises(CpeditError, match="not a readable image") as info:
        read_rgb(tmp_path / "cut.png")
    assert info.value.reason == "malformed"


def test_a_local_judge_model_is_published_by_name_not_path(tmp_path: Path) -> None:
    from cpedit.eval.benchmark import public_model_name
    from cpedit.eval.clip_score import ClipScoreBenchmark, ClipScoreOptions

    local = tmp_path / "alice-secret-project" / "clip"
    local.mkdir(parents=True)
    assert public_model_name(local) == "local:clip"
    assert public_model_name("/home/alice/models/clip/") == "local:clip"
    assert public_model_name("openai/clip-vit-large-patch14") == "openai/clip-vit-large-patch14"
    described = ClipScoreBenchmark().describe(ClipScoreOptions(clip_model=str(local)), ImageOptions())
    assert described == {"clip_model": "local:clip"} and "alice" not in json.dumps(described)


KILLED_AT_SECOND_POINT = """
import os, signal
import cpedit.tuning.grid as grid
from cpedit.tuning.points import Point


class KilledAtSecond:
    \"""Measures the first point, then the run gets SIGTERM (as from `kill` or a scheduler).\"""

    def __init__(self, *args, **kwargs):
        self.calibrations = []
        self.measured = 0

    def evaluate(self, settings, *, plan=None):
        self.measured += 1
        if self.measured == 2:
            os.kill(os.getpid(), signal.SIGTERM)
            import time; time.sleep(10)
        return Point(settings, 10, 0.1, {"before": 1.0, "after": 0.5}, {"before": 1.0, "after": 0.9}, 0.1)

    def close(self):
        pass


grid.PointEvaluator = KilledAtSecond
"""


def test_sigterm_says_the_finished_points_are_kept(tmp_path: Path) -> None:
    args = ["sweep", "--recipe", "shapes-striped", "--eval", "shapes", "--skill-ratio", "0.05,0.2", "--out", "sw"]
    process = run_cli(*args, cwd=tmp_path, prelude=KILLED_AT_SECOND_POINT)
    assert process.returncode == 130, process.stderr
    assert "nothing was written" not in process.stderr
    assert f"the points finished so far are kept in {Path('sw') / 'sweep.json'}" in process.stderr
    data = json.loads((tmp_path / "sw" / "sweep.json").read_text(encoding="utf-8"))
    assert [p["settings"]["skill_ratio"] for p in data["points"]] == [0.05]


@pytest.mark.parametrize(
    "args",
    [
        ["card", "{out}", "--out", "{out}/conceptprune/report.json"],
        ["card", "{out}", "--out", "{out}/conceptprune/eval/card.md"],
        ["eval", "shapes", "{out}", "--json", "{out}/conceptprune/report.json"],
    ],
)
def test_results_and_cards_are_not_written_into_an_outputs_record(
    args: list[str], pruned: Path, tmp_path: Path
) -> None:
    out = _copy(pruned, tmp_path)
    report = (out / "conceptprune" / "report.json").read_bytes()
    process = run_cli(*[a.format(out=out) for a in args], cwd=tmp_path, prelude=NO_LOADING)
    text = _failed_cleanly(process)
    assert "is inside the record of the cpedit output" in text and "hint:" in text
    assert (out / "conceptprune" / "report.json").read_bytes() == report
    assert not (out / "conceptprune" / "eval" / "card.md").exists()


@pytest.mark.parametrize(
    "ref", ["hub:a/b\x1b]0;pwned\x07/r.yaml", "hub:../../x/r.yaml", "hub:a--b/c/r.yaml", "hub:-a/b/r.yaml"]
)
def test_hub_refs_with_invalid_repo_ids_are_explained_without_escapes(ref: str, tmp_path: Path) -> None:
    text = _failed_cleanly(run_cli("recipes", "show", ref, cwd=tmp_path))
    assert "malformed Hub recipe reference" in text and "\x1b" not in text and "\x07" not in text


BASE_MEETS = """
import cpedit.tuning.search as search
from cpedit.tuning.points import Point


class BaseMeets:
    def __init__(self, *args, **kwargs):
        self.calibrations = []

    def evaluate(self, settings, *, plan=None):
        return Point(settings, 10, 0.1, {"before": 0.2, "after": 0.1}, {"before": 1.0, "after": 1.0}, 0.0)

    def close(self):
        pass


search.PointEvaluator = BaseMeets
"""


def test_tune_says_when_the_base_already_meets_the_goal(tmp_path: Path) -> None:
    args = ["tune", "--recipe", "shapes-striped", "--eval", "shapes", "--erased-at-most", "0.5", "--max-drop", "0.5"]
    process = run_cli(*args, "--out", "t", cwd=tmp_path, prelude=BASE_MEETS)
    assert process.returncode == 0, process.stderr
    said = " ".join(process.stderr.split())  # lines wrap at 80 columns
    assert "the base model already meets the goal before any pruning" in said
    assert "0.200 <= 0.5" in said and "--erased-at-most" in said
