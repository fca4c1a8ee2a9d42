"""The collapse check's result, as ``report.json`` and ``sweep.json`` record it, and its one reader.

The check itself (rendering unrelated prompts with the base and the edited weights and
comparing them) is :mod:`cpedit.edit.collapse`'s; this module holds only the typed result, so
the output layer's :class:`~cpedit.output.record.Report` can record it and the tuning layer's
sweep file can read it back through the same checks (finite numbers, bounded text, known fields).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from cpedit.text import strip_unsafe

MAX_PROMPTS = 64
"""A recorded check with more prompts than this is refused (the default uses 4)."""
MAX_TEXT = 1000
"""Longest prompt or reason a recorded check may hold."""

__all__ = ["CollapseCheck", "CollapseProblem", "PromptDistance"]


class CollapseProblem(ValueError):
    """A recorded collapse check that is malformed: ``where`` names the field (``prompts[1].distance``)."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where


@dataclass(frozen=True)
class PromptDistance:
    """One unrelated prompt rendered by the base and the edited model (same seed), compared.

    Attributes:
        prompt: The prompt.
        distance: How much structure the edited image lost against the base's: ``max(0, -ln
            contrast) + max(0, ln texture)`` (0: none; see :mod:`cpedit.edit.collapse`).
        contrast: The edited image's contrast (standard deviation of its grey levels) over the base's:
            near 0 for a flat, black or NaN image.
        texture: The edited image's texture (mean neighbour difference relative to its contrast) over
            the base's: well above 1 for noise.
    """

    prompt: str
    distance: float
    contrast: float
    texture: float


@dataclass(frozen=True)
class CollapseCheck:
    """Whether an edit destroyed generation rather than its concept (:func:`cpedit.edit.collapse.check_collapse`).

    Attributes:
        prompts: Per unrelated prompt, its distance between the base and the edited image.
        threshold: A prompt whose distance exceeds this lost its structure.
        collapsed: At least half of the prompts lost their structure: the edit broke the model.
        reason: One line saying why (or that it did not collapse).
        steps: Denoising steps of each image.
        seed: The seed of every image.
        seconds: What the check cost.
    """

    prompts: tuple[PromptDistance, ...]
    threshold: float
    collapsed: bool
    reason: str
    steps: int
    seed: int
    seconds: float = 0.0

    @property
    def distances(self) -> tuple[float, ...]:
        """The distance of each prompt, in order."""
        return tuple(p.distance for p in self.prompts)

    @property
    def broken(self) -> int:
        """How many prompts lost their structure (distance above the threshold)."""
        return sum(d > self.threshold for d in self.distances)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``report.json``'s ``collapse_check``; a sweep point's ``collapse_check``)."""
        return {
            "collapsed": self.collapsed,
            "reason": self.reason,
            "threshold": self.threshold,
            "steps": self.steps,
            "seed": self.seed,
            "seconds": round(self.seconds, 3),
            "prompts": [
                {"prompt": p.prompt, "distance": p.distance, "contrast": p.contrast, "texture": p.texture}
                for p in self.prompts
            ],
        }

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "collapse_check") -> CollapseCheck:
        """Read :meth:`to_dict`'s form back, checking every field.

        Raises:
            CollapseProblem: A field is missing, of the wrong type, not finite, or too long; it names the field.
        """
        top = _mapping(data, where)
        items = top.get("prompts")
        if not isinstance(items, list) or not items or len(items) > MAX_PROMPTS:
            raise CollapseProblem(f"{where}.prompts", f"must be a list of 1 to {MAX_PROMPTS} prompts")
        prompts = []
        for index, item in enumerate(items):
            at = f"{where}.prompts[{index}]"
            entry = _mapping(item, at)
            prompts.append(
                PromptDistance(
                    prompt=_text(entry, "prompt", at),
                    distance=_number(entry, "distance", at),
                    contrast=_number(entry, "contrast", at),
                    texture=_number(entry, "texture", at),
                )
            )
        collapsed = top.get("collapsed")
        if not isinstance(collapsed, bool):
            raise CollapseProblem(f"{where}.collapsed", "must be true or false")
        return cls(
            prompts=tuple(prompts),
            threshold=_number(top, "threshold", where),
            collapsed=collapsed,
            reason=_text(top, "reason", where),
            steps=_whole(top, "steps", where),
            seed=_whole(top, "seed", where),
            seconds=_number(top, "seconds", where, default=0.0),
        )


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CollapseProblem(where, f"must be a JSON object, got {type(value).__name__}")
    return value


def _number(data: dict[str, Any], key: str, where: str, *, default: float | None = None) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise CollapseProblem(f"{where}.{key}", "must be a finite number of at least 0")
    return float(value)


def _whole(data: dict[str, Any], key: str, where: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CollapseProblem(f"{where}.{key}", "must be a whole number of at least 0")
    return value


def _text(data: dict[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise CollapseProblem(f"{where}.{key}", f"must be text of at most {MAX_TEXT} characters")
    return strip_unsafe(value)  # shown in terminals and model cards
