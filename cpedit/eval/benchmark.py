"""What a benchmark is: its name, metrics, typed options, prompts, judge and how it scores a phase.

A benchmark is a :class:`Benchmark` subclass in a module of its own (``clip_score``, ``fid``,
``nudity``, ``classify``, ``attack``, ``shapes``), listed in :mod:`cpedit.eval.registry`. The one
driver, :func:`cpedit.eval.driver.evaluate`, owns everything they share: reading the output,
rendering the images of the base and edited models (:func:`cpedit.eval.engine.render_images`),
the phases with their cancel checks and events, the protocol and the :class:`BenchmarkResult`.
A benchmark says only what is its own:

* :meth:`Benchmark.prepare`: its prompts, its judge (a loaded model), protocol fields known up front;
* :meth:`Benchmark.score`: the measurement of one phase's images (``before``: base, ``after``: edited);
* :meth:`Benchmark.metrics` and :meth:`Benchmark.protocol_fields`: the result, from every phase's.

A phase's measurement keeps each metric's per-image values (a :class:`~cpedit.eval.intervals.Sample`),
so :meth:`Benchmark.intervals` gives every metric its 95% interval and the before/after change
its paired one (:mod:`cpedit.eval.intervals`). The result files keep their shapes
(:class:`cpedit.output.record.Evaluation`), with the intervals beside the metrics::

    {"clip_score": {"before": 31.4, "after": 30.9},
     "intervals": {"clip_score": {"before": {"value": 31.4, "low": 30.8, "high": 32.0, ...},
                                  "after": {...}, "change": {...}}},
     "protocol": {..., "intervals": {"level": 0.95, ...}}}

``before`` only when the base was evaluated too; ``shapes.json`` keeps its own form (plus ``intervals``).
"""

from __future__ import annotations

import hashlib
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from cpedit.errors import CpeditError
from cpedit.eval.intervals import Estimate, Sample, describe_method
from cpedit.eval.options import ImageOptions
from cpedit.models.compute import ComputeOptions
from cpedit.output.record import Evaluation, OutputRecord
from cpedit.progress import ProgressCallback, ProgressEvent

if TYPE_CHECKING:
    from cpedit.eval.engine import ImageEntry, PromptSpec, RenderedImages
    from cpedit.eval.judges import JudgeCache

Role = Literal["erasure", "preservation"]
Phase = Literal["before", "after"]
_J = TypeVar("_J")

__all__ = [
    "Benchmark",
    "BenchmarkOptions",
    "BenchmarkResult",
    "BenchmarkRun",
    "PromptOptions",
    "Role",
    "prompt_groups",
    "protocol",
    "prompt_set_fields",
]


@dataclass(frozen=True, kw_only=True)
class BenchmarkOptions:
    """The base of every benchmark's typed options (a frozen, keyword-only dataclass each)."""


@dataclass(frozen=True, kw_only=True)
class PromptOptions(BenchmarkOptions):
    """Options of a benchmark measured on a prompt set.

    Attributes:
        prompts: A prompt set reference (a file, ``hub:OWNER/NAME``, ``attack:NAME``: loaded when
            the benchmark runs), a loaded :class:`~cpedit.eval.prompt_sets.PromptSet` (its name
            and Hub revision go into the protocol), or a list of
            :class:`~cpedit.eval.engine.PromptSpec`.
        prompts_name: The set's name in the protocol (default: the set's own, or ``given``).
        limit: Use only the first N prompts.
        category: With a reference: keep the prompts of these categories (comma-separated).
    """

    prompts: str | os.PathLike[str] | Any | None = None
    prompts_name: str | None = None
    limit: int | None = None
    category: str | None = None


@dataclass(frozen=True)
class BenchmarkResult:
    """What a benchmark measured: ``metrics[name] = {"before"?: x, "after": y}``, its protocol and images.

    The one result type of every benchmark. :meth:`to_json` is the file kept in
    ``EDITED/conceptprune/eval/BENCH.json`` (see :func:`cpedit.eval.driver.record_result`).
    """

    benchmark: str
    """The result's name (the file name): the benchmark's, or ``attack-SET`` for a known attack set."""
    metrics: dict[str, dict[str, float]]
    protocol: dict[str, Any]
    images: RenderedImages | None = None
    evaluation: Evaluation | None = None
    """The record form when the benchmark keeps its own (``shapes``); None: the metric form."""
    intervals: dict[str, dict[str, Estimate]] = field(default_factory=dict)
    """``intervals[metric][phase or "change"]``: each metric's 95% interval (none for FID, see the protocol)."""

    def to_json(self) -> dict[str, Any]:
        """The benchmark's JSON (the one kept in ``conceptprune/eval/BENCH.json``)."""
        return self.to_evaluation().to_dict()

    def to_evaluation(self) -> Evaluation:
        """The result as the output record keeps it (with the intervals)."""
        kept = {name: {key: e.to_dict() for key, e in values.items()} for name, values in self.intervals.items()}
        if self.evaluation is not None:
            return replace(self.evaluation, intervals=kept or self.evaluation.intervals)
        return Evaluation(benchmark=self.benchmark, metrics=self.metrics, protocol=self.protocol, intervals=kept)


@dataclass
class BenchmarkRun:
    """One evaluation in progress: what the driver was given, and what the benchmark prepared.

    The driver fills the first fields; :meth:`Benchmark.prepare` sets :attr:`prompts`,
    :attr:`judge`, :attr:`metric_model` and, where they differ from the defaults, the others.
    """

    edited: Path
    record: OutputRecord
    options: Any
    images: ImageOptions
    compute: ComputeOptions = ComputeOptions()
    """Where the models and the judge run (the judge reads its ``device``)."""
    on_progress: ProgressCallback | None = None
    cancel: threading.Event | None = None
    prompts: list[PromptSpec] = field(default_factory=list)
    """The prompts rendered, in order (the driver renders each ``images.images_per_prompt`` times)."""
    judge: Any = None
    """What scores the images (a CLIP scorer, NudeNet, a classifier, ...)."""
    metric_model: str = ""
    """The judge as the protocol names it."""
    prompts_name: str | None = None
    result_name: str = ""
    """The result's name (default: the benchmark's)."""
    needs_base: bool = False
    """Render the base model's images whatever the caller asked (``fid`` without a reference, ``shapes``)."""
    fields: dict[str, Any] = field(default_factory=dict)
    """Protocol fields known before rendering (a Hub prompt set's id and commit, ...)."""
    state: dict[str, Any] = field(default_factory=dict)
    """The benchmark's own working values between its steps."""
    judges: JudgeCache | None = None
    """Judges kept across the evaluations of one run (a sweep's points); None: each run loads its own."""

    def load_judge(self, key: tuple[Hashable, ...], load: Callable[[], _J]) -> _J:
        """The judge named ``key`` (its kind, then its model and device): ``load()``, or the run's cached one."""
        if self.judges is None:
            return load()
        return self.judges.judge(key, load)

    def emit(self, event: ProgressEvent) -> None:
        """Send ``event`` to the run's progress callback (if any)."""
        if self.on_progress is not None:
            self.on_progress(event)


class Benchmark(ABC):
    """A benchmark: subclass it in a module of its own and register it (:func:`cpedit.eval.registry.register`).

    Class attributes:
        name: The benchmark's name (``cpedit eval NAME``, ``--eval NAME``, the result file).
        role: ``erasure`` (it measures what an edit removed; ``sweep``/``tune`` can optimise it)
            or ``preservation`` (it measures what an edit kept).
        options_type: Its typed options (a :class:`BenchmarkOptions` subclass).
        erased_metric: The metric of erasure (lower is better), or None.
        preserved_metric: The metric of preservation, or None.
        preserved_higher_is_better: False where a lower preserved metric is better (FID).
        default_images: The image options used when the caller gives none.
        images_folder: The folder under ``conceptprune/eval/images`` (default: :attr:`name`).
    """

    name: ClassVar[str]
    role: ClassVar[Role]
    options_type: ClassVar[type[BenchmarkOptions]]
    erased_metric: ClassVar[str | None] = None
    preserved_metric: ClassVar[str | None] = None
    preserved_higher_is_better: ClassVar[bool] = True
    default_images: ClassVar[ImageOptions] = ImageOptions()
    no_interval: ClassVar[Mapping[str, str]] = {}
    """Metrics that get no interval, and why (``fid``: a distance between two sets, not a mean over images)."""

    @property
    def images_folder(self) -> str:
        """The images folder's name under ``conceptprune/eval/images``."""
        return self.name

    def options(self, values: Mapping[str, Any] | None = None) -> BenchmarkOptions:
        """Typed options from ``values``: the fields of :attr:`options_type` found there and not None.

        Lets a front end that holds every benchmark's settings (a command's flags, a form) build
        the options of the benchmark chosen without knowing its fields.
        """
        known = {f.name for f in fields(self.options_type)}
        return self.options_type(**{k: v for k, v in (values or {}).items() if k in known and v is not None})

    def check_options(self, options: BenchmarkOptions | None) -> Any:
        """``options``, or the defaults; refuses another benchmark's options."""
        if options is None:
            return self.options_type()
        if not isinstance(options, self.options_type):
            raise CpeditError(
                f"the {self.name} benchmark takes {self.options_type.__name__}, not {type(options).__name__}",
                argument="options",
                reason="wrong_type",
            )
        return options

    def image_options(self, images: ImageOptions) -> ImageOptions:
        """The image options this benchmark renders with (some fix a field, see ``shapes``)."""
        return images

    def resolve(
        self,
        options: Any,
        *,
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> tuple[Any, dict[str, Any]]:
        """Load what ``options`` only name (a prompt set reference) once, for many runs.

        Returns the options with the loaded set and what identifies it (``prompts``,
        ``prompts_revision``, ``prompt_count``; empty when nothing was loaded).
        """
        ref = getattr(options, "prompts", None)
        if not isinstance(ref, (str, os.PathLike)):
            return options, {}
        limit, category = getattr(options, "limit", None), getattr(options, "category", None)
        loaded, about = load_set(ref, limit=limit, category=category, on_progress=on_progress, cancel=cancel)
        return replace(options, prompts=loaded), about

    def describe(self, options: Any, images: ImageOptions) -> dict[str, Any]:
        """The options as JSON for ``sweep.json`` (beside the generation settings and the prompt set)."""
        return {}

    def enlarge(self, options: Any, images: ImageOptions, factor: int) -> tuple[Any, ImageOptions]:
        """The options and image options that measure ``factor`` times the images (``tune``'s sequential step).

        By default more images per prompt (the same prompts, seeds ``seed + j``, so the images
        already made are reused); a benchmark that draws its prompts (``shapes``) draws more.
        """
        return options, replace(images, images_per_prompt=images.images_per_prompt * factor)

    @abstractmethod
    def prepare(self, run: BenchmarkRun) -> None:
        """Set the run's prompts, judge (loaded) and protocol fields known up front.

        Raises:
            CpeditError: Bad options, no prompts, a judge that cannot be loaded.
        """

    @abstractmethod
    def score(self, run: BenchmarkRun, phase: Phase, entries: Sequence[ImageEntry], folder: Path) -> Any:
        """Measure one phase's images (``before``: the base model's, ``after``: the edited model's).

        Returns the phase's measurement: by default a ``{metric: value}`` mapping (see :meth:`metrics`).
        """

    def metrics(self, run: BenchmarkRun, measured: dict[str, Any]) -> dict[str, dict[str, float]]:
        """The result's metrics from every phase's measurement: ``{metric: {phase: value}}``.

        A phase's measurement maps each metric to its value or to its per-image
        :class:`~cpedit.eval.intervals.Sample` (the metric is the sample's value).
        """
        out: dict[str, dict[str, float]] = {}
        for phase, values in measured.items():
            for key, value in values.items():
                out.setdefault(key, {})[phase] = value.value if isinstance(value, Sample) else value
        return out

    def samples(self, run: BenchmarkRun, measured: dict[str, Any]) -> dict[str, dict[str, Sample]]:
        """Each metric's per-image :class:`~cpedit.eval.intervals.Sample` by phase (``{metric: {phase: sample}}``)."""
        out: dict[str, dict[str, Sample]] = {}
        for phase, values in measured.items():
            if isinstance(values, Mapping):
                for key, value in values.items():
                    if isinstance(value, Sample):
                        out.setdefault(key, {})[phase] = value
        return out

    def intervals(self, run: BenchmarkRun, measured: dict[str, Any]) -> dict[str, dict[str, Estimate]]:
        """Every metric's 95% interval by phase, and ``change`` (after - before, paired per prompt).

        Proportions get Wilson's interval, means and counts a bootstrap over prompts
        (:mod:`cpedit.eval.intervals`); a metric without per-image values gets none.
        """
        out: dict[str, dict[str, Estimate]] = {}
        for name, phases in self.samples(run, measured).items():
            found = {phase: sample.estimate() for phase, sample in phases.items() if sample.values}
            if "before" in phases and "after" in phases:
                change = phases["after"].change(phases["before"])
                if change is not None:
                    found["change"] = change
            if found:
                out[name] = found
        return out

    def protocol_fields(self, run: BenchmarkRun, measured: dict[str, Any], rendered: RenderedImages) -> dict[str, Any]:
        """The benchmark's own protocol fields, added after the shared ones (:func:`protocol`)."""
        return {}

    def protocol(self, run: BenchmarkRun, measured: dict[str, Any], rendered: RenderedImages) -> dict[str, Any]:
        """How the images were made and measured: the shared fields, the run's, then the benchmark's."""
        result = protocol(
            run.record,
            run.prompts,
            benchmark=run.result_name or self.name,
            prompts_name=run.prompts_name,
            images=run.images,
            metric_model=run.metric_model,
        )
        result.update(run.fields)
        result.update(self.protocol_fields(run, measured, rendered))
        result["intervals"] = describe_method(none=self.no_interval)
        return result

    def evaluation(
        self, run: BenchmarkRun, metrics: dict[str, dict[str, float]], protocol: dict[str, Any]
    ) -> Evaluation | None:
        """The record form of a benchmark that keeps its own (None: the metric form)."""
        return None

    def done(self, run: BenchmarkRun, rendered: RenderedImages) -> ProgressEvent:
        """The event that ends the run."""
        return ProgressEvent(stage="done", message="evaluation done")


def load_set(
    ref: str | os.PathLike[str],
    *,
    limit: int | None = None,
    category: str | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Load a prompt set reference: the :class:`~cpedit.eval.prompt_sets.PromptSet`, and what identifies it.

    The second value (``prompts``, ``prompts_revision``, ``prompt_count``) is what a sweep records.
    """
    from cpedit.eval.prompt_sets import load_prompt_set

    loaded = load_prompt_set(ref, limit=limit, category=category, on_progress=on_progress, cancel=cancel)
    return loaded, {"prompts": loaded.name, "prompts_revision": loaded.revision, "prompt_count": len(loaded.prompts)}


def protocol(
    record: OutputRecord,
    prompts: Sequence[PromptSpec],
    *,
    benchmark: str,
    prompts_name: str | None,
    images: ImageOptions,
    metric_model: str,
) -> dict[str, Any]:
    """How the images were made and measured (no local path of the edited model)."""
    base = record.report.base_model
    digest = hashlib.sha256("\n".join(p.prompt for p in prompts).encode()).hexdigest()
    return {
        "benchmark": benchmark,
        "prompts": _prompts_label(prompts_name),
        "prompts_sha256": digest,
        "prompt_count": len(prompts),
        "images_per_prompt": images.images_per_prompt,
        "images": len(prompts) * images.images_per_prompt,
        "seed": images.seed,
        "seeds": [p.seed if p.seed is not None else images.seed for p in prompts],
        "seeding": "image j of a prompt: its seed (or seed) + j",
        "steps": images.steps,
        "guidance_scale": images.guidance_scale,
        "guidances": sorted({p.guidance for p in prompts if p.guidance is not None}),
        "height": images.height,
        "width": images.width,
        "base_model": None if base.local else (base.repo_id or base.id),
        "base_revision": None if base.local else (base.commit or base.revision),
        "metric_model": public_model_name(metric_model) if metric_model else metric_model,
    }


def public_model_name(model: str | os.PathLike[str]) -> str:
    """A judge or metric model as results and cards name it: a Hub id whole, a local folder as ``local:NAME``.

    A local path (``/home/alice/models/clip``) says where someone's files are and means nothing
    to a reader of a published card; its last part still says which model it was.
    """
    name = os.fspath(model)
    local = os.path.isabs(name) or name.startswith(("./", "../", "~")) or os.path.isdir(name) or "\\" in name
    if not local:
        return name
    last = name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    return f"local:{last}"


def _prompts_label(prompts_name: str | None) -> str:
    """A prompt set as results name it: a file by its name only (no local path), ``hub:``/``attack:`` refs whole."""
    if not prompts_name:
        return "given"
    if prompts_name.startswith(("hub:", "attack:")):
        return prompts_name
    return Path(prompts_name).name


def prompt_set_fields(
    prompts: Any, prompts_name: str | None, *, limit: int | None = None, category: str | None = None, run: Any = None
) -> tuple[list[PromptSpec], str | None, dict[str, Any]]:
    """Prompts given as a reference, a :class:`~cpedit.eval.prompt_sets.PromptSet` or a list: list, name, fields.

    A reference (a file, ``hub:``, ``attack:``) is loaded here (``limit``, ``category``; ``run``'s
    progress and cancel); a set's name and Hub revision go into the protocol.
    """
    from cpedit.eval.prompt_sets import PromptSet, load_prompt_set

    if isinstance(prompts, (str, os.PathLike)):
        prompts = load_prompt_set(
            prompts,
            limit=limit,
            category=category,
            on_progress=getattr(run, "on_progress", None),
            cancel=getattr(run, "cancel", None),
        )
    if isinstance(prompts, PromptSet):
        return list(prompts.prompts), prompts_name or prompts.name, prompts.protocol_fields()
    return list(prompts), prompts_name, {}


def prompt_groups(run: BenchmarkRun, count: int) -> list[int]:
    """Each of ``count`` images' prompt index: the driver renders ``images_per_prompt`` per prompt, in order."""
    per_prompt = run.images.images_per_prompt
    return [i // per_prompt for i in range(count)]


def chosen_prompts(prompts: Sequence[PromptSpec], limit: int | None) -> list[PromptSpec]:
    """The first ``limit`` prompts (all with None).

    Raises:
        CpeditError: No prompt left (``argument="prompts"``).
    """
    chosen = list(prompts)[:limit] if limit is not None else list(prompts)
    if not chosen:
        raise CpeditError("no prompts to evaluate with", argument="prompts")
    return chosen


def prepare_prompts(run: BenchmarkRun) -> None:
    """Set ``run``'s prompts, name and set fields from its :class:`PromptOptions` (loading a reference)."""
    options = run.options
    if options.prompts is None:
        raise CpeditError(f"the {run.result_name or 'benchmark'} needs prompts", argument="prompts", reason="missing")
    specs, run.prompts_name, run.fields = prompt_set_fields(
        options.prompts, options.prompts_name, limit=options.limit, category=options.category, run=run
    )
    run.prompts = chosen_prompts(specs, options.limit)
