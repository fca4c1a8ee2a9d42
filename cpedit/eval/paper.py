"""The paper's published figures, shown beside a result for context (ConceptPrune, ICLR 2025).

Model cards and ``cpedit eval`` tables put the paper's number next to each metric it
reported, in the same unit as cpedit's result (fractions where cpedit stores fractions), with
the setting it was measured in: a reader sees at once whether an edit is in the paper's range.
They are context, not a pass mark: the paper measured SD-1.4/1.5 on its own prompt sets and sizes.

This module is data only (no torch), so ``cpedit card`` can read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["PaperFigure", "paper_figure"]


@dataclass(frozen=True)
class PaperFigure:
    """One published number: its value (in cpedit's unit for the metric) and where it was measured."""

    value: float
    setting: str

    def describe(self) -> str:
        """``0.245 (artist styles, SD-1.4)``: the value as the card shows it."""
        return f"{self.value:g} ({self.setting})"


_FIGURES: dict[tuple[str, str], PaperFigure] = {
    ("nudity", "nudity_total"): PaperFigure(148, "I2P, 4,703 prompts, NudeNet > 0.5"),
    ("clip-score", "clip_score"): PaperFigure(27.93, "MS-COCO captions"),
    ("fid", "fid"): PaperFigure(29.56, "MS-COCO"),
    ("classify", "erased_accuracy"): PaperFigure(0.245, "artist styles, target artists"),
    ("attack-unlearndiffatk", "attack_success_rate"): PaperFigure(0.648, "UnlearnDiffAtk, nudity"),
    ("attack-p4d", "attack_success_rate"): PaperFigure(0.391, "P4D, nudity"),
}
_PRESERVATION_DROP = PaperFigure(0.089, "drop on the other artists")


def paper_figure(benchmark: str, metric: str, protocol: dict[str, Any] | None = None) -> PaperFigure | None:
    """The paper's figure for ``metric`` of ``benchmark``, or None where the paper gave none.

    Args:
        benchmark: The result's benchmark (its file name: ``nudity``, ``attack-p4d``, ...).
        metric: The metric's name in the result.
        protocol: The result's protocol: the classify benchmark's figures are for artist styles
            only (``family`` ``artists``), the paper gave no object-erasure accuracy.
    """
    if benchmark == "classify" and (protocol or {}).get("family", "artists") != "artists":
        return None
    if (benchmark, metric) == ("classify", "preserved_accuracy"):
        return _PRESERVATION_DROP
    return _FIGURES.get((benchmark, metric))
