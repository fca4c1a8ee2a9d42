"""The strict JSON parse every reader of a file cpedit wrote earlier goes through (cpedit.strict_json)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cpedit import strict_json

FINITE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3),
    max_leaves=10,
)


@pytest.mark.parametrize("text", ["NaN", '{"a": Infinity}', "[-Infinity]"])
def test_constants_json_does_not_allow_are_refused(text: str) -> None:
    with pytest.raises(strict_json.JsonProblem, match="is not a number JSON allows") as caught:
        strict_json.loads(text, max_depth=8)
    assert not caught.value.syntax


def test_nesting_past_the_bound_is_refused_whether_or_not_python_could_recurse() -> None:
    assert strict_json.loads("[[1]]", max_depth=3) == [[1]]  # two lists and a number: three levels
    for text in ("[[[1]]]", "[" * 100_000 + "]" * 100_000):
        with pytest.raises(strict_json.JsonProblem, match="nested deeper than 3 levels"):
            strict_json.loads(text, max_depth=3)


@pytest.mark.parametrize("text", ['{"file": "a.png", "seed"', "{", "not json", b"\xff\xfe"])
def test_text_that_is_not_json_is_a_syntax_problem(text: str | bytes) -> None:
    with pytest.raises(strict_json.JsonProblem, match="not JSON") as caught:
        strict_json.loads(text, max_depth=8)
    assert caught.value.syntax


@given(FINITE)
def test_standard_json_within_the_bound_reads_back_as_written(value: object) -> None:
    text = json.dumps(value)
    limit = strict_json.depth(value, limit=64)
    assert strict_json.loads(text, max_depth=limit) == json.loads(text)
    if limit > 1:
        with pytest.raises(strict_json.JsonProblem):
            strict_json.loads(text, max_depth=limit - 1)
