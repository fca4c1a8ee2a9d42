"""A seeded procedural world of simple scenes with known ground truth.

Every scene is one shape (the *object*-like attribute) in one colour (*colour*-like) with
one texture (*style*-like) on one background, drawn at 32x32 pixels.  Captions are built
from the attributes, e.g. ``"a striped red star on a white background"``.  In training
captions each attribute may be left unsaid (the shape then becomes the word ``"shape"``),
so the model also learns what an unspecified attribute looks like; that gives recipes
natural *base* prompts (``"a red star ..."`` is the base of ``"a striped red star ..."``).

The world has two vocabularies.  :data:`V1` (5 shapes, 5 colours, 4 textures, 3 greys) is
the one the shipped built-in model and its classifier know; the module's constants
(:data:`ATTRIBUTES`, :data:`CAPTION_WORDS`, ...) and every function's default are V1's.
:data:`V2` is the richer vocabulary designed for a built-in model whose feed-forward neurons
must specialise (issue 27; ``benchmarks/README.md``): 8 shapes, 8 colours, 5 textures, 5
backgrounds and two more *style*-like treatments, an outline (outlined, glowing, shadowed)
and a palette over the whole image (pastel, sepia).  In V2 the style treatments have a
default look (plain texture, no outline, natural colours) that captions need not name, as a
photo is the default look of a large model's prompts: training captions always name a
non-default treatment, say ``"plain"`` half of the time and never name the absent outline
or the natural palette.  V1 scenes draw the same pixels as before V2 existed.

Everything is a pure function of its seed: the same seed gives the same pixels on every
machine (drawing is done in numpy, no font or file is involved).

Example:
    >>> scene = Scene(shape="star", colour="red", texture="striped", background="white")
    >>> caption(scene)
    'a striped red star on a white background'
    >>> caption(Scene("star", "red", "striped", "white", outline="glowing", palette="pastel"))
    'a pastel glowing striped red star on a white background'
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

UNSAID = frozenset({"none", "natural"})
"""Values that no caption names (the absence of a treatment has no word)."""

_FUNCTION_WORDS = ("a", "an", "on", "background", "shape")


@dataclass(frozen=True)
class Vocabulary:
    """The attribute values a world version draws, its shapes' size range and how its training captions speak.

    ``attributes`` maps each attribute to its values, in a fixed order (a classifier trained
    on the vocabulary has one head per attribute, in this order).  ``radius`` is the range of
    the shapes' circumradius in pixels.  With ``defaults_unsaid`` a training caption leaves a
    default look (:data:`DEFAULTS`) unsaid (see the module's notes); without it every
    attribute is left unsaid alike (V1).
    """

    name: str
    attributes: dict[str, tuple[str, ...]]
    radius: tuple[float, float]
    defaults_unsaid: bool

    @property
    def caption_words(self) -> tuple[str, ...]:
        """Every word a caption of this vocabulary uses (the tokenizer of its model is cut down to these)."""
        values = (v for values in self.attributes.values() for v in values if v not in UNSAID)
        return (*values, *_FUNCTION_WORDS)


V1 = Vocabulary(
    name="v1",
    attributes={
        "shape": ("circle", "square", "triangle", "star", "cross"),
        "colour": ("red", "green", "blue", "yellow", "purple"),
        "texture": ("plain", "striped", "dotted", "checkered"),
        "background": ("white", "black", "grey"),
    },
    radius=(8.5, 11.0),
    defaults_unsaid=False,
)
"""The shipped built-in model's vocabulary (the default everywhere)."""

V2 = Vocabulary(
    name="v2",
    attributes={
        "shape": ("circle", "square", "triangle", "star", "cross", "hexagon", "diamond", "heart"),
        "colour": ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink"),
        "texture": ("plain", "striped", "dotted", "checkered", "gradient"),
        "background": ("white", "black", "grey", "navy", "brown"),
        "outline": ("none", "outlined", "glowing", "shadowed"),
        "palette": ("natural", "pastel", "sepia"),
    },
    radius=(8.0, 10.5),  # a little smaller than V1's, so a glow, outline or shadow fits in the frame
    defaults_unsaid=True,
)
"""The richer vocabulary designed for a built-in model v2 (a superset of V1's values)."""

VOCABULARIES = {vocabulary.name: vocabulary for vocabulary in (V1, V2)}
"""Every vocabulary by name."""

BUILTIN: Vocabulary = V1
"""The vocabulary of the model that ships as ``builtin:shapes`` and of its classifier: what
``cpedit eval shapes`` and ``cpedit audit`` draw their prompts from and judge."""

SHAPES = V1.attributes["shape"]
COLOURS = V1.attributes["colour"]
TEXTURES = V1.attributes["texture"]
BACKGROUNDS = V1.attributes["background"]

ATTRIBUTES: dict[str, tuple[str, ...]] = V1.attributes
"""Every attribute of the shipped vocabulary (V1) and its values, in order (the classifier's heads follow it)."""

CAPTION_WORDS: tuple[str, ...] = V1.caption_words
"""Every word a caption uses (see :func:`caption`): the built-in model's tokenizer was cut down to these."""

DEFAULTS: dict[str, str] = {"texture": "plain", "outline": "none", "palette": "natural"}
"""The default look of each style treatment; V2's captions may leave it unsaid (see the module's notes)."""

KIND_OF_ATTRIBUTE = {
    "shape": "object",
    "colour": "colour",
    "texture": "style",
    "background": "background",
    "outline": "style",
    "palette": "style",
}
"""Which kind of concept in the paper each attribute plays."""

RGB = {
    "red": (220, 40, 40),
    "orange": (245, 140, 30),
    "yellow": (235, 210, 40),
    "green": (40, 170, 60),
    "cyan": (40, 200, 210),
    "blue": (40, 80, 225),
    "purple": (150, 60, 190),
    "pink": (240, 120, 190),
}
BACKGROUND_RGB = {
    "white": (245, 245, 245),
    "black": (15, 15, 15),
    "grey": (128, 128, 128),
    "navy": (20, 30, 85),
    "brown": (100, 65, 40),
}

SUPERSAMPLE = 4
"""Scenes are drawn at 4x resolution and box-filtered down, for anti-aliased edges."""

TEXTURE_PERIOD = 8.0
"""Pixels per repeat of every periodic texture (stripes and squares are half of it wide)."""
DOT_RADIUS = 2.0
"""Radius of the dots of ``dotted``, in pixels (one dot per period in each direction)."""
OUTLINE_WIDTH = 1.5
"""Width of the ``outlined`` ring around the shape, in pixels."""
GLOW_RADIUS = 2.5
"""Half-width of each of the two box blurs that spread the ``glowing`` halo, in pixels."""
SHADOW_OFFSET = 2.5
"""How far the ``shadowed`` copy lies to the right of and below the shape, in pixels."""

HELD_OUT_FRACTION = 0.1
HELD_OUT_SEED = 20261127


@dataclass(frozen=True)
class Scene:
    """The attributes of one scene (its ground truth); the outline and palette default to none and natural.

    Any value of either vocabulary is accepted (V2's values include V1's).
    """

    shape: str
    colour: str
    texture: str
    background: str
    outline: str = "none"
    palette: str = "natural"

    def __post_init__(self) -> None:
        for name, values in V2.attributes.items():
            value = getattr(self, name)
            if value not in values:
                raise ValueError(f"unknown {name} {value!r}; expected one of {', '.join(values)}")

    def value(self, attribute: str) -> str:
        """The value of ``attribute`` (one of :data:`V2`'s attributes)."""
        return str(getattr(self, attribute))


def all_scenes(*, vocabulary: Vocabulary = V1) -> list[Scene]:
    """Every attribute combination of ``vocabulary``, in a fixed order."""
    return [Scene(*values) for values in itertools.product(*vocabulary.attributes.values())]


def held_out_scenes(*, vocabulary: Vocabulary = V1) -> list[Scene]:
    """The combinations a built-in model never sees in training (10%, fixed by a seed).

    Evaluation on these measures whether the model composes attributes, not whether it
    remembers captions.  Every single attribute value, and every pair of values, still
    occurs in training through other combinations.
    """
    scenes = all_scenes(vocabulary=vocabulary)
    rng = np.random.default_rng(HELD_OUT_SEED)
    count = round(len(scenes) * HELD_OUT_FRACTION)
    picked = sorted(rng.choice(len(scenes), size=count, replace=False).tolist())
    return [scenes[i] for i in picked]


def training_scenes(*, vocabulary: Vocabulary = V1) -> list[Scene]:
    """Every combination of ``vocabulary`` except the held-out ones."""
    held = set(held_out_scenes(vocabulary=vocabulary))
    return [scene for scene in all_scenes(vocabulary=vocabulary) if scene not in held]


def caption(scene: Scene, *, omit: frozenset[str] = frozenset()) -> str:
    """The caption of ``scene``; attributes named in ``omit`` are left unsaid.

    The full caption names every attribute except an absent outline and the natural
    palette (:data:`UNSAID`).  Example: ``caption(scene, omit=frozenset({"texture"}))`` gives
    ``"a red star on a white background"``.
    """
    words = []
    for name in ("palette", "outline", "texture", "colour"):
        value = scene.value(name)
        if name not in omit and value not in UNSAID:
            words.append(value)
    words.append("shape" if "shape" in omit else scene.shape)
    text = " ".join(words)
    text = ("an " if text[0] in "aeiou" else "a ") + text
    if "background" not in omit:
        text += f" on a {scene.background} background"
    return text


DEFAULT_SAID_PROBABILITY = 0.5
"""How often a V2 training caption names a default look that has a word (``"plain"``)."""


def random_caption(
    scene: Scene, rng: np.random.Generator, *, omit_probability: float = 0.15, vocabulary: Vocabulary = V1
) -> str:
    """A training caption of ``scene`` in ``vocabulary``.

    V1: each attribute is independently left unsaid with ``omit_probability``.  V2 (a
    vocabulary whose default looks go unsaid): shape, colour and background are each left
    unsaid with ``omit_probability``; a texture other than plain, an outline and a palette
    are always said; ``"plain"`` is said with :data:`DEFAULT_SAID_PROBABILITY`.  So an
    unsaid treatment means its default look.
    """
    if not vocabulary.defaults_unsaid:
        return caption(scene, omit=frozenset(name for name in vocabulary.attributes if rng.random() < omit_probability))
    omit = {name for name in ("shape", "colour", "background") if rng.random() < omit_probability}
    if scene.texture == DEFAULTS["texture"] and rng.random() >= DEFAULT_SAID_PROBABILITY:
        omit.add("texture")
    return caption(scene, omit=frozenset(omit))


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


def _heart_points(r: float) -> np.ndarray:
    """The classic parametric heart, point up at the bottom, about ``2r`` wide."""
    t = np.linspace(0.0, 2 * math.pi, 48, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    return np.stack([x, y + 2.5], axis=1) * (r / 15.0)


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
    if shape == "hexagon":
        corners = [(r * 0.95 * math.cos(k * math.pi / 3), r * 0.95 * math.sin(k * math.pi / 3)) for k in range(6)]
        return _polygon_mask(u, v, np.array(corners))
    if shape == "diamond":
        return np.abs(u) / (r * 0.72) + np.abs(v) / (r * 1.08) <= 1.0
    if shape == "heart":
        return _polygon_mask(u, v, _heart_points(r))
    raise ValueError(f"unknown shape {shape!r}")


def _texture_weight(
    texture: str, xs: np.ndarray, ys: np.ndarray, phase: tuple[float, float], extent: tuple[float, float]
) -> np.ndarray:
    """How much of the shape's main colour each point shows (1) against its second shade (0).

    Every periodic texture has an 8-pixel period (4 latent pixels after the VAE's 2x
    downsampling): coarse enough to survive the VAE, fine enough to show several times
    inside a shape.  ``gradient`` fades from the main colour at the shape's top
    (``extent[0]``) to the second shade at its bottom (``extent[1]``).
    """
    x, y = xs + phase[0], ys + phase[1]
    half = TEXTURE_PERIOD / 2
    if texture == "plain":
        return np.ones(xs.shape)
    if texture == "striped":  # horizontal stripes, half a period wide
        return (np.floor(y / half) % 2 == 0).astype(np.float64)
    if texture == "checkered":  # squares half a period wide
        return ((np.floor(x / half) + np.floor(y / half)) % 2 == 0).astype(np.float64)
    if texture == "dotted":  # one dot per period, in the second shade
        dx = (x % TEXTURE_PERIOD) - half
        dy = (y % TEXTURE_PERIOD) - half
        return (dx * dx + dy * dy > DOT_RADIUS * DOT_RADIUS).astype(np.float64)
    if texture == "gradient":
        top, bottom = extent
        return 1.0 - np.clip((ys - top) / (bottom - top), 0.0, 1.0)
    raise ValueError(f"unknown texture {texture!r}")


def _box(mask: np.ndarray, radius: int, *, axis: int) -> np.ndarray:
    """Sum of ``mask`` over a window of ``2 * radius + 1`` cells along ``axis`` (zero outside)."""
    padded = np.pad(mask.astype(np.float64), [(radius + 1, radius) if a == axis else (0, 0) for a in range(2)])
    summed = np.cumsum(padded, axis=axis)
    n = mask.shape[axis]
    upper = np.take(summed, np.arange(2 * radius + 1, 2 * radius + 1 + n), axis=axis)
    lower = np.take(summed, np.arange(0, n), axis=axis)
    return upper - lower


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` grown by ``radius`` cells in every direction (a square structuring element)."""
    return _box(_box(mask, radius, axis=0) > 0, radius, axis=1) > 0


def _blur(mask: np.ndarray, radius: int) -> np.ndarray:
    """Two passes of a separable box blur of half-width ``radius`` (a smooth, tent-like kernel)."""
    size = (2 * radius + 1) ** 2
    once = _box(_box(mask, radius, axis=0), radius, axis=1) / size
    return _box(_box(once, radius, axis=0), radius, axis=1) / size


def _contrast_tone(background: np.ndarray) -> np.ndarray:
    """A near-black on light backgrounds, a near-white on dark ones."""
    return np.full(3, 25.0 if background.mean() > 100 else 235.0)


def _apply_palette(image: np.ndarray, palette: str) -> np.ndarray:
    """The palette's colour transform of a whole float RGB image (0-255)."""
    if palette == "natural":
        return image
    if palette == "pastel":  # washed towards white
        return 0.6 * image + 0.4 * 255.0
    if palette == "sepia":  # half desaturated, toned brown
        grey = image @ np.array([0.299, 0.587, 0.114])
        toned = grey[..., None] * np.array([1.0, 0.84, 0.62])
        return 0.5 * image + 0.5 * toned
    raise ValueError(f"unknown palette {palette!r}")


def render(scene: Scene, *, seed: int, vocabulary: Vocabulary = V1) -> np.ndarray:
    """Draw ``scene`` as a ``(32, 32, 3)`` uint8 RGB array.

    ``seed`` fixes the geometry (position, size, small rotation, texture phase); the
    attributes fix everything else.  Layers, back to front: background, shadow or glow,
    outline, the textured shape; then the palette transforms the whole image.  The
    shape's size is drawn from ``vocabulary``'s radius range.
    """
    rng = np.random.default_rng(seed)
    r = rng.uniform(*vocabulary.radius)
    cx = IMAGE_SIZE / 2 + rng.uniform(-2.5, 2.5)
    cy = IMAGE_SIZE / 2 + rng.uniform(-2.5, 2.5)
    angle = math.radians(rng.uniform(-12.0, 12.0))
    phase_x, phase_y = rng.uniform(0.0, TEXTURE_PERIOD, size=2)

    n = IMAGE_SIZE * SUPERSAMPLE
    coords = (np.arange(n) + 0.5) / SUPERSAMPLE
    xs, ys = np.meshgrid(coords, coords)
    shape = _shape_mask(scene.shape, xs, ys, cx, cy, r, angle)
    rows = np.flatnonzero(shape.any(axis=1))
    extent = (coords[rows[0]], coords[rows[-1]]) if rows.size else (0.0, float(IMAGE_SIZE))
    main = _texture_weight(scene.texture, xs, ys, (phase_x, phase_y), extent)

    background = np.array(BACKGROUND_RGB[scene.background], dtype=np.float64)
    colour = np.array(RGB[scene.colour], dtype=np.float64)
    # the second shade contrasts with the background: darker on light, lighter on dark
    lightness = background.mean()
    second = 0.5 * colour + 0.5 * (255.0 - lightness) * (0.25 if lightness > 200 else 1.0)
    image = np.empty((n, n, 3), dtype=np.float64)
    image[:] = background
    if scene.outline == "shadowed":
        step = round(SHADOW_OFFSET * SUPERSAMPLE)
        shadow = np.zeros_like(shape)
        shadow[step:, step:] = shape[:-step, :-step]
        image[shadow] = 0.45 * background + 0.55 * _contrast_tone(background)
    elif scene.outline == "glowing":
        glow = np.clip(1.6 * _blur(shape, round(GLOW_RADIUS * SUPERSAMPLE)), 0.0, 0.9)[..., None]
        image = image * (1 - glow) + (0.7 * colour + 0.3 * 255.0) * glow
    elif scene.outline == "outlined":
        image[_dilate(shape, round(OUTLINE_WIDTH * SUPERSAMPLE))] = _contrast_tone(background)
    image[shape] = (main[..., None] * colour + (1 - main[..., None]) * second)[shape]
    small = image.reshape(IMAGE_SIZE, SUPERSAMPLE, IMAGE_SIZE, SUPERSAMPLE, 3).mean(axis=(1, 3))
    small = _apply_palette(small, scene.palette)
    return np.clip(np.round(small), 0, 255).astype(np.uint8)


_RENDER_CHUNK = 500
"""Scenes per task handed to a worker process by :func:`render_many`."""


def _render_pairs(pairs: list[tuple[Scene, int]], vocabulary: Vocabulary = V1) -> np.ndarray:
    return np.stack([render(scene, seed=s, vocabulary=vocabulary) for scene, s in pairs])


def render_many(pairs: Sequence[tuple[Scene, int]], *, workers: int = 1, vocabulary: Vocabulary = V1) -> np.ndarray:
    """Draw ``(scene, render seed)`` pairs (from :func:`sample`) as one ``(N, 32, 32, 3)`` uint8 array.

    With ``workers > 1`` the drawing is spread over that many processes (started with
    ``spawn``, so each pays an import of cpedit first: worth it for thousands of scenes).
    The array is the same whatever ``workers`` is.
    """
    pairs = list(pairs)
    if not pairs:
        return np.empty((0, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    if workers <= 1 or len(pairs) < 4 * _RENDER_CHUNK:
        return _render_pairs(pairs, vocabulary)
    chunks = [pairs[i : i + _RENDER_CHUNK] for i in range(0, len(pairs), _RENDER_CHUNK)]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        return np.concatenate(list(pool.map(_render_pairs, chunks, itertools.repeat(vocabulary))))


def sample(
    count: int, *, seed: int, scenes: list[Scene] | None = None, vocabulary: Vocabulary = V1
) -> list[tuple[Scene, int]]:
    """``count`` (scene, render seed) pairs drawn uniformly from ``scenes`` (default: all of ``vocabulary``'s).

    The pairs are a pure function of ``seed``; render each with ``render(scene, seed=s, vocabulary=...)``.
    """
    pool = scenes if scenes is not None else all_scenes(vocabulary=vocabulary)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(pool), size=count)
    render_seeds = rng.integers(0, 2**31 - 1, size=count)
    return [(pool[int(i)], int(s)) for i, s in zip(picks, render_seeds, strict=True)]


def parse_caption(text: str, *, vocabulary: Vocabulary = V1) -> dict[str, str]:
    """The attributes a caption asks for (those it names), e.g. ``{"shape": "star", ...}``.

    Words are matched against the world's values; the generic word ``"shape"`` names no
    shape.  Used to check that a recipe's target and base prompts differ only in its concept.
    """
    words = text.lower().replace(",", " ").split()
    found: dict[str, str] = {}
    for attribute, values in vocabulary.attributes.items():
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
