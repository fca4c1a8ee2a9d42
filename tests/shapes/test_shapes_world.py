"""The shapes world: deterministic scenes, captions that name their attributes, a fixed held-out split."""

from __future__ import annotations

import numpy as np
import pytest

from cpedit.shapes import world
from cpedit.shapes.world import Scene, caption, parse_caption, render


def test_render_is_a_pure_function_of_the_seed() -> None:
    scene = Scene("star", "red", "striped", "white")
    first = render(scene, seed=7)
    assert first.shape == (32, 32, 3) and first.dtype == np.uint8
    assert np.array_equal(first, render(scene, seed=7))
    assert not np.array_equal(first, render(scene, seed=8))


def test_render_is_stable_across_versions() -> None:
    """A checksum of known scenes: a change to the drawing code changes every benchmark, so it must be deliberate."""
    pixels = np.stack([render(scene, seed=s) for scene, s in world.sample(16, seed=123)])
    assert int(pixels.astype(np.int64).sum()) == EXPECTED_PIXEL_SUM


EXPECTED_PIXEL_SUM = 5777188
"""Sum of the pixels of ``world.sample(16, seed=123)``, frozen when the world was designed."""


def test_attributes_are_drawn_as_asked() -> None:
    plain = render(Scene("square", "red", "plain", "white"), seed=0).astype(int)
    centre = plain[12:20, 12:20].reshape(-1, 3)
    assert (np.abs(centre - np.array(world.RGB["red"])).max(axis=1) <= 2).all()
    assert (plain[0, 0] == world.BACKGROUND_GREY["white"]).all()
    black = render(Scene("square", "red", "plain", "black"), seed=0)
    assert (black[0, 0] == world.BACKGROUND_GREY["black"]).all()
    striped = render(Scene("square", "red", "striped", "white"), seed=0).astype(int)
    # stripes: rows inside the square alternate between the colour and its second shade
    rows = striped[12:20, 16].sum(axis=1)
    assert rows.max() - rows.min() > 100


def test_sample_is_deterministic_and_respects_the_pool() -> None:
    pool = world.held_out_scenes()
    a = world.sample(50, seed=3, scenes=pool)
    assert a == world.sample(50, seed=3, scenes=pool)
    assert a != world.sample(50, seed=4, scenes=pool)
    assert {scene for scene, _ in a} <= set(pool)


def test_held_out_split_is_fixed_disjoint_and_covers_every_value_in_training() -> None:
    held, train = world.held_out_scenes(), world.training_scenes()
    assert len(held) == 30 and len(train) == 270
    assert not set(held) & set(train)
    assert held == world.held_out_scenes()
    for attribute, values in world.ATTRIBUTES.items():
        assert {s.value(attribute) for s in train} == set(values)


def test_captions_name_their_attributes_and_omit_what_is_asked() -> None:
    scene = Scene("triangle", "purple", "checkered", "grey")
    assert caption(scene) == "a checkered purple triangle on a grey background"
    assert caption(scene, omit=frozenset({"texture"})) == "a purple triangle on a grey background"
    assert caption(scene, omit=frozenset({"shape", "background"})) == "a checkered purple shape"
    assert caption(Scene("star", "yellow", "plain", "white"), omit=frozenset({"texture", "colour"})).startswith(
        "a star"
    )
    assert parse_caption(caption(scene)) == {
        "shape": "triangle",
        "colour": "purple",
        "texture": "checkered",
        "background": "grey",
    }
    assert parse_caption("a checkered purple shape") == {"colour": "purple", "texture": "checkered"}


def test_random_captions_are_seeded() -> None:
    scene = Scene("circle", "blue", "dotted", "black")
    a = [world.random_caption(scene, np.random.default_rng(0)) for _ in range(3)]
    b = [world.random_caption(scene, np.random.default_rng(0)) for _ in range(3)]
    assert a == b
    many = {world.random_caption(scene, rng) for rng in [np.random.default_rng(i) for i in range(200)]}
    assert caption(scene) in many and len(many) > 4


def test_unknown_attribute_values_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown shape 'hexagon'"):
        Scene("hexagon", "red", "plain", "white")


def test_reduced_tokenizer_tokenizes_the_world_like_full_clip(tmp_path) -> None:
    from transformers import CLIPTokenizer

    from devtools.builders import write_clip_tokenizer
    from devtools.train_shapes import WORDS

    reduced = CLIPTokenizer.from_pretrained(str(write_clip_tokenizer(tmp_path / "r", words=WORDS)), model_max_length=77)
    full = CLIPTokenizer.from_pretrained(str(write_clip_tokenizer(tmp_path / "f")), model_max_length=77)
    assert len(reduced) < 700
    for scene, _ in world.sample(40, seed=0):
        text = caption(scene)
        assert reduced.tokenize(text) == full.tokenize(text)
    # other text still tokenizes (letter by letter), nothing is lost to an unknown token
    assert "".join(reduced.tokenize("zebra")).replace("</w>", "") == "zebra"


def test_render_many_gives_the_same_array_with_worker_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    pairs = world.sample(60, seed=5)
    alone = world.render_many(pairs)
    assert alone.shape == (60, world.IMAGE_SIZE, world.IMAGE_SIZE, 3) and alone.dtype == np.uint8
    assert np.array_equal(alone[7], world.render(pairs[7][0], seed=pairs[7][1]))
    monkeypatch.setattr(world, "_RENDER_CHUNK", 7)  # 9 chunks, so the pool really runs
    assert np.array_equal(world.render_many(pairs, workers=2), alone)
    assert world.render_many([], workers=2).shape == (0, world.IMAGE_SIZE, world.IMAGE_SIZE, 3)
