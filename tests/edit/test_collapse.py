"""The collapse guard: an edit that destroys generation is flagged, a normal prune is not.

The image measure is checked on synthetic pictures (the same picture, other content, noise, a
flat colour, black), and the whole check on the built-in shapes model (a trained model, so its
base images are pictures): the shipped ``shapes-striped`` edit keeps every unrelated prompt's
structure, an edit that zeroes every hooked layer destroys it. The distances are asserted with
a margin from the threshold, on fixed seeds.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from support.helpers import CPU, recipe_text

import cpedit
from cpedit.edit.collapse import (
    DEFAULT_THRESHOLD,
    SHAPES_PROMPTS,
    CollapseGuard,
    check_collapse,
    judge,
    prompt_distance,
)
from cpedit.edit.session import EditSession
from cpedit.errors import Cancelled, CpeditError
from cpedit.output.collapse import CollapseCheck, CollapseProblem, PromptDistance
from cpedit.output.record import RecordError, Report

# --- the measure, on synthetic images -----------------------------------------------------


def picture(shift: int = 0, *, colour: str = "red", shape: str = "ellipse") -> Image.Image:
    """A small scene: a gradient sky, a ground and one shape (``shift`` moves it)."""
    image = Image.new("RGB", (128, 128))
    draw = ImageDraw.Draw(image)
    for y in range(128):
        draw.line([(0, y), (127, y)], fill=(40 + y, 90 + y // 2, 200 - y))
    draw.rectangle([0, 90, 127, 127], fill=(60, 140, 60))
    box = [20 + shift, 30, 70 + shift, 80]
    (draw.ellipse if shape == "ellipse" else draw.rectangle)(box, fill=colour)
    return image


def noise(seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(128, 128, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def test_the_same_picture_has_no_distance() -> None:
    found = prompt_distance("p", picture(), picture())
    assert found.distance == pytest.approx(0.0, abs=1e-9)
    assert found.contrast == pytest.approx(1.0) and found.texture == pytest.approx(1.0)


def test_other_content_is_near_but_noise_flat_and_black_are_far() -> None:
    for colour in ("green", "purple", "yellow", "white"):  # content changed, structure kept
        other = prompt_distance("p", picture(), picture(40, colour=colour, shape="box"))
        assert other.distance < DEFAULT_THRESHOLD / 4, (colour, other)
    brighter = prompt_distance("p", picture(), picture(colour="white"))
    assert brighter.contrast > 2 and brighter.distance == 0.0  # more contrast is not a loss of structure
    far = {
        "noise": prompt_distance("p", picture(), noise()),
        "flat": prompt_distance("p", picture(), Image.new("RGB", (128, 128), (120, 110, 100))),
        "black": prompt_distance("p", picture(), Image.new("RGB", (128, 128))),
    }
    assert far["noise"].texture > 3 and far["noise"].distance > 2 * DEFAULT_THRESHOLD
    assert far["flat"].contrast < 0.05 and far["flat"].distance > 2 * DEFAULT_THRESHOLD
    assert far["black"].distance == pytest.approx(far["flat"].distance, rel=0.5)


def test_pixel_distance_alone_would_not_tell_them_apart() -> None:
    """Why the measure is structural: other content is about as far as noise pixel for pixel."""

    def pixels(image: Image.Image) -> np.ndarray:
        return np.asarray(image.convert("L"), dtype=np.float64) / 255

    other = np.abs(pixels(picture()) - pixels(picture(40, colour="yellow", shape="box"))).mean()
    assert other > 0.05
    assert prompt_distance("p", picture(), picture(40, colour="yellow", shape="box")).distance < 0.5


def distances(*values: float) -> tuple[PromptDistance, ...]:
    return tuple(PromptDistance(prompt=f"p{i}", distance=v, contrast=1.0, texture=1.0) for i, v in enumerate(values))


def test_at_least_half_of_the_prompts_must_break() -> None:
    assert judge(distances(0.1, 0.2, 0.3, 5.0), threshold=1.0)[0] is False  # one scene may change
    collapsed, reason = judge(distances(0.1, 0.2, 3.0, 5.0), threshold=1.0)
    assert collapsed and reason.startswith("collapse: 2 of 4 unrelated prompts")
    fine, reason = judge(distances(0.1, 0.2), threshold=1.0)
    assert not fine and "largest distance 0.20" in reason


def test_the_reason_says_what_the_images_look_like() -> None:
    flat = tuple(PromptDistance(prompt="p", distance=4.0, contrast=0.02, texture=1.1) for _ in range(4))
    assert "flat or black" in judge(flat, threshold=1.0)[1]
    rough = tuple(PromptDistance(prompt="p", distance=1.5, contrast=1.2, texture=4.0) for _ in range(4))
    assert "noise-like" in judge(rough, threshold=1.0)[1]


@pytest.mark.parametrize(
    ("options", "argument"),
    [
        ({"prompts": []}, "prompts"),
        ({"prompts": ["a", " "]}, "prompts"),
        ({"threshold": 0}, "threshold"),
        ({"threshold": float("nan")}, "threshold"),
        ({"steps": 0}, "steps"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_options_are_refused(options: dict[str, object], argument: str) -> None:
    with pytest.raises(CpeditError) as caught:
        CollapseGuard(**options)  # type: ignore[arg-type]
    assert caught.value.argument == argument


# --- the record -----------------------------------------------------------------------------

CHECK = CollapseCheck(
    prompts=distances(0.1, 2.5), threshold=1.0, collapsed=True, reason="collapse: 1 of 2", steps=6, seed=0, seconds=1.5
)


def test_the_check_reads_back_as_written() -> None:
    assert CollapseCheck.from_dict(json.loads(json.dumps(CHECK.to_dict()))) == CHECK


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"collapsed": "yes"}, "collapse_check.collapsed"),
        ({"threshold": float("inf")}, "collapse_check.threshold"),
        ({"prompts": []}, "collapse_check.prompts"),
        (
            {"prompts": [{"prompt": "p", "distance": -1, "contrast": 1, "texture": 1}]},
            "collapse_check.prompts[0].distance",
        ),
        ({"reason": "x" * 5000}, "collapse_check.reason"),
        ({"steps": 1.5}, "collapse_check.steps"),
    ],
)
def test_a_malformed_check_names_its_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(CollapseProblem) as caught:
        CollapseCheck.from_dict({**CHECK.to_dict(), **change})
    assert caught.value.where == field


# --- the check on the built-in shapes model -------------------------------------------------


@pytest.fixture(scope="module")
def shapes_session() -> EditSession:
    """The shapes model with a small recipe like the shipped ``shapes-striped`` (its cross-attention value
    projections; a few pairs, tau 4: quick to calibrate)."""
    recipe = recipe_text(
        name="shapes-stripes-small",
        concept="striped",
        subjects=("red star on a white background", "blue circle on a black background"),
        target="a striped {subject}",
        base="a {subject}",
        skill_ratio=0.2,
        tau=4,
        steps=10,
        prune_target="attn-value",
    )
    session = EditSession.open("builtin:shapes", [cpedit.parse_recipe(recipe)], compute=CPU)
    session.calibrate()
    return session


@pytest.fixture(scope="module")
def guard() -> CollapseGuard:
    """One guard for the module: the base images are rendered once."""
    return CollapseGuard()


def test_a_normal_prune_is_not_flagged(shapes_session: EditSession, guard: CollapseGuard) -> None:
    shapes_session.apply(shapes_session.select())
    try:
        check = shapes_session.check_collapse(guard)
        report = shapes_session.report()
    finally:
        shapes_session.restore()
    assert [p.prompt for p in check.prompts] == list(SHAPES_PROMPTS)  # the model's own vocabulary
    assert not check.collapsed and check.reason.startswith("no collapse: 0 of 4")
    assert max(check.distances) < DEFAULT_THRESHOLD / 2, check.distances  # a wide margin
    assert report.collapse_check == check  # recorded in the report of the selection it judged
    assert report.timings_s["collapse_check"] == pytest.approx(check.seconds)


def test_an_edit_that_prunes_every_hooked_weight_is_flagged(shapes_session: EditSession, guard: CollapseGuard) -> None:
    normal = shapes_session.select()
    everything = dataclasses.replace(normal, masks={key: torch.ones_like(m) for key, m in normal.masks.items()})
    shapes_session.apply(everything)
    try:
        check = shapes_session.check_collapse(guard)
    finally:
        shapes_session.restore()
    assert check.collapsed, check
    assert sorted(check.distances)[-2] > 1.5 * DEFAULT_THRESHOLD, check.distances  # half of them, with a margin
    assert check.reason.startswith("collapse:")


def test_nan_weights_are_flagged_as_flat_or_black(shapes_session: EditSession) -> None:
    """A stand-in for a half-precision overflow: the hooked weights turned NaN, every image black.

    The guard renders the base images first (the NaN weights are not the session's to restore).
    """
    small = CollapseGuard(prompts=SHAPES_PROMPTS[:2], steps=3)
    shapes_session.apply(shapes_session.select())
    assert not shapes_session.check_collapse(small).collapsed  # and keeps the base images
    layers = shapes_session.layers["shapes-stripes-small"]
    kept = [layer.module.weight.detach().clone() for layer in layers]
    try:
        with torch.no_grad():
            for layer in layers:
                layer.module.weight.fill_(float("nan"))
        check = shapes_session.check_collapse(small)
    finally:
        with torch.no_grad():
            for layer, weight in zip(layers, kept, strict=True):
                layer.module.weight.copy_(weight)
        shapes_session.restore()
    assert check.collapsed and "flat or black" in check.reason, check
    assert min(check.distances) > 3 * DEFAULT_THRESHOLD


def test_a_check_of_an_earlier_selection_is_not_reported(shapes_session: EditSession) -> None:
    shapes_session.apply(shapes_session.select())
    try:
        shapes_session.check_collapse(CollapseGuard(prompts=SHAPES_PROMPTS[:1], steps=2))
        shapes_session.apply(shapes_session.select(skill_ratio=0.02))
        report = shapes_session.report()
    finally:
        shapes_session.restore()
    assert report.collapse_check is None and "collapse_check" not in report.timings_s
    assert "collapse_check" not in report.to_dict()


def test_the_check_needs_an_applied_edit_and_honours_cancel(shapes_session: EditSession) -> None:
    with pytest.raises(CpeditError, match="no selection is applied"):
        shapes_session.check_collapse()
    shapes_session.apply(shapes_session.select())
    try:
        stop = threading_event_set()
        events: list[cpedit.ProgressEvent] = []
        with pytest.raises(Cancelled):
            check_collapse(shapes_session, steps=2, cancel=stop, on_progress=events.append)
        assert shapes_session.applied is not None  # the edit stays applied
        assert events and events[0].message.startswith("collapse check: 4 unrelated prompts")
    finally:
        shapes_session.restore()


def threading_event_set():  # type: ignore[no-untyped-def]
    import threading

    event = threading.Event()
    event.set()
    return event


def test_the_report_field_reads_back_and_a_bad_one_is_refused(shapes_session: EditSession) -> None:
    shapes_session.apply(shapes_session.select())
    try:
        report = dataclasses.replace(shapes_session.report(), collapse_check=CHECK)
    finally:
        shapes_session.restore()
    data = json.loads(report.to_json())
    assert data["collapse_check"]["collapsed"] is True
    assert Report.from_dict(data).collapse_check == CHECK
    data["collapse_check"]["prompts"][1]["texture"] = "high"
    with pytest.raises(RecordError, match=r"report.json: collapse_check.prompts\[1\].texture must be"):
        Report.from_dict(data)
