"""``cpedit prune`` runs the collapse check by default: recorded in report.json, a warning when it fails.

The image measure itself is tested on the shapes model (``tests/edit/test_collapse.py``); here the
tiny random model's edit is judged as it is, and once through a stand-in distance that says every
prompt lost its structure, to see the warning, the advice and the exit status.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli_prune import assert_clean_exit, flat, invoke, write_recipe

import cpedit.edit.collapse
from cpedit.output.collapse import PromptDistance
from cpedit.output.record import read_report


def test_prune_records_a_passed_check_and_says_so(tiny_sd_path: Path, tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, "van-gogh-guard", "Van Gogh")
    result = invoke("prune", tiny_sd_path, "--recipe", recipe, "--out", tmp_path / "out", "--device", "cpu")
    assert_clean_exit(result, 0)
    check = read_report(tmp_path / "out").collapse_check
    assert check is not None and not check.collapsed and len(check.prompts) == 4 and check.steps == 6
    assert max(check.distances) < check.threshold / 2
    assert "Collapse check: no collapse: 0 of 4 unrelated prompts" in flat(result.stdout)
    assert "destroyed generation" not in result.stderr


def test_a_collapse_is_a_warning_with_advice_and_the_output_is_kept(
    tiny_sd_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(prompt: str, base: object, edited: object) -> PromptDistance:
        return PromptDistance(prompt=prompt, distance=4.0, contrast=0.02, texture=1.0)

    monkeypatch.setattr(cpedit.edit.collapse, "prompt_distance", broken)
    recipe = write_recipe(tmp_path, "van-gogh-guard", "Van Gogh")
    out = tmp_path / "out"
    result = invoke("prune", tiny_sd_path, "-r", recipe, "--out", out, "--device", "cpu", "--format", "json")
    assert_clean_exit(result, 0)  # a warning: the output is written
    report = json.loads(result.stdout)
    assert report["collapse_check"]["collapsed"] is True
    assert report["collapse_check"]["reason"].startswith("collapse: 4 of 4 unrelated prompts")
    warning = flat(result.stderr)
    assert "Warning: the edit destroyed generation, not just the concept (collapse: 4 of 4" in warning
    assert "flat or black" in warning and "lower prune.skill_ratio in the recipe" in warning
    assert read_report(out).collapse_check.collapsed  # type: ignore[union-attr]


def test_no_collapse_check_skips_it(tiny_sd_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the check ran")

    monkeypatch.setattr(cpedit.edit.collapse.CollapseGuard, "check", refuse)
    recipe = write_recipe(tmp_path, "van-gogh-guard", "Van Gogh")
    out = tmp_path / "out"
    result = invoke("prune", tiny_sd_path, "-r", recipe, "--out", out, "--device", "cpu", "--no-collapse-check")
    assert_clean_exit(result, 0)
    assert read_report(out).collapse_check is None
    assert "collapse_check" not in json.loads((out / "conceptprune" / "report.json").read_text(encoding="utf-8"))
    assert "Collapse check" not in result.stdout
