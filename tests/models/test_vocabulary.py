"""Words the model's text encoder does not know (:mod:`cpedit.models.vocabulary`): how a tokenizer tells."""

from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from transformers import AutoTokenizer

from cpedit.errors import CpeditWarning
from cpedit.models.vocabulary import unknown_words, warn_unknown_words
from cpedit.recipes.sources import resolve_recipe
from cpedit.shapes.model import builtin_pipeline_path


@pytest.fixture(scope="module")
def shapes() -> Any:
    """A stand-in pipeline with the built-in shapes model's tokenizer (the CLIP BPE cut down to its world)."""
    return SimpleNamespace(tokenizer=AutoTokenizer.from_pretrained(str(builtin_pipeline_path() / "tokenizer")))


def prompts(name: str) -> list[str]:
    return [prompt for pair in resolve_recipe(name).pairs() for prompt in pair]


def test_the_shapes_model_knows_only_the_words_of_its_world(shapes: Any) -> None:
    # its tokenizer never maps a word to the unknown token: it spells "gogh" out in letters
    assert shapes.tokenizer.unk_token_id not in shapes.tokenizer("gogh", add_special_tokens=False).input_ids
    unknown = unknown_words(shapes, prompts("van-gogh"))
    assert {"van", "gogh", "style", "photo"} <= set(unknown)
    assert unknown_words(shapes, ["A Striped, red STAR on a white background!"]) == []
    for name in ("shapes-striped", "shapes-star", "shapes-red"):
        assert unknown_words(shapes, prompts(name)) == [], name
    with pytest.warns(CpeditWarning, match=r"recipe van-gogh: .*does not know the words .*may not erase Van Gogh"):
        warn_unknown_words(shapes, [resolve_recipe("van-gogh")])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_unknown_words(shapes, [resolve_recipe("shapes-striped")])


def test_an_open_vocabulary_knows_every_word_unless_it_maps_one_to_its_unknown_token(tiny_sd_path: Path) -> None:
    clip = SimpleNamespace(tokenizer=AutoTokenizer.from_pretrained(str(tiny_sd_path / "tokenizer")))
    assert unknown_words(clip, prompts("van-gogh")) == []  # the full CLIP BPE: rare words are pieces, not unknown

    class Sentencepiece:
        """A tokenizer that has no piece for ``ß`` (as T5's lacks characters): its unknown token, id 2."""

        unk_token_id = 2

        def __call__(self, text: str, add_special_tokens: bool = True) -> Any:
            return SimpleNamespace(input_ids=[2 if "ß" in word else 7 for word in text.split()])

    pipe = SimpleNamespace(tokenizer=clip.tokenizer, tokenizer_2=Sentencepiece())
    assert unknown_words(pipe, ["a photo of a Straße at night"]) == ["straße"]
