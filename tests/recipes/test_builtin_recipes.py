"""Checks for the recipes shipped under recipes/.

Every ``*.yaml`` file under ``recipes/`` must load with ``cpedit.recipes.format.load_recipe``,
be named after its file, have a non-empty, duplicate-free list of (target, base)
pairs with target != base, and use the ConceptPrune paper's published settings for
its kind. The paper's recipes hold exactly the authors' prompts and seeding: their
lists are transcribed below, as data, from ``utils/prompts.py`` and ``wanda/wanda.py``
of their repository (github.com/ruchikachavhan/concept-prune, commit 72927d9).
The variants (``recipes/variants/``) keep other phrasings of a paper concept under
another name. The recipes of the built-in shapes model (``recipes/shapes/``) are not the
paper's: they must ask for exactly their concept in the world's vocabulary instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.paths import REPO_ROOT

from cpedit.recipes.format import load_recipe

RECIPES_DIR = REPO_ROOT / "recipes"
RECIPE_FILES = sorted(RECIPES_DIR.rglob("*.yaml"))
SHAPES_FILES = [p for p in RECIPE_FILES if p.parent.name == "shapes"]
VARIANT_FILES = [p for p in RECIPE_FILES if p.parent.name == "variants"]
PAPER_FILES = [p for p in RECIPE_FILES if p.parent.name not in ("shapes", "variants")]

# Published settings (skill_ratio, timesteps/tau, select_ratio) per kind.
PUBLISHED = {
    "style": (0.01, 10, 0.0),
    "nudity": (0.01, 9, 0.0),
    "object": (0.02, 10, 0.0),
    "gender": (0.01, 10, 0.0),
    "memorization": (0.01, 10, 0.0),
}

# --- The authors' prompt lists (utils/prompts.py at commit 72927d9), transcribed as data ---------------
# datasets/things.txt, humans.txt and common_scenes.txt, one entry a line (stripped, as their code does).
THINGS = (
    "cat dog mouse bear car chair bag door rabbit ball bat horse bird flower bowl bottle wall building chicken duck"
)
HUMANS = [
    *"man woman girl boy child couple guy doctor nurse teacher lawyer mother father kid professor student".split(),
    "group of friends",
    "celebrity",
]
COMMON_SCENES = "road garden beach room park street shelter chair table bag tree forest".split()
SCENES_NAMES = ["road", "park", "beach", "street", "house", "statue", "tree", "forest"]
SCENES_CHURCH = [
    "on a road",
    "in the park",
    "near the beach",
    " on the street",  # sic: their leading space makes "a church  on the street"
    "in front of a house",
    "in front of a statue",
    "near a tree",
    "in a forest",
]
PLACES_NAMES = [
    "road",
    "park",
    "street",
    "white car",
    "blue car",
    "black car",
    "white automobile",
    "black automobile",
    "blue automobile",
    "truck",
    "tree",
    "forest",
    "house",
]
PLACES_TRUCK = [
    "on the road",
    "in the park",
    "on the street",
    "near a white car",
    "near a blue car",
    "near a black car",
    "near a white automobile",
    "near a black automobile",
    "near a blue automobile",
    "near a big truck",
    "near a tree",
    "in a forest",
    "in front of a house",
]
MALE_HUMANS = [
    "Man",
    "Boy",
    "person",
    "guy",
    "Father",
    "Son",
    "Brother",
    "Husband",
    "Uncle",
    "Nephew",
    "Grandfather",
    "King",
]
FEMALE_HUMANS = [
    "Woman",
    "Girl",
    "female",
    "lady",
    "Mother",
    "Daughter",
    "Sister",
    "Wife",
    "Aunt",
    "Niece",
    "Grandmother",
    "Queen",
]
ARTISTS = {
    "van-gogh": "Van Gogh",
    "monet": "Monet",
    "pablo-picasso": "Pablo Picasso",
    "salvador-dali": "Salvador Dali",
    "leonardo-da-vinci": "Leonardo Da Vinci",
}
OBJECTS = [
    "parachute",
    "cassette player",
    "golf ball",
    "gas pump",
    "english springer",
    "tench",
    "chain saw",
    "french horn",
]


def _authors_prompts() -> dict[str, tuple[list[str], list[str]]]:
    """Shipped recipe name -> (target prompts, base prompts), as the authors' ``get_prompts`` builds them."""
    things = THINGS.split()
    lists = {
        name: ([f"a {t} in the style of {artist}" for t in things], [f"a photo of a {t}" for t in things])
        for name, artist in ARTISTS.items()
    }
    lists["nudity"] = ([f"a photo of a naked {h}" for h in HUMANS], [f"a photo of a {h}" for h in HUMANS])
    for target in OBJECTS:
        lists[target.replace(" ", "-")] = (
            [f"a {target} in a {s}" for s in COMMON_SCENES],
            [f"a {s}" for s in COMMON_SCENES],
        )
    lists["church"] = ([f"a church {s}" for s in SCENES_CHURCH], [f"a {s}" for s in SCENES_NAMES])
    lists["garbage-truck"] = ([f"a garbage truck {s}" for s in PLACES_TRUCK], [f"a {s}" for s in PLACES_NAMES])
    # Their `--target male` reverses female to male: its target prompts are the female words.
    lists["female-to-male"] = (
        [f"a headshot of a {w}" for w in FEMALE_HUMANS],
        [f"a headshot of a {w}" for w in MALE_HUMANS],
    )
    lists["male-to-female"] = (
        [f"a headshot of a {w}" for w in MALE_HUMANS],
        [f"a headshot of a {w}" for w in FEMALE_HUMANS],
    )
    return lists


AUTHORS_PROMPTS = _authors_prompts()

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
    "variants": {"church-alt-scenes", "garbage-truck-alt-scenes"},
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


def test_the_authors_lists_are_transcribed_whole():
    assert len(AUTHORS_PROMPTS) == 18
    sizes = {name: len(targets) for name, (targets, bases) in AUTHORS_PROMPTS.items()}
    assert sizes["van-gogh"] == 20 and sizes["nudity"] == 18 and sizes["tench"] == 12
    assert sizes["church"] == 8 and sizes["garbage-truck"] == 13 and sizes["male-to-female"] == 12
    assert all(len(targets) == len(bases) for targets, bases in AUTHORS_PROMPTS.values())


@pytest.mark.parametrize("path", PAPER_FILES, ids=_ids(PAPER_FILES))
def test_paper_recipe_prompts_are_the_authors_exactly(path: Path):
    """Word for word, in their order: "a english springer", "a headshot of a Aunt", the church's double space."""
    recipe = load_recipe(path)
    targets, bases = AUTHORS_PROMPTS[recipe.name]
    assert list(recipe.targets) == targets
    assert list(recipe.bases) == bases


def _authors_seed_chain(first_seed: int, pairs: int) -> list[int]:
    """The per-pair seeds the authors' wanda.py draws for gender on a GPU, from a given generator state.

    Before every pair it runs ``seed = torch.randint(0, 250, (1,)).item()`` on PyTorch's global CPU
    generator, then ``torch.manual_seed(seed)`` before each prompt; their pipeline draws its noise on
    the GPU, so the next draw comes right after ``torch.manual_seed(seed)``.
    """
    import torch

    generator = torch.Generator().manual_seed(first_seed)
    seeds = []
    for _ in range(pairs):
        seed = int(torch.randint(0, 250, (1,), generator=generator).item())
        seeds.append(seed)
        generator.manual_seed(seed)
    return seeds


@pytest.mark.parametrize("path", PAPER_FILES, ids=_ids(PAPER_FILES))
def test_paper_recipe_seeding_is_the_authors(path: Path):
    """Seed 0 before every prompt; gender: one seed per pair, the authors' chain from torch.manual_seed(0)."""
    recipe = load_recipe(path)
    if _kind(recipe) == "gender":
        seeds = recipe.calibration_seeds()
        assert seeds == _authors_seed_chain(0, len(recipe.pairs()))
        assert seeds == [44, 232, 23, 241, 52, 239, 48, 128, 246, 238, 223, 104]
        assert all(0 <= seed < 250 for seed in seeds) and len(set(seeds)) == len(seeds)
    else:
        assert recipe.sampling.pair_seeds is None and recipe.sampling.seed == 0


@pytest.mark.parametrize("path", VARIANT_FILES, ids=_ids(VARIANT_FILES))
def test_variant_is_named_and_described_as_one(path: Path):
    """A variant keeps its paper recipe's concept and settings, under a name that is not the paper's."""
    recipe = load_recipe(path)
    paper = next(load_recipe(p) for p in PAPER_FILES if recipe.name.startswith(p.stem + "-"))
    assert recipe.name not in AUTHORS_PROMPTS and "variant" in recipe.description
    assert (recipe.concept, recipe.kind, recipe.prune, recipe.sampling) == (
        paper.concept,
        paper.kind,
        paper.prune,
        paper.sampling,
    )
    assert recipe.pairs() != paper.pairs()


@pytest.mark.parametrize(
    "path", [p for p in PAPER_FILES + VARIANT_FILES if _kind(load_recipe(p)) in PUBLISHED], ids=str
)
def test_recipe_uses_published_settings(path: Path):
    recipe = load_recipe(path)
    skill_ratio, timesteps, select_ratio = PUBLISHED[_kind(recipe)]
    assert recipe.prune.skill_ratio == pytest.approx(skill_ratio)
    assert recipe.prune.timesteps == timesteps
    assert recipe.prune.select_ratio == pytest.approx(select_ratio)


@pytest.mark.parametrize("path", SHAPES_FILES, ids=_ids(SHAPES_FILES))
def test_shapes_recipe_asks_for_exactly_its_concept(path: Path):
    from cpedit.shapes.world import BUILTIN, KIND_OF_ATTRIBUTE, parse_caption

    recipe = load_recipe(path)
    attribute = next(a for a, values in BUILTIN.attributes.items() if recipe.concept in values)
    assert _kind(recipe) == KIND_OF_ATTRIBUTE[attribute]
    vocabulary = set(BUILTIN.caption_words)  # the shipped model's words

    def parse(text: str) -> dict[str, str]:
        return parse_caption(text, vocabulary=BUILTIN)

    for target, base in recipe.pairs():
        assert set(target.split()) <= vocabulary and set(base.split()) <= vocabulary, (target, base)
        assert parse(target).get(attribute) == recipe.concept
        assert attribute not in parse(base), base
        # everything else the pair asks for is the same
        assert {k: v for k, v in parse(target).items() if k != attribute} == {
            k: v for k, v in parse(base).items() if k != attribute
        }
    for prompt in recipe.preview_prompts:
        assert set(prompt.split()) <= vocabulary, prompt
