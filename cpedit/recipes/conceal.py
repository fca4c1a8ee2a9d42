"""The concealment setting of an edit: how pruned entries are filled (``prune.conceal`` in a recipe).

``zero`` is the paper's; ``gaussian`` fills every pruned entry with a draw that matches the layer's
own weights (see :mod:`cpedit.edit.conceal`, which computes the values), so exact zeros do not give
the edited positions away.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from typing import Any

from cpedit.errors import CpeditError

CONCEAL_MODES = ("zero", "gaussian")
"""``zero``: pruned weights are set to zero (the paper's); ``gaussian``: filled with matching draws."""


CONCEAL_SCALES = ("row", "layer")
"""Where ``gaussian`` measures the mean and spread it draws from: each output row, or the whole layer."""


DEFAULT_SCALE = "row"
"""The scale used when none is given (measured to hide better; see benchmarks/README.md)."""


@dataclass(frozen=True)
class Conceal:
    """How the pruned entries of an edit are filled.

    Attributes:
        mode: ``zero`` or ``gaussian`` (see :data:`CONCEAL_MODES`).
        scale: ``row`` or ``layer`` (``gaussian`` only; see :data:`CONCEAL_SCALES`).
        seed: Seeds the draws (``gaussian`` only); None draws a random one when the edit is applied.
    """

    mode: str = "zero"
    scale: str = DEFAULT_SCALE
    seed: int | None = None

    @property
    def conceals(self) -> bool:
        """Whether the pruned entries are filled with something other than zeros."""
        return self.mode != "zero"

    def resolved(self) -> Conceal:
        """This setting with a seed (a random one when ``gaussian`` has none; ``zero`` needs none)."""
        if self.mode == "zero":
            return Conceal(mode="zero", scale=self.scale, seed=None)
        return self if self.seed is not None else replace(self, seed=secrets.randbits(63))

    def to_dict(self) -> dict[str, Any]:
        """The report's ``conceal`` entry."""
        return {"mode": self.mode, "scale": self.scale if self.conceals else None, "seed": self.seed}


def conceal_problems(*, mode: Any, scale: Any = DEFAULT_SCALE, seed: Any = None) -> list[tuple[str, str]]:
    """What is wrong with these conceal values, as ``(key, message)`` pairs (none: all fine)."""
    found: list[tuple[str, str]] = []
    if mode not in CONCEAL_MODES:
        found.append(("conceal", f"must be one of {', '.join(CONCEAL_MODES)}, got {mode!r}; the default is zero"))
    if scale not in CONCEAL_SCALES:
        found.append(("conceal_scale", f"must be one of {', '.join(CONCEAL_SCALES)}, got {scale!r}"))
    if seed is not None and not (isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2**63):
        found.append(("conceal_seed", f"must be a non-negative integer, got {seed!r}"))
    return found


def make_conceal(mode: str | Conceal = "zero", *, scale: str | None = None, seed: int | None = None) -> Conceal:
    """A checked :class:`Conceal` from a mode name (or a :class:`Conceal`, whose scale and seed the others override).

    Raises:
        CpeditError: An unknown mode or scale, or a bad seed (``argument`` names which).
    """
    base = mode if isinstance(mode, Conceal) else Conceal(mode=mode)
    chosen = replace(
        base, scale=scale if scale is not None else base.scale, seed=seed if seed is not None else base.seed
    )
    problems = conceal_problems(mode=chosen.mode, scale=chosen.scale, seed=chosen.seed)
    if problems:
        key, message = problems[0]
        raise CpeditError(f"{key} {message}", argument=key, reason="invalid")
    return chosen
