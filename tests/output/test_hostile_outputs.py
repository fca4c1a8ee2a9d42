"""Output folders that were tampered with: every command that reads one gives a clear error, never a traceback.

``sample --compare``, ``eval``, ``card`` and ``push`` all read an output through the one checked
reader (:func:`cpedit.output.record.read_output`): wrong types, paths that leave the folder, links,
deep nesting and truncated weights are refused naming the file and the field.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.helpers import CPU

from cpedit.cli.main import cli
from cpedit.errors import CpeditError, UnsafeFileError
from cpedit.output.record import RecordError, Report, read_output

settings.register_profile(
    "cpedit-hostile-outputs",
    max_examples=int(os.environ.get("CPEDIT_HYPOTHESIS_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
HOSTILE = settings.get_profile("cpedit-hostile-outputs")
"""hypothesis settings of this file (``CPEDIT_HYPOTHESIS_EXAMPLES`` examples per property)."""


@pytest.fixture(scope="module")
def pruned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real output of the built-in model (pruned once for the module)."""
    import cpedit

    out = tmp_path_factory.mktemp("hostile-out") / "out"
    cpedit.prune("builtin:shapes", ["shapes-striped"], out=out, compute=CPU)
    return out


@pytest.fixture
def output(pruned: Path, tmp_path: Path) -> Path:
    """A hard-linked copy of the module's output: fast; replace files with :func:`_rewrite`, never edit in place."""
    folder = tmp_path / "out"
    shutil.copytree(pruned, folder, copy_function=os.link)
    return folder


def _rewrite(path: Path, data: str | bytes) -> None:
    """Write ``path`` as a new file (its hard link to the shared output is dropped first)."""
    path.unlink()
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")


def _tamper(folder: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    path = folder / "conceptprune" / "report.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    _rewrite(path, json.dumps(data))
    return path


def _cli(*args: str) -> Any:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 1, (result.output, result.exception)
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)
    return result


COMMANDS = [
    ("card", "{dir}"),
    ("sample", "{dir} --compare --out {tmp}/grid.png --device cpu"),
    ("eval", "shapes {dir} --images 1 --device cpu"),
    ("push", "{dir} --repo alice/out"),
]

TAMPERINGS: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("concepts-not-a-list", lambda d: d.update(concepts="van-gogh"), "concepts"),
    ("steps-a-string", lambda d: d["concepts"][0].update(steps="fifty"), "concepts[0].steps"),
    ("recipe-etc-passwd", lambda d: d["concepts"][0].update(recipe="/etc/passwd"), "concepts[0].recipe"),
    ("recipe-dotdot", lambda d: d["concepts"][0].update(recipe="conceptprune/recipes/../../x"), "concepts[0].recipe"),
    ("base-a-number", lambda d: d.update(base_model=7), "base_model"),
    ("components-escape", lambda d: d.update(edited_components=["../../etc"]), "edited_components"),
    ("layer-shape", lambda d: d["layers"][0].update(shape="big"), "layers[0].shape"),
    ("totals-null", lambda d: d.update(totals=None), "totals"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=[c[0] for c in COMMANDS])
@pytest.mark.parametrize("tampering", TAMPERINGS, ids=[t[0] for t in TAMPERINGS])
def test_tampered_reports_give_clear_errors(output: Path, tmp_path: Path, command: tuple, tampering: tuple) -> None:
    name, change, field = tampering
    _tamper(output, change)
    with pytest.raises(RecordError) as info:
        read_output(output)
    assert "report.json" in str(info.value) and field in str(info.value)
    if command[0] == "card" or name in ("steps-a-string", "recipe-etc-passwd"):  # every command, on a few
        verb, args = command
        result = _cli(verb, *args.format(dir=output, tmp=tmp_path).split())
        assert "report.json" in result.output and field in result.output


@pytest.mark.parametrize("verb,args", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_deeply_nested_report_is_a_clear_error(output: Path, tmp_path: Path, verb: str, args: str) -> None:
    _rewrite(output / "conceptprune" / "report.json", "[" * 100_000 + "]" * 100_000)
    result = _cli(verb, *args.format(dir=output, tmp=tmp_path).split())
    assert "report.json" in result.output and "nested too deeply" in result.output


def test_deeply_nested_evaluation_is_a_clear_error(output: Path) -> None:
    (output / "conceptprune" / "eval").mkdir()
    (output / "conceptprune" / "eval" / "shapes.json").write_text("{" * 50_000, encoding="utf-8")
    with pytest.raises(RecordError, match="shapes.json"):
        read_output(output)


def test_base_model_path_pointing_anywhere_is_refused_before_loading(output: Path, tmp_path: Path) -> None:
    _tamper(output, lambda d: d["base_model"].update(id="/etc", path="/etc", local=True))
    result = _cli("sample", str(output), "--compare", "--out", str(tmp_path / "g.png"), "--device", "cpu")
    assert "base_model.path" in result.output and "report.json" in result.output
    assert not (tmp_path / "g.png").exists()


@pytest.mark.parametrize("verb,args", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_links_in_an_output_are_never_followed(output: Path, tmp_path: Path, verb: str, args: str) -> None:
    secret = tmp_path / "token"
    secret.write_text("hf_SECRETSECRETSECRET", encoding="utf-8")
    (output / "LICENSE").symlink_to(secret)
    result = _cli(verb, *args.format(dir=output, tmp=tmp_path).split())
    assert "LICENSE" in result.output and "symbolic link" in result.output
    assert "hf_SECRET" not in result.output


def test_linked_recipe_file_is_refused(output: Path) -> None:
    recipe = next((output / "conceptprune" / "recipes").glob("*.yaml"))
    recipe.unlink()
    recipe.symlink_to("/etc/passwd")
    with pytest.raises(RecordError, match="symbolic link"):
        read_output(output)


def test_push_verifies_safetensors_before_uploading(output: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cpedit.publish.push as publish

    def no_upload(*args: object, **kwargs: object) -> None:
        raise AssertionError("nothing may be uploaded")

    monkeypatch.setattr(publish, "_commit", no_upload)
    weights = next((output / "unet").glob("*.safetensors"))
    _rewrite(weights, weights.read_bytes()[:-1000])
    with pytest.raises(UnsafeFileError, match="nothing was uploaded") as info:
        publish.push_model(output, repo_id="alice/out")
    assert info.value.reason == "truncated" and "unet/" in str(info.value)
    result = _cli("push", str(output), "--repo", "alice/out")
    assert "truncated" in result.output


def test_control_characters_in_a_report_are_stripped(output: Path) -> None:
    _tamper(output, lambda d: d["concepts"][0].update(concept="Stri\x1b[2Jped\u202e"))
    record = read_output(output)
    assert record.report.concepts[0].concept == "Stri[2Jped"


def test_card_strips_control_characters_from_recipes(output: Path) -> None:
    recipe = next((output / "conceptprune" / "recipes").glob("*.yaml"))
    text = recipe.read_text(encoding="utf-8")
    _rewrite(recipe, text.replace("concept:", 'concept: "\\e[31m\\u202e" #', 1))
    result = CliRunner().invoke(cli, ["card", str(output)])
    assert "\x1b" not in result.output and "\u202e" not in result.output


def test_tampered_outputs_are_cpedit_errors_in_the_library(output: Path) -> None:
    from cpedit.eval.driver import evaluate
    from cpedit.eval.shapes import ShapesOptions
    from cpedit.models.sampling import SampleSettings
    from cpedit.output.preview import compare_samples

    _tamper(output, lambda d: d["concepts"][0].update(prompt_pairs=[1]))
    with pytest.raises(CpeditError, match=r"concepts\[0\]\.prompt_pairs"):
        compare_samples(str(output), settings=SampleSettings(steps=1), compute=CPU)
    with pytest.raises(CpeditError, match=r"concepts\[0\]\.prompt_pairs"):
        evaluate("shapes", output, ShapesOptions(images=1), compute=CPU)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:3]):
            found += _paths(item, (*prefix, index))
    return found


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


@HOSTILE
@given(data=st.data())
def test_report_reader_only_gives_record_errors(pruned: Path, data: st.DataObject) -> None:
    report = json.loads((pruned / "conceptprune" / "report.json").read_text(encoding="utf-8"))
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        path = data.draw(st.sampled_from(_paths(report)))
        value = data.draw(_json_values)
        if not path:
            report = value
            continue
        target = report
        for key in path[:-1]:
            target = target[key]
        if isinstance(target, (dict, list)):
            target[path[-1]] = value
    try:
        Report.from_dict(report, source="report.json")
    except RecordError as exc:
        assert str(exc).startswith("report.json: ") and len(str(exc)) < 2000
