"""``cpedit prune`` and ``cpedit sample`` through click's test runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import support.helpers as helpers
from click.testing import CliRunner, Result
from PIL import Image

import cpedit.cli.prune
import cpedit.edit.calibration
import cpedit.edit.prune
import cpedit.models.loading
from cpedit.cli.main import cli
from cpedit.models.sampling import MIN_CELL

SUBJECTS = ("cat", "dog", "car")
PREVIEW = ("a cat in the style of {artist}", "a red bicycle")


def settings(name: str, artist: str) -> dict:
    """A small recipe for the tiny model, with preview prompts for ``sample --compare``."""
    return dict(
        name=name,
        concept=artist,
        subjects=SUBJECTS,
        skill_ratio=0.05,
        tau=3,
        steps=6,
        preview=tuple(p.format(artist=artist) for p in PREVIEW),
    )


def recipe_text(name: str, artist: str) -> str:
    return helpers.recipe_text(**settings(name, artist))


def write_recipe(folder: Path, name: str, artist: str) -> Path:
    return helpers.write_recipe(folder, **settings(name, artist))


def invoke(*args: object) -> Result:
    """Run ``cpedit ARGS``; stdout and stderr are captured separately (``result.stdout``, ``result.stderr``).

    COLUMNS is set wide so rich does not fold table cells (it reads COLUMNS when not on a terminal).
    """
    return CliRunner(env={"COLUMNS": "200"}).invoke(cli, [str(a) for a in args], catch_exceptions=True)


def assert_clean_exit(result: Result, code: int) -> None:
    """Exit status ``code`` through click (SystemExit), never an escaped exception."""
    assert isinstance(result.exception, SystemExit) or (code == 0 and result.exception is None), (
        f"unexpected exception: {result.exception!r}\n{result.output}"
    )
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output


def flat(text: str) -> str:
    """Whitespace collapsed (rich wraps long lines at the terminal width)."""
    return " ".join(text.split())


@pytest.fixture(scope="module")
def pruned(tiny_sd_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``cpedit prune`` run once (table output), shared by the tests that need an output folder."""
    folder = tmp_path_factory.mktemp("cli")
    recipe = write_recipe(folder / "recipes", "van-gogh-cli", "Van Gogh")
    out = folder / "out"
    result = invoke("prune", tiny_sd_path, "--recipe", recipe, "--out", out, "--device", "cpu")
    return {"result": result, "out": out, "recipe": recipe}


def test_prune_prints_a_summary_and_writes_the_output(pruned: dict) -> None:
    result, out = pruned["result"], pruned["out"]
    assert_clean_exit(result, 0)
    report = json.loads((out / "conceptprune" / "report.json").read_text(encoding="utf-8"))
    pruned_weights = report["totals"]["pruned_weights"]
    assert pruned_weights > 0
    text = flat(result.stdout)
    percent = f"{100 * report['totals']['pruned_fraction']:.4f}%"
    assert f"Pruned {pruned_weights:,} weights ({percent} of the UNet)" in text
    assert "Saved to" in text and out.name in text
    assert "van-gogh-cli" in text  # the concept table
    assert (out / "model_index.json").is_file()
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert (out / "conceptprune" / "pruned.safetensors").is_file()
    assert (out / "conceptprune" / "recipes" / "van-gogh-cli.yaml").read_bytes() == pruned["recipe"].read_bytes()


def test_prune_json_with_two_recipes(tiny_sd_path: Path, tmp_path: Path) -> None:
    first = write_recipe(tmp_path / "recipes", "van-gogh-cli", "Van Gogh")
    second = write_recipe(tmp_path / "recipes", "monet-cli", "Claude Monet")
    out = tmp_path / "out"
    result = invoke(
        "prune",
        tiny_sd_path,
        "-r",
        first,
        "--recipe",
        second,
        "--out",
        out,
        "--device",
        "cpu",
        "--batch-size",
        "4",
        "--format",
        "json",
    )
    assert_clean_exit(result, 0)
    report = json.loads(result.stdout)  # stdout holds the report alone (progress goes to stderr)
    assert report == json.loads((out / "conceptprune" / "report.json").read_text(encoding="utf-8"))
    assert [c["name"] for c in report["concepts"]] == ["van-gogh-cli", "monet-cli"]
    assert all(c["batch_size"] == 4 and c["pruned_weights"] > 0 for c in report["concepts"])
    assert report["totals"]["pruned_weights"] > max(c["pruned_weights"] for c in report["concepts"])


def test_prune_invalid_recipe_is_a_clean_error(tiny_sd_path: Path, tmp_path: Path, no_model_loading: None) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(recipe_text("bad", "Monet").replace("timesteps: 3", "timesteps: zero"), encoding="utf-8")
    result = invoke("prune", tiny_sd_path, "--recipe", bad, "--out", tmp_path / "out", "--device", "cpu")
    assert_clean_exit(result, 1)
    assert "Error:" in result.stderr and "prune.timesteps" in result.stderr
    assert not (tmp_path / "out").exists()


def test_prune_refuses_an_existing_output(tiny_sd_path: Path, tmp_path: Path, no_model_loading: None) -> None:
    recipe = write_recipe(tmp_path / "recipes", "van-gogh-cli", "Van Gogh")
    out = tmp_path / "out"
    out.mkdir()
    result = invoke("prune", tiny_sd_path, "--recipe", recipe, "--out", out, "--device", "cpu")
    assert_clean_exit(result, 1)
    assert "Error:" in result.stderr and "--overwrite" in result.stderr
    assert list(out.iterdir()) == []


def test_prune_ctrl_c_mid_calibration_exits_130_and_leaves_nothing(
    tiny_sd_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C arrives inside a hook, halfway through calibration (as a real one would)."""
    calls: list[int] = []
    real = cpedit.edit.calibration.accumulate_normalised_column_squares

    def interrupted_midway(*args: object) -> None:
        calls.append(1)
        if len(calls) == 10:
            raise KeyboardInterrupt
        real(*args)

    monkeypatch.setattr(cpedit.edit.calibration, "accumulate_normalised_column_squares", interrupted_midway)
    recipe = write_recipe(tmp_path / "recipes", "van-gogh-cli", "Van Gogh")
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    result = invoke("prune", tiny_sd_path, "--recipe", recipe, "--out", outputs / "out", "--device", "cpu")
    assert_clean_exit(result, 130)
    assert "Interrupted; nothing was written" in result.stderr
    assert len(calls) == 10
    assert list(outputs.iterdir()) == []  # no output folder, no hidden partial folder
    assert not (tmp_path / "out").exists()


def test_sample_compare_renders_base_and_pruned_side_by_side(pruned: dict, tmp_path: Path) -> None:
    assert_clean_exit(pruned["result"], 0)
    grid_path = tmp_path / "grid.png"
    result = invoke("sample", pruned["out"], "--compare", "--out", grid_path, "--steps", 2, "--device", "cpu")
    assert_clean_exit(result, 0)
    with Image.open(grid_path) as grid:
        assert grid.format == "PNG"
        size = grid.size
    side = MIN_CELL  # tiny images (16 x VAE scale factor 2 = 32 px) are enlarged to the minimum cell
    assert size[0] == 2 * side  # two columns: base and pruned
    rows = len(PREVIEW)  # one row per preview prompt of the recipe
    assert size[1] > rows * side and size[1] < (rows + 1) * side + 64
    assert f"{size[0]}x{size[1]}" in flat(result.stdout)
    assert not list(tmp_path.glob("*.partial"))


def test_sample_renders_a_model(tiny_sd_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.png"
    result = invoke("sample", tiny_sd_path, "-p", "a cat", "--out", out, "--steps", 2, "--device", "cpu")
    assert_clean_exit(result, 0)
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width == MIN_CELL  # 32 px images, enlarged 4x


def test_sample_refuses_non_png_output(tiny_sd_path: Path, tmp_path: Path, no_model_loading: None) -> None:
    out = tmp_path / "x.jpg"
    result = invoke("sample", tiny_sd_path, "-p", "a cat", "--out", out, "--steps", 2, "--device", "cpu")
    assert_clean_exit(result, 1)
    assert "Error:" in result.stderr and ".png" in result.stderr
    assert not out.exists()


def test_library_errors_get_the_cli_flag_as_a_hint(tiny_sd_path: Path, tmp_path: Path) -> None:
    """The library names its argument (``revision``); the CLI names its own option for it."""
    recipe = helpers.write_recipe(tmp_path, name="hint-test")
    result = CliRunner().invoke(
        cli, ["prune", str(tiny_sd_path), "-r", str(recipe), "-o", str(tmp_path / "o"), "--revision", "main"]
    )
    assert result.exit_code == 1
    assert "a revision applies to Hub models only" in result.output
    assert "hint: drop --revision: it applies to Hub models only" in result.output
    (tmp_path / "exists").mkdir()
    result = CliRunner().invoke(cli, ["prune", str(tiny_sd_path), "-r", str(recipe), "-o", str(tmp_path / "exists")])
    assert "hint: pass --overwrite to replace it, or choose another --out" in result.output
