"""Hub round trip against the loopback emulator: pull, prune, card, push, pull back; search, info, errors.

Every Hub call goes through the real huggingface_hub client to the emulator (HF_ENDPOINT, see
conftest). The module prunes once, from a tiny pipeline published on the emulator.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import support.helpers as helpers
from click.testing import CliRunner, Result
from safetensors.torch import load_file
from support.hub_emulator import HubEmulator, folder_files, seed_pipeline, validate_card_metadata

from cpedit.cli.main import cli

BASE = "acme/tiny-sd"
LICENSE = "creativeml-openrail-m"
SECRET = "hf_SeCrEt-T0ken-Never-Printed"
PREVIEW = ("a cat in the style of Van Gogh", "a red bicycle")
EVAL = {
    "concepts": ["Van Gogh"],
    "images": 40,
    "erased": {"before": 0.85, "after": 0.125},
    "preserved": {"before": 0.9, "after": 0.875},
    "pruned_fraction": 0.0123,
}


def invoke(*args: object, env: dict[str, str] | None = None) -> Result:
    return CliRunner(env={"COLUMNS": "200", **(env or {})}).invoke(cli, [str(a) for a in args], catch_exceptions=True)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result


def failed(result: Result) -> str:
    """The error message of a clean failure (exit 1, no traceback), whitespace collapsed."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    assert "Error: " in result.stderr
    return " ".join(result.stderr[result.stderr.index("Error: ") :].split())


def assert_no_secret(*texts: str, folders: tuple[Path, ...] = ()) -> None:
    for text in texts:
        assert SECRET not in text
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert SECRET.encode() not in path.read_bytes(), path


@pytest.fixture(scope="module")
def pruned(tiny_sd_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny pipeline published as acme/tiny-sd, pruned from the Hub id with --preview, plus an eval file."""
    from conftest import HUB

    commit = seed_pipeline(
        HUB,
        BASE,
        tiny_sd_path,
        card_metadata={"license": LICENSE, "library_name": "diffusers", "pipeline_tag": "text-to-image"},
        downloads=50,
        likes=3,
    )
    folder = tmp_path_factory.mktemp("hub")
    recipe = helpers.write_recipe(
        folder / "recipes", name="van-gogh-hub", subjects=("cat", "dog"), tau=3, steps=6, preview=PREVIEW
    )
    out = folder / "out"
    result = invoke(
        "prune", BASE, "--recipe", recipe, "--out", out, "--device", "cpu", "--preview", "--preview-steps", 2
    )
    (out / "conceptprune" / "eval").mkdir()
    (out / "conceptprune" / "eval" / "shapes.json").write_text(json.dumps(EVAL), encoding="utf-8")
    return {"result": result, "out": out, "recipe": recipe, "commit": commit, "folder": folder}


# --- pull and prune from the Hub ------------------------------------------------------


def test_prune_pulls_the_base_from_the_hub_into_the_cache(pruned: dict) -> None:
    ok(pruned["result"])
    report = json.loads((pruned["out"] / "conceptprune" / "report.json").read_text())
    assert report["base_model"]["id"] == BASE and report["base_model"]["local"] is False
    assert report["base_model"]["commit"] == pruned["commit"]
    cache = Path(os.environ["HF_HOME"]) / "hub" / "models--acme--tiny-sd" / "snapshots" / pruned["commit"]
    assert (cache / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert (pruned["out"] / "conceptprune" / "preview.png").is_file()
    assert "Preview:" in pruned["result"].stdout


def test_offline_pull_uses_the_cache_and_names_what_is_missing(
    pruned: dict, hub: HubEmulator, offline_hub: None
) -> None:
    from cpedit.errors import ModelLoadError
    from cpedit.models.loading import resolve_source

    ok(pruned["result"])
    source = resolve_source(BASE)  # cached by the module's prune
    assert source.commit == pruned["commit"]
    with pytest.raises(ModelLoadError, match=r"acme/never-pulled is not \(fully\) in the local Hub cache") as info:
        resolve_source("acme/never-pulled")
    assert "HF_HUB_OFFLINE=1" in str(info.value) and "nothing of it is in the cache" in str(info.value)
    assert hub.requests == []  # offline means no request at all


def test_offline_pull_of_a_partial_cache_lists_the_missing_files(
    tiny_sd_path: Path, hub: HubEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    from cpedit.errors import ModelLoadError
    from cpedit.models.loading import resolve_source

    seed_pipeline(hub, "acme/partial", tiny_sd_path)
    source = resolve_source("acme/partial")
    (source.path / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE=1") as info:
        resolve_source("acme/partial")
    assert "1 file(s) are missing: unet/diffusion_pytorch_model.safetensors" in str(info.value)


def test_pull_errors_are_clear(tiny_sd_path: Path, hub: HubEmulator) -> None:
    from cpedit.errors import ModelLoadError
    from cpedit.models.loading import resolve_source

    files = folder_files(tiny_sd_path)
    hub.seed_repo("acme/not-a-pipeline", {"config.json": b"{}", "model.safetensors": b"\0" * 8})
    with pytest.raises(
        ModelLoadError, match=r"acme/not-a-pipeline is not a diffusers pipeline \(it has no model_index"
    ):
        resolve_source("acme/not-a-pipeline")
    pickled = {p.replace(".safetensors", ".bin"): c for p, c in files.items()}
    hub.seed_repo("acme/pickles-only", pickled)
    with pytest.raises(ModelLoadError, match="acme/pickles-only has no safetensors weights"):
        resolve_source("acme/pickles-only")
    index = json.loads(files["model_index.json"])
    index["_class_name"] = "StableDiffusionImg2ImgPipeline"
    hub.seed_repo("acme/img2img", {**files, "model_index.json": json.dumps(index).encode()})
    with pytest.raises(ModelLoadError, match="StableDiffusionImg2ImgPipeline is not a text-to-image pipeline"):
        resolve_source("acme/img2img")
    ddpm = {"model_index.json": b'{"_class_name": "DDPMPipeline", "unet": ["diffusers", "UNet2DModel"]}'}
    hub.seed_repo("acme/ddpm", ddpm)
    with pytest.raises(ModelLoadError, match="DDPMPipeline has no text encoder"):
        resolve_source("acme/ddpm")
    with pytest.raises(ModelLoadError, match="acme/missing was not found on http://127.0.0.1"):
        resolve_source("acme/missing")
    with pytest.raises(ModelLoadError, match="acme/not-a-pipeline has no revision 'v9'"):
        resolve_source("acme/not-a-pipeline", revision="v9")


def test_pull_of_a_gated_model_says_how_to_get_access(
    tiny_sd_path: Path, hub: HubEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cpedit.errors import ModelLoadError
    from cpedit.models.loading import resolve_source

    seed_pipeline(hub, "acme/gated-sd", tiny_sd_path, gated="manual", granted={"bob"})
    with pytest.raises(ModelLoadError) as info:
        resolve_source("acme/gated-sd")
    message = str(info.value)
    assert f"acme/gated-sd is gated: request access on {hub.url}/acme/gated-sd" in message
    assert "`hf auth login` or set HF_TOKEN" in message
    hub.add_token(SECRET, "carol")
    monkeypatch.setenv("HF_TOKEN", SECRET)
    with pytest.raises(ModelLoadError, match="gated and your account has no access yet") as info:
        resolve_source("acme/gated-sd")
    assert_no_secret(str(info.value))
    hub.add_token("hf_bobsToken000000000000", "bob")
    monkeypatch.setenv("HF_TOKEN", "hf_bobsToken000000000000")
    hub.tree_page_size = 3  # the file listing comes in pages (Link header)
    source = resolve_source("acme/gated-sd")  # access granted: it downloads
    assert folder_files(source.path) == {p: c for p, c in folder_files(tiny_sd_path).items() if not p.startswith(".")}
    assert sum(1 for _, path, _ in hub.requests if "/tree/" in path) > 3
    assert hub.cdn_auth_leaks == []


def test_network_down_is_a_clear_error(hub: HubEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    helpers.instant_hub_retries(monkeypatch)
    from cpedit.errors import ModelLoadError
    from cpedit.models.loading import resolve_source

    with hub.down():
        with pytest.raises(ModelLoadError, match=f"cannot reach the Hub at {hub.url}") as info:
            resolve_source("acme/somewhere")
        result = invoke("models", "info", "acme/somewhere")
        search = invoke("models", "search")
    assert "HF_HUB_OFFLINE=1 to use the cache" in str(info.value)
    assert f"cannot reach the Hub at {hub.url}" in failed(result)
    assert f"cannot reach the Hub at {hub.url} to search models" in failed(search)


# --- the model card ---------------------------------------------------------------------


def test_card_is_generated_from_the_record(pruned: dict, tmp_path: Path, hub: HubEmulator) -> None:
    from huggingface_hub import ModelCard

    ok(pruned["result"])
    out = pruned["out"]
    card_file = tmp_path / "card.md"
    ok(invoke("card", out, "--repo", "alice/sd-no-van-gogh", "--out", card_file))
    text = card_file.read_text(encoding="utf-8")
    assert ok(invoke("card", out, "--repo", "alice/sd-no-van-gogh")).stdout == text  # printing = writing

    card = ModelCard(text)
    data = card.data.to_dict()
    assert data["base_model"] == BASE
    assert data["base_model_relation"] == "finetune"
    assert data["license"] == LICENSE  # from the base model's card on the Hub
    assert data["library_name"] == "diffusers" and data["pipeline_tag"] == "text-to-image"
    assert {"conceptprune", "concept-erasure", "cpedit", "van-gogh"} <= set(data["tags"])
    assert validate_card_metadata(text) == ([], [])

    report = json.loads((out / "conceptprune" / "report.json").read_text())
    body = card.text
    assert pruned["recipe"].read_text() in body  # the recipe, verbatim
    assert "```yaml" in body and "arXiv:2405.19237" in body and "ICLR 2025" in body
    assert "a test recipe" in body  # the recipe's description: why
    assert f"{report['totals']['pruned_weights']:,}" in body
    assert f"{100 * report['totals']['pruned_fraction']:.4f}% of the UNet" in body
    for layer in report["layers"]:
        assert f"`{layer['name']}`" in body
    assert pruned["commit"] in body  # base revision / commit
    assert f"| diffusers | {report['versions']['diffusers']} |" in body
    assert "### shapes" in body and "| erased concepts | 0.8500 | 0.1250 |" in body
    assert "| preserved concepts | 0.9000 | 0.8750 |" in body and "40 images" in body
    assert "![before/after](conceptprune/preview.png)" in body
    assert 'DiffusionPipeline.from_pretrained("alice/sd-no-van-gogh"' in body
    assert f'pipe(prompt="{PREVIEW[0]}")' in body  # by name: FLUX.2's first parameter is an image
    for local in (str(out), str(pruned["folder"]), os.environ["HF_HOME"], "/tmp/"):
        assert local not in text


def test_card_and_push_of_a_local_base_never_show_its_path(
    tiny_sd_path: Path, tmp_path: Path, hub: HubEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import ModelCard

    recipe = helpers.write_recipe(tmp_path / "r", name="monet-local", concept="Claude Monet", tau=2, steps=4)
    out = tmp_path / "out"
    ok(invoke("prune", tiny_sd_path, "-r", recipe, "--out", out, "--device", "cpu"))
    text = ok(invoke("card", out)).stdout
    data = ModelCard(text).data.to_dict()
    assert "base_model" not in data and "base_model_relation" not in data and "license" not in data
    assert "claude-monet" in data["tags"]
    assert "a local model" in text and "NAMESPACE/NAME" in text
    assert str(tiny_sd_path) not in text and str(tmp_path) not in text and "/tmp/" not in text
    assert "## Evaluation" not in text and "before/after" not in text  # nothing recorded, nothing shown
    assert validate_card_metadata(text)[0] == []
    hub.add_token(SECRET, "alice")
    monkeypatch.setenv("HF_TOKEN", SECRET)
    ok(invoke("push", out, "--repo", "alice/local-base"))
    head = hub.repos["alice/local-base"].refs["main"]
    for path in hub.repos["alice/local-base"].commits[head].files:
        content = hub.file_bytes("alice/local-base", path)
        assert str(tiny_sd_path).encode() not in content and str(tmp_path).encode() not in content, path
    shared = json.loads(hub.file_bytes("alice/local-base", "conceptprune/report.json"))
    local = json.loads((out / "conceptprune" / "report.json").read_text())
    assert shared["base_model"] == {**local["base_model"], "id": None, "path": None}
    assert {k: v for k, v in shared.items() if k != "base_model"} == {
        k: v for k, v in local.items() if k != "base_model"
    }


def test_card_refuses_a_malformed_eval_file(pruned: dict, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(pruned["out"], out)
    (out / "conceptprune" / "eval" / "bad.json").write_text('{"concepts": ["x"], "images": 3}')
    assert "conceptprune/eval/bad.json must hold exactly the keys" in failed(invoke("card", out))


def test_sample_compare_save_preview_writes_the_preview(pruned: dict, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(pruned["out"], out)
    (out / "conceptprune" / "preview.png").unlink()
    assert "before/after" not in ok(invoke("card", out)).stdout
    result = ok(invoke("sample", out, "--compare", "--save-preview", "--steps", 2, "--device", "cpu"))
    assert (out / "conceptprune" / "preview.png").is_file() and "preview.png" in result.stdout
    assert "![before/after](conceptprune/preview.png)" in ok(invoke("card", out)).stdout
    assert "--save-preview needs --compare" in failed(invoke("sample", out, "--save-preview", "-p", "x"))


def test_prune_preview_needs_preview_prompts(tiny_sd_path: Path, tmp_path: Path, no_model_loading: None) -> None:
    recipe = helpers.write_recipe(tmp_path, name="no-preview")
    message = failed(invoke("prune", tiny_sd_path, "-r", recipe, "--out", tmp_path / "o", "--preview"))
    assert "none of the recipes has preview prompts" in message
    assert not (tmp_path / "o").exists()


# --- push -------------------------------------------------------------------------------


def test_push_round_trip(pruned: dict, hub: HubEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    from diffusers import DiffusionPipeline
    from huggingface_hub import ModelCard

    ok(pruned["result"])
    out = pruned["out"]
    hub.add_token(SECRET, "alice")
    monkeypatch.setenv("HF_TOKEN", SECRET)
    result = ok(invoke("push", out, "--repo", "alice/sd-no-van-gogh", "--message", "Erase Van Gogh"))
    url = f"{hub.url}/alice/sd-no-van-gogh"
    assert result.stdout.strip().splitlines()[-1] == url  # the URL, on the Hub in use, at the end
    assert "committing" in result.stderr and re.search(r"([\d.]+)/\1 MB", result.stderr)  # upload progress, bytes

    repo = hub.repos["alice/sd-no-van-gogh"]
    head = repo.commits[repo.refs["main"]]
    assert head.title == "Erase Van Gogh"
    assert repo.commits[head.parent].title == "initial commit"  # everything in one commit after creation
    local = folder_files(out)
    local.pop("README.md", None)  # a base model card copied into the output is replaced by the generated one
    assert set(head.files) == set(local) | {"README.md", ".gitattributes"}
    for path, content in local.items():
        assert hub.file_bytes("alice/sd-no-van-gogh", path) == content, path
    assert head.files["unet/diffusion_pytorch_model.safetensors"].lfs_sha256 is not None  # weights went via LFS
    assert head.files["conceptprune/preview.png"].lfs_sha256 is not None
    card = ModelCard(hub.file_bytes("alice/sd-no-van-gogh", "README.md").decode())
    assert card.data.base_model == BASE and card.data.license == LICENSE
    assert "conceptprune" in card.data.tags
    assert 'from_pretrained("alice/sd-no-van-gogh"' in card.text

    pipe = DiffusionPipeline.from_pretrained("alice/sd-no-van-gogh", use_safetensors=True)
    pulled = pipe.unet.state_dict()
    expected = load_file(out / "unet" / "diffusion_pytorch_model.safetensors")
    assert set(pulled) == set(expected)
    assert all(bool((pulled[k] == expected[k]).all()) for k in expected)
    assert hub.cdn_auth_leaks == []  # the token never went to the CDN
    assert_no_secret(result.stdout, result.stderr, folders=(out, Path(os.environ["HF_HOME"])))


def test_push_to_a_branch_and_as_a_pull_request(
    pruned: dict, hub: HubEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok(pruned["result"])
    hub.add_token(SECRET, "alice")
    monkeypatch.setenv("HF_TOKEN", SECRET)
    result = ok(invoke("push", pruned["out"], "--repo", "acme/sd-branches", "--branch", "dev", "--format", "json"))
    data = json.loads(result.stdout)
    repo = hub.repos["acme/sd-branches"]  # alice is in the acme organisation
    assert data["url"] == f"{hub.url}/acme/sd-branches" and data["commit"] == repo.refs["dev"]
    assert "README.md" not in repo.commits[repo.refs["main"]].files
    main_before = repo.refs["main"]
    result = ok(invoke("push", pruned["out"], "--repo", "acme/sd-branches", "--create-pr", "--private"))
    assert f"Pull request: {hub.url}/acme/sd-branches/discussions/1" in result.stdout
    assert repo.refs["main"] == main_before and "refs/pr/1" in repo.refs
    assert not repo.private  # --private applies when the repo is created


def test_push_publishes_only_the_output_not_an_images_folder_inside_it(
    pruned: dict, tmp_path: Path, hub: HubEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok(pruned["result"])
    hub.add_token(SECRET, "alice")
    monkeypatch.setenv("HF_TOKEN", SECRET)
    out = tmp_path / "out"
    shutil.copytree(pruned["out"], out)
    images = out / "nudity-images"  # as `cpedit eval nudity OUT --images-dir OUT/nudity-images` leaves it
    (images / "edited").mkdir(parents=True)
    (images / "edited" / "a.png").write_bytes(b"png")
    (images / "manifest.jsonl").write_text("{}\n")
    (out / "notes[bold]").mkdir()  # a folder no component names (markup in its name is shown as it is)
    (out / "notes[bold]" / "todo.txt").write_text("private")
    (out / "unet" / "samples").mkdir()
    (out / "unet" / "samples" / "manifest.jsonl").write_text("")  # an images folder anywhere in it
    result = ok(invoke("push", out, "--repo", "alice/only-the-output"))
    repo = hub.repos["alice/only-the-output"]
    published = set(repo.commits[repo.refs["main"]].files)
    assert "unet/diffusion_pytorch_model.safetensors" in published and "conceptprune/report.json" in published
    assert not [p for p in published if p.startswith(("nudity-images", "notes", "unet/samples"))]
    said = " ".join(result.stdout.split())
    assert "Not uploaded, not part of the output: notes[bold]/, nudity-images/, unet/samples/" in said
    data = json.loads(ok(invoke("push", out, "--repo", "alice/only-the-output", "--format", "json")).stdout)
    assert data["not_output"] == ["notes[bold]/", "nudity-images/", "unet/samples/"]


def test_push_refuses_what_is_not_a_cpedit_output(
    pruned: dict, tiny_sd_path: Path, tmp_path: Path, hub: HubEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.add_token(SECRET, "alice")
    monkeypatch.setenv("HF_TOKEN", SECRET)
    assert "is not a cpedit output (no conceptprune/report.json)" in failed(
        invoke("push", tiny_sd_path, "--repo", "alice/x")
    )
    partial = tmp_path / ".out.partial-1234abcd"
    shutil.copytree(pruned["out"], partial)
    assert "unfinished" in failed(invoke("push", partial, "--repo", "alice/x"))
    broken = tmp_path / "broken"
    shutil.copytree(pruned["out"], broken)
    (broken / "conceptprune" / "report.json").write_text("{not json")
    assert "report.json is not valid JSON" in failed(invoke("push", broken, "--repo", "alice/x"))
    (broken / "conceptprune" / "report.json").write_bytes((pruned["out"] / "conceptprune" / "report.json").read_bytes())
    (broken / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    assert "no weights in unet/" in failed(invoke("push", broken, "--repo", "alice/x"))
    assert "give NAMESPACE/NAME" in failed(invoke("push", pruned["out"], "--repo", "just-a-name"))
    assert hub.requests == [] and "alice/x" not in hub.repos  # refused before any Hub call


def test_push_without_or_with_a_bad_token(pruned: dict, hub: HubEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    message = failed(invoke("push", pruned["out"], "--repo", "alice/no-token"))
    assert "you are not logged in, which is needed to publish" in message
    assert "`hf auth login` or set HF_TOKEN" in message
    monkeypatch.setenv("HF_TOKEN", SECRET)  # not known to the Hub
    result = invoke("push", pruned["out"], "--repo", "alice/no-token")
    assert "the Hub rejected your token (401 Unauthorized)" in failed(result)
    hub.add_token("hf_readOnlyToken000000000", "alice", role="read")
    monkeypatch.setenv("HF_TOKEN", "hf_readOnlyToken000000000")
    assert "403 Forbidden" in failed(invoke("push", pruned["out"], "--repo", "alice/no-token"))
    assert "alice/no-token" not in hub.repos
    assert_no_secret(result.stdout, result.stderr)


# --- search and info ----------------------------------------------------------------------


def test_models_search_filters_sorts_and_pages(hub: HubEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    t2i = {"library_name": "diffusers", "pipeline_tag": "text-to-image"}
    for i, (downloads, likes) in enumerate([(10, 7), (30, 1), (20, 9)]):
        hub.seed_repo(
            f"search/sd-{i}", {"model_index.json": b"{}"}, card_metadata=t2i, downloads=downloads, likes=likes
        )
    hub.seed_repo("search/sd-gated", {"model_index.json": b"{}"}, card_metadata=t2i, gated="auto", downloads=5)
    hub.seed_repo("search/llm", {"config.json": b"{}"}, card_metadata={"pipeline_tag": "text-generation"}, downloads=99)
    hub.seed_repo("search/sd-private", {"model_index.json": b"{}"}, card_metadata=t2i, private=True, downloads=999)
    hub.page_size = 2  # force Link-header paging
    result = ok(invoke("models", "search", "search/", "--format", "json"))
    rows = json.loads(result.stdout)
    assert [r["id"] for r in rows] == ["search/sd-1", "search/sd-2", "search/sd-0", "search/sd-gated"]
    assert [r["gated"] for r in rows] == [False, False, False, "auto"]
    assert all(r["last_modified"] and r["likes"] is not None for r in rows)
    assert sum(1 for method, path, _ in hub.requests if path == "/api/models") == 2  # two pages
    rows = json.loads(
        ok(invoke("models", "search", "search/", "--sort", "likes", "--limit", 2, "--format", "json")).stdout
    )
    assert [r["id"] for r in rows] == ["search/sd-2", "search/sd-0"]
    table = " ".join(ok(invoke("models", "search", "search/sd-")).stdout.split())
    assert "search/sd-gated" in table and "gated" in table and "search/llm" not in table
    assert "search/sd-private" not in table  # someone else's private repo


def test_models_info_counts_ffn_weights_without_downloading_them(
    pruned: dict, tiny_sd_path: Path, hub: HubEmulator
) -> None:
    from diffusers import UNet2DConditionModel

    from cpedit.models.ffn import find_ffn_output_layers

    ok(pruned["result"])
    before = set(hub.requests)
    data = json.loads(ok(invoke("models", "info", BASE, "--format", "json")).stdout)
    unet = UNet2DConditionModel.from_pretrained(tiny_sd_path / "unet")
    layers = find_ffn_output_layers(unet)
    assert data["ffn_layers"] == len(layers) > 0
    assert data["ffn_weights"] == sum(layer.module.weight.numel() for layer in layers)
    assert data["denoiser_weights"] == sum(p.numel() for p in unet.parameters())
    assert data["pipeline_class"] == "StableDiffusionPipeline" and data["denoiser_class"] == "UNet2DConditionModel"
    assert data["editable"] is True and data["license"] == LICENSE and data["gated"] is False
    sizes = [p.stat().st_size for p in tiny_sd_path.glob("*/*.safetensors")]
    assert data["safetensors_bytes"] == sum(sizes) and data["safetensors_files"] == len(sizes)
    assert data["commit"] == pruned["commit"]
    new = [path for method, path, _ in set(hub.requests) - before if "/resolve/" in path]
    assert not any(path.endswith(".safetensors") for path in new)  # no weights fetched
    table = " ".join(ok(invoke("models", "info", BASE)).stdout.split())
    assert "cpedit can edit │ yes: " in table and f"{data['ffn_weights']:,}" in table and LICENSE in table


def test_models_info_of_what_cpedit_cannot_edit(tiny_sd_path: Path, hub: HubEmulator) -> None:
    hub.seed_repo("acme/info-llm", {"config.json": b"{}"}, card_metadata={"license": "mit"})
    data = json.loads(ok(invoke("models", "info", "acme/info-llm", "--format", "json")).stdout)
    assert data["editable"] is False and "no model_index.json" in data["reason"] and data["license"] == "mit"
    files = {p: c for p, c in folder_files(tiny_sd_path).items() if not p.endswith(".safetensors")}
    hub.seed_repo("acme/info-nosafetensors", files)
    data = json.loads(ok(invoke("models", "info", "acme/info-nosafetensors", "--format", "json")).stdout)
    assert data["editable"] is False and "no safetensors" in data["reason"] and data["ffn_layers"] > 0


def test_models_info_says_how_each_architecture_is_supported(
    tiny_model_path, tiny_sd_path: Path, hub: HubEmulator
) -> None:
    from diffusers import FluxTransformer2DModel

    from cpedit.models.architectures import default_layers

    flux = tiny_model_path("flux")
    seed_pipeline(hub, "acme/info-flux", flux)
    data = json.loads(ok(invoke("models", "info", "acme/info-flux", "--format", "json")).stdout)
    assert data["editable"] is True and "distilled guidance" in data["reason"] and "transformer" in data["reason"]
    transformer = FluxTransformer2DModel.from_pretrained(flux / "transformer")
    layers = default_layers("FluxPipeline", transformer)
    assert data["ffn_layers"] == len(layers)
    # single-stream blocks: only the MLP columns of proj_out are FFN weights
    assert data["ffn_weights"] == sum(layer.module.out_features * layer.in_features for layer in layers)
    assert data["ffn_weights"] < sum(layer.module.weight.numel() for layer in layers)
    # a diffusers pipeline class cpedit has no spec for: says what is missing
    files = folder_files(tiny_sd_path)
    index = json.loads(files["model_index.json"])
    index["_class_name"] = "LatentConsistencyModelPipeline"
    hub.seed_repo("acme/info-lcm", {**files, "model_index.json": json.dumps(index).encode()})
    data = json.loads(ok(invoke("models", "info", "acme/info-lcm", "--format", "json")).stdout)
    assert (
        data["editable"] is False and "no cpedit architecture spec for LatentConsistencyModelPipeline" in data["reason"]
    )
    assert "StableDiffusionPipeline" in data["reason"]  # the supported ones are listed


def test_models_info_errors(tiny_sd_path: Path, hub: HubEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    seed_pipeline(hub, "acme/info-gated", tiny_sd_path, gated="auto")
    message = failed(invoke("models", "info", "acme/info-gated"))
    assert f"acme/info-gated is gated: request access on {hub.url}/acme/info-gated" in message
    assert "`hf auth login` or set HF_TOKEN" in message
    message = failed(invoke("models", "info", "acme/nothing-here"))
    assert "acme/nothing-here was not found on" in message and "private" in message
    seed_pipeline(hub, "acme/info-private", tiny_sd_path, private=True)
    assert "acme/info-private was not found" in failed(invoke("models", "info", "acme/info-private"))
    assert "has no revision 'nope'" in failed(invoke("models", "info", "acme/info-gated", "--revision", "nope"))
    monkeypatch.setenv("HF_TOKEN", SECRET)  # unknown to the Hub: 401
    result = invoke("models", "info", BASE)
    assert "the Hub rejected your token (401 Unauthorized)" in failed(result)
    assert_no_secret(result.stdout, result.stderr)


# --- recipes through the Hub ------------------------------------------------------------------


def test_recipes_push_then_prune_with_a_hub_recipe(
    tiny_sd_path: Path, tmp_path: Path, hub: HubEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.add_token(SECRET, "alice")
    monkeypatch.setenv("HF_TOKEN", SECRET)
    first = helpers.write_recipe(tmp_path / "r", name="monet-hub", concept="Claude Monet", tau=2, steps=4)
    second = helpers.write_recipe(tmp_path / "r", name="dali-hub", concept="Salvador Dali", tau=2, steps=4)
    result = ok(invoke("recipes", "push", first, second, "--repo", "alice/recipes", "--path-in-repo", "artists"))
    assert "hub:alice/recipes/artists/monet-hub.yaml" in result.stdout
    repo = hub.repos["alice/recipes"]
    assert len(repo.commits) == 2  # creation + one commit with both files
    assert hub.file_bytes("alice/recipes", "artists/dali-hub.yaml") == second.read_bytes()
    commit = repo.refs["main"]

    out = tmp_path / "out"
    ref = f"hub:alice/recipes/artists/monet-hub.yaml@{commit}"
    ok(invoke("prune", tiny_sd_path, "-r", ref, "--out", out, "--device", "cpu"))
    assert (out / "conceptprune" / "recipes" / "monet-hub.yaml").read_bytes() == first.read_bytes()
    shown = ok(invoke("recipes", "show", "hub:alice/recipes/artists/dali-hub.yaml")).stdout
    assert "Salvador Dali" in shown
    assert "dali-hub" in ok(invoke("recipes", "validate", "hub:alice/recipes/artists/dali-hub.yaml")).stdout


def test_invalid_or_missing_hub_recipes_are_refused(
    tiny_sd_path: Path, tmp_path: Path, hub: HubEmulator, no_model_loading: None
) -> None:
    bad = helpers.recipe_text(name="bad-hub").replace("timesteps: 4", "timesteps: zero")
    hub.seed_repo("acme/bad-recipes", {"bad.yaml": bad.encode()})
    message = failed(invoke("prune", tiny_sd_path, "-r", "hub:acme/bad-recipes/bad.yaml", "--out", tmp_path / "o"))
    assert "hub:acme/bad-recipes/bad.yaml: invalid recipe" in message and "prune.timesteps" in message
    message = failed(invoke("prune", tiny_sd_path, "-r", "hub:acme/bad-recipes/nope.yaml", "--out", tmp_path / "o"))
    assert "hub:acme/bad-recipes/nope.yaml: recipe not available" in message and "has no nope.yaml" in message
    message = failed(invoke("prune", tiny_sd_path, "-r", "hub:acme/bad-recipes", "--out", tmp_path / "o"))
    assert "malformed Hub recipe reference" in message
    validated = invoke("recipes", "validate", "hub:acme/bad-recipes/bad.yaml")
    assert validated.exit_code == 1 and "hub:acme/bad-recipes/bad.yaml: invalid recipe" in validated.stdout
    invalid = tmp_path / "bad.yaml"
    invalid.write_text(bad)
    assert "invalid recipe" in failed(invoke("recipes", "push", invalid, "--repo", "alice/never"))
    assert "alice/never" not in hub.repos and not (tmp_path / "o").exists()


# --- the token, the endpoint, the library -------------------------------------------------------


def test_the_token_never_appears_anywhere(
    pruned: dict, tmp_path: Path, hub: HubEmulator, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    hub.add_token(SECRET, "alice")
    monkeypatch.setenv("HF_TOKEN", SECRET)
    card = tmp_path / "card.md"
    results = [
        invoke("push", pruned["out"], "--repo", "alice/token-check"),
        invoke("models", "info", BASE),
        invoke("models", "search", "tiny"),
        invoke("card", pruned["out"], "--out", card),
        invoke("models", "info", "acme/gated-for-all"),  # an error
        invoke("push", pruned["out"], "--repo", "someone-else/x"),  # a 403
    ]
    assert [r.exit_code for r in results] == [0, 0, 0, 0, 1, 1]
    assert "acme/gated-for-all was not found" in " ".join(results[4].stderr.split())  # 404 RepoNotFound
    assert "403 Forbidden" in " ".join(results[5].stderr.split())
    captured = capfd.readouterr()
    assert_no_secret(
        captured.out,
        captured.err,
        *(r.stdout + r.stderr for r in results),
        folders=(pruned["out"], tmp_path, Path(os.environ["HF_HOME"])),
    )
    assert hub.cdn_auth_leaks == []
    assert any(had_auth for _, _, had_auth in hub.requests)  # it was used, though


def test_library_api_and_emulator_strictness(hub: HubEmulator) -> None:
    import httpx2

    from cpedit.hub import HubError
    from cpedit.hub.refs import HubRef
    from cpedit.models import editability
    from cpedit.models.details import text_to_image_refusal

    ref = HubRef.parse("hub:acme/r/a/b.yaml@v1", kind="recipe")
    assert (ref.repo_id, ref.path, ref.revision, str(ref)) == ("acme/r", "a/b.yaml", "v1", "hub:acme/r/a/b.yaml@v1")
    sd = {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "X"], "text_encoder": ["t", "Y"]}
    assert text_to_image_refusal(sd) is None
    assert "custom code" in text_to_image_refusal({**sd, "_class_name": ["mod", "Cls"]})
    assert editability(index=sd, denoiser_class="UNet2DConditionModel", ffn_layers=16, safetensors_files=4).editable
    assert not editability(index=sd, denoiser_class="UNet2DModel", ffn_layers=0, safetensors_files=4).editable
    assert issubclass(HubError, Exception)
    from cpedit.hub.errors import redact

    redacted = redact("headers {'authorization': 'Bearer hf_abcdefghijkl1234'} failed")
    assert "hf_abcdefghijkl1234" not in redacted and "***" in redacted and redacted.endswith("failed")

    hub.add_token("hf_writer00000000000000", "alice")
    auth = {"Authorization": "Bearer hf_writer00000000000000"}
    hub.seed_repo("alice/strict", {"a.txt": b"a"})
    oid = "0" * 64
    batch = httpx2.post(
        f"{hub.url}/alice/strict.git/info/lfs/objects/batch",
        json={"operation": "upload", "objects": [{"oid": oid, "size": 3}], "hash_algo": "sha256"},
        headers=auth,
    ).json()
    upload = batch["objects"][0]["actions"]["upload"]["href"]
    assert httpx2.put(upload, content=b"abc").status_code == 400  # sha256 mismatch
    commit = (
        json.dumps({"key": "header", "value": {"summary": "x", "parentCommit": "f" * 40}})
        + "\n"
        + json.dumps({"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", "oid": oid, "size": 3}})
    )
    headers = {**auth, "Content-Type": "application/x-ndjson"}
    response = httpx2.post(f"{hub.url}/api/models/alice/strict/commit/main", content=commit, headers=headers)
    assert response.status_code == 412  # stale parent commit
    response = httpx2.post(
        f"{hub.url}/api/models/alice/strict/commit/main",
        content=commit.replace('"f' + "f" * 39 + '"', "null"),
        headers=headers,
    )
    assert response.status_code == 422  # LFS object never uploaded
    assert httpx2.get(f"{hub.url}/api/whoami-v2").status_code == 401


def test_the_library_never_imports_rich_or_textual() -> None:
    import subprocess
    import sys

    code = (
        "import sys, cpedit, cpedit.hub, cpedit.publish.card, cpedit.publish.push, cpedit.models.details, "
        "cpedit.hub.search; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('rich', 'textual', 'click')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
