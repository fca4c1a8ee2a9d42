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
"""Sum of the pixels of ``world.sample(16, seed=123)``, frozen when the world was designed (V2 left it as it was)."""


def test_v2_render_is_stable_across_versions() -> None:
    pairs = world.sample(16, seed=123, vocabulary=world.V2)
    pixels = world.render_many(pairs, vocabulary=world.V2)
    assert int(pixels.astype(np.int64).sum()) == EXPECTED_V2_PIXEL_SUM
    assert any(scene.outline != "none" for scene, _ in pairs) and any(scene.palette != "natural" for scene, _ in pairs)


EXPECTED_V2_PIXEL_SUM = 5026277
"""Sum of the pixels of V2's ``sample(16, seed=123)``, frozen when V2 was designed (its design runs' data)."""


def test_v2_values_include_v1s_and_v1_scenes_draw_alike_but_smaller_in_v2() -> None:
    for attribute, values in world.V1.attributes.items():
        assert set(values) <= set(world.V2.attributes[attribute])
    scene = Scene("circle", "red", "plain", "white")
    v1, v2 = render(scene, seed=3), render(scene, seed=3, vocabulary=world.V2)
    red = lambda image: int((np.abs(image.astype(int) - world.RGB["red"]).max(axis=-1) <= 2).sum())  # noqa: E731
    assert red(v2) < red(v1)  # the same scene, a smaller radius range
    assert world.V2.caption_words[-5:] == ("a", "an", "on", "background", "shape")
    assert "glowing" in world.V2.caption_words and "none" not in world.V2.caption_words
    assert world.CAPTION_WORDS == world.V1.caption_words and "glowing" not in world.CAPTION_WORDS


def test_outlines_and_palettes_are_drawn_as_asked() -> None:
    def draw(**kwargs: str) -> np.ndarray:
        return render(Scene("square", "red", "plain", kwargs.pop("background", "white"), **kwargs), seed=0)

    def dark_pixels(image: np.ndarray) -> int:
        return int((image.astype(int).sum(axis=-1) < 150).sum())

    plain, outlined, shadowed, glowing = (draw(outline=o) for o in ("none", "outlined", "shadowed", "glowing"))
    assert dark_pixels(plain) == 0 and dark_pixels(outlined) > 40  # a dark ring on white
    changed = np.abs(shadowed.astype(int) - plain.astype(int)).sum(axis=-1) > 100
    neutral = np.ptp(shadowed.astype(int), axis=-1) < 10
    assert (changed & neutral).sum() > 20  # a grey copy beside the square
    assert np.array_equal(glowing[12:20, 12:20], plain[12:20, 12:20])  # the shape itself is unchanged
    assert int(np.abs(glowing.astype(int) - plain.astype(int)).sum()) > 5000  # a halo around it
    on_black = {p: draw(background="black", palette=p) for p in world.V2.attributes["palette"]}
    assert on_black["pastel"].min() > 100  # washed towards white, background included
    red, sepia_red = on_black["natural"][16, 16].astype(int), on_black["sepia"][16, 16].astype(int)
    assert red[0] - red[2] > sepia_red[0] - sepia_red[2] > 60  # less saturated, still reddish


def test_attributes_are_drawn_as_asked() -> None:
    plain = render(Scene("square", "red", "plain", "white"), seed=0).astype(int)
    centre = plain[12:20, 12:20].reshape(-1, 3)
    assert (np.abs(centre - np.array(world.RGB["red"])).max(axis=1) <= 2).all()
    assert (plain[0, 0] == world.BACKGROUND_RGB["white"]).all()
    black = render(Scene("square", "red", "plain", "black"), seed=0)
    assert (black[0, 0] == world.BACKGROUND_RGB["black"]).all()
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
    held2, train2 = world.held_out_scenes(vocabulary=world.V2), world.training_scenes(vocabulary=world.V2)
    assert len(held2) == 1920 and len(train2) == 17280 and not set(held2) & set(train2)
    for attribute, values in world.V2.attributes.items():
        assert {s.value(attribute) for s in train2} == set(values)


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


def test_v2_captions_leave_the_absent_outline_and_natural_palette_unsaid() -> None:
    styled = Scene("heart", "orange", "gradient", "navy", outline="outlined", palette="sepia")
    assert caption(styled) == "a sepia outlined gradient orange heart on a navy background"
    assert caption(styled, omit=frozenset({"palette", "outline"})) == "a gradient orange heart on a navy background"
    assert caption(Scene("star", "red", "plain", "white", outline="none")) == "a plain red star on a white background"
    assert parse_caption(caption(styled), vocabulary=world.V2) == {
        "shape": "heart",
        "colour": "orange",
        "texture": "gradient",
        "background": "navy",
        "outline": "outlined",
        "palette": "sepia",
    }
    assert parse_caption(caption(styled)) == {}  # none of these words is a V1 value


def test_random_captions_are_seeded() -> None:
    scene = Scene("circle", "blue", "dotted", "black")
    a = [world.random_caption(scene, np.random.default_rng(0)) for _ in range(3)]
    b = [world.random_caption(scene, np.random.default_rng(0)) for _ in range(3)]
    assert a == b
    many = {world.random_caption(scene, rng) for rng in [np.random.default_rng(i) for i in range(200)]}
    assert caption(scene) in many and len(many) > 4
    assert any("dotted" not in text for text in many)  # V1 leaves any attribute unsaid, the texture too


def test_v2_training_captions_leave_only_default_looks_unsaid() -> None:
    rng = np.random.default_rng(0)
    plain = [world.random_caption(Scene("star", "red", "plain", "white"), rng, vocabulary=world.V2) for _ in range(400)]
    assert 0.4 < np.mean(["plain" in text for text in plain]) < 0.6  # said about half of the time
    styled = Scene("star", "red", "striped", "white", outline="glowing", palette="pastel")
    texts = [world.random_caption(styled, rng, vocabulary=world.V2) for _ in range(200)]
    assert all(text.startswith("a pastel glowing striped") for text in texts)  # a treatment is always said
    assert not any(word in text.split() for text in plain + texts for word in world.UNSAID)


def test_unknown_attribute_values_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown shape 'pentagon'"):
        Scene("pentagon", "red", "plain", "white")
    with pytest.raises(ValueError, match="unknown palette 'neon'"):
        Scene("star", "red", "plain", "white", palette="neon")


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
    v2_pairs = world.sample(30, seed=5, vocabulary=world.V2)
    v2_alone = world.render_many(v2_pairs, vocabulary=world.V2)
    assert np.array_equal(world.render_many(v2_pairs, workers=2, vocabulary=world.V2), v2_alone)
    assert np.array_equal(v2_alone[3], render(v2_pairs[3][0], seed=v2_pairs[3][1], vocabulary=world.V2))
