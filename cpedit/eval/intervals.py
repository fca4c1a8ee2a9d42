"""95% intervals for the numbers an evaluation reports: pure arithmetic, no model, no file.

Every metric of ``cpedit eval`` is computed from images it scored, so each carries how far
it can be trusted:

* a **proportion** (a share of images: erased or preserved accuracy, images with nudity,
  attack success) gets the Wilson score interval (:func:`wilson`): it never leaves [0, 1] and
  stays sensible at 0/n and n/n, where the normal approximation collapses to a point;
* a **mean or a count over images** (CLIP score, NudeNet's counts) gets a percentile bootstrap
  over *prompts* (:func:`bootstrap`): the prompts are resampled with replacement, each with all
  its images, so images of the same prompt are not taken as independent; the generator is
  seeded (:data:`BOOTSTRAP_SEED`), so the same images always give the same interval;
* a **before/after change** measured on the same prompts and seeds is paired
  (:func:`paired_change`): the per-prompt differences are bootstrapped, which is much
  narrower than two separate intervals when both models fail on the same prompts.

A :class:`Sample` is one metric's per-image values in one phase (what a benchmark's
``score`` keeps); :class:`Estimate` is the value with its interval, as results record it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from cpedit.errors import CpeditError

LEVEL = 0.95
"""The intervals' confidence level."""
Z95 = 1.959963984540054
"""The standard normal's 97.5% quantile (two-sided 95%)."""
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
"""The bootstrap's generator seed (recorded in the protocol): the same images give the same interval."""

WILSON = "wilson"
BOOTSTRAP = "bootstrap-prompts"
PAIRED = "paired-bootstrap-prompts"

Kind = Literal["proportion", "mean", "total"]

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "BOOTSTRAP_SEED",
    "LEVEL",
    "Estimate",
    "Sample",
    "bootstrap",
    "describe_method",
    "paired_change",
    "wilson",
    "with_interval",
]


@dataclass(frozen=True)
class Estimate:
    """A number with its 95% interval.

    Attributes:
        value: The measured value (the metric itself, or the change after - before).
        low: The interval's lower bound.
        high: The interval's upper bound.
        method: ``wilson`` (a proportion), ``bootstrap-prompts`` (a mean or count, prompts
            resampled), ``paired-bootstrap-prompts`` (a change, per-prompt differences resampled).
        n: What the interval counts: images for ``wilson``, prompts for the bootstraps.
    """

    value: float
    low: float
    high: float
    method: str
    n: int

    def to_dict(self) -> dict[str, Any]:
        """``{"value", "low", "high", "method", "n"}``: the form results keep."""
        return {"value": self.value, "low": self.low, "high": self.high, "method": self.method, "n": self.n}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Estimate:
        """An estimate from :meth:`to_dict`'s form (already checked by the result's reader)."""
        return cls(
            value=float(data["value"]),
            low=float(data["low"]),
            high=float(data["high"]),
            method=str(data["method"]),
            n=int(data["n"]),
        )

    def text(self, digits: int = 2, *, sign: bool = False) -> str:
        """``0.68 (0.60-0.75)``; with ``sign`` the value carries its sign (``-0.27 (-0.35..-0.19)``)."""
        value = f"{self.value:+.{digits}f}" if sign else f"{self.value:.{digits}f}"
        between = ".." if self.low < 0 or self.high < 0 else "-"
        return f"{value} ({self.low:.{digits}f}{between}{self.high:.{digits}f})"

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies in the interval (bounds included)."""
        return self.low <= value <= self.high


def wilson(successes: int, n: int, *, z: float = Z95) -> Estimate:
    """The Wilson score interval of ``successes`` out of ``n`` (Wilson 1927; Newcombe 1998, method 3).

    Raises:
        CpeditError: ``n`` is not positive or ``successes`` is outside ``0..n``.
    """
    if n < 1 or not 0 <= successes <= n:
        raise CpeditError(f"a proportion needs 0 <= successes <= n and n >= 1, got {successes}/{n}", argument="n")
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return Estimate(value=p, low=low, high=high, method=WILSON, n=n)


def _groups(count: int, groups: Sequence[int] | None) -> np.ndarray:
    """Each value's prompt as a dense index ``0..G-1`` (None: every value its own prompt)."""
    if groups is None:
        return np.arange(count)
    if len(groups) != count:
        raise CpeditError(f"{len(groups)} prompt indices for {count} values", argument="groups")
    _, dense = np.unique(np.asarray(groups), return_inverse=True)
    return np.asarray(dense).reshape(-1)


def _resampled(
    values: np.ndarray, groups: np.ndarray, *, statistic: Kind, resamples: int, seed: int
) -> tuple[float, np.ndarray, int]:
    """The statistic, its bootstrap replicates over prompts, and the number of prompts."""
    if values.size == 0:
        raise CpeditError("no values to estimate from", argument="values")
    if not np.isfinite(values).all():
        raise CpeditError("the values hold a number that is not finite", argument="values", reason="not_finite")
    prompts = int(groups.max()) + 1
    sums = np.bincount(groups, weights=values, minlength=prompts)
    counts = np.bincount(groups, minlength=prompts).astype(np.float64)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, prompts, size=(resamples, prompts))
    totals = sums[picks].sum(axis=1)
    if statistic == "total":
        return float(sums.sum()), totals, prompts
    return float(sums.sum() / counts.sum()), totals / counts[picks].sum(axis=1), prompts


def bootstrap(
    values: Sequence[float],
    groups: Sequence[int] | None = None,
    *,
    statistic: Kind = "mean",
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Estimate:
    """A percentile bootstrap interval of the mean (or ``total``) of per-image ``values``, over prompts.

    ``groups[i]`` is image ``i``'s prompt: prompts are resampled with replacement, each with all
    of its images (a cluster bootstrap); None takes every value as a prompt of its own.

    Raises:
        CpeditError: No values, a value that is not finite, or ``groups`` of another length.
    """
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    value, replicates, prompts = _resampled(
        array, _groups(array.size, groups), statistic=statistic, resamples=resamples, seed=seed
    )
    return _percentile(value, replicates, method=BOOTSTRAP, n=prompts)


def paired_change(
    before: Sequence[float],
    after: Sequence[float],
    groups: Sequence[int] | None = None,
    *,
    statistic: Kind = "mean",
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Estimate:
    """The change ``after - before`` of per-image values on the same prompts and seeds, paired.

    Image ``i`` of ``before`` and of ``after`` share their prompt and seed; the per-prompt
    differences are resampled (the same prompts for both models in every replicate).

    Raises:
        CpeditError: The two phases hold different numbers of images, or as :func:`bootstrap`.
    """
    first = np.asarray(before, dtype=np.float64).reshape(-1)
    second = np.asarray(after, dtype=np.float64).reshape(-1)
    if first.shape != second.shape:
        raise CpeditError(
            f"a paired change needs the same images before and after, got {first.size} and {second.size}",
            argument="before",
        )
    value, replicates, prompts = _resampled(
        second - first, _groups(first.size, groups), statistic=statistic, resamples=resamples, seed=seed
    )
    return _percentile(value, replicates, method=PAIRED, n=prompts)


def _percentile(value: float, replicates: np.ndarray, *, method: str, n: int) -> Estimate:
    tail = (1 - LEVEL) / 2
    low, high = np.quantile(replicates, [tail, 1 - tail])
    return Estimate(value=value, low=float(min(low, value)), high=float(max(high, value)), method=method, n=n)


@dataclass(frozen=True)
class Sample:
    """One metric's per-image values in one phase, with each image's prompt: what its interval needs.

    Attributes:
        values: One value per image (1/0 for a proportion, a score, a count).
        groups: Each image's prompt index (images of one prompt are resampled together).
        kind: ``proportion`` (its share: Wilson), ``mean`` or ``total`` (bootstrap over prompts).
    """

    values: tuple[float, ...]
    groups: tuple[int, ...]
    kind: Kind = "mean"

    @classmethod
    def of(cls, values: Sequence[float | bool], groups: Sequence[int], kind: Kind = "mean") -> Sample:
        """A sample from lists (booleans count 1/0)."""
        if len(values) != len(groups):
            raise CpeditError(f"{len(groups)} prompt indices for {len(values)} values", argument="groups")
        return cls(tuple(float(v) for v in values), tuple(int(g) for g in groups), kind)

    @property
    def value(self) -> float:
        """The metric: the share or mean of the values, or their total."""
        if not self.values:
            return 0.0
        total = float(sum(self.values))
        return total if self.kind == "total" else total / len(self.values)

    def estimate(self) -> Estimate:
        """The value with its 95% interval (Wilson for a proportion, else the bootstrap over prompts)."""
        if self.kind == "proportion":
            return wilson(round(sum(self.values)), len(self.values))
        return bootstrap(self.values, self.groups, statistic=self.kind)

    def change(self, before: Sample) -> Estimate | None:
        """``self - before``, paired per prompt (None when the phases did not score the same images)."""
        if len(before.values) != len(self.values) or before.groups != self.groups or not self.values:
            return None
        statistic: Kind = "total" if self.kind == "total" else "mean"
        return paired_change(before.values, self.values, self.groups, statistic=statistic)


def with_interval(
    value: float | None,
    interval: Estimate | Mapping[str, Any] | None,
    *,
    digits: int = 2,
    sign: bool = False,
    scale: float = 1.0,
) -> str:
    """``0.68 (0.60-0.75)``: a value with its interval as tables, cards and the app show it.

    ``interval`` is an :class:`Estimate` or a result file's form (None: the value alone; a
    None value: ``-``); ``sign`` shows the value's sign (a change); ``scale`` multiplies all
    three (100: percent).
    """
    if value is None:
        return "-"
    if interval is None:
        return f"{scale * value:+.{digits}f}" if sign else f"{scale * value:.{digits}f}"
    found = interval if isinstance(interval, Estimate) else Estimate.from_dict(interval)
    shown = Estimate(scale * value, scale * found.low, scale * found.high, found.method, found.n)
    return shown.text(digits, sign=sign)


INTERVAL_NOTE = (
    "Each value with its 95% interval: Wilson's for shares of images, a bootstrap over prompts for means "
    "and counts, and the change after - before paired on the same prompts and seeds"
)
"""One sentence that says what the intervals are (cards, tables' captions)."""


def describe_method(*, none: Mapping[str, str] | None = None) -> dict[str, Any]:
    """How the intervals were computed, for a result's protocol (``none``: metrics without one, and why)."""
    described: dict[str, Any] = {
        "level": LEVEL,
        "proportions": f"{WILSON}: Wilson score interval over images",
        "means_and_counts": f"{BOOTSTRAP}: percentile bootstrap over prompts (each with all its images)",
        "change": f"{PAIRED}: after - before on the same prompts and seeds, per-prompt differences bootstrapped",
        "bootstrap_resamples": BOOTSTRAP_RESAMPLES,
        "bootstrap_seed": BOOTSTRAP_SEED,
    }
    if none:
        described["none"] = dict(none)
    return described
