"""An evaluation's images folder is hostile input: its ``manifest.jsonl`` has one validated reader (foreign lines
refused naming file and line, a killed run's last line dropped), links and wrong kinds of entries are refused before
anything renders, and a cut-short cached image is rendered again, with a warning."""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from support.helpers import CPU, write_recipe

import cpedit
from cpedit.errors import CpeditError, CpeditWarning
from cpedit.eval.engine import PromptSpec, render_images
from cpedit.eval.manifest import ImageJob, append_manifest, check_images_folder, read_images_folder, read_manifest
from cpedit.output.record import read_output

STEPS = 2


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 10, 10)).save(buffer, format="PNG")
    return buffer.getvalue()


def _job(prompt: str, model: str = "edited") -> ImageJob:
    key = hashlib.sha256(f"{model}:{prompt}".encode()).hexdigest()
    return ImageJob(prompt=prompt, seed=0, guidance=7.5, height=None, width=None, steps=2, model=model, key=key)  # type: ignore[arg-type]


def _folder(root: Path, prompts: tuple[str, ...] = ("a cat", "a dog")) -> list[ImageJob]:
    jobs = [_job(p) for p in prompts]
    for job in jobs:
        (root / job.file).parent.mkdir(parents=True, exist_ok=True)
        (root / job.file).write_bytes(_png())
        append_manifest(root, job)
    return jobs


def test_a_folder_cpedit_wrote_reads_back(tmp_path: Path) -> None:
    jobs = _folder(tmp_path)
    assert list(read_manifest(tmp_path)) == [job.key for job in jobs]


def test_a_foreign_line_is_refused_naming_file_and_line(tmp_path: Path) -> None:
    _folder(tmp_path)
    manifest = tmp_path / "manifest.jsonl"
    text = manifest.read_text()
    for foreign, field in [
        ("my own notes\n", "line 3 is not a line cpedit writes"),
        (
            '{"prompt": "x", "seed": 0, "file": "../../etc/passwd", "model": "edited", "key": "' + "a" * 64 + '"}\n',
            "file:",
        ),
        ('{"prompt": "x", "seed": NaN}\n', "NaN is not a number"),
        ('{"prompt": "x", "seed": 0, "file": "edited/x.png", "model": "other", "key": "k"}\n', "model:"),
    ]:
        manifest.write_text(text + foreign)
        with pytest.raises(CpeditError, match="line 3") as info:
            read_manifest(tmp_path)
        assert field in str(info.value) and str(manifest) in str(info.value)
        assert info.value.path == str(manifest) and info.value.reason == "malformed"
    # A killed run's cut-short last line is cpedit's own: dropped, not refused.
    manifest.write_text(text + '{"prompt": "a bird", "se')
    assert len(read_manifest(tmp_path)) == 2


def test_links_and_wrong_kinds_of_entries_are_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "manifest.jsonl").write_text("")
    cases = {
        "manifest link": lambda r: (r / "manifest.jsonl").symlink_to(elsewhere / "manifest.jsonl"),
        "edited link": lambda r: (r / "edited").symlink_to(elsewhere),
        "rank manifest link": lambda r: (r / "manifest.rank-1.jsonl").symlink_to(elsewhere / "manifest.jsonl"),
        "manifest folder": lambda r: (r / "manifest.jsonl").mkdir(),
        "edited file": lambda r: (r / "edited").write_text("x"),
        "base file": lambda r: (r / "base").write_text("x"),
    }
    reasons = {"link", "not_regular", "not_folder"}
    for name, make in cases.items():
        root = tmp_path / name.replace(" ", "-")
        root.mkdir()
        make(root)
        with pytest.raises(CpeditError) as info:
            check_images_folder(root)
        assert info.value.reason in reasons and info.value.argument == "folder", name
        with pytest.raises(CpeditError):
            read_manifest(root)
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(CpeditError, match="is a file, not a folder"):
        check_images_folder(tmp_path / "a-file")
    assert (elsewhere / "manifest.jsonl").read_text() == ""


def test_a_cut_short_or_linked_image_counts_as_not_there(tmp_path: Path) -> None:
    jobs = _folder(tmp_path)
    image = tmp_path / jobs[0].file
    image.write_bytes(_png()[:-20])
    other = tmp_path / "other.png"
    other.write_bytes(_png())
    (tmp_path / jobs[1].file).unlink()
    (tmp_path / jobs[1].file).symlink_to(other)
    folder = read_images_folder(tmp_path)
    assert folder.entries == {} and folder.damaged == [jobs[0].file]


_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30), st.lists(st.integers(), max_size=3)
)


def _listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    field=st.sampled_from(["prompt", "seed", "file", "model", "key", "steps", "guidance", None]),
    value=_VALUES,
    flips=st.lists(st.tuples(st.integers(min_value=0, max_value=2000), st.integers(0, 255)), max_size=4),
    cut=st.one_of(st.none(), st.integers(min_value=0, max_value=2000)),
)
def test_mutated_manifests_give_images_or_cpedits_own_error(
    tmp_path: Path, field: str | None, value: object, flips: list[tuple[int, int]], cut: int | None
) -> None:
    root = tmp_path / "case"
    if not root.exists():
        root.mkdir()
        _folder(root)
    manifest = root / "manifest.jsonl"
    original = manifest.read_bytes()
    lines = [json.loads(line) for line in original.decode().splitlines()]
    if field is not None:
        lines[0][field] = value
    raw = bytearray("".join(json.dumps(line) + "\n" for line in lines).encode())
    for position, byte in flips:
        raw[position % len(raw)] = byte
    manifest.write_bytes(bytes(raw if cut is None else raw[:cut]))
    before = _listing(tmp_path)
    try:
        found = read_images_folder(root)
    except CpeditError as exc:
        assert exc.path == str(manifest) and exc.argument == "folder"
    else:
        for key, entry in found.entries.items():  # what is accepted is an image of the folder, named by its key
            assert entry.key == key and entry.file == f"{entry.model}/{key[:24]}.png"
            assert (root / entry.file).resolve().parent.parent == root.resolve()
    assert _listing(tmp_path) == before
    manifest.write_bytes(original)


# --- through render_images (the tiny model) ---------------------------------------------------


@pytest.fixture(scope="module")
def edited(tiny_sd_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("images_folder")
    recipe = write_recipe(root / "recipes", name="images-folder", steps=4, tau=2)
    return cpedit.prune(tiny_sd_path, [recipe], out=root / "out", compute=CPU).output


def test_a_bad_images_folder_is_refused_before_the_model_loads(
    edited: Path, tmp_path: Path, no_model_loading: None
) -> None:
    record = read_output(edited)
    outside = tmp_path / "outside"
    outside.mkdir()
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "edited").symlink_to(outside)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "manifest.jsonl").write_text("someone else's list\n")
    folder_manifest = tmp_path / "folder-manifest"
    (folder_manifest / "manifest.jsonl").mkdir(parents=True)
    for root, reason in ((linked, "link"), (foreign, "malformed"), (folder_manifest, "not_regular")):
        with pytest.raises(CpeditError) as info:
            render_images(record, [PromptSpec("a cat")], folder=root, steps=STEPS, compute=CPU)
        assert info.value.reason == reason
    assert os.listdir(outside) == [] and (foreign / "manifest.jsonl").read_text() == "someone else's list\n"


def test_a_cut_short_cached_image_is_rendered_again_and_said(edited: Path, tmp_path: Path, counted: list[int]) -> None:
    record = read_output(edited)
    options = dict(folder=tmp_path / "images", steps=STEPS, compute=CPU)
    first = render_images(record, [PromptSpec("a cat")], **options)  # type: ignore[arg-type]
    image = first.edited[0].path(first.folder)
    whole = image.read_bytes()
    image.write_bytes(whole[: len(whole) // 2])
    counted.clear()
    events: list[cpedit.ProgressEvent] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = render_images(record, [PromptSpec("a cat")], on_progress=events.append, **options)  # type: ignore[arg-type]
    assert counted == [1] and again.generated == 1 and image.read_bytes() == whole
    said = [w for w in caught if issubclass(w.category, CpeditWarning) and "cut short" in str(w.message)]
    assert said and any("rendering them again" in e.message for e in events)
    assert len((tmp_path / "images" / "manifest.jsonl").read_text().splitlines()) == 1


# --- a local base is named by its content -------------------------------------------------------


@pytest.fixture(scope="module")
def local_base_output(tiny_sd_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a copy of the tiny base, an output pruned from that copy)."""
    import shutil

    root = tmp_path_factory.mktemp("local_base")
    base = root / "base"
    shutil.copytree(tiny_sd_path, base)
    recipe = write_recipe(root / "recipes", name="local-base", steps=4, tau=2)
    return base, cpedit.prune(base, [recipe], out=root / "out", compute=CPU).output


UNET = "unet/diffusion_pytorch_model.safetensors"


def test_a_base_replaced_by_other_weights_is_rendered_again(
    local_base_output: tuple[Path, Path], tmp_path: Path, counted: list[int]
) -> None:
    from safetensors.torch import load_file, save_file

    base, out = local_base_output
    record = read_output(out)
    options = dict(folder=tmp_path / "images", steps=STEPS, compute=CPU, base=True)
    first = render_images(record, [PromptSpec("a cat")], **options)  # type: ignore[arg-type]
    assert first.generated == 2
    weights = load_file(base / UNET)
    save_file({name: tensor * 0.5 for name, tensor in weights.items()}, base / UNET)  # same shapes, other weights
    counted.clear()
    again = render_images(record, [PromptSpec("a cat")], **options)  # type: ignore[arg-type]
    assert counted == [1] and again.generated == 1 and again.reused == 1  # the edited image stays
    assert again.base[0].key != first.base[0].key and again.edited == first.edited


def test_a_base_replaced_by_another_shape_is_a_clear_error_before_loading(
    local_base_output: tuple[Path, Path], tmp_path: Path, no_model_loading: None
) -> None:
    from safetensors.torch import load_file, save_file

    base, out = local_base_output
    weights = load_file(base / UNET)
    name = next(n for n in weights if n.endswith("ff.net.2.weight"))
    save_file({**weights, name: weights[name][:-1]}, base / UNET)
    with pytest.raises(CpeditError, match="no longer matches the edited output") as info:
        render_images(read_output(out), [PromptSpec("a cat")], folder=tmp_path / "i", steps=STEPS, base=True)
    assert info.value.reason == "mismatch" and name in str(info.value) and info.value.path == str(base)
    assert not (tmp_path / "i" / "edited").exists()  # nothing was rendered
