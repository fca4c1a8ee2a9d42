"""Checks for the recipes shipped under recipes/.

Every ``*.yaml`` file under ``recipes/`` must load with ``cpedit.recipes.load_recipe``,
be named after its file, have a non-empty, duplicate-free list of (target, base)
pairs with target != base, and use the ConceptPrune paper's published settings for
its kind.  The recipes of the built-in shapes model (``recipes/shapes/``) are not the
paper's: they must ask for exactly their concept in the world's vocabulary instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cpedit.recipes import load_recipe

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"
RECIPE_FILES = sorted(RECIPES_DIR.rglob("*.yaml"))
SHAPES_FILES = [p for p in RECIPE_FILES if p.parent.name == "shapes"]
PAPER_FILES = [p for p in RECIPE_FILES if p.parent.name != "shapes"]

# Published settings (skill_ratio, timesteps/tau, select_ratio) per kind.
PUBLISHED = {
    "style": (0.01, 10, 0.0),
    "nudity": (0.01, 9, 0.0),
    "object": (0.02, 10, 0.0),
    "gender": (0.01, 10, 0.0),
    "memorization": (0.01, 10, 0.0),
}

# Number of calibration pairs per kind, as in the paper's prompt sets.
N_PAIRS = {"style": 20, "nudity": 18, "object": 12, "gender": 12}

EXPECTED = {
    "artists": {"van-gogh", "monet", "pablo-picasso", "leonardo-da-vinci", "salvador-dali"},
    "nudity": {"nudity"},
    "objects": {
        "parachute",
        "cassette-player",
        "golf-ball",
        "gas-pump",
        "english-springer",
        "tench",
        "chain-saw",
        "french-horn",
        "church",
        "garbage-truck",
    },
    "gender": {"male-to-female", "female-to-male"},
    "shapes": {"shapes-striped", "shapes-star", "shapes-red"},
}


def _kind(recipe) -> str:
    kind = recipe.kind
    return str(getattr(kind, "value", kind))


def _ids(paths):
    return [str(p.relative_to(RECIPES_DIR)) for p in paths]


def test_expected_recipes_are_shipped():
    found: dict[str, set[str]] = {}
    for path in RECIPE_FILES:
        found.setdefault(path.parent.name, set()).add(path.stem)
    for folder, names in EXPECTED.items():
        assert names <= found.get(folder, set()), f"missing in recipes/{folder}: {names - found.get(folder, set())}"


def test_names_are_unique():
    names = [load_recipe(p).name for p in RECIPE_FILES]
    dupes = sorted({n for n in names if names.count(n) > 1})
    assert not dupes, f"duplicate recipe names: {dupes}"


@pytest.mark.parametrize("path", RECIPE_FILES, ids=_ids(RECIPE_FILES))
def test_recipe_loads_and_is_named_after_file(path: Path):
    recipe = load_recipe(path)
    assert recipe.name == path.stem


@pytest.mark.parametrize("path", RECIPE_FILES, ids=_ids(RECIPE_FILES))
def test_recipe_pairs(path: Path):
    recipe = load_recipe(path)
    pairs = [tuple(p) for p in recipe.pairs()]
    assert pairs, "recipe has no prompt pairs"
    assert len(set(pairs)) == len(pairs), "duplicate prompt pairs"
    for target, base in pairs:
        assert isinstance(target, str) and isinstance(base, str)
        assert target != base, f"target equals base: {target!r}"
        assert "{" not in target and "}" not in target, f"unexpanded placeholder: {target!r}"
        assert "{" not in base and "}" not in base, f"unexpanded placeholder: {base!r}"


@pytest.mark.parametrize("path", PAPER_FILES, ids=_ids(PAPER_FILES))
def test_paper_recipe_has_the_papers_number_of_pairs(path: Path):
    recipe = load_recipe(path)
    kind = _kind(recipe)
    assert kind in N_PAIRS or kind in ("memorization", "custom")
    if kind in N_PAIRS:
        assert len(recipe.pairs()) == N_PAIRS[kind]


@pytest.mark.parametrize("path", [p for p in PAPER_FILES if _kind(load_recipe(p)) in PUBLISHED], ids=str)
def test_recipe_uses_published_settings(path: Path):
    recipe = load_recipe(path)
    skill_ratio, timesteps, select_ratio = PUBLISHED[_kind(recipe)]
    assert recipe.prune.skill_ratio == pytest.approx(skill_ratio)
    assert recipe.prune.timesteps == timesteps
    assert recipe.prune.select_ratio == pytest.approx(select_ratio)


@pytest.mark.parametrize("path", SHAPES_FILES, ids=_ids(SHAPES_FILES))
def test_shapes_recipe_asks_for_exactly_its_concept(path: Path):
    from cpedit.shapes.world import ATTRIBUTES, KIND_OF_ATTRIBUTE, parse_caption

    recipe = load_recipe(path)
    attribute = next(a for a, values in ATTRIBUTES.items() if recipe.concept in values)
    assert _kind(recipe) == KIND_OF_ATTRIBUTE[attribute]
    vocabulary = {v for values in ATTRIBUTES.values() for v in values} | {"a", "an", "on", "background", "shape"}
    for target, base in recipe.pairs():
        assert set(target.split()) <= vocabulary and set(base.split()) <= vocabulary, (target, base)
        assert parse_caption(target).get(attribute) == recipe.concept
        assert attribute not in parse_caption(base), base
        # everything else the pair asks for is the same
        assert {k: v for k, v in parse_caption(target).items() if k != attribute} == {
            k: v for k, v in parse_caption(base).items() if k != attribute
        }
    for prompt in recipe.preview_prompts:
        assert set(prompt.split()) <= vocabulary, prompt
