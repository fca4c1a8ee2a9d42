"""Tests for ``cpedit recipes`` and the CLI help texts, via click's CliRunner; no model loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from support.paths import REPO_ROOT

from cpedit.cli.main import cli
from cpedit.recipes.format import load_recipe
from cpedit.recipes.sources import builtin_recipe_files

RECIPES_DIR = REPO_ROOT / "recipes"
SHIPPED = sorted(RECIPES_DIR.rglob("*.yaml"))

GOOD = """\
cpedit: 1
name: good-one
concept: Good
kind: style
prompts:
  subjects: [cat, dog]
  target: "a {subject} by Good"
  base: "a {subject}"
prune:
  skill_ratio: 0.02
  timesteps: 7
"""

BAD = """\
cpedit: 2
name: Bad Name
concept: Bad
prompts:
  target: "a {thing}"
  base: [a, b]
prune:
  skil_ratio: 0.01
"""

# A wide terminal so rich does not wrap or truncate lines.
WIDE = {"COLUMNS": "250", "LINES": "100", "NO_COLOR": "1", "TERM": "dumb"}


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env=WIDE, catch_exceptions=False)


@pytest.fixture
def good_file(tmp_path: Path) -> Path:
    path = tmp_path / "good.yaml"
    path.write_text(GOOD, encoding="utf-8")
    return path


@pytest.fixture
def bad_file(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD, encoding="utf-8")
    return path


# --- validate --------------------------------------------------------------------------


def test_validate_good_and_bad(good_file: Path, bad_file: Path) -> None:
    result = invoke("recipes", "validate", str(good_file), str(bad_file))
    assert result.exit_code == 1, result.output
    out = result.output
    assert f"✓ {good_file}: good-one (style, 2 prompt pairs, skill_ratio 0.02, tau 7)" in out
    assert f"✗ {bad_file}: invalid recipe" in out
    for field in ("cpedit", "name", "prune.skil_ratio", "prompts.target"):
        assert f"  - {field}: " in out, out
    assert "did you mean `skill_ratio`?" in out
    assert "format version must be 1" in out
    assert "Traceback" not in out


def test_validate_all_good(good_file: Path) -> None:
    result = invoke("recipes", "validate", str(good_file))
    assert result.exit_code == 0, result.output
    assert "✓" in result.output
    assert "✗" not in result.output


def test_validate_all_shipped_recipes() -> None:
    result = invoke("recipes", "validate", *map(str, SHIPPED))
    assert result.exit_code == 0, result.output
    assert result.output.count("✓") == len(SHIPPED)


def test_validate_bad_then_good_keeps_going(good_file: Path, bad_file: Path) -> None:
    result = invoke("recipes", "validate", str(bad_file), str(good_file))
    assert result.exit_code == 1
    assert result.output.index("✗") < result.output.index("✓")


def test_validate_missing_file(tmp_path: Path, good_file: Path) -> None:
    missing = tmp_path / "missing.yaml"
    result = invoke("recipes", "validate", str(good_file), str(missing))
    assert result.exit_code == 1
    assert f"✗ {missing}" in result.output
    assert "file not found" in result.output


def test_validate_shipped_name() -> None:
    result = invoke("recipes", "validate", "shapes-striped")
    assert result.exit_code == 0, result.output
    assert "✓ shapes-striped: shapes-striped (style, 20 prompt pairs" in result.output
    assert "target attn-value" in result.output


def test_validate_unknown_name_suggests(good_file: Path) -> None:
    result = invoke("recipes", "validate", "shapes-stripd", str(good_file))
    assert result.exit_code == 1
    assert "✗ shapes-stripd: recipe not found" in result.output
    assert "did you mean shapes-striped" in result.output
    assert "✓" in result.output


def test_validate_name_and_file_alike_prefers_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("van-gogh").write_text(GOOD, encoding="utf-8")  # a file named like a shipped recipe wins
    result = invoke("recipes", "validate", "van-gogh")
    assert result.exit_code == 0, result.output
    assert "✓ van-gogh: good-one" in result.output


def test_validate_invalid_yaml_shows_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("cpedit: 1\nname: x\nconcept: [oops\n", encoding="utf-8")
    result = invoke("recipes", "validate", str(path))
    assert result.exit_code == 1
    assert "not valid YAML" in result.output
    assert "line " in result.output


def test_validate_needs_files() -> None:
    result = CliRunner().invoke(cli, ["recipes", "validate"], env=WIDE)
    assert result.exit_code == 2
    assert "FILES" in result.output


def test_validate_messages_with_brackets_are_printed_verbatim(tmp_path: Path) -> None:
    # Messages contain text like "[cat, dog, house]" that rich would take as markup.
    path = tmp_path / "subjects.yaml"
    path.write_text(
        'cpedit: 1\nname: x\nconcept: c\nprompts:\n  subjects: 5\n  target: "a {subject}"\n  base: "b {subject}"\n',
        encoding="utf-8",
    )
    result = invoke("recipes", "validate", str(path))
    assert result.exit_code == 1
    assert "e.g. [cat, dog, house]" in result.output


def test_validate_python_tag_is_rejected(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.yaml"
    path.write_text(f'cpedit: 1\nname: !!python/object/apply:os.system ["touch {marker}"]\n', encoding="utf-8")
    result = invoke("recipes", "validate", str(path))
    assert result.exit_code == 1
    assert "not valid YAML" in result.output
    assert not marker.exists()


# --- list ------------------------------------------------------------------------------


def test_list_table_names_every_shipped_recipe() -> None:
    result = invoke("recipes", "list")
    assert result.exit_code == 0, result.output
    assert SHIPPED, "no shipped recipes found"
    for path in SHIPPED:
        assert path.stem in result.output, path.stem
        assert path.relative_to(RECIPES_DIR).as_posix() in result.output
    assert "Shipped recipes" in result.output


def test_list_json() -> None:
    result = invoke("recipes", "list", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert isinstance(rows, list)
    assert sorted(r["name"] for r in rows) == sorted(p.stem for p in SHIPPED)
    for row in rows:
        assert {"name", "kind", "concept", "pairs", "skill_ratio", "timesteps", "select_ratio", "file"} <= set(row)
        assert row["error"] is None
        recipe = load_recipe(RECIPES_DIR / row["file"])
        assert recipe.name == row["name"]
        assert row["kind"] == recipe.kind
        assert row["pairs"] == len(recipe.pairs()) > 0
        assert row["skill_ratio"] == recipe.prune.skill_ratio
        assert row["timesteps"] == recipe.prune.timesteps
    by_name = {r["name"]: r for r in rows}
    assert by_name["van-gogh"]["kind"] == "style"
    assert by_name["van-gogh"]["pairs"] == 20
    assert by_name["van-gogh"]["concept"] == "Van Gogh"
    assert by_name["van-gogh"]["file"] == "artists/van-gogh.yaml"


def test_list_json_matches_builtin_recipe_files() -> None:
    rows = json.loads(invoke("recipes", "list", "--format", "json").output)
    assert [r["name"] for r in rows] == list(builtin_recipe_files())


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    """Two good recipes and one bad one."""
    folder = tmp_path / "mine"
    (folder / "sub").mkdir(parents=True)
    (folder / "good-one.yaml").write_text(GOOD, encoding="utf-8")
    (folder / "sub" / "good-two.yaml").write_text(GOOD.replace("good-one", "good-two"), encoding="utf-8")
    (folder / "bad.yaml").write_text(BAD, encoding="utf-8")
    return folder


def test_list_folder_shows_a_bad_file_with_the_others(mixed_folder: Path) -> None:
    result = invoke("recipes", "list", str(mixed_folder))
    assert result.exit_code == 1, result.output
    out = result.output
    assert "Recipes in" in out
    for name in ("good-one", "good-two", "bad"):
        assert name in out
    assert "sub/good-two.yaml" in out
    assert "invalid" in out
    assert "did you mean `skill_ratio`?" in out
    assert "Traceback" not in out


def test_list_folder_json_has_error_field(mixed_folder: Path) -> None:
    result = invoke("recipes", "list", str(mixed_folder), "--format", "json")
    assert result.exit_code == 1
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert set(rows) == {"good-one", "good-two", "bad"}
    assert rows["good-one"]["error"] is None and rows["good-one"]["timesteps"] == 7
    assert rows["good-two"]["file"] == "sub/good-two.yaml"
    assert rows["bad"]["file"] == "bad.yaml"
    assert rows["bad"]["kind"] is None
    assert "invalid recipe" in rows["bad"]["error"] and "prune.skil_ratio" in rows["bad"]["error"]


def test_list_missing_folder() -> None:
    result = CliRunner().invoke(cli, ["recipes", "list", "no-such-folder-here"], env=WIDE)
    assert result.exit_code == 2
    assert "no-such-folder-here" in result.output


def test_list_bad_format() -> None:
    result = CliRunner().invoke(cli, ["recipes", "list", "--format", "xml"], env=WIDE)
    assert result.exit_code == 2
    assert "xml" in result.output


# --- show ------------------------------------------------------------------------------


def test_show_van_gogh() -> None:
    result = invoke("recipes", "show", "van-gogh")
    assert result.exit_code == 0, result.output
    out = result.output
    text = (RECIPES_DIR / "artists" / "van-gogh.yaml").read_text(encoding="utf-8")
    for line in text.splitlines():
        if line.strip():
            assert line.rstrip() in out, line
    assert "20 prompt pairs" in out
    recipe = load_recipe(RECIPES_DIR / "artists" / "van-gogh.yaml")
    assert len(recipe.pairs()) == 20
    for target, base in recipe.pairs():
        assert target in out
        assert base in out
    assert "a duck in the style of Van Gogh" in out
    assert "van-gogh: Van Gogh (style)" in out


def test_show_gives_each_pairs_seed_when_the_recipe_seeds_per_pair() -> None:
    result = invoke("recipes", "show", "male-to-female")
    assert result.exit_code == 0, result.output
    assert "pair_seeds: [44, 232, 23" in result.output
    rows = [line for line in result.output.splitlines() if "a headshot of a Uncle" in line and "│" in line]
    assert len(rows) == 1 and rows[0].split("│")[-2].strip() == "246", rows  # the 9th pair's seed
    assert "seed" not in invoke("recipes", "show", "van-gogh").output.split("prompt pairs")[1]


def test_show_file(good_file: Path) -> None:
    result = invoke("recipes", "show", str(good_file))
    assert result.exit_code == 0, result.output
    assert "2 prompt pairs" in result.output
    assert "a cat by Good" in result.output
    assert "a dog by Good" in result.output


def test_show_no_prompts() -> None:
    result = invoke("recipes", "show", "van-gogh", "--no-pairs")
    assert result.exit_code == 0, result.output
    assert "name: van-gogh" in result.output
    assert "prompt pairs" not in result.output
    assert "a duck in the style of Van Gogh" not in result.output


def test_show_prints_brackets_verbatim(tmp_path: Path) -> None:
    path = tmp_path / "brackets.yaml"
    path.write_text(
        'cpedit: 1\nname: brackets\nconcept: "[bold]odd"\n'
        'prompts:\n  target: ["[red]a cat", "[b]dog"]\n  base: [cat, dog]\n',
        encoding="utf-8",
    )
    result = invoke("recipes", "show", str(path))
    assert result.exit_code == 0, result.output
    assert "brackets: [bold]odd (custom)" in result.output
    assert "[red]a cat" in result.output
    assert "[b]dog" in result.output


def test_show_unknown_name_suggests() -> None:
    result = CliRunner().invoke(cli, ["recipes", "show", "van-gog"], env=WIDE)
    assert result.exit_code == 1
    assert "Error:" in result.output
    assert "did you mean van-gogh" in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_show_invalid_file(bad_file: Path) -> None:
    result = CliRunner().invoke(cli, ["recipes", "show", str(bad_file)], env=WIDE)
    assert result.exit_code == 1
    assert "Error:" in result.output
    assert "prune.skil_ratio" in result.output


# --- help ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["prune"],
        ["sample"],
        ["recipes"],
        ["recipes", "validate"],
        ["recipes", "list"],
        ["recipes", "show"],
    ],
)
def test_help_mentions_examples(args: list[str]) -> None:
    result = invoke(*args, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    assert "Example" in result.output


@pytest.mark.parametrize("args", [[], ["prune"], ["sample"], ["recipes"]])
def test_help_says_examples_plural(args: list[str]) -> None:
    assert "Examples" in invoke(*args, "--help").output


def test_short_help_flag() -> None:
    result = invoke("-h")
    assert result.exit_code == 0
    assert "recipes" in result.output and "prune" in result.output and "sample" in result.output


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.output.startswith("cpedit")


def test_lazily_added_subcommands_get_hints_too(tmp_path: Path) -> None:
    """``recipes push`` is built on first use; its library errors still name the CLI option."""
    from support.helpers import recipe_text

    recipe = tmp_path / "r.yaml"
    recipe.write_text(recipe_text(name="hinted"), encoding="utf-8")
    result = CliRunner().invoke(cli, ["recipes", "push", str(recipe), "--repo", "no-namespace"])
    assert result.exit_code == 1
    assert "give NAMESPACE/NAME" in result.output and "hint: see --repo" in result.output
