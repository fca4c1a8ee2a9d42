"""Every command at 80 columns with its output in a pipe (tmux, CI logs): tables and bars readable, nothing cut.

Each command runs as a real process (``python -m cpedit``, the code of this checkout) with
``COLUMNS=80`` and stdout and stderr pipes. Rich fills a cell it cannot fit with ``…``; it is
never allowed here, nor rich's ``file.py:123`` log-path column. The important fields (layer
names, recipe names and files, counts, the ETA) must appear whole.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
from pathlib import Path

import pytest
from rich.console import Console
from support.helpers import recipe_text
from support.hub_emulator import HubEmulator
from support.paths import REPO_ROOT
from support.processes import WIDTH, run_cli

from cpedit.cli.render import ProgressView
from cpedit.progress import ProgressEvent
from cpedit.shapes.model import builtin_pipeline_path

REPO = REPO_ROOT
TOKEN = "hf_narrow-token-never-printed"
EVAL = ["--images", "2", "--steps", "2", "--seed", "0", "--device", "cpu"]
"""The smallest shapes evaluation: 2 images per prompt set, 2 denoising steps."""
NO_MATPLOTLIB = "import sys\nsys.modules['matplotlib'] = None  # as if it were not installed"
DOMINATED_CHOICE = """
import cpedit.tuning.search as search
from cpedit.tuning.points import Point


class Synthetic:
    \"""Points measured on a known trade-off: more pruning erases more and (here) damages less.\"""

    def __init__(self, *args, **kwargs):
        self.calibrations = []

    def evaluate(self, settings, *, plan=None):
        s = settings.skill_ratio
        erased = {"before": 1.0, "after": max(0.0, 1 - 2 * s)}
        return Point(settings, int(s * 1e6), 100 * s, erased, {"before": 1.0, "after": 0.7 + 0.2 * s}, 0.3 - 0.2 * s)

    def close(self):
        pass


search.PointEvaluator = Synthetic
"""
"""``cpedit tune`` on a known trade-off where the point chosen (the least pruning that meets the goal)
is dominated by one with more pruning (less erased and less damage): no model is loaded."""


def ran(process: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """``process``, which must have succeeded, with nothing cut in its output."""
    assert process.returncode == 0, process.stdout + process.stderr
    assert_readable(process.stdout)
    assert_readable(process.stderr)
    return process


def assert_readable(text: str) -> None:
    """No cell or bar cut short (rich's ``…``) and no ``render.py:113`` log-path column."""
    assert "…" not in text, text
    assert not re.search(r"\b\w+\.py:\d+\b", text), text


def lines_with(text: str, word: str) -> list[str]:
    return [line for line in text.splitlines() if word in line]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a small shapes recipe (2 prompt pairs, tau 2, attn-value): a prune in seconds."""
    folder = tmp_path_factory.mktemp("narrow")
    text = recipe_text(
        name="narrow-striped",
        concept="striped",
        subjects=("red star", "blue circle"),
        target="a striped {subject} on a white background",
        base="a plain {subject} on a white background",
        skill_ratio=0.2,
        tau=2,
        steps=4,
        prune_target="attn-value",
        preview=("a striped red star on a white background",),
    )
    (folder / "narrow-striped.yaml").write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def pruned(work: Path) -> dict:
    """``cpedit prune`` of the built-in model at 80 columns: the process and its output folder."""
    process = run_cli("prune", "--recipe", "narrow-striped.yaml", "--out", "edited", "--device", "cpu", cwd=work)
    assert process.returncode == 0, process.stdout + process.stderr
    report = json.loads((work / "edited" / "conceptprune" / "report.json").read_text())
    return {"process": process, "out": work / "edited", "layers": [layer["name"] for layer in report["layers"]]}


def test_prune_tables_and_bars_at_80_columns(pruned: dict) -> None:
    process = ran(pruned["process"])
    out, err = process.stdout, process.stderr
    assert len(pruned["layers"]) == 7
    for name in pruned["layers"]:  # full layer names, each on a line of its own
        assert any(line.strip() == name for line in out.splitlines()), out
    for field in ("target attn-value", "skill_ratio 0.2", "tau 2", "calls 2", "pruned 3,"):
        assert field in out
    assert "narrow-striped" in out and "attn-value" in out
    assert all(len(line) <= WIDTH for line in out.splitlines())
    # the calibration bar: calls done / needed, the batch and call, elapsed time and ETA, all whole
    bar = lines_with(err, "narrow-striped")[0]
    assert re.search(r"━+ 2/2 +\d+:\d\d:\d\d ETA \d+:\d\d:\d\d$", bar.rstrip()), err
    assert "batch 1/1 · call 2/2" in err
    assert all(len(line) <= WIDTH for line in err.splitlines())


def test_sample_shows_counts_and_an_eta_at_80_columns(pruned: dict, work: Path) -> None:
    prompts = ["-p", "a striped red star on a white background", "-p", "a plain blue circle on a grey background"]
    process = ran(run_cli("sample", pruned["out"], *prompts, "--out", "grid.png", "--steps", 3, cwd=work))
    bar = lines_with(process.stderr, "sample")[-1]
    assert re.search(r"━+ 2/2 +\d+:\d\d:\d\d ETA \d+:\d\d:\d\d$", bar.rstrip()), process.stderr
    assert "Wrote grid.png" in process.stdout


def test_eval_shapes_at_80_columns(pruned: dict, work: Path) -> None:
    process = ran(run_cli("eval", "shapes", pruned["out"], *EVAL, cwd=work))
    for measure in ("erased accuracy", "preservation: background", "before", "after", "change"):
        assert measure in process.stdout, process.stdout
    for model in ("edited", "base"):  # 2 images per set, 2 sets, per model
        assert re.search(rf"sample {model} +━+ 4/4 +\d+:\d\d:\d\d ETA ", process.stderr), process.stderr


def test_audit_at_80_columns(pruned: dict, work: Path) -> None:
    process = ran(run_cli("audit", pruned["out"], "--base-model", "builtin:shapes", cwd=work))
    for name in pruned["layers"]:
        assert any(line.strip() == name for line in process.stdout.splitlines()), process.stdout
    assert "recovered" in process.stdout and "exact zeros" in process.stdout and "total" in process.stdout


def test_card_at_80_columns_names_the_layers_really_pruned(pruned: dict, work: Path) -> None:
    process = ran(run_cli("card", pruned["out"], cwd=work))
    for name in pruned["layers"]:
        assert name in process.stdout
    method = process.stdout.split("## Method")[1].split("##")[0]
    assert "cross-attention value projection weights of the UNet" in method  # prune.target: attn-value
    assert "feed-forward" not in method


def test_a_recipe_in_words_the_model_does_not_know_warns(pruned: dict, work: Path) -> None:
    assert "Warning" not in pruned["process"].stderr  # a recipe in the shapes world's words: no warning
    text = recipe_text(name="narrow-van-gogh", concept="Van Gogh", subjects=("cat", "dog"), tau=1, steps=2)
    (work / "narrow-van-gogh.yaml").write_text(text, encoding="utf-8")
    process = run_cli("prune", "--recipe", "narrow-van-gogh.yaml", "--out", "vg", "--device", "cpu", cwd=work)
    assert "Warning: recipe narrow-van-gogh" in process.stderr, process.stderr
    warning = " ".join(process.stderr[process.stderr.index("Warning: recipe narrow-van-gogh") :].split())
    assert "does not know the words" in warning and "van, gogh" in warning and "may not erase Van Gogh" in warning
    assert "the built-in shapes model knows only the words of its captions" in warning
    ran(process)


def test_recipes_list_at_80_columns_with_each_recipes_target(work: Path) -> None:
    from cpedit.recipes.format import load_recipe

    rows = json.loads(ran(run_cli("recipes", "list", "--format", "json", cwd=work)).stdout)
    assert all(row["target"] == load_recipe(REPO / "recipes" / row["file"]).prune.target for row in rows)
    process = ran(run_cli("recipes", "list", cwd=work))
    assert all(len(line) <= WIDTH for line in process.stdout.splitlines())
    records: dict[str, str] = {}  # a record: the recipe's name on a line, then its indented fields
    name = ""
    for line in process.stdout.splitlines()[1:]:
        if line.startswith(" "):
            records[name] += line
        else:
            name = line.strip()
            records[name] = ""
    files = sorted((REPO / "recipes").rglob("*.yaml"))
    assert files and set(records) == {file.stem for file in files}
    for file in files:
        fields = " ".join(records[file.stem].split())
        assert f"file {file.relative_to(REPO / 'recipes').as_posix()}" in fields
        assert f"target {load_recipe(file).prune.target}" in fields
    assert "target attn-value" in " ".join(records["shapes-striped"].split())


def test_sweep_and_tune_at_80_columns(work: Path) -> None:
    sweep = ran(
        run_cli(
            "sweep",
            "--recipe",
            "narrow-striped.yaml",
            "--skill-ratio",
            "0.05,0.3",
            "--eval",
            "shapes",
            *EVAL,
            "--out",
            "sw",
            cwd=work,
        )
    )
    assert len(json.loads((work / "sw" / "sweep.json").read_text())["points"]) == 2
    for header in ("skill", "ratio", "tau", "pruned", "erased", "before", "after", "drop"):
        assert header in sweep.stdout
    assert all(len(line) <= WIDTH for line in sweep.stdout.splitlines())
    tune = ran(
        run_cli(
            "tune",
            "--recipe",
            "narrow-striped.yaml",
            "--eval",
            "shapes",
            *EVAL,
            "--erased-at-most",
            "1",
            "--max-drop",
            "1",
            "--out",
            "tuned",
            cwd=work,
        )
    )
    assert "Goal met" in tune.stderr
    assert all(len(line) <= WIDTH for line in tune.stdout.splitlines())


def test_sweep_without_matplotlib_keeps_the_table_and_says_so(work: Path) -> None:
    """The README's first install has no matplotlib: the sweep is measured and shown, only its plot is left out."""
    process = ran(
        run_cli(
            "sweep", "--recipe", "narrow-striped.yaml", "--skill-ratio", "0.05,0.3", "--eval", "shapes", *EVAL,
            "--out", "sw-no-plot", cwd=work, prelude=NO_MATPLOTLIB,
        )
    )  # fmt: skip
    assert not (work / "sw-no-plot" / "sweep.png").exists()
    assert len(json.loads((work / "sw-no-plot" / "sweep.json").read_text())["points"]) == 2
    for header in ("skill", "tau", "pruned", "erased", "drop"):
        assert header in process.stdout  # the final table
    notes = " ".join(process.stderr.split())
    assert "matplotlib is not installed" in notes and 'pip install "cpedit[eval]"' in notes
    assert notes.index("matplotlib is not installed") < notes.index("point sr 0.05")  # said before any work
    assert "(no plot: matplotlib is not installed)" in notes


def test_tune_labels_the_chosen_point_with_rounded_ratios_and_the_real_tau(work: Path) -> None:
    goal = ["--erased-at-most", "0.2", "--max-drop", "0.5", "--max-skill-ratio", "0.6", "--tolerance", "1.05"]
    process = run_cli(
        "tune", "--recipe", "shapes-striped", "--eval", "shapes", *goal, "--out", "t", cwd=work,
        prelude=DOMINATED_CHOICE,
    )  # fmt: skip
    assert process.returncode == 0, process.stdout + process.stderr
    data = json.loads((work / "t" / "tune.json").read_text())
    chosen, points = data["chosen"], data["points"]
    assert 0.4 <= chosen["settings"]["skill_ratio"] <= 0.42 and chosen["settings"]["timesteps"] is None
    dominating = [p for p in points if p["erased"]["after"] < chosen["erased"]["after"] and p["drop"] < chosen["drop"]]
    assert dominating  # the case of the issue: another point beats the chosen one on both measures
    first_table = process.stdout.split("└")[0]  # the points (the held-out check's table follows)
    rows = [line for line in first_table.splitlines() if line.startswith("│")]
    assert len(rows) == len(points), process.stdout
    (marked,) = [row for row in rows if "chosen" in row]
    assert f"{chosen['settings']['skill_ratio']:.3g}" in marked and "pareto" not in process.stdout
    ratios = [row.split("│")[1].strip() for row in rows]
    assert all(len(r.replace("0.", "").lstrip("0")) <= 3 for r in ratios), ratios  # 3 significant digits
    assert all(row.split("│")[2].strip() == "10" for row in rows)  # shapes-striped's own tau, not "recipe"
    assert f"skill ratio {chosen['settings']['skill_ratio']:.3g}, tau 10 prunes" in " ".join(process.stderr.split())
    ran(process)  # and readable at 80 columns


@pytest.fixture
def logged_in(hub: HubEmulator) -> HubEmulator:
    hub.add_token(TOKEN, "alice")
    return hub


def test_push_at_80_columns(pruned: dict, work: Path, logged_in: HubEmulator) -> None:
    process = ran(run_cli("push", pruned["out"], "--repo", "alice/narrow-edit", cwd=work, env={"HF_TOKEN": TOKEN}))
    assert process.stdout.strip().splitlines()[-1] == f"{logged_in.url}/alice/narrow-edit"
    assert re.search(r"upload +━+ [\d.]+/[\d.]+ [kM]B", process.stderr), process.stderr
    assert TOKEN not in process.stdout + process.stderr


def test_models_search_and_info_at_80_columns(hub: HubEmulator, work: Path) -> None:
    folder = builtin_pipeline_path()
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    t2i = {"library_name": "diffusers", "pipeline_tag": "text-to-image", "license": "apache-2.0"}
    long_id = "narrow-columns-organisation/shapes-model-with-a-rather-long-name"
    hub.seed_repo(long_id, files, card_metadata=t2i, downloads=123_456_789, likes=4_321)
    search = ran(run_cli("models", "search", "narrow-columns", cwd=work))
    assert long_id in search.stdout and "123,456,789" in search.stdout and "4,321" in search.stdout
    info = ran(run_cli("models", "info", long_id, cwd=work))
    assert long_id in info.stdout and "StableDiffusionPipeline" in info.stdout and "apache-2.0" in info.stdout


def test_the_cli_counts_a_batch_in_flight_by_its_steps() -> None:
    """A 64-image batch moves the bar (and its ETA) with every denoising step, not in one jump at its end."""
    console = Console(file=io.StringIO(), width=80)
    start = ProgressEvent(
        stage="sample", message="edited", concept="edited", batch=2, batches=2, batch_size=64,
        completed=64, total=128, unit="images",
    )  # fmt: skip
    with ProgressView(console) as view:
        view(start)
        shown = [view.progress.tasks[0].completed]
        for step in (5, 10, 25):
            view(ProgressEvent(**{**start.__dict__, "timestep": step, "timesteps": 25}))
            shown.append(view.progress.tasks[0].completed)
        view(ProgressEvent(**{**start.__dict__, "batch": None, "completed": 128}))
        shown.append(view.progress.tasks[0].completed)
    assert shown == [64, 64 + 64 * 5 / 25, 64 + 64 * 10 / 25, 128, 128]
    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert "sample edited" in output and "128/128" in output and "ETA" in output and "…" not in output
