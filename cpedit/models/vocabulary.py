"""Words a model's text encoder does not know, so that a recipe cannot prune silently for nothing.

A recipe written for Stable Diffusion (``van-gogh``) run on the built-in shapes model, whose text
encoder learned only the words of its world, calibrates on whatever the shapes model makes of
"a painting of a dog in the style of Van Gogh": its prompt pairs do not differ by anything the
model knows, and the weights it prunes have nothing to do with the concept. cpedit warns.

How a tokenizer tells that it does not know a word:

- it maps the word (or part of it) to its unknown token, as sentencepiece tokenizers such as
  T5's do for characters they lack;
- the built-in shapes model's tokenizer is the real CLIP BPE cut down to the words of its
  world (:data:`cpedit.shapes.world.CAPTION_WORDS`): it spells any other word out in pieces,
  which its text encoder never saw, so there a word is known only when it is a word of the
  world. That tokenizer is recognised by its vocabulary (the shipped one, which every edit
  of the built-in model copies).
"""

from __future__ import annotations

import functools
import json
import re
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

from cpedit.errors import CpeditWarning
from cpedit.recipes.format import Recipe

TOKENIZERS = ("tokenizer", "tokenizer_2", "tokenizer_3")
"""The pipeline components that tokenize prompts (SD has one; SDXL two; SD3 three)."""
WORD = re.compile(r"[^\W\d_]+")
"""A word: a run of letters (digits and punctuation are left to the tokenizer)."""
CAPTION_EXAMPLE = "a striped red star on a white background"
"""A caption of the shapes world, for the warning."""
SHOWN = 8
"""Unknown words named in a warning at most (then how many more)."""

__all__ = ["unknown_words", "warn_unknown_words"]


@functools.lru_cache(maxsize=1)
def _shapes_vocabulary() -> dict[str, int]:
    """The built-in shapes model's token vocabulary, read from its shipped ``tokenizer.json`` (empty if absent)."""
    from cpedit.shapes.model import builtin_pipeline_path

    try:
        data = json.loads((builtin_pipeline_path() / "tokenizer" / "tokenizer.json").read_text(encoding="utf-8"))
        return dict(data["model"]["vocab"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _closed_vocabulary(tokenizer: Any) -> frozenset[str] | None:
    """The only words a tokenizer's model knows, when it is the shapes world's tokenizer; else None."""
    from cpedit.shapes.world import BUILTIN

    shapes = _shapes_vocabulary()
    try:
        if not shapes or len(tokenizer) != len(shapes) or tokenizer.get_vocab() != shapes:
            return None
    except (AttributeError, TypeError):
        return None
    return frozenset(BUILTIN.caption_words)


def _maps_to_unknown(tokenizer: Any, word: str) -> bool:
    """Whether ``tokenizer`` turns ``word`` (or part of it) into its unknown token."""
    unknown = getattr(tokenizer, "unk_token_id", None)
    if not isinstance(unknown, int):
        return False
    try:
        ids = tokenizer(word, add_special_tokens=False).input_ids
    except Exception:  # noqa: BLE001 - a tokenizer that cannot tell: nothing to warn about
        return False
    return unknown in ids


def unknown_words(pipe: Any, prompts: Iterable[str]) -> list[str]:
    """The words of ``prompts`` (lowercased, in order of appearance) that ``pipe``'s text encoders do not know."""
    tokenizers = [t for t in (getattr(pipe, name, None) for name in TOKENIZERS) if t is not None]
    if not tokenizers:
        return []
    closed = _closed_vocabulary(tokenizers[0])
    words = dict.fromkeys(word.lower() for prompt in prompts for word in WORD.findall(prompt))
    if closed is not None:
        return [word for word in words if word not in closed]
    return [word for word in words if any(_maps_to_unknown(t, word) for t in tokenizers)]


def warn_unknown_words(pipe: Any, recipes: Sequence[Recipe]) -> None:
    """Warn (:class:`~cpedit.errors.CpeditWarning`), once per recipe, about prompt words the model does not know."""
    closed = _closed_vocabulary(getattr(pipe, "tokenizer", None))
    for recipe in recipes:
        words = unknown_words(pipe, [prompt for pair in recipe.pairs() for prompt in pair])
        if not words:
            continue
        named = ", ".join(words[:SHOWN]) + (f" and {len(words) - SHOWN} more" if len(words) > SHOWN else "")
        message = (
            f"recipe {recipe.name}: the model's text encoder does not know the words {named}, so its prompt "
            f"pairs may not differ by anything the model knows and the pruning may not erase {recipe.concept}"
        )
        if closed is not None:
            message += (
                "; the built-in shapes model knows only the words of its captions, such as "
                f'"{CAPTION_EXAMPLE}", and the shapes-* recipes are written for it'
            )
        warnings.warn(CpeditWarning(message), stacklevel=3)
