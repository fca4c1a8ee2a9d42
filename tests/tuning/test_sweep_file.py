"""``sweep.json`` has one validated reader: tampered files (NaN, wrong types, deep nesting, huge, links) give
cpedit's own error naming the file and field, never a traceback; NaN is never written back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpedit.errors import CpeditError
from cpedit.output.record import write_json_atomically
from cpedit.tuning import read_sweep
from cpedit.tuning.points import Point
from cpedit.tuning.sweep_file import MAX_SWEEP_BYTES

POINT = {
    "settings": {"skill_ratio": 0.05, "timesteps": 3, "select_ratio": None, "target": None},
    "pruned": 120,
    "pruned_percent": 0.5,
    "erased": {"before": 0.9, "after": 0.4},
    "preserved": {"before": 0.95, "after": 0.9},
    "drop": 0.05,
    "metrics": {},
    "seconds": 1.5,
    "pareto": True,
}
SWEEP = {"sweep": 1, "model": "builtin:shapes", "points": [POINT], "calibrations": [{"recipe": "r"}]}


def _write(folder: Path, text: str) -> Path:
    (folder / "sweep.json").write_text(text, encoding="utf-8")
    return folder / "sweep.json"


def test_a_valid_sweep_reads_and_its_points_load(tmp_path: Path) -> None:
    _write(tmp_path, json.dumps(SWEEP))
    data = read_sweep(tmp_path)
    assert data == SWEEP and Point.from_dict(data["points"][0]).pruned == 120  # type: ignore[index]
    assert read_sweep(tmp_path / "none") is None


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (json.dumps(SWEEP).replace("0.4", "NaN"), "NaN is not a number"),
        (json.dumps(SWEEP).replace("0.05,", "Infinity,", 1), "Infinity is not a number"),
        (json.dumps({**SWEEP, "points": [{**POINT, "pruned": "120"}]}), "points[0].pruned"),
        (json.dumps({**SWEEP, "points": [{**POINT, "drop": True}]}), "points[0].drop"),
        (json.dumps({**SWEEP, "points": [{**POINT, "erased": {"before": 1}}]}), "points[0].erased"),
        (json.dumps({**SWEEP, "points": [{**POINT, "metrics": {"m": {"x": "1"}}}]}), "points[0].metrics.m.x"),
        (json.dumps({**SWEEP, "points": {}}), "points"),
        (json.dumps({**SWEEP, "sweep": 2}), "sweep"),
        (json.dumps({**SWEEP, "x": json.loads("[" * 20 + "]" * 20)}), "nested deeper"),
        ("[" * 100_000 + "]" * 100_000, "nested deeper"),
        ("\xff{", "not a cpedit sweep file"),
    ],
)
def test_tampered_sweeps_are_refused_naming_the_field(tmp_path: Path, text: str, field: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(CpeditError, match="is not a cpedit sweep file") as info:
        read_sweep(tmp_path)
    assert field in str(info.value) and info.value.path == str(path) and info.value.reason == "malformed"


def test_a_huge_or_linked_sweep_is_refused_unread(tmp_path: Path) -> None:
    with open(tmp_path / "sweep.json", "wb") as handle:
        handle.truncate(MAX_SWEEP_BYTES + 1)
    with pytest.raises(CpeditError, match="larger than 16 MiB"):
        read_sweep(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    _write(other, json.dumps(SWEEP))
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "sweep.json").symlink_to(other / "sweep.json")
    with pytest.raises(CpeditError, match="not a regular file"):
        read_sweep(linked)


def test_nan_is_never_written_as_json(tmp_path: Path) -> None:
    with pytest.raises(CpeditError, match="not finite") as info:
        write_json_atomically(tmp_path / "sweep.json", {"drop": float("nan")}, what="the sweep", argument="out")
    assert info.value.reason == "not_finite" and not (tmp_path / "sweep.json").exists()


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from(
        [("points", 0, "drop"), ("points", 0, "settings", "skill_ratio"), ("points", 0, "erased"), ("points",), ()]
    ),
    value=_JSON,
    cut=st.integers(min_value=0, max_value=400),
)
def test_mutated_sweeps_give_data_or_cpedits_own_error(tmp_path: Path, path: tuple, value: object, cut: int) -> None:
    data = json.loads(json.dumps(SWEEP))
    if path:
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    else:
        data = value
    text = json.dumps(data)
    for variant in (text, text[:cut]):
        _write(tmp_path, variant)
        try:
            read = read_sweep(tmp_path)
        except CpeditError as exc:
            assert exc.reason == "malformed"
            continue
        assert read is not None
        for point in read["points"]:
            Point.from_dict(point)  # what was accepted loads
        json.dumps(read, allow_nan=False)  # and can be written back as JSON
