"""The wheel is the library and its data only, and a plain install of it runs the built-in model.

Development tools (``devtools/``: the test builders and the shapes training script), the tests and
the benchmarks stay in the repository; the built-in shapes model's weights, its classifier and the
shipped recipes are data the installed library needs. The wheel is built offline (no build
isolation: hatchling comes from the ``test`` extra) and installed with ``pip --target`` into a
folder that a fresh interpreter, run outside the repository, imports cpedit from.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from this checkout (about a second)."""
    try:
        import hatchling  # noqa: F401
    except ImportError:  # pragma: no cover - the test extra has it
        pytest.fail("hatchling is needed to build the wheel: pip install -e '.[test]'")
    out = tmp_path_factory.mktemp("wheel")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
    command += ["--no-cache-dir", "--quiet", "-w", str(out), str(REPO_ROOT)]
    subprocess.run(command, check=True, timeout=120, env={**os.environ, "PIP_NO_INPUT": "1"})
    (built,) = out.glob("cpedit-*.whl")
    return built


def test_the_wheel_ships_the_library_and_its_data_and_no_development_files(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    weights = "cpedit/shapes/weights/"
    unet = [n for n in names if n.startswith(weights + "pipeline/unet/") and n.endswith(".safetensors")]
    assert unet, sorted(names)
    assert {
        weights + "pipeline/model_index.json",
        weights + "pipeline/unet/config.json",
        weights + "classifier.safetensors",
        weights + "training-report.json",
    } <= names
    shipped_recipes = {
        "cpedit/recipes/shipped/" + p.relative_to(REPO_ROOT / "recipes").as_posix()
        for p in (REPO_ROOT / "recipes").rglob("*.yaml")
    }
    assert shipped_recipes and shipped_recipes <= names, sorted(shipped_recipes - names)
    assert "cpedit/shapes/world.py" in names and "cpedit/shapes/classifier.py" in names
    assert "cpedit/py.typed" in names  # PEP 561: type checkers read cpedit's annotations
    name, version = wheel.name.split("-")[:2]
    top_level = {n.split("/", 1)[0] for n in names}
    assert top_level == {"cpedit", "tui", f"{name}-{version}.dist-info"}, top_level  # tui: `cpedit tui`
    assert {"tui/app.py", "tui/app.tcss", "tui/screens/tune.py", "tui/screens/tune.tcss"} <= names
    for absent in ("devtools/", "tests/", "benchmarks/"):
        assert not [n for n in names if n.startswith(absent)], absent
    assert "cpedit/testing.py" not in names
    assert "cpedit/shapes/train.py" not in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


# Run by a fresh interpreter outside the repository, with only the installed wheel (PYTHONPATH) and
# the environment's dependencies: a checkout that an editable install of cpedit puts on sys.path
# (this repository, or any folder holding a cpedit package other than the install) is dropped
# first, so that neither cpedit nor devtools can come from a checkout.
_CHECK_INSTALLED = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path

    repo, target = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    def from_a_checkout(entry):
        folder = Path(entry or ".").resolve()
        return folder == repo or (folder != target and (folder / "cpedit" / "__init__.py").is_file())

    sys.path[:] = [entry for entry in sys.path if not from_a_checkout(entry)]

    import cpedit
    result = {"cpedit": cpedit.__file__}
    for name in ("cpedit.testing", "cpedit.shapes.train", "devtools"):
        try:
            __import__(name)
        except ModuleNotFoundError:
            result[name] = "ModuleNotFoundError"
        else:
            result[name] = "imported"

    from cpedit.recipes.sources import builtin_recipe_files
    from cpedit.models.compute import ComputeOptions
    from cpedit.models.loading import open_pipeline

    recipes = builtin_recipe_files()
    result["recipes"] = sorted(recipes)
    result["recipe_files"] = sorted(str(p) for p in recipes.values())
    source, pipe = open_pipeline("builtin:shapes", compute=ComputeOptions(device="cpu"))
    result["model_path"] = str(source.path)
    images = pipe("a red circle on a white background", num_inference_steps=2, output_type="np").images
    result["image_shape"] = list(images.shape)
    print("RESULT " + json.dumps(result))
    """
)


def test_an_installed_wheel_loads_and_runs_the_builtin_model_outside_the_repository(
    wheel: Path, tmp_path: Path
) -> None:
    target = tmp_path / "site"
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--no-cache-dir", "--no-compile"]
    command += ["--quiet", "--target", str(target), str(wheel)]
    subprocess.run(command, check=True, timeout=120, env={**os.environ, "PIP_NO_INPUT": "1"})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "HF_HUB_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    completed = subprocess.run(
        [sys.executable, "-c", _CHECK_INSTALLED, str(REPO_ROOT), str(target)],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    (line,) = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    result = json.loads(line.removeprefix("RESULT "))
    resolved_target = target.resolve()
    assert Path(result["cpedit"]).resolve().is_relative_to(resolved_target), result["cpedit"]
    assert result["cpedit.testing"] == "ModuleNotFoundError"
    assert result["cpedit.shapes.train"] == "ModuleNotFoundError"
    assert result["devtools"] == "ModuleNotFoundError"
    shipped = {p.stem for p in (REPO_ROOT / "recipes").rglob("*.yaml")}
    assert set(result["recipes"]) == shipped, result["recipes"]
    packaged = resolved_target / "cpedit" / "recipes" / "shipped"
    assert all(Path(p).resolve().is_relative_to(packaged) for p in result["recipe_files"]), result["recipe_files"]
    assert Path(result["model_path"]).resolve().is_relative_to(resolved_target), result["model_path"]
    assert result["image_shape"] == [1, 32, 32, 3]


def test_the_sdist_holds_every_package_and_data_folder_the_wheel_ships() -> None:
    """A wheel built from the sdist (as pip does from PyPI's source archive) must ship the same packages."""
    import tomllib

    config = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text(encoding="utf-8"))
    targets = config["tool"]["hatch"]["build"]["targets"]
    sdist = set(targets["sdist"]["only-include"])
    shipped = {*targets["wheel"]["packages"], *targets["wheel"]["force-include"]}
    assert shipped <= sdist, f"the sdist leaves out {sorted(shipped - sdist)}"
