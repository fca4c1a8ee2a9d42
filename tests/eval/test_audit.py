"""``cpedit audit``: zeros census, KS statistic, and the replayed location attack, zero fill against gaussian."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import support.helpers as helpers
import torch
from click.testing import CliRunner, Result
from support.helpers import CPU

import cpedit
from cpedit.cli.main import cli
from cpedit.eval.audit import (
    AuditError,
    RevivalEvaluation,
    audit_output,
    evaluate_revival,
    ks_statistic,
    location_attack,
    soft_impute,
)
from cpedit.output.record import POSITIONS_FILE, RECORD_DIR

POSITIONS = f"{RECORD_DIR}/{POSITIONS_FILE}"


def invoke(*args: object) -> Result:
    return CliRunner(env={"COLUMNS": "200"}).invoke(cli, [str(a) for a in args], catch_exceptions=True)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result


@pytest.fixture(scope="module")
def outputs(tiny_sd_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny-model selection saved with a zero fill and a gaussian fill."""
    folder = tmp_path_factory.mktemp("audit")
    recipe = cpedit.parse_recipe(helpers.recipe_text(name="audit-s", skill_ratio=0.1, tau=3, steps=6))
    session = cpedit.EditSession.open(tiny_sd_path, [recipe], compute=CPU)
    session.calibrate()
    selection = session.select()
    saved = {}
    for mode in ("zero", "gaussian"):
        session.apply(selection, conceal=mode, conceal_seed=3)
        saved[mode] = session.save(folder / mode).path
    session.restore()
    return saved


def test_ks_statistic() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=2000), rng.normal(size=1500)
    assert ks_statistic(a, a) == 0.0
    assert ks_statistic(np.zeros(10), np.ones(10)) == 1.0
    assert ks_statistic(a, b) < 0.06 and ks_statistic(a, b + 1) > 0.3
    assert ks_statistic(np.zeros(100), a) == pytest.approx(0.5, abs=0.03)  # zeros among centred weights
    assert ks_statistic(np.array([]), a) == 0.0
    # Against the definition, computed by brute force: the largest gap between the two empirical CDFs.
    shifted = b + 0.1
    points = np.concatenate([a, shifted])
    gaps = (a[None, :] <= points[:, None]).mean(axis=1) - (shifted[None, :] <= points[:, None]).mean(axis=1)
    assert ks_statistic(a, shifted) == pytest.approx(np.abs(gaps).max(), abs=1e-12)


def test_soft_impute_completes_a_low_rank_matrix() -> None:
    generator = torch.Generator().manual_seed(0)
    matrix = torch.randn(80, 8, generator=generator) @ torch.randn(8, 120, generator=generator)
    missing = torch.rand(80, 120, generator=generator) < 0.1
    filled = soft_impute(matrix, missing)
    assert torch.equal(filled[~missing], matrix[~missing])  # observed entries stay
    error = (filled[missing] - matrix[missing]).norm() / matrix[missing].norm()
    assert error < 0.2  # zero filling would be 1.0


def test_location_attack_takes_the_zeros_and_sets_the_largest_fills() -> None:
    generator = torch.Generator().manual_seed(1)
    weight = torch.randn(32, 64, generator=generator)
    pruned = torch.rand(32, 64, generator=generator) < 0.1
    edited = weight.masked_fill(pruned, 0)
    result = location_attack(edited)
    assert torch.equal(result.found, pruned)
    assert result.kept == round(0.6 * int(pruned.sum()))
    set_ = result.revived[pruned] != 0
    assert int(set_.sum()) == result.kept
    row_max = edited.abs().amax(dim=1)  # the zeros are not the largest, so this is the remaining max
    rows = pruned.nonzero()[:, 0]
    assert torch.allclose(result.revived[pruned][set_].abs(), row_max[rows][set_])
    assert torch.equal(result.revived[~pruned], edited[~pruned])
    untouched = location_attack(weight)  # no zeros: nothing found, nothing changed
    assert untouched.kept == 0 and torch.equal(untouched.revived, weight)


def test_attack_recovers_zero_fill_positions_and_not_gaussian_ones(outputs: dict[str, Path]) -> None:
    zero = audit_output(outputs["zero"], base=cpedit_base(outputs["zero"]))
    gaussian = audit_output(outputs["gaussian"], base=cpedit_base(outputs["gaussian"]))
    assert zero.pruned == gaussian.pruned > 0
    assert zero.positions == gaussian.positions == "record"
    assert zero.base_zeros == gaussian.base_zeros == 0
    assert zero.zeros == zero.pruned and zero.recovered_fraction == 1.0
    assert gaussian.zeros == 0 and gaussian.recovered == 0 and gaussian.found == 0
    assert zero.ks > 0.4 and gaussian.ks < 0.15
    assert set(zero.revived) == {layer.name for layer in zero.layers}
    assert gaussian.conceal.mode == "gaussian" and zero.conceal.mode == "zero"


def cpedit_base(folder: Path) -> str:
    return cpedit.output.record.read_report(folder).base_ref or ""


def test_without_positions_the_base_finds_the_edited_entries(outputs: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "published"
    shutil.copytree(outputs["gaussian"], copy)
    (copy / POSITIONS).unlink()  # as `cpedit push` publishes a concealed edit
    with pytest.raises(AuditError, match="give the base model") as info:
        audit_output(copy)
    assert info.value.argument == "base" and info.value.reason == "no_positions"
    with_base = audit_output(copy, base=cpedit_base(outputs["gaussian"]))
    recorded = audit_output(outputs["gaussian"], attack=False)
    assert with_base.positions == "base" and with_base.pruned == recorded.pruned


def test_a_tampered_positions_file_is_cpedits_own_error_in_the_audit(outputs: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "tampered"
    shutil.copytree(outputs["zero"], copy)
    raw = bytearray((copy / POSITIONS).read_bytes())
    raw[-4:] = (2**31 - 1).to_bytes(4, "little")  # the last position of the last layer: far out of its range
    (copy / POSITIONS).write_bytes(bytes(raw))
    with pytest.raises(cpedit.output.record.RecordError, match="is outside the layer") as info:
        audit_output(copy, attack=False)
    assert info.value.path == str(copy / POSITIONS)
    result = invoke("audit", copy)
    assert result.exit_code != 0 and "is not a valid cpedit positions file" in result.output
    assert "Traceback" not in result.output


def test_audit_cli_table_and_json(outputs: dict[str, Path]) -> None:
    table = ok(invoke("audit", outputs["zero"], "--base-model", cpedit_base(outputs["zero"]))).stdout
    assert "exact zeros" in table and "recovered" in table and "(100.0%)" in table and "total" in table
    data = json.loads(ok(invoke("audit", outputs["gaussian"], "--format", "json")).stdout)
    assert data["conceal"] == {"mode": "gaussian", "scale": "row", "seed": None}
    assert data["totals"]["recovered"] == 0 and data["totals"]["zeros"] == 0 and data["totals"]["base_zeros"] is None
    assert {"name", "pruned", "zeros", "ks", "found", "recovered"} <= set(data["layers"][0])
    assert "location attack" in invoke("audit", "--help").stdout


def stripes_recipe(name: str) -> cpedit.Recipe:
    """A small ``striped`` recipe of the shapes world (two pairs, tau 2, 4 steps) on the value projections."""
    return cpedit.parse_recipe(
        helpers.recipe_text(
            name=name,
            concept="striped",
            subjects=("red star on a white background", "blue circle on a black background"),
            target="a striped {subject}",
            base="a plain {subject}",
            skill_ratio=0.2,
            tau=2,
            steps=4,
            prune_target="attn-value",
        )
    )


def test_revival_on_the_shapes_world(tmp_path: Path) -> None:
    """The attack on a zero-filled shapes edit, measured end to end (few images: it checks the wiring)."""
    recipe = stripes_recipe("stripes-s")
    out = cpedit.prune("builtin:shapes", [recipe], out=tmp_path / "shapes", compute=CPU).output
    assert out is not None
    audit = audit_output(out)
    assert audit.recovered_fraction == 1.0
    result = evaluate_revival(audit, images=2, steps=2, compute=CPU)
    assert set(result.erased) == set(result.preserved) == {"base", "edited", "revived"}
    assert result.concepts == ["striped"] and result.images == 2
    again = evaluate_revival(audit, images=2, steps=2, compute=CPU, base_scores=(0.5, 0.5))
    assert again.erased["base"] == 0.5 and again.erased["edited"] == result.erased["edited"]
    data = json.loads(ok(invoke("audit", out, "--eval", "shapes", "--images", 2, "--steps", 2, "--device", "cpu",
                                "--format", "json")).stdout)  # fmt: skip
    assert data["eval"]["shapes"]["erased"] == result.erased
    # A zero fill is its own "without the fill".
    assert result.without_fill == {"erased": result.erased["edited"], "preserved": result.preserved["edited"]}
    assert data["eval"]["shapes"]["without_fill"] == result.without_fill


def test_fill_kept_is_the_share_of_the_zero_fills_erasure() -> None:
    def made(edited: float, zero: float) -> RevivalEvaluation:
        return RevivalEvaluation(
            concepts=["striped"],
            images=8,
            erased={"base": 0.9, "edited": edited, "revived": edited},
            preserved={"base": 0.9, "edited": 0.9, "revived": 0.9},
            without_fill={"erased": zero, "preserved": 0.9},
        )

    assert made(0.5, 0.5).fill_kept == 1.0
    assert made(0.7, 0.5).fill_kept == pytest.approx(0.5)  # the fill gave half of the erasure back
    assert made(0.3, 0.5).fill_kept == pytest.approx(1.5)  # it erased more than zeros
    assert made(0.7, 0.95).fill_kept == 0.0  # zeros erased nothing
    assert made(0.7, 0.5).to_json()["fill_kept"] == pytest.approx(0.5)


def test_audit_reports_the_erasure_with_and_without_a_concealing_fill(tmp_path: Path) -> None:
    recipe = stripes_recipe("stripes-g")
    out = cpedit.prune(
        "builtin:shapes", [recipe], out=tmp_path / "g", compute=CPU, conceal="gaussian", conceal_seed=5
    ).output
    assert out is not None
    audit = audit_output(out)
    assert audit.recovered == 0 and set(audit.masks) == {layer.name for layer in audit.layers}
    result = evaluate_revival(audit, images=4, steps=2, compute=CPU)
    assert set(result.without_fill) == {"erased", "preserved"}
    gap = result.erased["base"] - result.without_fill["erased"]
    expected = (result.erased["base"] - result.erased["edited"]) / gap if gap > 0 else 0.0
    assert result.fill_kept == pytest.approx(expected)
    # The zero-filled copy is measured, then the fill is put back: the attacked model is the edit itself.
    assert result.erased["revived"] == result.erased["edited"]
    table = ok(invoke("audit", out, "--eval", "shapes", "--images", 4, "--steps", 2, "--device", "cpu")).stdout
    assert "zeros instead of the fill" in table and f"the fill keeps {result.fill_kept:.2f}" in table
