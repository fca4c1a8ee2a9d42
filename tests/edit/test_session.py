"""Edit sessions: calibrate once, select many times, apply and restore bit for bit, sample, save.

The selections of one calibrated session equal the masks of separate ``cpedit.prune`` runs
whose recipes carry the same settings (the statistics of the first calls do not depend on
how many follow), select makes no denoiser call, restore gives the base weights back exactly,
and every slow step stops on its cancel event without writing anything.
"""

from __future__ import annotations

import filecmp
import threading
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from support.helpers import CPU, load_fresh, recipe_text, write_recipe

import cpedit
import cpedit.models.loading
from cpedit.edit.session import EditSession
from cpedit.errors import Cancelled, CpeditError
from cpedit.models.sampling import SampleSettings
from cpedit.output.record import read_output

STEPS = 6
POSITIONS = "conceptprune/pruned.safetensors"


def style(name: str, *, skill_ratio: float = 0.05, tau: int = 4, select_ratio: float = 0.0, **extra: object) -> str:
    return recipe_text(name=name, skill_ratio=skill_ratio, tau=tau, select_ratio=select_ratio, steps=STEPS, **extra)  # type: ignore[arg-type]


def masks_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def bits(tensor: torch.Tensor) -> torch.Tensor:
    """The raw bits of a float32 tensor (so -0.0 and 0.0 differ, as they would in a file)."""
    return tensor.detach().contiguous().view(torch.int32).clone()


@pytest.fixture(scope="module")
def session(tiny_sd_path: Path) -> EditSession:
    """One calibrated session: two recipes (ffn and attn-value), calibrated for tau up to 5."""
    opened = EditSession.open(
        tiny_sd_path,
        [cpedit.parse_recipe(style("van-gogh-s")), cpedit.parse_recipe(style("monet-s", prune_target="attn-value"))],
        compute=CPU,
        batch_size=4,
    )
    opened.calibrate(timesteps=5)
    return opened


@pytest.mark.parametrize(
    ("skill_ratio", "tau", "select_ratio"),
    [(0.05, 4, 0.0), (0.02, 2, 0.0), (0.1, 5, 0.5), (0.05, 3, 0.34)],
)
def test_select_equals_prune_with_those_settings(
    session: EditSession, tiny_sd_path: Path, skill_ratio: float, tau: int, select_ratio: float
) -> None:
    selection = session.select(skill_ratio=skill_ratio, timesteps=tau, select_ratio=select_ratio)
    recipes = [
        cpedit.parse_recipe(style("van-gogh-s", skill_ratio=skill_ratio, tau=tau, select_ratio=select_ratio)),
        cpedit.parse_recipe(
            style("monet-s", skill_ratio=skill_ratio, tau=tau, select_ratio=select_ratio, prune_target="attn-value")
        ),
    ]
    pruned = cpedit.prune(tiny_sd_path, recipes, compute=CPU, batch_size=4)
    assert selection.pruned > 0
    assert masks_equal(selection.masks, pruned.masks)
    for name in ("van-gogh-s", "monet-s"):
        assert masks_equal(selection.concept_masks[name], pruned.concept_masks[name])
    assert selection.pruned == pruned.report.totals.pruned_weights
    assert selection.fraction == pytest.approx(pruned.report.totals.pruned_fraction, rel=1e-12)
    assert selection.per_layer == {layer.name: layer.pruned for layer in pruned.report.layers}


def test_per_recipe_overrides_one_concept(session: EditSession, tiny_sd_path: Path) -> None:
    selection = session.select(per_recipe={"monet-s": {"skill_ratio": 0.1, "timesteps": 2}})
    assert selection.settings["van-gogh-s"].skill_ratio == 0.05 and selection.settings["van-gogh-s"].timesteps == 4
    assert selection.settings["monet-s"].skill_ratio == 0.1 and selection.settings["monet-s"].timesteps == 2
    recipes = [
        cpedit.parse_recipe(style("van-gogh-s")),
        cpedit.parse_recipe(style("monet-s", skill_ratio=0.1, tau=2, prune_target="attn-value")),
    ]
    assert masks_equal(selection.masks, cpedit.prune(tiny_sd_path, recipes, compute=CPU).masks)


def test_mixed_targets_with_text_ffn(tiny_sd_path: Path) -> None:
    recipes = [
        cpedit.parse_recipe(style("a-ffn")),
        cpedit.parse_recipe(style("b-text", prune_target="text-ffn")),
        cpedit.parse_recipe(style("c-key", prune_target="attn-key")),
    ]
    session = EditSession.open(tiny_sd_path, recipes, compute=CPU)
    session.calibrate()
    for ratio in (0.02, 0.1):
        selection = session.select(skill_ratio=ratio, timesteps=3)
        expected = [
            cpedit.parse_recipe(style(r.name, skill_ratio=ratio, tau=3, prune_target=r.prune.target)) for r in recipes
        ]
        assert masks_equal(selection.masks, cpedit.prune(tiny_sd_path, expected, compute=CPU).masks)
        assert any(key.startswith("text_encoder/") for key in selection.masks)


def test_select_makes_no_denoiser_call_and_is_cheap(session: EditSession) -> None:
    calls: list[int] = []
    handle = session.pipeline.unet.register_forward_pre_hook(lambda module, args: calls.append(1))
    text = session.pipeline.text_encoder.register_forward_pre_hook(lambda module, args: calls.append(2))
    try:
        for ratio in (0.01, 0.05, 0.2):
            session.select(skill_ratio=ratio)
    finally:
        handle.remove()
        text.remove()
    assert calls == []
    selection = session.select()
    assert selection.seconds < 0.1 * session.timings["calibrate"]


def test_select_does_not_change_the_model(session: EditSession) -> None:
    before = {k: bits(v) for k, v in session.pipeline.unet.state_dict().items()}
    session.select(skill_ratio=0.2)
    after = session.pipeline.unet.state_dict()
    assert all(torch.equal(before[k], bits(after[k])) for k in before)


def test_apply_and_restore_are_bit_exact(session: EditSession) -> None:
    unet = session.pipeline.unet
    base = {k: bits(v) for k, v in unet.state_dict().items()}
    first = session.select(skill_ratio=0.2)
    second = session.select(skill_ratio=0.05, timesteps=2)
    session.apply(first)
    session.apply(second)  # replaces the first
    try:
        assert session.applied is second
        # Only the pruned entries are kept to restore them: one value per pruned weight.
        assert sum(values.numel() for _, values in session._applied.saved.values()) == second.pruned
        state = unet.state_dict()
        for layer in session.layers["van-gogh-s"] + session.layers["monet-s"]:
            weight, mask = state[f"{layer.name}.weight"], second.masks[layer.key]
            assert bool((weight[mask] == 0).all())
            assert torch.equal(bits(weight)[~mask], base[f"{layer.name}.weight"][~mask])
        # Selecting while a selection is applied scores the base weights: the same masks.
        assert masks_equal(session.select(skill_ratio=0.2).masks, first.masks)
    finally:
        session.restore()
    assert session.applied is None
    assert all(torch.equal(base[k], bits(v)) for k, v in unet.state_dict().items())


def test_select_beyond_the_calibrated_tau_says_what_to_do(session: EditSession) -> None:
    with pytest.raises(CpeditError, match=r"calibrate\(timesteps=6\)"):
        session.select(timesteps=6)
    with pytest.raises(CpeditError, match="not a recipe of this session"):
        session.select(per_recipe={"nope": {"skill_ratio": 0.1}})
    with pytest.raises(CpeditError, match="unknown setting"):
        session.select(per_recipe={"monet-s": {"skill": 0.1}})
    with pytest.raises(CpeditError, match="skill_ratio must be in"):
        session.select(skill_ratio=1.5)


def test_calibrating_for_more_timesteps_than_the_scheduler_makes_is_refused(tiny_sd_path: Path) -> None:
    session = EditSession.open(tiny_sd_path, [cpedit.parse_recipe(style("x-s"))], compute=CPU)
    with pytest.raises(CpeditError, match="denoising steps"):
        session.calibrate(timesteps=50)
    with pytest.raises(CpeditError, match="calibrate"):
        session.select()


def test_sample_base_and_edited_from_memory(tiny_sd_path: Path) -> None:
    session = EditSession.open(tiny_sd_path, [cpedit.parse_recipe(style("s-s"))], compute=CPU)
    session.calibrate()
    with pytest.raises(CpeditError, match="no selection is applied"):
        session.sample(["a cat"], steps=2)
    session.apply(session.select(skill_ratio=0.3))
    base = session.sample(["a cat in the style of Van Gogh"], seed=1, steps=3, edited=False)
    edited = session.sample(["a cat in the style of Van Gogh"], seed=1, steps=3)
    assert session.applied is not None  # sampling the base put the selection back
    fresh = load_fresh(tiny_sd_path)
    expected = fresh(
        "a cat in the style of Van Gogh", num_inference_steps=3, guidance_scale=7.5,
        generator=torch.Generator().manual_seed(1),
    ).images[0]  # fmt: skip
    assert list(base[0].getdata()) == list(expected.getdata())
    assert list(edited[0].getdata()) != list(base[0].getdata())


def test_save_writes_the_same_folder_as_prune(tiny_sd_path: Path, tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r", name="same-s", skill_ratio=0.05, tau=4, steps=STEPS)
    cpedit.prune(tiny_sd_path, [recipe], out=tmp_path / "pruned", compute=CPU)
    session = EditSession.open(tiny_sd_path, [recipe], compute=CPU)
    session.calibrate(timesteps=5)
    session.apply(session.select(skill_ratio=0.3))  # another selection first: apply replaces it
    session.apply(session.select())
    session.save(tmp_path / "saved")
    compared = filecmp.dircmp(tmp_path / "pruned", tmp_path / "saved")
    differing: list[str] = []

    def walk(cmp: filecmp.dircmp, prefix: str = "") -> None:
        assert not cmp.left_only and not cmp.right_only, (cmp.left_only, cmp.right_only)
        _, mismatch, errors = filecmp.cmpfiles(cmp.left, cmp.right, cmp.common_files, shallow=False)
        differing.extend(prefix + name for name in mismatch + errors)
        for name, sub in cmp.subdirs.items():
            walk(sub, f"{prefix}{name}/")

    walk(compared)
    # report.json: its creation time and timings. pruned.safetensors: safetensors writes its
    # metadata keys in no fixed order (two prune runs differ the same way), so compare its content.
    assert sorted(differing) in (["conceptprune/report.json"], sorted(["conceptprune/report.json", POSITIONS]))
    with safe_open(tmp_path / "pruned" / POSITIONS, "pt") as a, safe_open(tmp_path / "saved" / POSITIONS, "pt") as b:
        assert a.metadata() == b.metadata() and list(a.keys()) == list(b.keys())
        assert all(torch.equal(a.get_tensor(k), b.get_tensor(k)) for k in a.keys())
    a, b = read_output(tmp_path / "pruned").report, read_output(tmp_path / "saved").report
    assert a.layers == b.layers and a.totals == b.totals


def test_save_records_chosen_settings_in_the_recipe_copy(tiny_sd_path: Path, tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r", name="chosen-s", skill_ratio=0.05, tau=4, steps=STEPS)
    session = EditSession.open(tiny_sd_path, [recipe], compute=CPU)
    session.calibrate()
    selection = session.select(skill_ratio=0.15, timesteps=3, select_ratio=0.3)
    session.apply(selection)
    out = session.save(tmp_path / "out").path
    record = read_output(out)
    saved = record.recipes[0]
    assert (saved.prune.skill_ratio, saved.prune.timesteps, saved.prune.select_ratio) == (0.15, 3, 0.3)
    assert record.report.concepts[0].skill_ratio == 0.15 and record.report.concepts[0].timesteps == 3
    assert "the recipe file" in saved.text and "skill_ratio 0.05" in saved.text
    # The saved copy reproduces the selection.
    assert masks_equal(cpedit.prune(tiny_sd_path, [saved], compute=CPU).masks, selection.masks)


def test_save_needs_an_applied_selection(tiny_sd_path: Path, tmp_path: Path) -> None:
    session = EditSession.open(tiny_sd_path, [cpedit.parse_recipe(style("n-s"))], compute=CPU)
    session.calibrate()
    with pytest.raises(CpeditError, match="no selection is applied"):
        session.save(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_preview_renders_from_the_in_memory_pipeline(
    tiny_sd_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The preview never loads the model again, so it runs with the session's own device, dtype and offload."""
    recipe = write_recipe(tmp_path / "r", name="p-s", steps=STEPS, preview=("a cat in the style of Van Gogh",))
    session = EditSession.open(tiny_sd_path, [recipe], compute=CPU)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the preview loaded a model")

    monkeypatch.setattr(cpedit.models.loading, "open_pipeline", refuse)
    monkeypatch.setattr(cpedit.models.loading, "load_pipeline", refuse)
    session.calibrate()
    session.apply(session.select())
    out = session.save(tmp_path / "out", preview=True, preview_settings=SampleSettings(steps=2)).path
    assert read_output(out).preview is not None


# --- progress ------------------------------------------------------------------------------


def test_text_ffn_progress_reaches_its_total(tiny_sd_path: Path) -> None:
    events: list[cpedit.ProgressEvent] = []
    recipe = cpedit.parse_recipe(style("t-s", prune_target="text-ffn"))
    cpedit.prune(tiny_sd_path, [recipe], compute=CPU, batch_size=2, on_progress=events.append)
    calibration = [e for e in events if e.stage == "calibrate"]
    assert calibration[-1].completed == calibration[-1].total == 4  # 8 prompts in 4 batches
    assert all(e.unit == "batches" for e in calibration)


def test_out_of_memory_retry_never_moves_progress_back(tiny_sd_path: Path) -> None:
    pipe = load_fresh(tiny_sd_path)
    failed = []

    def once(module: torch.nn.Module, args: tuple) -> None:
        if args[0].shape[0] == 16 and not failed and len(calls) == 2:
            failed.append(1)
            raise torch.OutOfMemoryError("simulated")
        calls.append(1)

    calls: list[int] = []
    handle = pipe.unet.register_forward_pre_hook(once)
    events: list[cpedit.ProgressEvent] = []
    try:
        # batch_size=None: automatic, so an out-of-memory error halves the batch (all 8 prompts first).
        result = cpedit.prune(pipe, [cpedit.parse_recipe(style("o-s"))], on_progress=events.append)
    finally:
        handle.remove()
    assert failed == [1]
    calibration = [e for e in events if e.stage == "calibrate"]
    completed = [e.completed for e in calibration]
    assert completed == sorted(completed)
    assert completed[-1] == calibration[-1].total
    assert result.report.concepts[0].batch_size == 4


# --- cancel --------------------------------------------------------------------------------


def cancel_at(stage: str, cancel: threading.Event, nth: int = 1):
    seen: list[str] = []

    def on_progress(event: cpedit.ProgressEvent) -> None:
        if event.stage == stage:
            seen.append(stage)
            if len(seen) == nth:
                cancel.set()

    return on_progress


@pytest.mark.parametrize(("stage", "nth"), [("load", 1), ("calibrate", 2), ("score", 1), ("save", 2), ("sample", 1)])
def test_cancel_in_each_stage_writes_nothing(tiny_sd_path: Path, tmp_path: Path, stage: str, nth: int) -> None:
    recipe = write_recipe(tmp_path / "r", name="c-s", steps=STEPS, preview=("a cat in the style of Van Gogh",))
    cancel = threading.Event()
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    with pytest.raises(Cancelled):
        cpedit.prune(
            tiny_sd_path,
            [recipe],
            out=outputs / "model",
            compute=CPU,
            cancel=cancel,
            on_progress=cancel_at(stage, cancel, nth),
            preview=True,
            preview_settings=SampleSettings(steps=2),
        )
    assert list(outputs.iterdir()) == []


def test_cancel_while_zeroing_writes_nothing(
    tiny_sd_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cpedit.output.folder

    recipe = write_recipe(tmp_path / "r", name="z-s", steps=STEPS)
    cancel = threading.Event()
    original = cpedit.output.folder.write_filled_file

    def cancel_then_write(*args: object, **kwargs: object):
        cancel.set()  # seen while the pruned file is written, or before the move into place
        return original(*args, **kwargs)

    monkeypatch.setattr(cpedit.output.folder, "write_filled_file", cancel_then_write)
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    with pytest.raises(Cancelled):
        cpedit.prune(tiny_sd_path, [recipe], out=outputs / "model", compute=CPU, cancel=cancel)
    assert list(outputs.iterdir()) == []


def test_cancel_during_sampling_keeps_the_selection(tiny_sd_path: Path) -> None:
    cancel = threading.Event()
    session = EditSession.open(tiny_sd_path, [cpedit.parse_recipe(style("k-s"))], compute=CPU)
    session.calibrate()
    selection = session.select()
    session.apply(selection)
    with pytest.raises(Cancelled):
        session.sample(
            ["a cat", "a dog"], steps=2, edited=False, on_progress=cancel_at("sample", cancel), cancel=cancel
        )
    assert session.applied is selection


def test_cancel_during_evaluation_writes_no_result(tmp_path: Path) -> None:
    from cpedit.eval.driver import evaluate
    from cpedit.eval.options import ImageOptions
    from cpedit.eval.shapes import ShapesOptions

    out = cpedit.prune("builtin:shapes", ["shapes-striped"], out=tmp_path / "shapes", compute=CPU).output
    cancel = threading.Event()
    with pytest.raises(Cancelled):
        evaluate(
            "shapes",
            out,
            ShapesOptions(images=4),
            images=ImageOptions(steps=2, batch_size=64),
            compute=CPU,
            cancel=cancel,
            on_progress=cancel_at("sample", cancel),
        )
    # no result; the images made before the cancel stay in the images folder for the next run
    assert not (out / "conceptprune" / "eval" / "shapes.json").exists()
    assert read_output(out).evaluations == []
