"""Recipes from strangers: random and mutated YAML only ever gives RecipeError; bombs, odd files, odd text.

hypothesis runs ``CPEDIT_HYPOTHESIS_EXAMPLES`` examples per property (default 150); run longer with
``CPEDIT_HYPOTHESIS_EXAMPLES=5000 python -m pytest -q tests/test_hostile_recipes.py``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpedit.errors import RecipeError
from cpedit.recipes.format import MAX_RECIPE_BYTES, SLUG, Recipe, load_recipe, parse_recipe
from cpedit.recipes.sources import builtin_recipe_files

settings.register_profile(
    "cpedit-hostile",
    max_examples=int(os.environ.get("CPEDIT_HYPOTHESIS_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
HOSTILE = settings.get_profile("cpedit-hostile")
"""Applied to each property below (not loaded globally, so other test files keep their own settings)."""

SHIPPED = {name: path.read_text(encoding="utf-8") for name, path in sorted(builtin_recipe_files().items())}
GOOD = SHIPPED["van-gogh"] if "van-gogh" in SHIPPED else next(iter(SHIPPED.values()))


def _parse_only_recipe_errors(text: str) -> Recipe | None:
    """Parse ``text``; only RecipeError (naming the source, each problem with a field) may come out."""
    try:
        recipe = parse_recipe(text, source="fuzz.yaml")
    except RecipeError as exc:
        assert exc.path == "fuzz.yaml"
        assert str(exc).startswith("fuzz.yaml: ")
        assert exc.problems and all(isinstance(f, str) and isinstance(m, str) for f, m in exc.problems)
        assert len(str(exc)) < 20_000  # messages stay readable, whatever the input
        return None
    # A valid recipe can never name a file outside the record folder: its name is a slug.
    assert SLUG.match(recipe.name) and "/" not in recipe.name and ".." not in recipe.name
    assert not os.path.isabs(recipe.name)
    return recipe


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["../../etc/passwd", "/etc/passwd", "a/b", "..", "{subject}", "{x}", "1e-2", "\x1b[31m"]),
)
_values = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
_keys = st.sampled_from(["cpedit", "name", "concept", "kind", "description", "prompts", "prune", "sampling", "preview"])


@HOSTILE
@given(st.dictionaries(_keys, _values, max_size=9))
def test_random_recipe_documents_only_give_recipe_errors(data: dict) -> None:
    _parse_only_recipe_errors(yaml.safe_dump(data, allow_unicode=True))


@HOSTILE
@given(st.text(max_size=300))
def test_random_text_only_gives_recipe_errors(text: str) -> None:
    _parse_only_recipe_errors(text)


@HOSTILE
@given(
    st.sampled_from(sorted(SHIPPED)),
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=10_000),
            st.integers(min_value=0, max_value=8),
            st.sampled_from(
                ["", ":", "- ", "&a ", "*a", "[", "{", "'", '"', "\n", "  ", "? ", "!!", "1e-2", "../", "/"]
            ),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_shipped_recipes_only_give_recipe_errors(name: str, edits: list[tuple[int, int, str]]) -> None:
    text = SHIPPED[name]
    for position, length, insert in edits:
        at = position % (len(text) + 1)
        text = text[:at] + insert + text[at + length :]
    _parse_only_recipe_errors(text)


@HOSTILE
@given(st.sampled_from(sorted(SHIPPED)), st.sampled_from(["name", "concept", "prompts", "prune", "sampling"]), _values)
def test_shipped_recipes_with_one_field_replaced(name: str, key: str, value: object) -> None:
    data = yaml.safe_load(SHIPPED[name])
    data[key] = value
    _parse_only_recipe_errors(yaml.safe_dump(data, allow_unicode=True))


_seed_lists = st.one_of(
    _values,
    st.lists(st.integers(min_value=-(2**70), max_value=2**70), max_size=14),
    st.lists(st.integers(min_value=0, max_value=249), min_size=12, max_size=12),
)


@HOSTILE
@given(st.sampled_from(["male-to-female", "van-gogh"]), _seed_lists, st.booleans())
def test_pair_seeds_only_give_recipe_errors(name: str, value: object, with_seed: bool) -> None:
    """Any ``sampling.pair_seeds``: a valid result has one seed per pair, each in [0, 2**63 - 1]."""
    data = yaml.safe_load(SHIPPED[name])
    data["sampling"].pop("seed", None)
    data["sampling"]["pair_seeds"] = value
    if with_seed:
        data["sampling"]["seed"] = 0
    recipe = _parse_only_recipe_errors(yaml.safe_dump(data, allow_unicode=True))
    if recipe is not None:
        assert not with_seed
        seeds = recipe.calibration_seeds()
        assert len(seeds) == len(recipe.pairs()) and all(type(s) is int and 0 <= s < 2**63 for s in seeds)


@pytest.mark.parametrize("bad", ["../evil", "a/b", "/etc/passwd", "..", "Evil", "x\x00y"])
def test_recipe_names_cannot_be_paths(bad: str) -> None:
    data = yaml.safe_load(GOOD)
    data["name"] = bad
    with pytest.raises(RecipeError) as info:
        parse_recipe(yaml.safe_dump(data), source="r.yaml")
    assert any(field == "name" for field, _ in info.value.problems)


def _bomb(levels: int, width: int = 9) -> str:
    lines = ["cpedit: 1", "name: bomb", 'concept: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels + 1):
        lines.append(f"x{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * width) + "]")
    lines.append("prompts: {target: a, base: b}")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_quickly_with_a_short_message() -> None:
    text = _bomb(9)  # 9**10 values once expanded, in about 400 bytes
    assert len(text) < 1000
    started = time.perf_counter()
    with pytest.raises(RecipeError, match="aliases") as info:
        parse_recipe(text, source="bomb.yaml")
    assert time.perf_counter() - started < 2
    assert len(str(info.value)) < 1000


def test_alias_bomb_in_one_field_is_refused() -> None:
    text = "cpedit: 1\nname: b\nprompts: {target: a, base: b}\n"
    text += "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    text += "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    text += "concept: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
    with pytest.raises(RecipeError, match="aliases"):
        parse_recipe(text, source="bomb.yaml")


def test_shallow_alias_value_gives_a_short_message() -> None:
    text = "cpedit: 1\nname: b\nprompts: {target: a, base: b}\n"
    text += "a: &a [xxxxxxxxxxxxxxxxxxxx, xxxxxxxxxxxxxxxxxxxx, xxxxxxxxxxxxxxxxxxxxxxxxxx, yyyyyyyyyyyyy]\n"
    text += "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nconcept: [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
    with pytest.raises(RecipeError) as info:
        parse_recipe(text, source="r.yaml")
    assert len(str(info.value)) < 2000
    assert "concept" in str(info.value)


def test_a_list_as_a_key_is_a_recipe_error() -> None:
    with pytest.raises(RecipeError, match="key must be a plain value"):
        parse_recipe("cpedit: 1\n? [a, b]\n: 1\n", source="r.yaml")


@pytest.mark.parametrize(
    "text",
    ["concept: 2024-02-30\n", "[" * 5000 + "]" * 5000, "{a: " * 3000 + "1" + "}" * 3000, "a: !!binary '%%%'\n"],
    ids=["impossible-date", "deep-lists", "deep-mappings", "bad-binary"],
)
def test_odd_yaml_is_a_recipe_error(text: str) -> None:
    with pytest.raises(RecipeError):
        parse_recipe(text, source="r.yaml")


def test_devices_and_fifos_are_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero"), tmp_path):
        started = time.perf_counter()
        with pytest.raises(RecipeError, match="regular file|folder"):
            load_recipe(path)
        assert time.perf_counter() - started < 2


def test_recipe_files_have_a_size_cap(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text(GOOD + "#" * (MAX_RECIPE_BYTES + 10), encoding="utf-8")
    with pytest.raises(RecipeError, match="larger than"):
        load_recipe(big)
    with pytest.raises(RecipeError, match="larger than"):
        parse_recipe("#" * (MAX_RECIPE_BYTES + 10))


def test_yaml_1_1_exponent_gets_a_hint() -> None:
    data = yaml.safe_load(GOOD)
    text = yaml.safe_dump(data).replace("prune:", "prune:\n  skill_ratio: 1e-2", 1) if "prune" not in data else None
    if text is None:
        data["prune"]["skill_ratio"] = "PLACEHOLDER"
        text = yaml.safe_dump(data).replace("PLACEHOLDER", "1e-2")
    assert yaml.safe_load(text)["prune"]["skill_ratio"] == "1e-2"  # YAML 1.1 reads it as text
    with pytest.raises(RecipeError, match=r"write it as 0\.01") as info:
        parse_recipe(text, source="r.yaml")
    assert info.value.problems[0][0] == "prune.skill_ratio"


def test_control_and_bidi_characters_are_stripped_from_recipe_text() -> None:
    data = yaml.safe_load(GOOD)
    data["concept"] = "Van\x1b[2J Gogh\u202e"
    data["description"] = "line one\nline\x07 two\u2066"
    data["preview"] = {"prompts": ["a cat\x1b]0;owned\x07 in the style of Van Gogh"]}
    recipe = parse_recipe(yaml.safe_dump(data, allow_unicode=True), source="r.yaml")
    for text in (recipe.concept, recipe.description, *recipe.preview_prompts, *recipe.targets, *recipe.bases):
        assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text and "\u2066" not in text
    assert recipe.concept == "Van[2J Gogh"
    assert recipe.description == "line one\nline two"


def test_control_characters_in_messages_are_escaped() -> None:
    data = yaml.safe_load(GOOD)
    data["\x1b[31mkey\u202e"] = 1
    with pytest.raises(RecipeError) as info:
        parse_recipe(yaml.safe_dump(data, allow_unicode=True), source="r\x1b.yaml")
    message = str(info.value)
    assert "\x1b" not in message and "\u202e" not in message
    assert "\\x1b" in message
