"""The record of an edit: ``OUT/conceptprune/``, its format, its one writer and its one reader.

A cpedit output folder is a standard diffusers pipeline plus ``conceptprune/``:

- ``report.json``: the run :class:`Report` (typed here; :meth:`Report.to_dict` is the JSON);
- ``pruned.safetensors``: the pruned positions, per layer, as int32 flat indices;
- ``recipes/NAME.yaml``: each recipe used (its file verbatim, or a copy with the settings an
  edit session chose);
- ``preview.png``: the before/after grid of the recipes' preview prompts, when rendered;
- ``eval/BENCHMARK.json``: evaluation results (:class:`Evaluation`), which model cards show.

:func:`write_record` writes the record into a (temporary) output folder; :func:`read_output`
checks a folder and reads everything back as an :class:`OutputRecord`; evaluations are written
with :func:`write_evaluation`; the positions are read back by :func:`cpedit.output.positions.read_positions`
only. Nothing else in cpedit reads or writes these files by hand.
This module does not import torch at import time (``cpedit card`` reads records without it).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cpedit.durable import is_temporary_name, write_bytes_atomically
from cpedit.errors import CpeditError, RecipeError, UnsafeFileError
from cpedit.models.files import check_folder_files, load_json_text
from cpedit.models.support import DENOISER_COMPONENTS
from cpedit.output.collapse import CollapseCheck, CollapseProblem
from cpedit.recipes.conceal import Conceal, conceal_problems
from cpedit.recipes.format import Recipe, parse_recipe, read_recipe_text
from cpedit.text import shown, strip_unsafe

if TYPE_CHECKING:
    import torch

RECORD_DIR = "conceptprune"
POSITIONS_FILE = "pruned.safetensors"
REPORT_FILE = "report.json"
RECIPES_DIR = "recipes"
PREVIEW_FILE = "preview.png"
"""``conceptprune/preview.png``: the before/after grid of the recipes' preview prompts."""
EVAL_DIR = "eval"
"""``conceptprune/eval/<benchmark>.json``: evaluation results, one file per benchmark."""
IMAGES_DIR = "images"
"""``conceptprune/eval/images/BENCH``: where evaluations keep their images by default (a cache, not published)."""
POSITIONS_FORMAT = "cpedit-pruned-positions/1"
REPORT_VERSION = 1
MAX_REPORT_BYTES = 64 * 2**20
"""``report.json`` and evaluation files larger than this are refused unread."""
_COMPONENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
"""What a recorded weights digest must look like."""
"""What a component name in a report must look like (it names a folder of the output)."""


class RecordError(CpeditError):
    """A cpedit output folder or one of its record files is missing, incomplete or malformed.

    ``path`` is the folder or file; ``reason`` is ``not_output``, ``incomplete`` or ``malformed``.
    """


# --- The report --------------------------------------------------------------------------


@dataclass(frozen=True)
class BaseModelInfo:
    """Where the base model came from.

    Attributes:
        id: What the user gave: a Hub id, ``builtin:shapes``, or a local folder's path.
        local: True when the base was a local folder.
        path: The local folder's absolute path (local bases only; never published).
        revision: The Hub revision asked for.
        commit: The Hub commit of the files used, when known.
        repo_id: The Hub id of the base, also when it was loaded from a local Hub cache
            snapshot (``.../models--NS--NAME/snapshots/COMMIT``); None when unknown.
        weights_digest: ``sha256:HEX``, one digest of the pruned weights' bytes in the base
            folder's files (:func:`cpedit.output.folder.combined_digest`): what tells that a base is
            the one the edit was made on (``cpedit apply``). None for a pipeline saved from memory
            and for reports written before it was recorded.
    """

    id: str | None = None
    local: bool | None = None
    path: str | None = None
    revision: str | None = None
    commit: str | None = None
    repo_id: str | None = None
    weights_digest: str | None = None


_OMITTED_WHEN_NONE = ("timesteps_note", "pair_seeds", "image_size")
"""Fields of a concept record that ``report.json`` leaves out when they do not apply."""


@dataclass(frozen=True)
class ConceptRecord:
    """One recipe of the run: its settings as used, its calibration and its pruned count."""

    name: str
    concept: str
    kind: str
    recipe: str
    """The recipe's file inside the output folder (``conceptprune/recipes/NAME.yaml``)."""
    prompt_pairs: int
    skill_ratio: float
    timesteps: int
    select_ratio: float
    target: str = "ffn"
    stream: str = "image"
    steps: int = 50
    guidance_scale: float = 7.5
    seed: int = 0
    pair_seeds: tuple[int, ...] | None = None
    """One seed per prompt pair when the recipe gives ``sampling.pair_seeds`` (then ``seed`` was not used)."""
    batch_size: int = 0
    batches: int = 0
    denoiser_calls: int = 0
    calibrate_seconds: float = 0.0
    accumulator_bytes: int = 0
    pruned_weights: int = 0
    timesteps_note: str | None = None
    """Set when tau did not apply (``text-ffn``)."""
    image_size: tuple[int, ...] | None = None
    """``[height, width]`` in pixels calibration generated at (what the pipeline ran: HiDream always runs its
    native area, whatever size the recipe asks); absent for ``text-ffn`` and in reports of earlier versions."""


@dataclass(frozen=True)
class LayerRecord:
    """One hooked layer: its whole weight's shape and how many of its weights were pruned."""

    name: str
    shape: tuple[int, int]
    pruned: int
    component: str = "unet"
    target: str = "ffn"
    columns: tuple[int, int] | None = None
    """The hooked input columns (FLUX single-stream ``proj_out``); None = all."""
    rows: tuple[int, int] | None = None
    """The prunable output rows (FLUX.2 single-stream ``to_qkv_mlp_proj``); None = all."""

    @property
    def weights(self) -> int:
        """Weights in the whole layer."""
        return self.shape[0] * self.shape[1]


@dataclass(frozen=True)
class Totals:
    """Pruned weights in all, and what they are a fraction of.

    Attributes:
        pruned_weights: Weights set to zero.
        ffn_weights: Weights of the hooked layers (the candidates).
        denoiser_weights: Weights of the denoiser.
        edited_weights: Weights of the edited components (the denoiser; the text encoders for ``text-ffn``).
        pruned_fraction: ``pruned_weights / edited_weights``.
        pruned_fraction_of_ffn: ``pruned_weights / ffn_weights``.
    """

    pruned_weights: int
    ffn_weights: int
    denoiser_weights: int
    edited_weights: int
    pruned_fraction: float
    pruned_fraction_of_ffn: float


@dataclass(frozen=True)
class Report:
    """The run report (``conceptprune/report.json``). :meth:`to_dict` gives its JSON, :meth:`from_dict` reads it.

    Attributes:
        base_model: Where the base came from.
        denoiser_component: ``unet`` or ``transformer``.
        denoiser_class: The denoiser's class name.
        pipeline: The pipeline class name.
        edited_components: The components whose weights were pruned.
        compute_device: Where calibration ran (``cpu``, ``cuda:0``).
        compute_dtype: Its dtype (``float32``, ...).
        offload: Whether model CPU offload was on.
        concepts: One record per recipe.
        layers: One record per hooked layer.
        totals: Counts and fractions.
        denoiser_calls: Denoiser calls made in all.
        skipped_files: Files of the base folder not copied into the output.
        versions: Library versions.
        timings_s: Seconds per step (load, calibrate, score, save, total).
        created: ISO 8601 time the report was made.
        report_version: The format version (1).
        conceal: How the pruned entries were filled (``zero``, or ``gaussian`` with its scale and
            seed); reports written before concealment existed read as ``zero``. The published
            report (:meth:`shareable`) leaves the seed out.
        collapse_check: The collapse check run after the edit was applied (unrelated prompts,
            base against edited; :mod:`cpedit.edit.collapse`), or None when it was not run
            (``report.json`` then has no ``collapse_check``).
    """

    base_model: BaseModelInfo
    denoiser_component: str
    denoiser_class: str
    pipeline: str | None
    edited_components: tuple[str, ...]
    compute_device: str
    compute_dtype: str
    offload: bool
    concepts: tuple[ConceptRecord, ...]
    layers: tuple[LayerRecord, ...]
    totals: Totals
    denoiser_calls: int
    skipped_files: tuple[str, ...] = ()
    versions: dict[str, str] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    created: str = ""
    report_version: int = REPORT_VERSION
    conceal: Conceal = field(default_factory=Conceal)
    collapse_check: CollapseCheck | None = None

    @property
    def denoiser_label(self) -> str:
        """The denoiser in words: ``UNet`` or ``transformer``."""
        return "UNet" if self.denoiser_component == "unet" else "transformer"

    @property
    def edited_label(self) -> str:
        """What the pruned fraction is relative to, in words: ``UNet``, ``transformer``, ``text_encoder``..."""
        if list(self.edited_components) == [self.denoiser_component]:
            return self.denoiser_label
        return " and ".join(self.edited_components)

    @property
    def base_ref(self) -> str | None:
        """What loads the base model again: the local path, or the id (Hub id or ``builtin:shapes``)."""
        return self.base_model.path or self.base_model.id

    def shareable(self) -> Report:
        """The report as published: a local base model's path (recorded as ``id`` and ``path``) removed.

        A concealed edit's seed is removed too: with it (and the pruned counts) the fill values
        could be regenerated and looked for in the weights.
        """
        report = self
        if self.conceal.seed is not None:
            report = replace(report, conceal=replace(self.conceal, seed=None))
        if not self.base_model.local:
            return report
        return replace(report, base_model=replace(self.base_model, id=None, path=None))

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict written to ``report.json``."""
        return {
            "report_version": self.report_version,
            "created": self.created,
            "base_model": asdict(self.base_model),
            "denoiser": {"component": self.denoiser_component, "class": self.denoiser_class},
            "pipeline": self.pipeline,
            "edited_components": list(self.edited_components),
            "compute": {"device": self.compute_device, "dtype": self.compute_dtype},
            "offload": self.offload,
            "conceal": self.conceal.to_dict(),
            "concepts": [
                {
                    k: list(v) if isinstance(v, tuple) else v
                    for k, v in asdict(c).items()
                    if v is not None or k not in _OMITTED_WHEN_NONE
                }
                for c in self.concepts
            ],
            "layers": [
                {
                    "name": layer.name,
                    "shape": list(layer.shape),
                    "pruned": layer.pruned,
                    "component": layer.component,
                    "target": layer.target,
                    **({"columns": list(layer.columns)} if layer.columns is not None else {}),
                    **({"rows": list(layer.rows)} if layer.rows is not None else {}),
                }
                for layer in self.layers
            ],
            "totals": asdict(self.totals),
            "denoiser_calls": self.denoiser_calls,
            "skipped_files": list(self.skipped_files),
            "versions": dict(self.versions),
            "timings_s": dict(self.timings_s),
            **({"collapse_check": self.collapse_check.to_dict()} if self.collapse_check is not None else {}),
        }

    def to_json(self) -> str:
        """``report.json``'s text."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Any, *, source: str = REPORT_FILE) -> Report:
        """Read a report back, checking every field's type.

        Args:
            data: The parsed JSON.
            source: The file it came from, for messages.

        Raises:
            RecordError: A field is missing or has the wrong type; the message names the file and field.
        """
        read = _Reader(source)
        top = read.mapping(data, "")
        base = read.mapping(top.get("base_model"), "base_model")
        denoiser = read.mapping(top.get("denoiser"), "denoiser")
        component = read.value(denoiser, "component", str, "denoiser")
        if component not in DENOISER_COMPONENTS:
            read.fail("denoiser.component", f"must be one of {', '.join(DENOISER_COMPONENTS)}, got {shown(component)}")
        compute = read.mapping(top.get("compute", {}), "compute")
        concepts = read.items(top.get("concepts"), "concepts")
        if not concepts:
            read.fail("concepts", "records no concept")
        layers = read.items(top.get("layers"), "layers")
        totals = read.mapping(top.get("totals"), "totals")
        read.renamed(top, _RENAMED_FIELDS, "")
        read.renamed(totals, _RENAMED_FIELDS, "totals")
        concept_records = []
        for i, concept in enumerate(concepts):
            where = f"concepts[{i}]"
            entry = read.mapping(concept, where)
            read.renamed(entry, _RENAMED_FIELDS, where)
            recipe = read.value(entry, "recipe", str, where)
            path = Path(recipe)
            if path.is_absolute() or ".." in path.parts or path.parts[:2] != (RECORD_DIR, RECIPES_DIR):
                read.fail(f"{where}.recipe", f"points outside {RECORD_DIR}/{RECIPES_DIR}/: {shown(recipe)}")
            concept_records.append(read.dataclass(ConceptRecord, entry, where))
        layer_records = []
        for i, layer in enumerate(layers):
            where = f"layers[{i}]"
            entry = read.mapping(layer, where)
            shape = read.pair(entry.get("shape"), f"{where}.shape")
            columns = read.pair(entry["columns"], f"{where}.columns") if entry.get("columns") is not None else None
            rows = read.pair(entry["rows"], f"{where}.rows") if entry.get("rows") is not None else None
            layer_records.append(
                LayerRecord(
                    name=read.value(entry, "name", str, where),
                    shape=shape,
                    pruned=read.value(entry, "pruned", int, where),
                    component=read.value(entry, "component", str, where, default=component),
                    target=read.value(entry, "target", str, where, default="ffn"),
                    columns=columns,
                    rows=rows,
                )
            )
        denoiser_weights = read.value(totals, "denoiser_weights", int, "totals")
        pruned = read.value(totals, "pruned_weights", int, "totals")
        edited = read.value(totals, "edited_weights", int, "totals", default=denoiser_weights)
        ffn = read.value(totals, "ffn_weights", int, "totals", default=0)
        edited_components = read.value(top, "edited_components", list, "", default=[component])
        if not all(isinstance(c, str) and _COMPONENT.match(c) for c in edited_components):
            read.fail("edited_components", f"must be a list of component names, got {shown(edited_components)}")
        skipped = read.value(top, "skipped_files", list, "", default=[])
        versions = read.value(top, "versions", dict, "")
        timings = read.value(top, "timings_s", dict, "", default={})
        conceal = read.mapping(top.get("conceal", {"mode": "zero"}), "conceal")
        conceal_mode = read.value(conceal, "mode", str, "conceal", default="zero")
        conceal_scale = read.value(conceal, "scale", str, "conceal", default=None)
        conceal_seed = read.value(conceal, "seed", int, "conceal", default=None)
        fields_by_key = {"conceal": "mode", "conceal_scale": "scale", "conceal_seed": "seed"}
        for key, message in conceal_problems(
            mode=conceal_mode, scale=conceal_scale or Conceal().scale, seed=conceal_seed
        ):
            read.fail(f"conceal.{fields_by_key[key]}", message)
        collapse_check = None
        if top.get("collapse_check") is not None:
            try:
                collapse_check = CollapseCheck.from_dict(top["collapse_check"])
            except CollapseProblem as exc:
                read.fail(exc.where, str(exc).removeprefix(f"{exc.where}: "))
        return cls(
            base_model=BaseModelInfo(
                id=read.value(base, "id", str, "base_model", default=None),
                local=read.value(base, "local", bool, "base_model", default=None),
                path=read.value(base, "path", str, "base_model", default=None),
                revision=read.value(base, "revision", str, "base_model", default=None),
                commit=read.value(base, "commit", str, "base_model", default=None),
                repo_id=read.value(base, "repo_id", str, "base_model", default=None),
                weights_digest=read.digest(base, "weights_digest", "base_model"),
            ),
            denoiser_component=component,
            denoiser_class=read.value(denoiser, "class", str, "denoiser", default=""),
            pipeline=read.value(top, "pipeline", str, "", default=None),
            edited_components=tuple(edited_components),
            compute_device=read.value(compute, "device", str, "compute", default=""),
            compute_dtype=read.value(compute, "dtype", str, "compute", default=""),
            offload=read.value(top, "offload", bool, "", default=False),
            concepts=tuple(concept_records),
            layers=tuple(layer_records),
            totals=Totals(
                pruned_weights=pruned,
                ffn_weights=ffn,
                denoiser_weights=denoiser_weights,
                edited_weights=edited,
                pruned_fraction=read.value(totals, "pruned_fraction", float, "totals"),
                pruned_fraction_of_ffn=read.value(
                    totals, "pruned_fraction_of_ffn", float, "totals", default=pruned / ffn if ffn else 0.0
                ),
            ),
            denoiser_calls=read.value(top, "denoiser_calls", int, "", default=0),
            skipped_files=tuple(str(s) for s in skipped),
            versions={str(k): str(v) for k, v in versions.items()},
            timings_s={str(k): float(v) for k, v in timings.items() if _is_number(v)},
            created=read.value(top, "created", str, "", default=""),
            report_version=read.value(top, "report_version", int, "", default=REPORT_VERSION),
            conceal=Conceal(mode=conceal_mode, scale=conceal_scale or Conceal().scale, seed=conceal_seed),
            collapse_check=collapse_check,
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


_MISSING = object()

_RENAMED_FIELDS = {"unet_calls": "denoiser_calls", "unet_weights": "denoiser_weights"}
"""Report fields renamed before the format was frozen (they count FLUX and SD3 transformers too).

Nothing was released with the old names, so the reader refuses them with a clear message
instead of carrying aliases for ever."""


class _Reader:
    """Typed field access for :meth:`Report.from_dict`: every problem names the file and the field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, message: str) -> None:
        raise RecordError(f"{self.source}: {where or 'the file'} {message}", path=self.source, reason="malformed")

    def mapping(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(where, f"must be a JSON object, got {type(value).__name__}")
        return value

    def items(self, value: Any, where: str) -> list[Any]:
        if not isinstance(value, list):
            self.fail(where, f"must be a JSON list, got {type(value).__name__}")
        return value

    def pair(self, value: Any, where: str) -> tuple[int, int]:
        if not (
            isinstance(value, list)
            and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        ):
            self.fail(where, f"must be a list of two integers, got {shown(value)}")
        return (value[0], value[1])

    def value(self, data: dict[str, Any], key: str, kind: type, where: str, *, default: Any = _MISSING) -> Any:
        path = f"{where}.{key}" if where else key
        if key not in data or (data[key] is None and default is None):
            if default is _MISSING:
                self.fail(path, "is missing")
            return default
        value = data[key]
        if kind is float:
            ok = _is_number(value)
            value = float(value) if ok else value
        elif kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, kind)
        if not ok:
            self.fail(path, f"must be {_KIND_NAMES.get(kind, kind.__name__)}, got {shown(value)}")
        if isinstance(value, str):
            value = strip_unsafe(value)  # shown in terminals and model cards: no control or bidi characters
        return value

    def digest(self, data: dict[str, Any], key: str, where: str) -> str | None:
        """An optional ``sha256:HEX`` digest (None when absent or null)."""
        value = self.value(data, key, str, where, default=None)
        if value is not None and not _DIGEST.match(value):
            self.fail(f"{where}.{key}", f"must be sha256: and 64 lowercase hex digits, got {shown(value)}")
        return value

    def renamed(self, data: dict[str, Any], renamed: dict[str, str], where: str) -> None:
        """Refuse a field under a name only pre-release cpedit wrote (see :data:`_RENAMED_FIELDS`)."""
        for old, new in renamed.items():
            if old in data:
                self.fail(
                    f"{where}.{old}" if where else old,
                    f"is the pre-release name of {new} (a development version of cpedit wrote this report); "
                    "prune again with this version to record the edit",
                )

    def integers(self, data: dict[str, Any], key: str, where: str) -> tuple[int, ...] | None:
        """An optional list of non-negative integers (None when absent or null)."""
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
        ):
            self.fail(f"{where}.{key}", f"must be a list of non-negative integers, got {shown(value)}")
        return tuple(value)

    def dataclass(self, cls: type, data: dict[str, Any], where: str) -> Any:
        kinds = {"str": str, "int": int, "float": float, "str | None": str}
        values = {}
        for f in fields(cls):
            if str(f.type) == "tuple[int, ...] | None":
                values[f.name] = self.integers(data, f.name, where)
                continue
            kind = kinds[str(f.type)]
            default = f.default if f.default is not MISSING else _MISSING
            values[f.name] = self.value(data, f.name, kind, where, default=default)
        return cls(**values)


_KIND_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
    dict: "an object",
}


# --- Writing ----------------------------------------------------------------------------


def save_positions(path: Path, masks: dict[str, torch.Tensor], *, denoiser: str) -> None:
    """Write the pruned positions compactly: per layer, sorted int32 flat indices."""
    import torch
    from safetensors.torch import save_file

    tensors = {name: mask.flatten().nonzero().flatten().to(torch.int32).contiguous() for name, mask in masks.items()}
    shapes = {name: list(mask.shape) for name, mask in masks.items()}
    save_file(tensors, path, metadata={"format": POSITIONS_FORMAT, "denoiser": denoiser, "shapes": json.dumps(shapes)})
    path.chmod(0o644)  # safetensors creates files private; this one is meant to be shared


def write_record(
    folder: Path,
    *,
    masks: dict[str, torch.Tensor],
    recipes: Sequence[Recipe],
    report: Report,
    positions_file: Path | None = None,
) -> None:
    """Write ``conceptprune/`` (positions, the recipes as they ran, report) into an output folder.

    Args:
        folder: The (temporary) output folder.
        masks: Per layer, the pruned positions (a bool mask shaped like the weight).
        recipes: The recipes as they ran.
        report: The run report.
        positions_file: A positions file already checked to hold exactly ``masks`` (an edit's own,
            see :func:`cpedit.publish.apply.apply_edit`): copied as it is instead of written again,
            since safetensors orders a file's metadata differently from one write to the next.
    """
    record = folder / RECORD_DIR
    (record / RECIPES_DIR).mkdir(parents=True, exist_ok=True)
    if positions_file is not None:
        shutil.copyfile(positions_file, record / POSITIONS_FILE)
        (record / POSITIONS_FILE).chmod(0o644)
    else:
        save_positions(record / POSITIONS_FILE, masks, denoiser=report.denoiser_component)
    for recipe in recipes:
        (record / RECIPES_DIR / f"{recipe.name}.yaml").write_text(recipe.text, encoding="utf-8")
    (record / REPORT_FILE).write_text(report.to_json(), encoding="utf-8")


def write_json_atomically(path: Path, data: Any, *, what: str = "the JSON file", argument: str | None = None) -> Path:
    """Write ``data`` as JSON to ``path`` through a hidden temporary file, ``fsync`` and a rename (never half-written).

    See :func:`cpedit.durable.write_bytes_atomically` (temporary names, cleanup of killed runs' leftovers).

    Raises:
        CpeditError: The disk is full (the message says how much space is needed), ``path`` is not writable,
            or ``data`` holds NaN or an infinity (``reason="not_finite"``; nothing is written).
    """
    try:
        text = json.dumps(data, indent=2, allow_nan=False) + "\n"  # NaN/Infinity are not JSON: never written
    except ValueError:
        raise CpeditError(
            f"cannot write {what} {path}: it holds a number that is not finite (NaN or infinity)",
            path=str(path),
            reason="not_finite",
            argument=argument,
        ) from None
    return write_bytes_atomically(Path(path), text.encode("utf-8"), what=what, argument=argument)


# --- Evaluations -------------------------------------------------------------------------

EVAL_KEYS = ("concepts", "images", "erased", "preserved", "pruned_fraction")


METRIC_PROTOCOL_KEY = "protocol"
"""A metric benchmark's file (``cpedit eval clip-score``, ``fid``) has this key; the shapes one has not."""
INTERVALS_KEY = "intervals"
"""Either form's 95% intervals: ``{metric: {"before"|"after"|"change": {value, low, high, method, n}}}``."""
INTERVAL_FIELDS = ("value", "low", "high", "method", "n")
_INTERVAL_METHOD = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")


@dataclass(frozen=True)
class Evaluation:
    """One ``conceptprune/eval/<benchmark>.json`` file: measurements before and after the edit.

    Two forms. The shapes benchmark's JSON is exactly ``{"concepts": [...], "images": N,
    "erased": {"before": f, "after": f}, "preserved": {"before": f, "after": f},
    "pruned_fraction": f}``. A metric benchmark's (:attr:`metrics` set) is
    ``{"METRIC": {"before": f, "after": f}, ..., "protocol": {...}}``: each metric under its
    name (``clip_score``, ``fid``), ``before`` only when the base model was evaluated too.
    """

    benchmark: str
    concepts: tuple[str, ...] = ()
    images: int = 0
    erased: dict[str, float] = field(default_factory=dict)
    preserved: dict[str, float] = field(default_factory=dict)
    pruned_fraction: float = 0.0
    metrics: dict[str, dict[str, float]] | None = None
    """Metric benchmarks: ``{"clip_score": {"before": f, "after": f}}`` (None: the shapes form)."""
    protocol: dict[str, Any] | None = None
    """Metric benchmarks: how the images were made and measured (prompt set, N, seeds, steps, ...)."""
    intervals: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    """95% intervals: ``{metric: {"before"|"after"|"change": {"value", "low", "high", "method", "n"}}}``
    (empty in files written before intervals; see :mod:`cpedit.eval.intervals`)."""

    def to_dict(self) -> dict[str, Any]:
        """The file's JSON (the benchmark is the file name, not a key)."""
        intervals = {INTERVALS_KEY: _copy_intervals(self.intervals)} if self.intervals else {}
        if self.metrics is not None:
            return {
                **{name: dict(values) for name, values in self.metrics.items()},
                **intervals,
                METRIC_PROTOCOL_KEY: dict(self.protocol or {}),
            }
        return {
            "concepts": list(self.concepts),
            "images": self.images,
            "erased": dict(self.erased),
            "preserved": dict(self.preserved),
            "pruned_fraction": self.pruned_fraction,
            **intervals,
        }

    def interval(self, metric: str, key: str) -> dict[str, Any] | None:
        """The interval of ``metric`` at ``key`` (``before``, ``after``, ``change``), or None."""
        return self.intervals.get(metric, {}).get(key)

    @classmethod
    def from_dict(cls, benchmark: str, data: Any, *, source: str) -> Evaluation:
        """Read one evaluation file's JSON.

        Raises:
            RecordError: It does not follow the format (the message names the file).
        """
        if isinstance(data, dict) and METRIC_PROTOCOL_KEY in data:
            return cls._metrics_from_dict(benchmark, data, source=source)
        if not isinstance(data, dict) or set(data) - {INTERVALS_KEY} != set(EVAL_KEYS):
            raise RecordError(
                f"{source} must hold exactly the keys {sorted(EVAL_KEYS)} (and {INTERVALS_KEY})",
                path=source,
                reason="malformed",
            )
        ok = (
            isinstance(data["concepts"], list)
            and all(isinstance(c, str) for c in data["concepts"])
            and isinstance(data["images"], int)
            and not isinstance(data["images"], bool)
            and _is_number(data["pruned_fraction"])
            and all(
                isinstance(data[k], dict)
                and set(data[k]) == {"before", "after"}
                and all(map(_is_number, data[k].values()))
                for k in ("erased", "preserved")
            )
        )
        if not ok:
            raise RecordError(
                f"{source}: expected concepts (list of strings), images (integer), erased and preserved "
                "({before, after} numbers), pruned_fraction (number)",
                path=source,
                reason="malformed",
            )
        return cls(
            benchmark=benchmark,
            concepts=tuple(data["concepts"]),
            images=data["images"],
            erased={k: float(v) for k, v in data["erased"].items()},
            preserved={k: float(v) for k, v in data["preserved"].items()},
            pruned_fraction=float(data["pruned_fraction"]),
            intervals=_read_intervals(data.get(INTERVALS_KEY, {}), ("erased", "preserved"), source=source),
        )

    @classmethod
    def _metrics_from_dict(cls, benchmark: str, data: dict[str, Any], *, source: str) -> Evaluation:
        protocol = data[METRIC_PROTOCOL_KEY]
        metrics = {k: v for k, v in data.items() if k not in (METRIC_PROTOCOL_KEY, INTERVALS_KEY)}
        ok = (
            isinstance(protocol, dict)
            and bool(metrics)
            and all(
                isinstance(name, str)
                and isinstance(values, dict)
                and "after" in values
                and set(values) <= {"before", "after"}
                and all(map(_is_number, values.values()))
                for name, values in metrics.items()
            )
        )
        if not ok:
            raise RecordError(
                f"{source}: expected one or more metrics ({{before, after}} numbers, after required) "
                f"and a {METRIC_PROTOCOL_KEY} object",
                path=source,
                reason="malformed",
            )
        return cls(
            benchmark=benchmark,
            metrics={name: {k: float(v) for k, v in values.items()} for name, values in metrics.items()},
            protocol=dict(protocol),
            intervals=_read_intervals(data.get(INTERVALS_KEY, {}), tuple(metrics), source=source),
        )


def _copy_intervals(intervals: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
    return {name: {key: dict(values) for key, values in phases.items()} for name, phases in intervals.items()}


def _read_intervals(data: Any, metrics: Sequence[str], *, source: str) -> dict[str, dict[str, dict[str, Any]]]:
    """The ``intervals`` object of an evaluation file, checked: known metrics, phases, finite bounds.

    Raises:
        RecordError: It does not follow the form (the message names the file and the field).
    """

    def malformed(where: str, what: str) -> RecordError:
        return RecordError(f"{source}: {INTERVALS_KEY}{where} {what}", path=source, reason="malformed")

    if not isinstance(data, dict):
        raise malformed("", "must be an object")
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name, phases in data.items():
        if name not in metrics:
            raise malformed(f".{shown(str(name))}", "names no metric of the file")
        if not isinstance(phases, dict) or not phases or not set(phases) <= {"before", "after", "change"}:
            raise malformed(f".{name}", "must map before, after or change to an interval")
        out[name] = {}
        for key, interval in phases.items():
            where = f".{name}.{key}"
            if not isinstance(interval, dict) or set(interval) != set(INTERVAL_FIELDS):
                raise malformed(where, f"must hold exactly {', '.join(INTERVAL_FIELDS)}")
            numbers = [interval[k] for k in ("value", "low", "high")]
            if not all(map(_is_number, numbers)) or not interval["low"] <= interval["high"]:
                raise malformed(where, "needs finite numbers value, low <= high")
            method, count = interval["method"], interval["n"]
            if not isinstance(method, str) or not _INTERVAL_METHOD.fullmatch(method):
                raise malformed(f"{where}.method", "must be a method name (such as wilson)")
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                raise malformed(f"{where}.n", "must be a count (a whole number >= 0)")
            out[name][key] = {
                "value": float(interval["value"]),
                "low": float(interval["low"]),
                "high": float(interval["high"]),
                "method": method,
                "n": count,
            }
    return out


def check_outside_record(target: str | os.PathLike[str], *, argument: str | None = None) -> None:
    """Refuse to write ``target`` inside a cpedit output's own record (``OUT/conceptprune/...``).

    The record (report, positions, evaluations, preview) is cpedit's evidence about the output
    and is read back by ``push``, ``card`` and ``audit``; a result or card written over or beside
    it would be taken for part of it. Links are followed, so a path through one is caught too.

    Raises:
        CpeditError: ``reason="conflict"``; the message names the output.
    """
    resolved = Path(target).expanduser().resolve()
    for parent in resolved.parents:
        if parent.name == RECORD_DIR and (parent / REPORT_FILE).is_file():
            raise CpeditError(
                f"{target} is inside the record of the cpedit output {parent.parent} ({RECORD_DIR}/), which only "
                "cpedit writes; choose a place outside it",
                path=str(target),
                reason="conflict",
                argument=argument,
            )


def output_identity(folder: str | os.PathLike[str]) -> tuple[int, ...] | None:
    """What tells this output folder from another put at the same path: its and its report's inode and mtime.

    A run that reads an output and later writes or reports about it compares this before and
    after: another run's overwrite (a new folder renamed into place) changes it. None when the
    folder or report cannot be looked at.
    """
    try:
        own = os.stat(folder)
        report = os.stat(Path(folder) / RECORD_DIR / REPORT_FILE)
    except OSError:
        return None
    return (own.st_dev, own.st_ino, report.st_ino, report.st_mtime_ns, report.st_size)


def evaluation_path(folder: str | os.PathLike[str], benchmark: str) -> Path:
    """``folder/conceptprune/eval/<benchmark>.json``."""
    return Path(folder) / RECORD_DIR / EVAL_DIR / f"{benchmark}.json"


def write_evaluation(folder: str | os.PathLike[str], evaluation: Evaluation) -> Path:
    """Keep an evaluation result in the output folder (atomically), where model cards find it."""
    return write_json_atomically(
        evaluation_path(folder, evaluation.benchmark), evaluation.to_dict(), what="the evaluation result"
    )


def read_evaluations(folder: str | os.PathLike[str]) -> list[Evaluation]:
    """The evaluation results in ``folder/conceptprune/eval/*.json``, by benchmark name.

    Raises:
        RecordError: A file does not follow the format (the message names it).
    """
    results = []
    for file in sorted((Path(folder) / RECORD_DIR / EVAL_DIR).glob("*.json")):
        where = f"{RECORD_DIR}/{EVAL_DIR}/{file.name}"
        try:
            if file.is_symlink() or not file.is_file() or file.stat().st_size > MAX_REPORT_BYTES:
                raise OSError("not a regular file of a sensible size")
            data = load_json_text(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RecordError(f"{where} does not parse ({exc})", path=str(file), reason="malformed") from None
        results.append(Evaluation.from_dict(file.stem, data, source=where))
    return results


# --- Reading -----------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputRecord:
    """A checked cpedit output folder and what its run recorded."""

    folder: Path
    report: Report
    recipes: list[Recipe]
    evaluations: list[Evaluation] = field(default_factory=list)
    preview: Path | None = None

    @property
    def base_repo_id(self) -> str | None:
        """The base model's Hub id (also inferred from a Hub cache snapshot folder), None otherwise."""
        from cpedit.shapes.model import is_builtin_model

        base = self.report.base_model
        if base.repo_id:
            return base.repo_id
        if base.local or not base.id or is_builtin_model(base.id):
            return None
        return base.id

    @property
    def base_is_builtin(self) -> bool:
        """Whether the base is cpedit's built-in shapes model (not on the Hub)."""
        from cpedit.shapes.model import is_builtin_model

        return bool(self.report.base_model.id) and is_builtin_model(str(self.report.base_model.id))


def read_report(folder: str | os.PathLike[str]) -> Report:
    """Read and check ``conceptprune/report.json`` of a cpedit output folder.

    Raises:
        RecordError: ``folder`` is not a cpedit output, or the report is malformed (file and field named).
    """
    path = Path(folder) / RECORD_DIR / REPORT_FILE
    where = f"{folder}/{RECORD_DIR}/{REPORT_FILE}"
    try:
        if path.is_symlink() or (path.exists() and not path.is_file()):
            raise OSError("not a regular file")
        if path.exists() and path.stat().st_size > MAX_REPORT_BYTES:
            raise OSError(f"larger than {MAX_REPORT_BYTES // 2**20} MiB")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecordError(
            f"{folder} is not a cpedit output (no {RECORD_DIR}/{REPORT_FILE})", path=str(folder), reason="not_output"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordError(f"{where} cannot be read ({exc})", path=str(path), reason="malformed") from None
    try:
        data = load_json_text(text)
    except ValueError as exc:
        raise RecordError(f"{where} is not valid JSON: {exc}", path=str(path), reason="malformed") from None
    return Report.from_dict(data, source=where)


def read_output(folder: str | os.PathLike[str]) -> OutputRecord:
    """Check that ``folder`` is a complete cpedit output and read what its run recorded.

    Raises:
        RecordError: It is not a cpedit output, the record does not parse, or files are
            missing; the message says which.
    """
    path = Path(folder)

    def incomplete(message: str) -> RecordError:
        return RecordError(
            f"{folder} is not a complete cpedit output: {message}", path=str(folder), reason="incomplete"
        )

    if not path.is_dir():
        raise RecordError(f"{folder} is not a folder", path=str(folder), reason="not_output")
    if ".partial" in path.name or ".old-" in path.name:
        raise RecordError(
            f"{folder} is an unfinished or replaced cpedit output (a temporary folder); use the final one",
            path=str(folder),
            reason="incomplete",
        )
    # A hidden temporary of a later write (an evaluation, a preview: .NAME.partial-PID-XXXXXXXX, see
    # cpedit.durable) never replaced anything, so a killed write there leaves the output complete.
    leftovers = sorted(str(p.relative_to(path)) for p in path.rglob("*.partial*") if not is_temporary_name(p.name))
    if leftovers:
        raise RecordError(
            f"{folder} holds unfinished files ({', '.join(leftovers[:3])}); it is not a complete output",
            path=str(folder),
            reason="incomplete",
        )
    try:
        check_folder_files(path, root=path.resolve())  # no link out of it, no FIFO: nothing else is read
    except UnsafeFileError as exc:
        raise RecordError(f"{folder} is not a plain cpedit output: {exc}", path=exc.path, reason="unsafe") from None
    report = read_report(path)
    if not (path / "model_index.json").is_file():
        raise incomplete("model_index.json is missing")
    for component in report.edited_components:
        if not list((path / component).glob("*.safetensors")):
            raise incomplete(f"no weights in {component}/ (*.safetensors)")
    if not (path / RECORD_DIR / POSITIONS_FILE).is_file() and not report.conceal.conceals:
        # A concealed edit is published without its positions (they would give the edit away).
        raise incomplete(f"{RECORD_DIR}/{POSITIONS_FILE} is missing")
    recipes = _read_recipes(path, report, incomplete)
    preview = path / RECORD_DIR / PREVIEW_FILE
    return OutputRecord(
        folder=path,
        report=report,
        recipes=recipes,
        evaluations=read_evaluations(path),
        preview=preview if preview.is_file() else None,
    )


def _read_recipes(path: Path, report: Report, incomplete: Callable[[str], RecordError]) -> list[Recipe]:
    """The recipes a report names (``conceptprune/recipes/NAME.yaml``), read and checked."""
    recipes = []
    for concept in report.concepts:
        try:
            text = read_recipe_text(path / concept.recipe)
        except (OSError, UnicodeDecodeError, ValueError):
            raise incomplete(f"{concept.recipe} is missing or unreadable") from None
        try:
            recipes.append(parse_recipe(text, source=concept.recipe))
        except RecipeError as exc:
            raise RecordError(
                f"{path}: its recorded recipe is invalid:\n{exc}", path=str(path / concept.recipe)
            ) from None
    return recipes


@dataclass(frozen=True)
class EditRecord:
    """An edit without the weights (what ``cpedit push --edit-only`` publishes), checked by :func:`read_edit`.

    Attributes:
        folder: The folder holding ``conceptprune/`` (an output folder, or an edit's files alone).
        report: The run report.
        recipes: The recipes as they ran, in the report's order.
        positions: ``conceptprune/pruned.safetensors`` (read with
            :func:`cpedit.output.positions.read_positions`); None for a concealed edit as published
            (its positions stay with whoever made it).
    """

    folder: Path
    report: Report
    recipes: list[Recipe]
    positions: Path | None


def read_edit(folder: str | os.PathLike[str]) -> EditRecord:
    """Check that ``folder`` holds an edit's record (report, recipes, positions) and read it.

    ``folder`` is a cpedit output or an edit published without its weights: only ``conceptprune/``
    is read (no link out of the folder, no special file). The positions are not loaded here
    (:func:`cpedit.output.positions.read_positions` does, with torch).

    Raises:
        RecordError: It is not a cpedit record (``not_output``), the report or a recipe does not
            parse (``malformed``), or a file is missing (``incomplete``; the positions only for an
            edit that is not concealed).
    """
    path = Path(folder)

    def incomplete(message: str) -> RecordError:
        return RecordError(f"{folder} is not a complete cpedit edit: {message}", path=str(folder), reason="incomplete")

    if not path.is_dir():
        raise RecordError(f"{folder} is not a folder", path=str(folder), reason="not_output")
    record = path / RECORD_DIR
    if record.is_dir():
        try:
            check_folder_files(record, root=path.resolve())
        except UnsafeFileError as exc:
            raise RecordError(f"{folder} is not a plain cpedit edit: {exc}", path=exc.path, reason="unsafe") from None
    report = read_report(path)
    positions: Path | None = record / POSITIONS_FILE
    if positions is not None and (positions.is_symlink() or not positions.is_file()):
        if not report.conceal.conceals:
            raise incomplete(f"{RECORD_DIR}/{POSITIONS_FILE} is missing")
        positions = None  # a concealed edit's positions are never published
    return EditRecord(folder=path, report=report, recipes=_read_recipes(path, report, incomplete), positions=positions)
