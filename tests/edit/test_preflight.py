"""The one preflight: ``cpedit.prune`` (before loading) and ``EditSession.save`` (before writing) refuse
the same bad inputs with the same error; ``save`` returns what it wrote; callbacks are per call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.helpers import CPU, recipe_text

import cpedit
import cpedit.edit.session
import cpedit.output.folder
from cpedit.edit.session import EditSession, SaveResult
from cpedit.errors import Cancelled, CpeditError, OutputExistsError
from cpedit.output.record import read_report

STEPS = 6


@pytest.fixture(scope="module")
def recipe() -> cpedit.Recipe:
    return cpedit.parse_recipe(recipe_text(name="pre-s", skill_ratio=0.05, tau=3, select_ratio=0.0, steps=STEPS))


@pytest.fixture(scope="module")
def session(tiny_sd_path: Path, recipe: cpedit.Recipe) -> EditSession:
    """A calibrated session with its own selection applied (the recipe has no preview prompts)."""
    opened = EditSession.open(tiny_sd_path, [recipe], compute=CPU)
    opened.calibrate()
    opened.apply(opened.select())
    return opened


def _file(tmp_path: Path, base: Path) -> tuple[Path, dict[str, Any]]:
    (tmp_path / "a-file").write_text("not a folder")
    return tmp_path / "a-file", {}


def _exists(tmp_path: Path, base: Path) -> tuple[Path, dict[str, Any]]:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    return tmp_path / "taken", {}


def _not_an_output(tmp_path: Path, base: Path) -> tuple[Path, dict[str, Any]]:
    out, _ = _exists(tmp_path, base)
    return out, {"overwrite": True}


def _the_base(tmp_path: Path, base: Path) -> tuple[Path, dict[str, Any]]:
    return base, {"overwrite": True}


def _preview_without_prompts(tmp_path: Path, base: Path) -> tuple[Path, dict[str, Any]]:
    return tmp_path / "new", {"preview": True}


@pytest.mark.parametrize(
    ("make", "error", "reason"),
    [
        (_file, CpeditError, "not_folder"),
        (_exists, OutputExistsError, "exists"),
        (_not_an_output, CpeditError, "not_output"),
        (_the_base, CpeditError, "contains_base"),
        (_preview_without_prompts, CpeditError, None),
    ],
)
def test_prune_and_save_refuse_the_same_bad_input_with_the_same_error(
    session: EditSession,
    recipe: cpedit.Recipe,
    tiny_sd_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make: Callable[[Path, Path], tuple[Path, dict[str, Any]]],
    error: type[CpeditError],
    reason: str | None,
) -> None:
    out, options = make(tmp_path, tiny_sd_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(error) as saved:
        session.save(out, **options)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, no partial folder

    def no_loading(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before the inputs were checked")

    monkeypatch.setattr(cpedit.edit.session, "open_pipeline", no_loading)
    with pytest.raises(error) as pruned:
        cpedit.prune(tiny_sd_path, [recipe], out=out, compute=CPU, **options)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert type(pruned.value) is type(saved.value)
    assert str(pruned.value) == str(saved.value)
    assert (pruned.value.reason, pruned.value.argument) == (saved.value.reason, saved.value.argument)
    assert saved.value.reason == reason
    assert saved.value.argument == ("preview" if make is _preview_without_prompts else "out")


def test_prune_and_save_refuse_an_output_disk_without_space_alike(
    session: EditSession, recipe: cpedit.Recipe, tiny_sd_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cpedit.output.folder, "free_bytes", lambda path: 1000)
    with pytest.raises(CpeditError) as saved:
        session.save(tmp_path / "out")
    monkeypatch.setattr(cpedit.edit.session, "open_pipeline", lambda *a, **k: pytest.fail("loaded"))
    with pytest.raises(CpeditError) as pruned:
        cpedit.prune(tiny_sd_path, [recipe], out=tmp_path / "out", compute=CPU)
    assert saved.value.reason == pruned.value.reason == "no_space" and str(saved.value) == str(pruned.value)
    assert list(tmp_path.iterdir()) == []


def test_save_returns_the_folder_and_the_report_it_wrote(session: EditSession, tmp_path: Path) -> None:
    result = session.save(tmp_path / "out")
    assert isinstance(result, SaveResult)
    assert result.path == tmp_path / "out" and (result.path / "model_index.json").is_file()
    assert result.report.to_dict() == read_report(result.path).to_dict()
    assert result.report.totals.pruned_weights == session.applied.pruned  # type: ignore[union-attr]
    assert not hasattr(session, "last_report")


def test_callbacks_and_cancel_reach_only_the_call_they_are_given_to(session: EditSession, tmp_path: Path) -> None:
    saving: list[cpedit.ProgressEvent] = []
    sampling: list[cpedit.ProgressEvent] = []
    session.save(tmp_path / "out", on_progress=saving.append)
    session.sample(["a cat"], steps=2, on_progress=sampling.append)
    session.select()  # no callback: nothing of it reaches the earlier ones
    assert saving and {e.stage for e in saving} == {"save"}
    assert sampling and {e.stage for e in sampling} == {"sample"}
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        session.sample(["a cat"], steps=2, cancel=cancel)
    assert len(session.sample(["a cat"], steps=2)) == 1  # a cancel given to one call stops only that call
