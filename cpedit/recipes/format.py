"""Recipes: the shareable, versioned YAML description of one concept to erase.

A recipe names a concept, gives paired calibration prompts (a *target* prompt that shows
the concept and a *base* prompt that does not) and the pruning and sampling settings.
Recipes come from strangers, so they are parsed with YAML's safe loader (plain types only,
duplicate keys refused) and validated
completely, every problem reported with its field and a fix, before any model loads.

This module is the format only (no torch); finding recipes by name, file or Hub reference
is :mod:`cpedit.recipes.sources`.

Example:
    >>> from cpedit.recipes.format import load_recipe
    >>> recipe = load_recipe("recipes/artists/van-gogh.yaml")
    >>> recipe.pairs()[0]
    ('a cat in the style of Van Gogh', 'a photo of a cat')
"""

from __future__ import annotations

import difflib
import math
import os
import re
import stat
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cpedit.errors import RecipeError
from cpedit.recipes.conceal import DEFAULT_SCALE, conceal_problems
from cpedit.recipes.targets import STREAMS, TARGETS
from cpedit.text import shown, strip_unsafe

FORMAT_VERSION = 1
KINDS = ("style", "object", "colour", "nudity", "gender", "memorization", "custom")
SUBJECT_PLACEHOLDER = "subject"
SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
"""What a recipe name must look like (it is used as a file name)."""


@dataclass(frozen=True)
class PruneSettings:
    """How skilled weights are chosen (the paper's defaults)."""

    skill_ratio: float = 0.01
    """Fraction of each FFN output row's input columns marked per timestep (k = floor(ratio * in))."""
    timesteps: int = 10
    """tau: only the first tau denoiser calls are used."""
    select_ratio: float = 0.0
    """A weight is skilled if marked at more than select_ratio * tau of the first tau calls."""
    target: str = "ffn"
    """Which layers are hooked and pruned (one of :data:`TARGETS`)."""
    stream: str = "image"
    """Which feed-forward stream of MMDiT/FLUX blocks (one of :data:`STREAMS`; ffn and ffn-in only)."""
    conceal: str = "zero"
    """How pruned entries are filled (one of :data:`cpedit.recipes.conceal.CONCEAL_MODES`): ``zero`` (the paper's)
    or ``gaussian`` (draws matching the layer's own weights; see :mod:`cpedit.edit.conceal`)."""
    conceal_scale: str = DEFAULT_SCALE
    """Where ``gaussian`` measures the spread it draws from: ``row`` or ``layer``."""


@dataclass(frozen=True)
class SamplingSettings:
    """How calibration runs the pipeline (the paper's defaults)."""

    steps: int = 50
    guidance_scale: float = 7.5
    seed: int = 0
    """The seed every prompt's generator starts from (the paper resets it to 0 before every prompt)."""
    height: int | None = None
    width: int | None = None
    pair_seeds: tuple[int, ...] | None = None
    """One seed per prompt pair instead of ``seed`` (both prompts of pair i start from ``pair_seeds[i]``),
    as the authors seed their gender prompts; None: every prompt uses ``seed``."""


@dataclass(frozen=True)
class Recipe:
    """One validated recipe. Build it with :func:`load_recipe` or :func:`parse_recipe`."""

    name: str
    concept: str
    kind: str
    description: str
    targets: tuple[str, ...]
    bases: tuple[str, ...]
    prune: PruneSettings = field(default_factory=PruneSettings)
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    preview_prompts: tuple[str, ...] = ()
    source: str = "<recipe>"
    """Where the recipe came from (a file path), for messages."""
    text: str = ""
    """The recipe's YAML text, verbatim, so outputs can record exactly what was used."""

    def pairs(self) -> list[tuple[str, str]]:
        """The calibration prompt pairs ``(target, base)``, paired by index."""
        return list(zip(self.targets, self.bases, strict=True))

    def calibration_seeds(self) -> list[int]:
        """The seed of each prompt pair: ``sampling.pair_seeds``, else ``sampling.seed`` for every pair."""
        if self.sampling.pair_seeds is not None:
            return list(self.sampling.pair_seeds)
        return [self.sampling.seed] * len(self.targets)


class _Problems:
    """Collects every problem in a recipe so the user can fix them all at once."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, field_path: str, message: str) -> None:
        self.items.append((field_path, message))


_SCHEMA: dict[str, tuple[str, ...]] = {
    "": ("cpedit", "name", "concept", "kind", "description", "prompts", "prune", "sampling", "preview"),
    "prompts": ("subjects", "target", "base"),
    "prune": ("skill_ratio", "timesteps", "select_ratio", "target", "stream", "conceal", "conceal_scale"),
    "sampling": ("steps", "guidance_scale", "seed", "pair_seeds", "height", "width"),
    "preview": ("prompts",),
}
_REQUIRED_TOP = ("cpedit", "name", "concept", "prompts")


MAX_RECIPE_BYTES = 1024 * 1024
"""Recipe files larger than this are refused unread (a recipe is a few kilobytes)."""
MAX_STEPS = 1000
"""``sampling.steps`` at most (the denoising steps diffusion schedulers are trained with)."""
MAX_SIDE = 8192
"""``sampling.height`` and ``sampling.width`` at most."""
MAX_SEED = 2**63 - 1
"""A seed at most (``torch.Generator.manual_seed`` takes 64-bit seeds; YAML integers are unbounded)."""
MAX_YAML_NODES = 20_000
"""Values a recipe's YAML may hold once its aliases (``*name``) are expanded; more is refused (an alias bomb)."""


class _StrictSafeLoader(yaml.SafeLoader):
    """``yaml.safe_load`` semantics, but a key given twice is an error instead of last-wins."""


def _construct_unique_mapping(loader: _StrictSafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"a key must be a plain value such as a name, not a {type(key).__name__}",
                key_node.start_mark,
            ) from None
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {shown(key)} is given twice (a second value would silently win)", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictSafeLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """How many values ``root`` holds with every alias expanded, counting stops past ``limit``.

    Aliases share nodes, so a few hundred bytes can stand for billions of values; sizes are
    memoised per node, so this costs one visit per distinct node.
    """
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        if isinstance(node, yaml.ScalarNode):
            sizes[id(node)] = 1
            continue
        children = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else list(node.value)
        if not children_done:
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in sizes)
            continue
        sizes[id(node)] = min(limit + 1, 1 + sum(sizes.get(id(child), limit + 1) for child in children))
    return sizes[id(root)]


def _safe_load_strict(text: str) -> Any:
    """Exactly what ``yaml.safe_load`` does (only plain YAML types), with duplicate keys and alias bombs refused.

    Raises:
        yaml.YAMLError: Not YAML, a key given twice, or aliases that expand past :data:`MAX_YAML_NODES`.
    """
    loader = _StrictSafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, MAX_YAML_NODES) > MAX_YAML_NODES:
            raise yaml.YAMLError(
                f"its aliases (*name) expand to more than {MAX_YAML_NODES:,} values; a recipe needs far fewer"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


def load_recipe(path: str | os.PathLike[str]) -> Recipe:
    """Read and validate a recipe file.

    Args:
        path: A YAML recipe file.

    Returns:
        The validated recipe, with its verbatim text attached.

    Raises:
        RecipeError: The file is missing, not YAML, or breaks the format; the message
            names the file, each bad field and what to do.
    """
    file = Path(path)
    try:
        text = read_recipe_text(file)
    except FileNotFoundError:
        raise RecipeError(
            str(file),
            [("", "file not found; check the path, or run `cpedit recipes list`")],
            headline="recipe not found",
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RecipeError(str(file), [("", f"cannot read the file ({exc})")]) from None
    return parse_recipe(text, source=str(file))


def read_recipe_text(file: Path) -> str:
    """A recipe file's text: a regular file of at most :data:`MAX_RECIPE_BYTES`, UTF-8.

    Opened without blocking, so a FIFO or device is refused instead of read forever.

    Raises:
        FileNotFoundError: No such file.
        ValueError: Not a regular file, or too large.
        OSError, UnicodeDecodeError: It cannot be read.
    """
    fd = os.open(file, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        info = os.fstat(fd)
    except OSError:
        os.close(fd)
        raise
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        what = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file (a FIFO, device or socket)"
        raise ValueError(f"it is {what}; give a .yaml file")
    with os.fdopen(fd, "rb") as handle:
        if info.st_size > MAX_RECIPE_BYTES:
            raise ValueError(f"it is larger than {MAX_RECIPE_BYTES // 1024} KiB; a recipe is a few KiB")
        data = handle.read(MAX_RECIPE_BYTES + 1)
    if len(data) > MAX_RECIPE_BYTES:
        raise ValueError(f"it is larger than {MAX_RECIPE_BYTES // 1024} KiB; a recipe is a few KiB")
    return data.decode("utf-8")


def parse_recipe(text: str, *, source: str = "<recipe>") -> Recipe:
    """Validate recipe YAML text.

    Args:
        text: The YAML document.
        source: A name for messages (usually the file path).

    Raises:
        RecipeError: With every problem found.
    """
    if len(text) > MAX_RECIPE_BYTES:
        raise RecipeError(source, [("", f"the text is larger than {MAX_RECIPE_BYTES // 1024} KiB; not a recipe")])
    try:
        data = _safe_load_strict(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError(source, [("", f"not valid YAML{where}: {_cut(problem)}")]) from None
    except RecursionError:
        raise RecipeError(source, [("", "not a recipe: its YAML is nested too deeply")]) from None
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. a timestamp such as 2024-02-30
        raise RecipeError(source, [("", f"not valid YAML: {_cut(str(exc))}")]) from None
    if not isinstance(data, dict):
        raise RecipeError(source, [("", "a recipe must be a YAML mapping (key: value lines); see recipes/README.md")])
    problems = _Problems()
    recipe = _validate(data, problems, source=source, text=text)
    if problems.items:
        raise RecipeError(source, problems.items)
    assert recipe is not None
    return recipe


def _validate(data: dict[str, Any], problems: _Problems, *, source: str, text: str) -> Recipe | None:
    _check_keys(data, "", problems)
    for key in _REQUIRED_TOP:
        if key not in data:
            problems.add(key, f"missing; add `{key}:` ({_HINTS[key]})")

    version = data.get("cpedit")
    if "cpedit" in data and (not _is_int(version) or version != FORMAT_VERSION):
        problems.add(
            "cpedit",
            f"format version must be {FORMAT_VERSION}, got {shown(version)}; "
            f"this cpedit reads version {FORMAT_VERSION}",
        )

    name = data.get("name")
    if "name" in data and (not isinstance(name, str) or not SLUG.match(name)):
        problems.add(
            "name", f"must be a slug (lowercase letters, digits and single hyphens, e.g. van-gogh), got {shown(name)}"
        )
    concept = _string(data, "concept", problems, required=True)
    kind = data.get("kind", "custom")
    if kind not in KINDS:
        problems.add("kind", f"must be one of {', '.join(KINDS)}, got {shown(kind)}")
    description = _string(data, "description", problems, required=False) or ""

    targets, bases = _prompts(data["prompts"], problems) if "prompts" in data else (None, None)
    prune = _prune(_section(data, "prune", problems), problems)
    sampling = _sampling(_section(data, "sampling", problems), problems)
    seeds = sampling.pair_seeds if sampling is not None else None
    if seeds is not None and targets is not None and len(seeds) != len(targets):
        problems.add(
            "sampling.pair_seeds",
            f"has {len(seeds)} entries but the prompts make {len(targets)} pairs; give one seed per pair",
        )
    if prune is not None and sampling is not None and prune.timesteps > sampling.steps:
        problems.add(
            "prune.timesteps",
            f"tau = {prune.timesteps} is larger than the {sampling.steps} denoiser calls that "
            f"sampling.steps = {sampling.steps} makes; use at most {sampling.steps} (or raise sampling.steps)",
        )
    preview = _preview(_section(data, "preview", problems), problems)

    if problems.items:
        return None
    assert prune is not None and sampling is not None and targets is not None and bases is not None
    assert isinstance(name, str) and concept is not None  # required: a missing or bad one is a problem above
    # Text from a stranger reaches terminals and model cards: control and bidi characters go.
    return Recipe(
        name=name,
        concept=strip_unsafe(concept),
        kind=kind,
        description=strip_unsafe(description, keep_newlines=True),
        targets=tuple(strip_unsafe(p) for p in targets),
        bases=tuple(strip_unsafe(p) for p in bases),
        prune=prune,
        sampling=sampling,
        preview_prompts=tuple(strip_unsafe(p) for p in preview),
        source=source,
        text=text,
    )


_HINTS = {
    "cpedit": f"the format version, `cpedit: {FORMAT_VERSION}`",
    "name": "a slug such as van-gogh",
    "concept": "what is erased, e.g. Van Gogh",
    "prompts": "with `target:` and `base:` prompts",
    "prompts.target": "a template such as 'a {subject} in the style of X', or a list of prompts",
    "prompts.base": "a template such as 'a photo of a {subject}', or a list of prompts",
}


def _cut(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _number_hint(value: Any) -> str:
    """A hint for a number YAML read as text: YAML 1.1 reads ``1e-2`` (no decimal point) as a string."""
    if not isinstance(value, str):
        return ""
    try:
        number = float(value.strip())
    except ValueError:
        return ""
    if not math.isfinite(number):
        return ""
    return f"; YAML reads {shown(value)} as text: write it as {number!r} (or with a decimal point, e.g. 1.0e-2)"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_keys(data: dict[str, Any], section: str, problems: _Problems) -> None:
    allowed = _SCHEMA[section]
    for key in data:
        if key not in allowed:
            path = f"{section}.{_cut(str(key), 80)}" if section else _cut(str(key), 80)
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"did you mean `{close[0]}`?" if close else f"allowed here: {', '.join(allowed)}"
            problems.add(path, f"unknown key; {hint}")


def _section(data: dict[str, Any], key: str, problems: _Problems) -> dict[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.add(key, f"must be a mapping of settings, got {type(value).__name__}")
        return {}
    _check_keys(value, key, problems)
    return value


def _string(data: dict[str, Any], key: str, problems: _Problems, *, required: bool) -> str | None:
    value = data.get(key)
    if key not in data or (value is None and not required):
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        problems.add(key, f"must be a non-empty string, got {shown(value)}")
        return None
    return value


def _prompts(value: Any, problems: _Problems) -> tuple[list[str] | None, list[str] | None]:
    if not isinstance(value, dict):
        problems.add("prompts", "must be a mapping with `target:` and `base:` (and optionally `subjects:`)")
        return None, None
    _check_keys(value, "prompts", problems)
    subjects = value.get("subjects")
    if subjects is not None and (
        not isinstance(subjects, list) or not subjects or not all(isinstance(s, str) and s.strip() for s in subjects)
    ):
        problems.add("prompts.subjects", "must be a non-empty list of strings, e.g. [cat, dog, house]")
        subjects = None
    elif subjects is not None and len(set(subjects)) != len(subjects):
        problems.add("prompts.subjects", "has duplicate entries; each subject should appear once")
    expanded: dict[str, list[str] | str | None] = {}
    for side in ("target", "base"):
        path = f"prompts.{side}"
        if side not in value:
            problems.add(path, f"missing; add `{side}:` ({_HINTS[path]})")
            expanded[side] = None
            continue
        expanded[side] = _expand(value[side], subjects, path, problems, has_subjects="subjects" in value)
    target, base = expanded["target"], expanded["base"]
    if target is None or base is None:
        return None, None
    if subjects is not None and isinstance(target, str) and isinstance(base, str):
        problems.add("prompts.subjects", "is given but neither target nor base uses `{subject}`; remove it or use it")
        return None, None
    if isinstance(target, str) and isinstance(base, str):
        return [target], [base]
    if isinstance(target, str):
        target = [target] * len(base)  # a plain prompt pairs with every prompt of the other side
    if isinstance(base, str):
        base = [base] * len(target)
    if len(target) != len(base):
        problems.add(
            "prompts",
            f"target gives {len(target)} prompts but base gives {len(base)}; "
            "lists pair by index, so make them equal length",
        )
        return None, None
    return target, base


def _placeholders(template: str) -> list[str] | None:
    try:
        fields = [
            (name, spec, conversion)
            for _, name, spec, conversion in string.Formatter().parse(template)
            if name is not None
        ]
    except ValueError:
        return None
    # `{subject!r}` or `{subject:>9}` are not the plain `{subject}` placeholder: report them whole.
    return [
        name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
        for name, spec, conversion in fields
    ]


def _expand(
    value: Any, subjects: list[str] | None, path: str, problems: _Problems, *, has_subjects: bool
) -> list[str] | str | None:
    """A template expands over subjects; a list is literal; a plain string stays a string (broadcast)."""
    if isinstance(value, str):
        names = _placeholders(value)
        if names is None or any(n != SUBJECT_PLACEHOLDER for n in names):
            problems.add(path, "only the `{subject}` placeholder is allowed (write `{{` for a literal brace)")
            return None
        if not names:
            return value.format()
        if subjects is None:
            if not has_subjects:
                problems.add(path, "uses `{subject}` but `prompts.subjects` is missing; add a subjects list")
            return None
        return [value.format(subject=s) for s in subjects]
    if isinstance(value, list) and value and all(isinstance(p, str) for p in value):
        for i, prompt in enumerate(value):
            if _placeholders(prompt) != []:
                problems.add(
                    f"{path}[{i}]",
                    "list prompts are taken literally; placeholders such as `{subject}` belong in a template string",
                )
                return None
        return list(value)
    problems.add(path, f"must be a template string or a non-empty list of strings, got {type(value).__name__}")
    return None


def _number(section: dict[str, Any], key: str, default: Any, path: str, problems: _Problems, *, integer: bool) -> Any:
    value = section.get(key, default)
    if value is None and default is None:
        return None
    ok = _is_int(value) if integer else _is_number(value)
    if not ok:
        kind = "an integer" if integer else "a number"
        problems.add(f"{path}.{key}", f"must be {kind}, got {shown(value)}{_number_hint(value)}")
        return None
    return value


def prune_value_problems(*, skill_ratio: Any, timesteps: Any, select_ratio: Any) -> list[tuple[str, str]]:
    """What is wrong with these prune values, as ``(key, message)`` pairs (none: all fine).

    The rules every recipe file is held to, shared with edit sessions, whose overrides must
    pass them too: skill_ratio a number in (0, 1], timesteps an integer of at least 1,
    select_ratio a number in [0, 1).
    """
    found: list[tuple[str, str]] = []
    if not _is_number(skill_ratio):
        found.append(("skill_ratio", f"must be a number, got {shown(skill_ratio)}{_number_hint(skill_ratio)}"))
    elif not 0 < skill_ratio <= 1:
        found.append(("skill_ratio", f"must be in (0, 1], got {skill_ratio}; the paper uses 0.01 to 0.02"))
    if not _is_int(timesteps):
        found.append(("timesteps", f"must be an integer, got {shown(timesteps)}"))
    elif timesteps < 1:
        found.append(("timesteps", f"must be at least 1, got {timesteps}; the paper uses 10"))
    if not _is_number(select_ratio):
        found.append(("select_ratio", f"must be a number, got {shown(select_ratio)}{_number_hint(select_ratio)}"))
    elif not 0 <= select_ratio < 1:
        found.append(
            ("select_ratio", f"must be in [0, 1), got {select_ratio}; 0 keeps a weight marked at any timestep")
        )
    return found


def _prune(section: dict[str, Any], problems: _Problems) -> PruneSettings | None:
    d = PruneSettings()
    values = {key: section.get(key, getattr(d, key)) for key in ("skill_ratio", "timesteps", "select_ratio")}
    bad = prune_value_problems(**values)
    for key, message in bad:
        problems.add(f"prune.{key}", message)
    skill, tau, select = (None if any(k == key for k, _ in bad) else values[key] for key in values)
    target = section.get("target", d.target)
    if target not in TARGETS:
        problems.add(
            "prune.target", f"must be one of {', '.join(TARGETS)}, got {shown(target)}; the paper's default is ffn"
        )
        target = None
    stream = section.get("stream", d.stream)
    if stream not in STREAMS:
        problems.add("prune.stream", f"must be one of {', '.join(STREAMS)}, got {shown(stream)}; the default is image")
        stream = None
    elif target is not None and stream != d.stream and target not in ("ffn", "ffn-in"):
        problems.add(
            "prune.stream",
            f"applies to targets ffn and ffn-in only (target is {target}); remove it or change the target",
        )
        stream = None
    conceal = section.get("conceal", d.conceal)
    conceal_scale = section.get("conceal_scale", d.conceal_scale)
    conceal_bad = conceal_problems(mode=conceal, scale=conceal_scale)
    for key, message in conceal_bad:
        problems.add(f"prune.{key}", message)
    if conceal_bad or skill is None or tau is None or select is None or target is None or stream is None:
        return None
    return PruneSettings(
        skill_ratio=float(skill),
        timesteps=tau,
        select_ratio=float(select),
        target=target,
        stream=stream,
        conceal=conceal,
        conceal_scale=conceal_scale,
    )


def _sampling(section: dict[str, Any], problems: _Problems) -> SamplingSettings | None:
    d = SamplingSettings()
    steps = _number(section, "steps", d.steps, "sampling", problems, integer=True)
    guidance = _number(section, "guidance_scale", d.guidance_scale, "sampling", problems, integer=False)
    seed = _number(section, "seed", d.seed, "sampling", problems, integer=True)
    height = _number(section, "height", None, "sampling", problems, integer=True)
    width = _number(section, "width", None, "sampling", problems, integer=True)
    if steps is not None and steps < 1:
        problems.add("sampling.steps", f"must be at least 1, got {steps}")
        steps = None
    elif steps is not None and steps > MAX_STEPS:
        problems.add("sampling.steps", f"must be at most {MAX_STEPS} (schedulers train on 1000 steps), got {steps}")
        steps = None
    if guidance is not None and guidance < 0:
        problems.add("sampling.guidance_scale", f"must be >= 0, got {guidance}")
        guidance = None
    if seed is not None and not 0 <= seed <= MAX_SEED:
        problems.add("sampling.seed", f"must be a non-negative integer of at most 2**63 - 1, got {seed}")
        seed = None
    pair_seeds = _pair_seeds(section, problems)
    if pair_seeds is not None and "seed" in section:
        problems.add(
            "sampling",
            "give `seed` (the same seed for every prompt) or `pair_seeds` (one per prompt pair), not both",
        )
    for key, size in (("height", height), ("width", width)):
        if size is not None and (size <= 0 or size % 8 or size > MAX_SIDE):
            problems.add(f"sampling.{key}", f"must be a positive multiple of 8 of at most {MAX_SIDE}, got {size}")
    if (height is None) != (width is None):
        problems.add("sampling", "give both height and width, or neither (the model's native size)")
    if steps is None or guidance is None or seed is None or (pair_seeds is None and "pair_seeds" in section):
        return None
    return SamplingSettings(
        steps=steps, guidance_scale=float(guidance), seed=seed, height=height, width=width, pair_seeds=pair_seeds
    )


def _pair_seeds(section: dict[str, Any], problems: _Problems) -> tuple[int, ...] | None:
    """``sampling.pair_seeds``: a non-empty list of seeds in [0, 2**63 - 1] (None when absent or invalid)."""
    if "pair_seeds" not in section:
        return None
    value = section["pair_seeds"]
    if not isinstance(value, list) or not value:
        problems.add(
            "sampling.pair_seeds",
            f"must be a non-empty list of seeds, one per prompt pair (e.g. [44, 232]), got {shown(value)}",
        )
        return None
    bad = [(i, seed) for i, seed in enumerate(value) if not _is_int(seed) or not 0 <= seed <= MAX_SEED]
    for i, seed in bad[:3]:
        problems.add(
            f"sampling.pair_seeds[{i}]",
            f"must be a non-negative integer of at most 2**63 - 1, got {shown(seed)}{_number_hint(seed)}",
        )
    if len(bad) > 3:
        problems.add("sampling.pair_seeds", f"and {len(bad) - 3} more entries are not seeds")
    return None if bad else tuple(value)


def _preview(section: dict[str, Any], problems: _Problems) -> list[str]:
    prompts = section.get("prompts", [])
    if not isinstance(prompts, list) or not all(isinstance(p, str) and p.strip() for p in prompts):
        problems.add("preview.prompts", "must be a list of prompt strings")
        return []
    return list(prompts)
