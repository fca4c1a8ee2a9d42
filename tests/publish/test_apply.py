"""Edits as small repos: `cpedit push --edit-only` publishes the edit alone, `cpedit apply` rebuilds the output.

Against the loopback Hub emulator: a tiny pipeline is published as the base, pruned from its Hub id,
its edit pushed alone; applying that edit to the base gives `cpedit prune`'s folder byte for byte.
A base with other weights or at another commit, and a concealed edit, are refused before anything
is written.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import support.helpers as helpers
from click.testing import CliRunner, Result
from safetensors.torch import load_file, save_file
from support.hub_emulator import HubEmulator, folder_files, seed_pipeline

from cpedit.cli.main import cli

BASE = "acme/apply-base"
EDIT = "alice/apply-edit"
TOKEN = "hf_applyTestToken0000000000"
RECIPE = "apply-style"


def invoke(*args: object) -> Result:
    return CliRunner(env={"COLUMNS": "200"}).invoke(cli, [str(a) for a in args], catch_exceptions=True)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result


def failed(result: Result) -> str:
    """The error message of a clean failure (exit 1, no traceback), whitespace collapsed."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    return " ".join(result.stderr[result.stderr.index("Error: ") :].split())


@pytest.fixture(scope="module")
def pruned(tiny_sd_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The tiny pipeline published as acme/apply-base and pruned from that Hub id."""
    from conftest import HUB

    commit = seed_pipeline(HUB, BASE, tiny_sd_path, card_metadata={"license": "mit"})
    folder = tmp_path_factory.mktemp("apply")
    recipe = helpers.write_recipe(folder / "recipes", name=RECIPE, subjects=("cat", "dog"), tau=3, steps=6)
    out = folder / "out"
    ok(invoke("prune", BASE, "--recipe", recipe, "--out", out, "--device", "cpu"))
    return {"out": out, "commit": commit, "folder": folder}


@pytest.fixture
def pushed(pruned: dict, hub: HubEmulator, monkeypatch: pytest.MonkeyPatch) -> Result:
    """The output's edit pushed alone to alice/apply-edit (again for each test: the push is idempotent)."""
    hub.add_token(TOKEN, "alice")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    return ok(invoke("push", pruned["out"], "--repo", EDIT, "--edit-only"))


def test_prune_records_the_digest_of_its_base_weights(pruned: dict) -> None:
    report = json.loads((pruned["out"] / "conceptprune" / "report.json").read_text())
    digest = report["base_model"]["weights_digest"]
    assert digest.startswith("sha256:") and len(digest) == len("sha256:") + 64
    assert report["base_model"]["commit"] == pruned["commit"]


def test_edit_only_push_uploads_the_edit_and_no_weights(pruned: dict, pushed: Result, hub: HubEmulator) -> None:
    from huggingface_hub import ModelCard

    repo = hub.repos[EDIT]
    files = set(repo.commits[repo.refs["main"]].files)
    record = {"conceptprune/report.json", "conceptprune/pruned.safetensors", f"conceptprune/recipes/{RECIPE}.yaml"}
    assert files == record | {"README.md", ".gitattributes"}
    out = pruned["out"]
    for path in record:
        assert hub.file_bytes(EDIT, path) == (out / path).read_bytes(), path  # the report: a Hub base keeps its id
    weights = sum(p.stat().st_size for p in out.rglob("*.safetensors") if "conceptprune" not in p.parts)
    uploaded = sum(len(hub.file_bytes(EDIT, path)) for path in files - {".gitattributes"})
    assert uploaded < weights / 10
    card = ModelCard(hub.file_bytes(EDIT, "README.md").decode())
    assert card.data.base_model == BASE and card.data.base_model_relation == "adapter"
    assert card.data.library_name is None and "cpedit-edit" in card.data.tags
    assert f"`{pruned['commit']}`" in card.text and f"cpedit apply {EDIT} --out edited-model" in card.text
    assert "Published the edit only" in pushed.stdout


def test_apply_of_an_edit_only_push_equals_prune_output_byte_for_byte(
    pruned: dict, pushed: Result, tmp_path: Path
) -> None:
    out = tmp_path / "applied"
    result = ok(invoke("apply", EDIT, "--out", out, "--format", "json"))
    data = json.loads(result.stdout)
    assert data["base"] == BASE and data["base_commit"] == pruned["commit"] and data["edit"].startswith(f"{EDIT}@")
    expected, rebuilt = folder_files(pruned["out"]), folder_files(out)
    assert sorted(rebuilt) == sorted(expected)
    assert [path for path in expected if rebuilt[path] != expected[path]] == []
    assert any(path.startswith("unet/") for path in expected) and "conceptprune/pruned.safetensors" in expected


def test_apply_of_a_local_edit_to_a_local_base_folder(pruned: dict, tiny_sd_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "applied"
    ok(invoke("apply", pruned["out"], "--base-model", tiny_sd_path, "--out", out))
    expected = folder_files(pruned["out"])
    assert folder_files(out) == expected


def test_a_base_with_other_weights_is_refused_before_writing(pruned: dict, tiny_sd_path: Path, tmp_path: Path) -> None:
    report = json.loads((pruned["out"] / "conceptprune" / "report.json").read_text())
    layer = next(layer["name"] for layer in report["layers"] if layer["pruned"])
    other = tmp_path / "other-base"
    shutil.copytree(tiny_sd_path, other)
    weights = other / "unet" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(weights)
    tensors[f"{layer}.weight"][0, 0] += 1.0  # one unpruned-or-pruned entry of a pruned layer differs
    save_file(tensors, weights, metadata={"format": "pt"})
    out = tmp_path / "applied"
    message = failed(invoke("apply", pruned["out"], "--base-model", other, "--out", out))
    assert f"the base {other} is not the model this edit was made on: its pruned weights differ" in message
    assert "nothing was written" in message and "hint: give --base-model MODEL" in message
    assert not out.exists() and not list(tmp_path.glob(".applied*"))


def test_a_base_at_another_commit_is_refused_before_writing(
    pruned: dict, pushed: Result, hub: HubEmulator, tmp_path: Path
) -> None:
    from huggingface_hub import HfApi

    newer = HfApi().upload_file(
        path_or_fileobj=b"# a newer card\n", path_in_repo="NOTES.md", repo_id=BASE, commit_message="notes"
    )
    out = tmp_path / "applied"
    message = failed(invoke("apply", EDIT, "--base-model", BASE, "--base-revision", "main", "--out", out))
    assert f"it is commit {newer.oid}, the edit was made on commit {pruned['commit']}" in message
    assert not out.exists()
    ok(invoke("apply", EDIT, "--out", out))  # pinned to the recorded commit by default: still applies
    assert folder_files(out) == folder_files(pruned["out"])


def _with_report(pruned: dict, tmp_path: Path, change: dict) -> Path:
    edit = tmp_path / "edit"
    shutil.copytree(pruned["out"] / "conceptprune", edit / "conceptprune")
    path = edit / "conceptprune" / "report.json"
    report = json.loads(path.read_text())
    for key, value in change.items():
        section, _, field = key.partition(".")
        if field:
            report[section][field] = value
        else:
            report[section] = value
    path.write_text(json.dumps(report))
    return edit


def test_a_concealed_edit_is_refused_with_the_reason(pruned: dict, tmp_path: Path, hub: HubEmulator) -> None:
    edit = _with_report(pruned, tmp_path, {"conceal": {"mode": "gaussian", "scale": "row", "seed": 7}})
    out = tmp_path / "applied"
    message = failed(invoke("apply", edit, "--out", out))
    assert "is a concealed edit (gaussian fill)" in message and "cannot be drawn again the same" in message
    (edit / "conceptprune" / "pruned.safetensors").unlink()  # as a concealed edit is published
    assert "is a concealed edit" in failed(invoke("apply", edit, "--out", out))
    assert not out.exists() and hub.requests == []  # refused before the base was pulled


def test_an_edit_without_a_base_digest_or_with_other_positions_is_refused(pruned: dict, tmp_path: Path) -> None:
    out = tmp_path / "applied"
    edit = _with_report(pruned, tmp_path, {"base_model.weights_digest": None})
    assert "does not record a digest of its base's pruned weights" in failed(invoke("apply", edit, "--out", out))
    shutil.rmtree(edit)
    report = json.loads((pruned["out"] / "conceptprune" / "report.json").read_text())
    layers = [dict(layer, pruned=layer["pruned"] + 1) if layer["pruned"] else layer for layer in report["layers"]]
    edit = _with_report(pruned, tmp_path, {"layers": layers})
    assert "the report says" in failed(invoke("apply", edit, "--out", out))  # the positions reader's check
    assert not out.exists()


def test_edit_only_push_refuses_a_concealed_edit(
    pruned: dict, tmp_path: Path, hub: HubEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.add_token(TOKEN, "alice")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    concealed = tmp_path / "concealed"
    shutil.copytree(pruned["out"], concealed)
    path = concealed / "conceptprune" / "report.json"
    report = json.loads(path.read_text())
    report["conceal"] = {"mode": "gaussian", "scale": "row", "seed": 7}
    path.write_text(json.dumps(report))
    message = failed(invoke("push", concealed, "--repo", "alice/concealed-edit", "--edit-only"))
    assert "is a concealed edit (gaussian fill)" in message and "published with its weights only" in message
    assert "alice/concealed-edit" not in hub.repos and hub.requests == []


def test_the_edit_only_card_of_a_local_prune_names_the_base_in_its_apply_command(
    tiny_sd_path: Path, tmp_path: Path
) -> None:
    """A locally pruned output's published report names no base, so the card's command must."""
    import cpedit
    from cpedit.output.record import read_output
    from cpedit.publish.card import build_model_card

    recipe = helpers.write_recipe(tmp_path / "recipes", name="local-card", subjects=("cat", "dog"), tau=1, steps=2)
    out = cpedit.prune(tiny_sd_path, [recipe], out=tmp_path / "out", compute=helpers.CPU).output
    record = read_output(out)
    named = build_model_card(out, repo_id=EDIT, record=record, base_model="acme/apply-base", edit_only=True)
    assert f"cpedit apply {EDIT} --base-model acme/apply-base --out edited-model" in named
    unnamed = build_model_card(out, repo_id=EDIT, record=record, edit_only=True)
    assert f"cpedit apply {EDIT} --base-model BASE_FOLDER --out edited-model" in unnamed
    assert str(tiny_sd_path) not in named + unnamed  # the local path is never published


def test_an_edit_only_push_refuses_a_preview_it_would_not_publish(pruned: dict) -> None:
    result = invoke("push", pruned["out"], "--repo", EDIT, "--edit-only", "--preview")
    assert result.exit_code == 2 and "--edit-only publishes none" in result.output
