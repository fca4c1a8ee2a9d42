"""Concealment (``--conceal gaussian``): fills that match the layer, seeded; in memory, in the files, in the record.

The gaussian fill draws from the layer's own distribution (a small KS statistic), the same seed
gives the same values, the saved files hold exactly the in-memory weights, restore is bit-exact,
the report records the fill (and the published report drops its seed), recipes validate
``prune.conceal``, ``push`` leaves the positions out and the card gives totals and the caveat.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import support.helpers as helpers
import torch
from click.testing import CliRunner, Result
from safetensors.torch import load_file
from support.helpers import CPU
from support.hub_emulator import HubEmulator

import cpedit
from cpedit.cli.main import cli
from cpedit.edit.conceal import (
    FILL_CANDIDATES,
    candidate_fills,
    concept_difference,
    fill_values,
    layer_seed,
    restored_share,
)
from cpedit.edit.session import EditSession
from cpedit.errors import CpeditError, RecipeError
from cpedit.eval.audit import ks_statistic
from cpedit.output.record import POSITIONS_FILE, RECORD_DIR, Report, read_output, read_report
from cpedit.publish.card import build_model_card
from cpedit.recipes.conceal import Conceal, make_conceal

SECRET = "hf_conceal-token-never-printed"
POSITIONS = f"{RECORD_DIR}/{POSITIONS_FILE}"


def style(name: str, **extra: object) -> str:
    return helpers.recipe_text(name=name, skill_ratio=0.1, tau=3, steps=6, **extra)  # type: ignore[arg-type]


def invoke(*args: object) -> Result:
    return CliRunner(env={"COLUMNS": "200"}).invoke(cli, [str(a) for a in args], catch_exceptions=True)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result


def bits(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().contiguous().view(torch.int32).clone()


@pytest.fixture(scope="module")
def session(tiny_sd_path: Path) -> EditSession:
    opened = EditSession.open(tiny_sd_path, [cpedit.parse_recipe(style("hide-s"))], compute=CPU)
    opened.calibrate()
    return opened


@pytest.fixture(scope="module")
def outputs(session: EditSession, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same selection saved unconcealed and concealed (row and layer scale)."""
    folder = tmp_path_factory.mktemp("conceal")
    selection = session.select()
    saved = {}
    for label, mode, scale in (("zero", "zero", None), ("row", "gaussian", "row"), ("layer", "gaussian", "layer")):
        session.apply(selection, conceal=mode, conceal_scale=scale, conceal_seed=7)
        saved[label] = session.save(folder / label).path
    session.restore()
    return saved


# --- the fill itself -----------------------------------------------------------------------


def synthetic_layer() -> tuple[torch.Tensor, torch.Tensor]:
    """A 64x256 layer whose rows have very different scales, and 10% of its entries pruned."""
    generator = torch.Generator().manual_seed(0)
    scales = torch.linspace(0.01, 0.2, 64)[:, None]
    weight = torch.randn(64, 256, generator=generator) * scales
    indices = torch.randperm(64 * 256, generator=generator)[: 64 * 256 // 10].sort().values
    return weight, indices


def test_gaussian_fill_matches_the_layer_distribution() -> None:
    weight, indices = synthetic_layer()
    kept = torch.ones(weight.numel(), dtype=torch.bool)
    kept[indices] = False
    rest = weight.view(-1)[kept]
    row = fill_values(weight, indices, conceal=Conceal("gaussian", "row", seed=1), name="l")
    layer = fill_values(weight, indices, conceal=Conceal("gaussian", "layer", seed=1), name="l")
    assert row.dtype == torch.float32 and row.shape == indices.shape
    assert ks_statistic(row, rest) < 0.05  # per row: the mixture of the rows' scales, as the layer has
    assert ks_statistic(layer, rest) > ks_statistic(row, rest)  # one scale for all rows hides worse here
    # Per row, the spread of each row's fills follows that row's own scale.
    rows = indices // 256
    small, large = row[rows < 8], row[rows >= 56]
    assert small.std() < 0.3 * large.std()
    assert not bool((row == 0).any()) and not bool((layer == 0).any())


def test_gaussian_fill_is_seeded_per_layer_and_reproducible() -> None:
    weight, indices = synthetic_layer()
    conceal = Conceal("gaussian", "row", seed=5)
    first = fill_values(weight, indices, conceal=conceal, name="a.ff.net.2")
    assert torch.equal(first, fill_values(weight.clone(), indices, conceal=conceal, name="a.ff.net.2"))
    assert not torch.equal(first, fill_values(weight, indices, conceal=conceal, name="b.ff.net.2"))
    assert not torch.equal(first, fill_values(weight, indices, conceal=Conceal("gaussian", seed=6), name="a.ff.net.2"))
    assert layer_seed(5, "a") == layer_seed(5, "a") != layer_seed(5, "b")
    assert torch.equal(fill_values(weight, indices, conceal=Conceal(), name="x"), torch.zeros(indices.numel()))
    with pytest.raises(CpeditError, match="seed"):
        fill_values(weight, indices, conceal=Conceal("gaussian"), name="x")


def test_restored_share_and_concept_difference_on_known_cases() -> None:
    # Per call and column: target - base, clamped at zero, summed over calls and recipes; offset by the hooked columns.
    sums = torch.tensor([[[3.0, 1.0, 2.0], [1.0, 2.0, 2.0]], [[1.0, 0.0, 5.0], [0.0, 0.0, 1.0]]])
    assert torch.equal(concept_difference([sums], in_features=3), torch.tensor([3.0, 0.0, 4.0]))
    assert torch.equal(concept_difference([sums, sums[:1]], in_features=3), torch.tensor([5.0, 0.0, 4.0]))
    assert torch.equal(concept_difference([sums], in_features=5, columns=(2, 5)), torch.tensor([0, 0, 3.0, 0, 4.0]))
    base = torch.tensor([0.5, -1.0, 2.0, 7.0])
    indices = torch.tensor([0, 2, 3, 4])  # a 2x3 layer: columns 0, 2, 0, 1
    difference = torch.tensor([1.0, 0.0, 2.0])
    assert restored_share(base, base, indices, difference=difference, columns=3) == 1.0  # the base values: all back
    assert restored_share(-base, base, indices, difference=difference, columns=3) == -1.0
    assert restored_share(torch.zeros(4), base, indices, difference=difference, columns=3) == 0.0
    # By hand, fill (1, 1, 1, 1): (0.5*1 - 1*2 + 2*1 + 7*0) / (0.25*1 + 1*2 + 4*1 + 49*0) = 0.5 / 6.25.
    assert restored_share(torch.ones(4), base, indices, difference=difference, columns=3) == pytest.approx(0.5 / 6.25)
    assert restored_share(base, base, indices, difference=torch.zeros(3), columns=3) == 0.0


def test_chosen_fill_is_a_candidate_never_worse_than_the_plain_draw_and_reproducible() -> None:
    weight, indices = synthetic_layer()
    generator = torch.Generator().manual_seed(1)
    difference = torch.rand(256, generator=generator) * (torch.rand(256, generator=generator) < 0.2)
    pruned = weight.view(-1)[indices]
    kept = torch.ones(weight.numel(), dtype=torch.bool)
    kept[indices] = False
    plain_shares, chosen_shares = [], []
    for seed in range(12):
        conceal = Conceal("gaussian", "row", seed=seed)
        plain = fill_values(weight, indices, conceal=conceal, name="l")
        chosen = fill_values(weight, indices, conceal=conceal, name="l", difference=difference)
        # The same seed and statistics give the same fill, bit for bit.
        assert torch.equal(
            chosen, fill_values(weight.clone(), indices, conceal=conceal, name="l", difference=difference)
        )
        assert torch.equal(
            plain, fill_values(weight, indices, conceal=conceal, name="l", difference=difference, candidates=1)
        )
        drawn = candidate_fills(weight, indices, conceal=conceal, name="l")
        assert len(drawn) == FILL_CANDIDATES and torch.equal(drawn[0], plain)
        shares = [restored_share(fill, pruned, indices, difference=difference, columns=256) for fill in drawn]
        share = restored_share(chosen, pruned, indices, difference=difference, columns=256)
        assert share == min(shares) and share <= shares[0]  # the best candidate; never worse than the plain draw
        assert ks_statistic(chosen, weight.view(-1)[kept]) < 0.05  # still a draw from the layer's distribution
        assert not bool((chosen == 0).any())
        plain_shares.append(shares[0])
        chosen_shares.append(share)
    spread = torch.tensor(plain_shares).std()
    assert sum(chosen_shares) / 12 < sum(plain_shares) / 12 - spread  # clearly less of the concept comes back


def test_conceal_settings_are_checked() -> None:
    assert make_conceal("gaussian", scale="layer", seed=3) == Conceal("gaussian", "layer", 3)
    assert Conceal("gaussian").resolved().seed is not None
    assert Conceal("zero", seed=4).resolved().seed is None
    for kwargs, argument in (({"mode": "noise"}, "conceal"), ({"scale": "column"}, "conceal_scale")):
        with pytest.raises(CpeditError) as info:
            make_conceal(kwargs.get("mode", "gaussian"), scale=kwargs.get("scale"))
        assert info.value.argument == argument
    with pytest.raises(CpeditError, match="conceal_seed"):
        make_conceal("gaussian", seed=-1)


# --- in memory, in the files ------------------------------------------------------------------


def test_apply_gaussian_fills_and_restore_is_bit_exact(session: EditSession) -> None:
    unet = session.pipeline.unet
    base = {k: bits(v) for k, v in unet.state_dict().items()}
    selection = session.select()
    session.apply(selection, conceal="gaussian", conceal_seed=11)
    try:
        assert session.applied_conceal == Conceal("gaussian", "row", 11)
        state = unet.state_dict()
        for key, mask in selection.masks.items():
            weight = state[f"{key}.weight"]
            assert not bool((weight[mask] == 0).any())  # no exact zero marks the edit
            assert not torch.equal(bits(weight)[mask], base[f"{key}.weight"][mask])
            assert torch.equal(bits(weight)[~mask], base[f"{key}.weight"][~mask])
        edited = {k: bits(v) for k, v in unet.state_dict().items()}
        session.sample(["a cat"], steps=2, edited=False)  # a temporary swap puts the same fill back
        assert all(torch.equal(edited[k], bits(v)) for k, v in unet.state_dict().items())
        again = EditSession.apply  # the same seed gives the same fill
        again(session, selection, conceal="gaussian", conceal_seed=11)
        assert all(torch.equal(edited[k], bits(v)) for k, v in unet.state_dict().items())
    finally:
        session.restore()
    assert all(torch.equal(base[k], bits(v)) for k, v in unet.state_dict().items())


def test_session_fill_is_the_chosen_candidate_and_the_recorded_seed_gives_it_again(
    session: EditSession, tmp_path: Path
) -> None:
    selection = session.select()
    session.apply(selection, conceal="gaussian", conceal_seed=13)
    try:
        out = session.save(tmp_path / "out").path
        fills = session.applied_fills()
    finally:
        session.restore()
    seed = read_report(out).conceal.seed
    assert seed == 13 and fills
    stats = session.statistics["hide-s"]
    tau = selection.settings["hide-s"].timesteps
    unet = session.pipeline.unet
    for key, fill in fills.items():
        weight = unet.get_submodule(key).weight
        indices = selection.masks[key].reshape(-1).nonzero().squeeze(1)
        difference = concept_difference([stats.sums[key][:tau]], in_features=weight.shape[1])
        conceal = Conceal("gaussian", "row", seed)
        assert torch.equal(fill, fill_values(weight, indices, conceal=conceal, name=key, difference=difference))
        plain = fill_values(weight, indices, conceal=conceal, name=key)
        base = weight.detach().view(-1)[indices]
        share = restored_share(fill, base, indices, difference=difference, columns=weight.shape[1])
        assert share <= restored_share(plain, base, indices, difference=difference, columns=weight.shape[1])
    # A second session with the recorded seed writes the same files, bit for bit.
    assert session.source is not None
    again = EditSession.open(session.source.path, list(session.recipes), compute=CPU)
    again.calibrate()
    again.apply(again.select(), conceal="gaussian", conceal_seed=seed)
    second = again.save(tmp_path / "again").path
    first_files = load_file(out / "unet" / "diffusion_pytorch_model.safetensors")
    second_files = load_file(second / "unet" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(bits(first_files[k]), bits(second_files[k])) for k in first_files)


def test_saved_files_equal_the_in_memory_weights(session: EditSession, tmp_path: Path) -> None:
    selection = session.select()
    session.apply(selection, conceal="gaussian", conceal_scale="layer", conceal_seed=2)
    try:
        out = session.save(tmp_path / "out").path
        memory = {k: v.detach().clone() for k, v in session.pipeline.unet.state_dict().items()}
    finally:
        session.restore()
    files = load_file(out / "unet" / "diffusion_pytorch_model.safetensors")
    assert set(files) == set(memory)
    assert all(torch.equal(bits(files[k]), bits(memory[k])) for k in files)
    assert (out / POSITIONS).is_file()  # kept locally (sample --compare and audit read it)


def test_report_records_the_fill_and_publishes_no_seed(outputs: dict[str, Path]) -> None:
    report = read_report(outputs["row"])
    assert report.conceal == Conceal("gaussian", "row", 7)
    data = json.loads((outputs["row"] / RECORD_DIR / "report.json").read_text())
    assert data["conceal"] == {"mode": "gaussian", "scale": "row", "seed": 7}
    assert report.shareable().conceal == Conceal("gaussian", "row", None)
    assert read_report(outputs["layer"]).conceal.scale == "layer"
    zero = read_report(outputs["zero"])
    assert zero.conceal == Conceal() and zero.to_dict()["conceal"] == {"mode": "zero", "scale": None, "seed": None}
    # A report written before concealment existed reads as zero.
    old = json.loads((outputs["zero"] / RECORD_DIR / "report.json").read_text())
    old.pop("conceal")
    assert Report.from_dict(old).conceal == Conceal()
    bad = {**old, "conceal": {"mode": "noise"}}
    with pytest.raises(CpeditError, match="conceal.mode"):
        Report.from_dict(bad)


def test_a_concealed_output_without_its_positions_is_still_complete(outputs: dict[str, Path], tmp_path: Path) -> None:
    for label in ("row", "zero"):
        copy = tmp_path / label
        shutil.copytree(outputs[label], copy)
        (copy / POSITIONS).unlink()
        if label == "row":
            assert read_output(copy).report.conceal.mode == "gaussian"  # as published
        else:
            with pytest.raises(CpeditError, match="pruned.safetensors is missing"):
                read_output(copy)


# --- recipes, prune, CLI --------------------------------------------------------------------


def test_recipe_prune_conceal_is_validated_and_used(tiny_sd_path: Path, tmp_path: Path) -> None:
    text = style("rc-s").replace("select_ratio: 0.0}", "select_ratio: 0.0, conceal: gaussian, conceal_scale: layer}")
    recipe = cpedit.parse_recipe(text)
    assert (recipe.prune.conceal, recipe.prune.conceal_scale) == ("gaussian", "layer")
    assert cpedit.parse_recipe(style("rd-s")).prune.conceal == "zero"  # the default stays the paper's
    for bad, field in (("conceal: noise", "prune.conceal"), ("conceal_scale: column", "prune.conceal_scale")):
        with pytest.raises(RecipeError) as info:
            cpedit.parse_recipe(style("rb-s").replace("select_ratio: 0.0}", f"select_ratio: 0.0, {bad}}}"))
        assert [f for f, _ in info.value.problems] == [field]
    result = cpedit.prune(tiny_sd_path, [recipe], out=tmp_path / "out", compute=CPU)
    assert result.report.conceal.mode == "gaussian" and result.report.conceal.scale == "layer"
    assert result.report.conceal.seed is not None  # drawn, and recorded locally
    # An override wins over the recipe; the saved recipe copy says what ran.
    zero = cpedit.prune(tiny_sd_path, [recipe], out=tmp_path / "zero", compute=CPU, conceal="zero")
    assert zero.report.conceal.mode == "zero"
    assert read_output(tmp_path / "zero").recipes[0].prune.conceal == "zero"


def test_recipes_that_disagree_on_the_fill_need_a_choice(tiny_sd_path: Path) -> None:
    gaussian = style("ga-s").replace("select_ratio: 0.0}", "select_ratio: 0.0, conceal: gaussian}")
    session = EditSession.open(
        tiny_sd_path, [cpedit.parse_recipe(gaussian), cpedit.parse_recipe(style("ze-s"))], compute=CPU
    )
    with pytest.raises(CpeditError, match="different prune.conceal") as info:
        session.conceal_for()
    assert info.value.argument == "conceal"
    assert session.conceal_for("gaussian").mode == "gaussian"


def test_a_bad_conceal_is_refused_before_loading(no_model_loading: None, tmp_path: Path) -> None:
    with pytest.raises(CpeditError, match="conceal"):
        cpedit.prune("/no/such/model", [cpedit.parse_recipe(style("nb-s"))], conceal="noise")


def test_cli_prune_conceal(tiny_sd_path: Path, tmp_path: Path) -> None:
    recipe = helpers.write_recipe(tmp_path / "r", name="cli-s", skill_ratio=0.1, tau=3, steps=6)
    out = tmp_path / "out"
    result = ok(invoke("prune", tiny_sd_path, "-r", recipe, "--out", out, "--device", "cpu", "--conceal", "gaussian",
                       "--conceal-scale", "layer", "--conceal-seed", "9"))  # fmt: skip
    assert "Concealed" in result.stdout and "only helps while the base weights are not public" in result.stdout
    assert read_report(out).conceal == Conceal("gaussian", "layer", 9)
    assert "conceal" in invoke("prune", "--help").stdout
    assert invoke("prune", tiny_sd_path, "-r", recipe, "--out", tmp_path / "x", "--conceal", "noise").exit_code == 2


# --- card and push ---------------------------------------------------------------------------


def test_card_gives_totals_not_positions_and_the_caveat(outputs: dict[str, Path]) -> None:
    concealed = build_model_card(outputs["row"])
    report = read_report(outputs["row"])
    assert f"{report.totals.pruned_weights:,} weights in all" in concealed
    assert "| layer | shape | pruned |" not in concealed
    assert not any(layer.name in concealed for layer in report.layers)
    assert "only when the base model's weights are not public" in concealed
    assert "anyone holding the base finds every changed weight" in concealed
    assert "are not published" in concealed and "lists the pruned positions" not in concealed
    plain = build_model_card(outputs["zero"])
    assert "| layer | shape | pruned |" in plain and "lists the pruned positions" in plain
    assert "are set to zero" in plain and "Concealment" not in plain


def test_push_leaves_the_positions_out_of_a_concealed_edit(
    outputs: dict[str, Path], hub: HubEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.add_token(SECRET, "alice")
    monkeypatch.setenv("HF_TOKEN", SECRET)
    result = ok(invoke("push", outputs["row"], "--repo", "alice/concealed"))
    assert f"Left out {POSITIONS}" in result.stdout and "not public" in result.stdout
    repo = hub.repos["alice/concealed"]
    files = repo.commits[repo.refs["main"]].files
    assert POSITIONS not in files and "unet/diffusion_pytorch_model.safetensors" in files
    published = json.loads(hub.file_bytes("alice/concealed", f"{RECORD_DIR}/report.json"))
    assert published["conceal"] == {"mode": "gaussian", "scale": "row", "seed": None}
    as_json = json.loads(ok(invoke("push", outputs["row"], "--repo", "alice/concealed-2", "--format", "json")).stdout)
    assert as_json["left_out"] == [POSITIONS] and POSITIONS not in as_json["files"]
    plain = json.loads(ok(invoke("push", outputs["zero"], "--repo", "alice/plain", "--format", "json")).stdout)
    assert plain["left_out"] == [] and POSITIONS in plain["files"]
