"""A seeded procedural world of simple scenes with known ground truth.

Every scene is one shape (the *object*-like attribute) in one colour (*colour*-like) with
one texture (*style*-like) on one background, drawn at 32x32 pixels.  Captions are built
from the attributes, e.g. ``"a striped red star on a white background"``.  In training
captions each attribute may be left unsaid (the shape then becomes the word ``"shape"``),
so the model also learns what an unspecified attribute looks like; that gives recipes
natural *base* prompts (``"a red star ..."`` is the base of ``"a striped red star ..."``).

Everything is a pure function of its seed: the same seed gives the same pixels on every
machine (drawing is done in numpy, no font or file is involved).

Example:
    >>> from cpedit.shapes.world import Scene, render, caption
    >>> scene = Scene(shape="star", colour="red", texture="striped", background="white")
    >>> caption(scene)
    'a striped red star on a white background'
    >>> render(scene, seed=0).shape
    (32, 32, 3)
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

IMAGE_SIZE = 32
"""Side of every scene, in pixels."""

SHAPES = ("circle", "square", "triangle", "star", "cross")
COLOURS = ("red", "green", "blue", "yellow", "purple")
TEXTURES = ("plain", "striped", "dotted", "checkered")
BACKGROUNDS = ("white", "black", "grey")

ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "shape": SHAPES,
    "colour": COLOURS,
    "texture": TEXTURES,
    "background": BACKGROUNDS,
}
"""Every attribute and its values, in a fixed order (the classifier's heads follow it)."""

CAPTION_WORDS: tuple[str, ...] = (
    *(v for values in ATTRIBUTES.values() for v in values),
    "a",
    "an",
    "on",
    "background",
    "shape",
)
"""Every word a caption uses (see :func:`caption`): the built-in model's tokenizer was cut down to these."""

KIND_OF_ATTRIBUTE = {"shape": "object", "colour": "colour", "texture": "style", "background": "background"}
"""Which kind of concept in the paper each attribute plays."""

RGB = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 225),
    "yellow": (235, 210, 40),
    "purple": (150, 60, 190),
}
BACKGROUND_GREY = {"white": 245, "black": 15, "grey": 128}

SUPERSAMPLE = 4
"""Scenes are drawn at 4x resolution and box-filtered down, for anti-aliased edges."""

TEXTURE_PERIOD = 8.0
"""Pixels per repeat of every texture (stripes and squares are half of it wide)."""
DOT_RADIUS = 2.0
"""Radius of the dots of ``dotted``, in pixels (one dot per period in each direction)."""

HELD_OUT_FRACTION = 0.1
HELD_OUT_SEED = 20261127


@dataclass(frozen=True)
class Scene:
    """The attributes of one scene (its ground truth)."""

    shape: str
    colour: str
    texture: str
    background: str

    def __post_init__(self) -> None:
        for name, values in ATTRIBUTES.items():
            value = getattr(self, name)
            if value not in values:
                raise ValueError(f"unknown {name} {value!r}; expected one of {', '.join(values)}")

    def value(self, attribute: str) -> str:
        """The value of ``attribute`` (``"shape"``, ``"colour"``, ``"texture"`` or ``"background"``)."""
        return str(getattr(self, attribute))


def all_scenes() -> list[Scene]:
    """Every attribute combination, in a fixed order."""
    return [Scene(*values) for values in itertools.product(SHAPES, COLOURS, TEXTURES, BACKGROUNDS)]


def held_out_scenes() -> list[Scene]:
    """The combinations the built-in model never saw in training (10%, fixed by a seed).

    Evaluation on these measures whether the model composes attributes, not whether it
    remembers captions.  Every single attribute value, and every pair of values, still
    occurs in training through other combinations.
    """
    scenes = all_scenes()
    rng = np.random.default_rng(HELD_OUT_SEED)
    count = round(len(scenes) * HELD_OUT_FRACTION)
    picked = sorted(rng.choice(len(scenes), size=count, replace=False).tolist())
    return [scenes[i] for i in picked]


def training_scenes() -> list[Scene]:
    """Every combination except the held-out ones."""
    held = set(held_out_scenes())
    return [scene for scene in all_scenes() if scene not in held]


def caption(scene: Scene, *, omit: frozenset[str] = frozenset()) -> str:
    """The caption of ``scene``; attributes named in ``omit`` are left unsaid.

    Example: ``caption(scene, omit=frozenset({"texture"}))`` gives
    ``"a red star on a white background"``.
    """
    words = []
    if "texture" not in omit:
        words.append(scene.texture)
    if "colour" not in omit:
        words.append(scene.colour)
    words.append("shape" if "shape" in omit else scene.shape)
    text = " ".join(words)
    text = ("an " if text[0] in "aeiou" else "a ") + text
    if "background" not in omit:
        text += f" on a {scene.background} background"
    return text


def random_caption(scene: Scene, rng: np.random.Generator, *, omit_probability: float = 0.15) -> str:
    """A training caption: each attribute is independently left unsaid with ``omit_probability``."""
    omit = frozenset(name for name in ATTRIBUTES if rng.random() < omit_probability)
    return caption(scene, omit=omit)


def _polygon_mask(xs: np.ndarray, ys: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test of pixel centres (works for the non-convex star)."""
    inside = np.zeros(xs.shape, dtype=bool)
    count = len(points)
    for i in range(count):
        x1, y1 = points[i]
        x2, y2 = points[(i + 1) % count]
        crosses = (y1 > ys) != (y2 > ys)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = (x2 - x1) * (ys - y1) / (y2 - y1) + x1
        inside ^= crosses & (xs < x_at)
    return inside


def _shape_mask(shape: str, xs: np.ndarray, ys: np.ndarray, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """Boolean mask of a shape centred at (cx, cy) with circumradius-like size r."""
    cos, sin = math.cos(angle), math.sin(angle)
    # coordinates in the shape's own frame (rotated by -angle)
    u = (xs - cx) * cos + (ys - cy) * sin
    v = -(xs - cx) * sin + (ys - cy) * cos
    if shape == "circle":
        return u * u + v * v <= r * r
    if shape == "square":
        half = r * 0.8
        return (np.abs(u) <= half) & (np.abs(v) <= half)
    if shape == "cross":
        arm, half = r * 0.95, r * 0.34
        return ((np.abs(u) <= arm) & (np.abs(v) <= half)) | ((np.abs(u) <= half) & (np.abs(v) <= arm))
    if shape == "triangle":
        corners = [(r * math.sin(t), -r * math.cos(t) + r * 0.15) for t in (0.0, 2 * math.pi / 3, 4 * math.pi / 3)]
        return _polygon_mask(u, v, np.array(corners))
    if shape == "star":
        points = []
        for k in range(10):
            radius = r * 1.05 if k % 2 == 0 else r * 0.45
            t = k * math.pi / 5
            points.append((radius * math.sin(t), -radius * math.cos(t)))
        return _polygon_mask(u, v, np.array(points))
    raise ValueError(f"unknown shape {shape!r}")


def _texture_mask(texture: str, xs: np.ndarray, ys: np.ndarray, phase_x: float, phase_y: float) -> np.ndarray:
    """Where the texture shows the shape's main colour (True) or its second shade (False).

    Every texture has an 8-pixel period (4 latent pixels after the VAE's 2x downsampling):
    coarse enough to survive the VAE, fine enough to show several times inside a shape.
    """
    x, y = xs + phase_x, ys + phase_y
    if texture == "plain":
        return np.ones(xs.shape, dtype=bool)
    half = TEXTURE_PERIOD / 2
    if texture == "striped":  # horizontal stripes, half a period wide
        return np.floor(y / half) % 2 == 0
    if texture == "checkered":  # squares half a period wide
        return (np.floor(x / half) + np.floor(y / half)) % 2 == 0
    if texture == "dotted":  # one dot per period, in the second shade
        dx = (x % TEXTURE_PERIOD) - half
        dy = (y % TEXTURE_PERIOD) - half
        return dx * dx + dy * dy > DOT_RADIUS * DOT_RADIUS
    raise ValueError(f"unknown texture {texture!r}")


def render(scene: Scene, *, seed: int) -> np.ndarray:
    """Draw ``scene`` as a ``(32, 32, 3)`` uint8 RGB array.

    ``seed`` fixes the geometry (position, size, small rotation, texture phase); the
    attributes fix everything else.
    """
    rng = np.random.default_rng(seed)
    r = rng.uniform(8.5, 11.0)
    cx = IMAGE_SIZE / 2 + rng.uniform(-2.5, 2.5)
    cy = IMAGE_SIZE / 2 + rng.uniform(-2.5, 2.5)
    angle = math.radians(rng.uniform(-12.0, 12.0))
    phase_x, phase_y = rng.uniform(0.0, TEXTURE_PERIOD, size=2)

    n = IMAGE_SIZE * SUPERSAMPLE
    coords = (np.arange(n) + 0.5) / SUPERSAMPLE
    xs, ys = np.meshgrid(coords, coords)
    shape = _shape_mask(scene.shape, xs, ys, cx, cy, r, angle)
    main = _texture_mask(scene.texture, xs, ys, phase_x, phase_y)

    background = float(BACKGROUND_GREY[scene.background])
    colour = np.array(RGB[scene.colour], dtype=np.float64)
    # the second shade contrasts with the background: darker on light, lighter on dark
    second = 0.5 * colour + 0.5 * (255.0 - background) * (0.25 if scene.background == "white" else 1.0)
    image = np.empty((n, n, 3), dtype=np.float64)
    image[:] = background
    image[shape & main] = colour
    image[shape & ~main] = second
    small = image.reshape(IMAGE_SIZE, SUPERSAMPLE, IMAGE_SIZE, SUPERSAMPLE, 3).mean(axis=(1, 3))
    return np.clip(np.round(small), 0, 255).astype(np.uint8)


_RENDER_CHUNK = 500
"""Scenes per task handed to a worker process by :func:`render_many`."""


def _render_pairs(pairs: list[tuple[Scene, int]]) -> np.ndarray:
    return np.stack([render(scene, seed=s) for scene, s in pairs])


def render_many(pairs: Sequence[tuple[Scene, int]], *, workers: int = 1) -> np.ndarray:
    """Draw ``(scene, render seed)`` pairs (from :func:`sample`) as one ``(N, 32, 32, 3)`` uint8 array.

    With ``workers > 1`` the drawing is spread over that many processes (started with
    ``spawn``, so each pays an import of cpedit first: worth it for thousands of scenes).
    The array is the same whatever ``workers`` is.
    """
    pairs = list(pairs)
    if not pairs:
        return np.empty((0, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    if workers <= 1 or len(pairs) < 4 * _RENDER_CHUNK:
        return _render_pairs(pairs)
    chunks = [pairs[i : i + _RENDER_CHUNK] for i in range(0, len(pairs), _RENDER_CHUNK)]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        return np.concatenate(list(pool.map(_render_pairs, chunks)))


def sample(count: int, *, seed: int, scenes: list[Scene] | None = None) -> list[tuple[Scene, int]]:
    """``count`` (scene, render seed) pairs drawn uniformly from ``scenes`` (default: all).

    The pairs are a pure function of ``seed``; render each with ``render(scene, seed=s)``.
    """
    pool = scenes if scenes is not None else all_scenes()
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(pool), size=count)
    render_seeds = rng.integers(0, 2**31 - 1, size=count)
    return [(pool[int(i)], int(s)) for i, s in zip(picks, render_seeds, strict=True)]


def parse_caption(text: str) -> dict[str, str]:
    """The attributes a caption asks for (those it names), e.g. ``{"shape": "star", ...}``.

    Words are matched against the world's values; the generic word ``"shape"`` names no
    shape.  Used to check that a recipe's target and base prompts differ only in its concept.
    """
    words = text.lower().replace(",", " ").split()
    found: dict[str, str] = {}
    for attribute, values in ATTRIBUTES.items():
        if attribute == "background":
            if "background" in words:
                index = words.index("background")
                if index > 0 and words[index - 1] in values:
                    found[attribute] = words[index - 1]
            continue
        for word in words:
            if word in values:
                found[attribute] = word
                break
    return found
