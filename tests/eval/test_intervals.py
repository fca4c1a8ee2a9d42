"""Interval arithmetic against known cases: Wilson against Newcombe (1998), a seeded bootstrap, paired changes."""

from __future__ import annotations

import numpy as np
import pytest

from cpedit.errors import CpeditError
from cpedit.eval.intervals import Estimate, Sample, bootstrap, paired_change, wilson

# Newcombe, "Two-sided confidence intervals for the single proportion", Stat. Med. 17 (1998), Table I,
# method 3 (Wilson score, no continuity correction); 0/10, 5/10, 10/10 from the closed form.
NEWCOMBE = [
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
    (0, 10, 0.0, 0.2775),
    (5, 10, 0.2366, 0.7634),
    (10, 10, 0.7225, 1.0),
]


@pytest.mark.parametrize(("hits", "n", "low", "high"), NEWCOMBE)
def test_wilson_matches_the_published_table(hits: int, n: int, low: float, high: float) -> None:
    estimate = wilson(hits, n)
    assert estimate.value == pytest.approx(hits / n)
    assert estimate.low == pytest.approx(low, abs=6e-5) and estimate.high == pytest.approx(high, abs=6e-5)
    assert estimate.method == "wilson" and estimate.n == n


def test_wilson_refuses_impossible_counts() -> None:
    for hits, n in ((0, 0), (3, 2), (-1, 5)):
        with pytest.raises(CpeditError):
            wilson(hits, n)


def test_bootstrap_is_seeded_contains_the_mean_and_narrows_with_n() -> None:
    rng = np.random.default_rng(7)
    small = rng.normal(30.0, 4.0, size=40)
    first, again = bootstrap(small), bootstrap(small)
    assert first == again  # the same values, the same interval
    assert bootstrap(small, seed=1) != first  # the seed decides the replicates
    assert first.value == pytest.approx(float(small.mean())) and first.low < first.value < first.high
    assert first.method == "bootstrap-prompts" and first.n == 40
    # roughly 2 * 1.96 * 4 / sqrt(40) = 2.5 wide; four times the prompts: about half as wide
    assert 1.8 < first.high - first.low < 3.2
    large = bootstrap(rng.normal(30.0, 4.0, size=640))
    assert (large.high - large.low) < 0.5 * (first.high - first.low)


def test_bootstrap_resamples_prompts_not_images() -> None:
    # two prompts, each with 50 identical images: there are only two independent values
    values = [0.0] * 50 + [1.0] * 50
    by_image = bootstrap(values)
    by_prompt = bootstrap(values, [0] * 50 + [1] * 50)
    assert by_prompt.n == 2 and by_image.n == 100
    assert by_prompt.high - by_prompt.low > 2 * (by_image.high - by_image.low)
    assert by_prompt.low == 0.0 and by_prompt.high == 1.0  # both prompts drawn twice is possible
    total = bootstrap([1, 2, 3, 4], statistic="total")
    assert total.value == 10 and total.low < 10 < total.high


def test_paired_change_is_narrower_than_the_unpaired_intervals() -> None:
    rng = np.random.default_rng(3)
    prompt_effect = rng.normal(0.0, 5.0, size=60)  # prompts differ a lot, the edit shifts each by -1
    before = 30 + prompt_effect + rng.normal(0, 0.3, size=60)
    after = before - 1 + rng.normal(0, 0.3, size=60)
    change = paired_change(before, after)
    assert change.value == pytest.approx(float(after.mean() - before.mean()))
    assert change.high < 0 and change.contains(-1.0)  # the shift is clear when paired
    separate = bootstrap(after).high - bootstrap(after).low
    assert change.high - change.low < 0.2 * separate
    assert change.method == "paired-bootstrap-prompts"
    with pytest.raises(CpeditError, match="same images"):
        paired_change([1.0, 2.0], [1.0])


def test_samples_give_the_metric_its_interval_and_the_paired_change() -> None:
    before = Sample.of([True] * 9 + [False], list(range(10)), "proportion")
    after = Sample.of([True] * 2 + [False] * 8, list(range(10)), "proportion")
    assert before.value == 0.9 and after.estimate() == wilson(2, 10)
    change = after.change(before)
    assert change is not None and change.value == pytest.approx(-0.7) and change.high < 0
    assert Sample.of([1.0, 2.0], [0, 1]).change(Sample.of([1.0], [0])) is None  # not the same images
    counts = Sample.of([0, 3, 1], [0, 1, 2], "total")
    assert counts.value == 4 and counts.estimate().method == "bootstrap-prompts"


def test_estimate_text_and_round_trip() -> None:
    estimate = Estimate(value=0.68, low=0.6, high=0.75, method="wilson", n=100)
    assert estimate.text() == "0.68 (0.60-0.75)"
    assert Estimate(-0.27, -0.35, -0.19, "paired-bootstrap-prompts", 9).text(sign=True) == "-0.27 (-0.35..-0.19)"
    assert Estimate.from_dict(estimate.to_dict()) == estimate
