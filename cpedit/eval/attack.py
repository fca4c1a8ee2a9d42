"""``cpedit eval attack``: how often adversarial prompts from the literature bring an erased concept back.

The score is the attack success rate (ASR): the share of images in which the concept's
detector finds the concept (for nudity: NudeNet finds any of the nine exposed classes above
the threshold, :class:`cpedit.eval.nudity.NudityConcept`). Lower after the edit is better. The
result, in ``EDITED/conceptprune/eval/attack-SET.json`` for a known set (``attack.json`` for
prompts of your own), so the results of several sets sit side by side::

    {"attack_success_rate": {"before": 0.87, "after": 0.12},
     "protocol": {"attack_set": "mma-diffusion", "detector": "nudenet-320n", "threshold": 0.5, ...}}

The detector is pluggable: anything with ``name``, ``version`` and
``concept_present(paths) -> list[bool]`` (:class:`cpedit.eval.nudity.ConceptDetector`), so a
style or object classifier can judge other concepts.

Known sets (:data:`~cpedit.eval.attack_sets.ATTACK_SETS`). Their Hub locations were taken from the authors' READMEs
where the search found them, and are marked ``verified=False`` where they could not be
checked here (no network while this was written): if a download says "not found", pass the
set's prompts yourself with ``prompts="hub:OWNER/NAME[/FILE]"`` or a local file.

- ``mma-diffusion``: Yang et al., *MMA-Diffusion: MultiModal Attack on Diffusion Models*,
  CVPR 2024. ``YijunYang280/MMA-Diffusion-NSFW-adv-prompts-benchmark`` (gated: accept the
  conditions on its page), 1,000 adversarial prompts, column ``adv_prompt``.
- ``p4d``: Chin et al., *Prompting4Debugging: Red-Teaming Text-to-Image Diffusion Models by
  Finding Problematic Prompts*, ICML 2024. ``joycenerd/p4d`` (its README's dataset link); the
  file and column are not verified.
- ``ring-a-bell``: Tsai et al., *Ring-A-Bell! How Reliable are Concept Removal Methods for
  Diffusion Models?*, ICLR 2024. The prompts are published with the code
  (github.com/chiayi-hsu/Ring-A-Bell); the Hub id here is a guess, not verified.
- ``unlearndiffatk``: Zhang et al., *To Generate or Not? Safety-Driven Unlearned Diffusion
  Models Are Still Easy To Generate Unsafe Images ... For Now*, ECCV 2024. The prompts are
  published with the code (github.com/OPTML-Group/Diffusion-MU-Attack, ``prompts/nudity.csv``),
  not as a Hub dataset as far as known: give that file as the prompts.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cpedit.errors import CpeditError
from cpedit.eval.attack_sets import find_attack_set
from cpedit.eval.benchmark import (
    Benchmark,
    BenchmarkRun,
    Phase,
    PromptOptions,
    chosen_prompts,
    prompt_groups,
    prompt_set_fields,
)
from cpedit.eval.engine import ImageEntry, RenderedImages
from cpedit.eval.intervals import Sample
from cpedit.eval.nudity import DEFAULT_THRESHOLD, ConceptDetector, NudityConcept, check_threshold
from cpedit.eval.options import ImageOptions
from cpedit.progress import ProgressCallback, ProgressEvent

ATTACK = "attack"

__all__ = ["AttackBenchmark", "AttackOptions", "concept_detector"]


def concept_detector(
    concept: str,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    classifier_model: str | os.PathLike[str] | None = None,
    device: str = "auto",
) -> ConceptDetector:
    """The default detector of ``concept``.

    ``nudity``: NudeNet (:class:`cpedit.eval.nudity.NudityConcept`, ``threshold``); an artist or
    an Imagenette class (``van-gogh``, ``church``): the ``classify`` benchmark's zero-shot CLIP
    (:func:`cpedit.eval.classify.classifier_detector`, ``classifier_model`` or its default),
    which counts an image when it is classified as the concept among its family.

    Raises:
        CpeditError: No detector is known for the concept (pass one as ``detector``).
    """
    if concept.strip().lower() == "nudity":
        return NudityConcept(threshold=threshold)
    from cpedit.eval.classify import classifier_detector

    try:
        return classifier_detector(concept, classifier_model=classifier_model, device=device)
    except CpeditError as exc:
        if exc.reason != "unknown":
            raise
        raise CpeditError(
            f"no detector is known for the concept {concept!r}: nudity (NudeNet), an artist or an Imagenette "
            f"class (CLIP) are; from Python, pass one (name, version, concept_present(paths)). {exc}",
            argument="concept",
            reason="unknown",
        ) from None


@dataclass(frozen=True, kw_only=True)
class AttackOptions(PromptOptions):
    """Options of ``attack`` (and the prompt set of :class:`~cpedit.eval.benchmark.PromptOptions`).

    Attributes:
        attack_set: A known set (:data:`~cpedit.eval.attack_sets.ATTACK_SETS`); its prompts are
            loaded from the Hub unless ``prompts`` are given, and its concept picks the detector.
        prompts: The adversarial prompts, overriding the set's own.
        concept: The concept the prompts attack (default: the set's, else ``nudity``).
        threshold: The score above which the default nudity detector counts a detection.
        detector: A :class:`cpedit.eval.nudity.ConceptDetector` (default: the concept's,
            :func:`concept_detector`).
        classifier_model: The CLIP model of the default detector of an artist or object concept.
    """

    attack_set: str | None = None
    concept: str | None = None
    threshold: float = DEFAULT_THRESHOLD
    detector: ConceptDetector | None = None
    classifier_model: str | os.PathLike[str] | None = None

    def __post_init__(self) -> None:
        check_threshold(self.threshold)


class AttackBenchmark(Benchmark):
    """Attack success rate: the share of images in which the concept's detector finds the concept."""

    name = ATTACK
    role = "erasure"
    options_type = AttackOptions
    erased_metric = "attack_success_rate"

    def resolve(
        self,
        options: Any,
        *,
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> tuple[Any, dict[str, Any]]:
        """Load the prompts (the set's own unless given) once, for many runs.

        Raises:
            CpeditError: Neither a known set nor prompts (``argument="prompts"``).
        """
        if options.prompts is None:
            if options.attack_set is None:
                raise CpeditError(
                    "the attack benchmark needs a known attack set or a prompt set",
                    reason="missing",
                    argument="prompts",
                )
            options = replace(options, prompts=f"attack:{options.attack_set}")
        return super().resolve(options, on_progress=on_progress, cancel=cancel)

    def describe(self, options: Any, images: ImageOptions) -> dict[str, Any]:
        """The threshold, images per prompt and the attack set."""
        return {
            "threshold": options.threshold,
            "images_per_prompt": images.images_per_prompt,
            "attack_set": options.attack_set,
        }

    def prepare(self, run: BenchmarkRun) -> None:
        """The set's prompts (loaded unless given), then the concept's detector (unless given).

        Raises:
            CpeditError: Unknown set, a gated set without access (``reason="gated"``), no
                detector for the concept, no prompts.
        """
        options = run.options
        entry = find_attack_set(options.attack_set) if options.attack_set is not None else None
        prompts = options.prompts
        if prompts is None:
            if entry is None:
                raise CpeditError("give an attack set or the adversarial prompts", argument="prompts")
            from cpedit.eval.prompt_sets import load_prompt_set

            prompts = load_prompt_set(
                entry.prompts_ref(),
                column=entry.column,
                limit=options.limit,
                on_progress=run.on_progress,
                cancel=run.cancel,
            )
        specs, run.prompts_name, run.fields = prompt_set_fields(
            prompts, options.prompts_name, limit=options.limit, category=options.category, run=run
        )
        run.prompts = chosen_prompts(specs, options.limit)
        run.result_name = f"{ATTACK}-{entry.name}" if entry is not None else ATTACK  # one result file per known set
        concept = options.concept or (entry.concept if entry is not None else "nudity")
        detector = options.detector
        if detector is None:

            def load() -> Any:
                run.emit(ProgressEvent(stage="load", message=f"loading the {concept} detector"))
                return concept_detector(
                    concept,
                    threshold=options.threshold,
                    classifier_model=options.classifier_model,
                    device=run.compute.device,
                )

            key = ("attack", concept, options.threshold, str(options.classifier_model), run.compute.device)
            detector = run.load_judge(key, load)
        run.judge = detector
        run.metric_model = f"{detector.name} {detector.version}"
        run.state.update(entry=entry, concept=concept)

    def score(self, run: BenchmarkRun, phase: Phase, entries: Sequence[ImageEntry], folder: Path) -> dict[str, Sample]:
        """The share of the phase's images in which the detector finds the concept (per image: found or not)."""
        detector = run.judge
        run.emit(ProgressEvent(stage="evaluate", message=f"{phase}: {detector.name} on {len(entries)} images"))
        present = detector.concept_present([e.path(folder) for e in entries], cancel=run.cancel)
        return {"attack_success_rate": Sample.of(present, prompt_groups(run, len(present)), "proportion")}

    def protocol_fields(self, run: BenchmarkRun, measured: dict[str, Any], rendered: RenderedImages) -> dict[str, Any]:
        """The attack set, its citation, the concept and its detector."""
        entry = run.state["entry"]
        detector = run.judge
        return {
            "attack_set": entry.name if entry is not None else None,
            "attack_citation": entry.citation if entry is not None else None,
            "concept": run.state["concept"],
            "detector": detector.name,
            "detector_version": detector.version,
            "threshold": getattr(detector, "threshold", run.options.threshold),
            "success": "an image in which the detector finds the concept",
        }
