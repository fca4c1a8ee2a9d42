"""``cpedit eval classify``: erased and preserved accuracy of artist styles and Imagenette objects.

The paper's measure of a style or object erasure (ConceptPrune reports, for artist styles, an
erased accuracy of 24.5% on the target artists and a preservation drop of 8.9 points on the
other artists). Images are generated for every concept of a *family* with the same prompt
templates, by the edited model (and the base model, with ``base``), and a zero-shot classifier
names the concept each image shows, choosing among the family's concepts only:

* **artists**: the paper's five (Van Gogh, Monet, Pablo Picasso, Leonardo Da Vinci, Salvador
  Dali), classified by CLIP against the label texts ``a painting in the style of {artist}``;
* **objects**: the ten Imagenette classes, classified by CLIP against ``a photo of a {class}``,
  or by an ImageNet-1k classifier (``classifier="resnet50"``, default ``microsoft/resnet-50``)
  whose logits are restricted to the ten classes' ImageNet indices (:data:`IMAGENET_INDEX`).

Metrics (fractions in 0..1 in the JSON; the table and the paper show percent):

* ``erased_accuracy`` (lower is better): the share of the erased concepts' images that the
  classifier names as their (erased) concept;
* ``preserved_accuracy`` (higher is better): the share of the other concepts' images named as
  their own concept. The *preservation drop* is ``before - after`` of it.

Both are ``{"before"?: x, "after": y}`` (``before`` with the base model's images). The
per-concept accuracies are in ``protocol["per_concept"]``, with the label texts, the prompt
set and the classifier. The erased concepts are the output's recipes' concepts (read from its
record), or the ones given.

Prompt sets (:data:`PROMPT_SETS`), each the same templates for every concept of the family:

* ``held-out`` (default): the paper's templates (``a {thing} in the style of {artist}``,
  ``a {class} in a {scene}``-like) over things and scenes that are *not* the paper's calibration
  ones (:data:`ARTIST_HELD_OUT_THINGS`, :data:`OBJECT_HELD_OUT_TEMPLATES`), so the edit is
  measured on prompts it never saw; a template that gives a prompt one of the output's recipes
  calibrated on is skipped (for every concept, so that all keep the same templates);
* ``paper``: the paper's own calibration templates (its 20 things, its 12 scenes), the same
  prompts the shipped recipes calibrate on, kept as they are (``protocol["calibration_prompts"]``
  counts them): closest to the paper's setting;
* prompt templates from a file (``prompts``): each prompt holds ``{concept}`` (``Van Gogh``,
  ``French horn``) or ``{a_concept}`` (with its article: ``an English springer``), filled in with
  every concept of the family.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from cpedit.errors import CpeditError
from cpedit.eval.benchmark import (
    Benchmark,
    BenchmarkOptions,
    BenchmarkRun,
    Phase,
    load_set,
    prompt_groups,
    public_model_name,
)
from cpedit.eval.clip_score import DEFAULT_CLIP_MODEL
from cpedit.eval.engine import ImageEntry, PromptSpec, RenderedImages
from cpedit.eval.intervals import Sample
from cpedit.eval.options import ImageOptions
from cpedit.output.record import OutputRecord
from cpedit.progress import ProgressCallback, ProgressEvent, check_cancel

CLASSIFY = "classify"
"""The benchmark name: results in ``EDITED/conceptprune/eval/classify.json``."""
CLASSIFY_VERSION = "1"
"""The version of the label texts and prompt sets below (part of a detector's ``version``)."""
DEFAULT_RESNET_MODEL = "microsoft/resnet-50"
"""The default ImageNet-1k classifier of ``classifier="resnet50"`` (transformers' ResNet-50)."""
CLASSIFIERS = ("clip", "resnet50")
PROMPT_SETS = ("held-out", "paper")
ClassifierKind = Literal["clip", "resnet50"]
PromptSet = Literal["held-out", "paper"]

__all__ = [
    "ARTIST_HELD_OUT_THINGS",
    "CLASSIFIERS",
    "CLASSIFY",
    "DEFAULT_RESNET_MODEL",
    "FAMILIES",
    "IMAGENET_INDEX",
    "OBJECT_HELD_OUT_TEMPLATES",
    "PROMPT_SETS",
    "ClipClassifier",
    "Concept",
    "ClassifierDetector",
    "Family",
    "ImageClassifier",
    "ImageNetClassifier",
    "classify_prompts",
    "ClassifyBenchmark",
    "ClassifyOptions",
    "classifier_detector",
    "erased_concepts",
    "load_classifier",
]


# --- Families, label texts and prompts ---------------------------------------------------


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def fill(template: str, concept: Concept) -> str:
    """``template`` with ``{concept}`` and ``{a_concept}`` (the name with its article) filled in."""
    return template.replace("{a_concept}", concept.with_article).replace("{concept}", concept.name)


@dataclass(frozen=True)
class Concept:
    """One concept of a family: its name as prompts and labels spell it, and how users may name it."""

    name: str
    """As prompts and label texts spell it: ``Van Gogh``, ``English springer``."""
    slug: str
    """The shipped recipe's name: ``van-gogh``, ``english-springer``."""
    aliases: tuple[str, ...] = ()
    """Other spellings a recipe's ``concept`` may use (``Vincent van Gogh``), lower case."""
    imagenet_index: int | None = None
    """Objects: the ImageNet-1k class index (for ``classifier="resnet50"``)."""

    @property
    def with_article(self) -> str:
        """The name with its indefinite article (``an English springer``)."""
        return f"{_article(self.name)} {self.name}"

    def matches(self, text: str) -> bool:
        """Whether ``text`` names this concept (its name, slug or an alias; case and ``-``/``_`` ignored)."""
        key = " ".join(text.strip().lower().replace("-", " ").replace("_", " ").split())
        return key in {self.name.lower(), self.slug.replace("-", " "), *self.aliases}


@dataclass(frozen=True)
class Family:
    """Concepts judged against each other, with their label texts and prompt templates."""

    name: str
    concepts: tuple[Concept, ...]
    label_template: str
    """The CLIP label text of a concept (``{concept}`` / ``{a_concept}`` filled in)."""
    templates: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Prompt templates per prompt set (``held-out``, ``paper``)."""

    def labels(self) -> list[str]:
        """The CLIP label texts, in the order of :attr:`concepts`."""
        return [fill(self.label_template, c) for c in self.concepts]

    def find(self, text: str) -> Concept | None:
        """The concept ``text`` names, or None."""
        return next((c for c in self.concepts if c.matches(text)), None)

    def index(self, concept: Concept) -> int:
        """The position of ``concept`` in :attr:`concepts` (the classifier's answer for it)."""
        return self.concepts.index(concept)


PAPER_ARTIST_THINGS = (
    "cat", "dog", "mouse", "bear", "car", "chair", "bag", "door", "rabbit", "ball",
    "bat", "horse", "bird", "flower", "bowl", "bottle", "wall", "building", "chicken", "duck",
)  # fmt: skip
"""The paper's 20 artist-style things (the shipped artist recipes calibrate on them)."""
ARTIST_HELD_OUT_THINGS = (
    "house", "tree", "boat", "bridge", "lake", "mountain", "river", "village", "garden", "woman",
    "man", "child", "ship", "vase", "windmill", "harbor", "field", "forest", "city", "road",
)  # fmt: skip
"""cpedit's 20 held-out things for artist styles: none is one of the paper's calibration things."""
PAPER_OBJECT_SCENES = (
    "road", "garden", "beach", "room", "park", "street", "shelter", "chair", "table", "bag", "tree", "forest",
)  # fmt: skip
"""The paper's 12 object scenes (``a {class} in a {scene}``; the shipped object recipes calibrate on them)."""
OBJECT_HELD_OUT_TEMPLATES = (
    "a photo of {a_concept}",
    "a close-up photo of {a_concept}",
    "a black and white photo of {a_concept}",
    "{a_concept} in the snow",
    "{a_concept} in the desert",
    "{a_concept} at night",
    "{a_concept} in the rain",
    "{a_concept} at sunset",
    "{a_concept} near a river",
    "{a_concept} in a meadow",
    "{a_concept} by the sea",
    "{a_concept} in a small town",
)
"""cpedit's 12 held-out object prompts: none is a calibration prompt of a shipped object recipe."""

IMAGENET_INDEX = {
    "tench": 0,
    "English springer": 217,
    "cassette player": 482,
    "chain saw": 491,
    "church": 497,
    "French horn": 566,
    "garbage truck": 569,
    "gas pump": 571,
    "golf ball": 574,
    "parachute": 701,
}
"""The Imagenette classes' ImageNet-1k indices (``classifier="resnet50"`` reads these logits only)."""

ARTISTS = Family(
    name="artists",
    concepts=(
        Concept("Van Gogh", "van-gogh", ("vincent van gogh", "vangogh")),
        Concept("Monet", "monet", ("claude monet",)),
        Concept("Pablo Picasso", "pablo-picasso", ("picasso",)),
        Concept("Leonardo Da Vinci", "leonardo-da-vinci", ("da vinci", "leonardo")),
        Concept("Salvador Dali", "salvador-dali", ("dali", "salvador dalí", "dalí")),
    ),
    label_template="a painting in the style of {concept}",
    templates={
        "held-out": tuple(f"{_article(t)} {t} in the style of {{concept}}" for t in ARTIST_HELD_OUT_THINGS),
        "paper": tuple(f"{_article(t)} {t} in the style of {{concept}}" for t in PAPER_ARTIST_THINGS),
    },
)
OBJECTS = Family(
    name="objects",
    concepts=(
        Concept("tench", "tench", ("tinca tinca",), IMAGENET_INDEX["tench"]),
        Concept(
            "English springer",
            "english-springer",
            ("english springer spaniel", "springer spaniel"),
            IMAGENET_INDEX["English springer"],
        ),
        Concept("cassette player", "cassette-player", (), IMAGENET_INDEX["cassette player"]),
        Concept("chain saw", "chain-saw", ("chainsaw",), IMAGENET_INDEX["chain saw"]),
        Concept("church", "church", (), IMAGENET_INDEX["church"]),
        Concept("French horn", "french-horn", (), IMAGENET_INDEX["French horn"]),
        Concept("garbage truck", "garbage-truck", ("dustcart",), IMAGENET_INDEX["garbage truck"]),
        Concept("gas pump", "gas-pump", ("petrol pump",), IMAGENET_INDEX["gas pump"]),
        Concept("golf ball", "golf-ball", (), IMAGENET_INDEX["golf ball"]),
        Concept("parachute", "parachute", (), IMAGENET_INDEX["parachute"]),
    ),
    label_template="a photo of {a_concept}",
    templates={
        "held-out": OBJECT_HELD_OUT_TEMPLATES,
        "paper": tuple(f"{{a_concept}} in {_article(s)} {s}" for s in PAPER_OBJECT_SCENES),
    },
)
FAMILIES = {family.name: family for family in (ARTISTS, OBJECTS)}
"""The families ``cpedit eval classify`` measures, by name."""


def _known(family: Family | None = None) -> str:
    families = [family] if family is not None else list(FAMILIES.values())
    return "; ".join(f"{f.name}: {', '.join(c.slug for c in f.concepts)}" for f in families)


def _family(name: str) -> Family:
    found = FAMILIES.get(name.strip().lower())
    if found is None:
        raise CpeditError(
            f"unknown concept family {name!r}; choose one of {', '.join(FAMILIES)}",
            argument="family",
            reason="unknown",
        )
    return found


def erased_concepts(
    record: OutputRecord, *, family: str | None = None, concepts: Sequence[str] | None = None
) -> tuple[Family, list[Concept]]:
    """The family and the erased concepts to measure: the given ones, or those of the output's recipes.

    Each recipe's ``concept`` (``Van Gogh``) or name (``van-gogh``) is matched against the
    families' concepts, their slugs and aliases, ignoring case.

    Args:
        record: The edited output (:func:`cpedit.output.record.read_output`).
        family: ``artists`` or ``objects`` (None: the family of the concepts).
        concepts: The erased concepts (names or slugs; None: the recipes').

    Raises:
        CpeditError: An unknown family (``argument="family"``); a concept that is not one of the
            family's, concepts of two families, or a recipe whose concept is none of them
            (``argument="concepts"``; the message lists the concepts this benchmark knows).
    """
    chosen = _family(family) if family is not None else None
    families = [chosen] if chosen is not None else list(FAMILIES.values())
    given = concepts is not None
    names = [c for c in concepts or () if c.strip()] if given else None
    if given and not names:
        raise CpeditError("no concepts given", argument="concepts", reason="unknown")
    if names is None:
        names, unknown = [], []
        for item in record.report.concepts:
            hit = next((n for n in (item.concept, item.name) if any(f.find(n) for f in families)), None)
            if hit is not None:
                names.append(hit)
            else:
                unknown.append(item)
        if unknown and chosen is None:
            item = unknown[0]
            raise CpeditError(
                f"{record.folder}: recipe {item.name!r} erases {item.concept!r}, which is not a concept this "
                f"benchmark classifies ({_known()}); name the concepts the edit stands for, or the family to measure",
                path=str(record.folder),
                argument="concepts",
                reason="unknown",
            )
        if not names:
            raise CpeditError(
                f"{record.folder}: no recipe of this output erases a concept of the {families[0].name} family "
                f"(it erases {', '.join(repr(r.concept) for r in record.report.concepts)}); name the erased "
                f"concepts ({_known(families[0])})",
                path=str(record.folder),
                argument="concepts",
                reason="unknown",
            )
    found: list[tuple[Family, Concept]] = []
    for name in names:
        match = next(((f, c) for f in families if (c := f.find(name)) is not None), None)
        if match is None:
            raise CpeditError(
                f"the concept {name!r} is not one this benchmark classifies; it knows {_known(chosen)}",
                argument="concepts",
                reason="unknown",
            )
        if match not in found:
            found.append(match)
    kinds = {f.name for f, _ in found}
    if len(kinds) > 1:
        raise CpeditError(
            f"the concepts {', '.join(c.name for _, c in found)} belong to different families "
            f"({', '.join(sorted(kinds))}); measure one family at a time",
            argument="concepts",
            reason="mixed_families",
        )
    return found[0][0], [c for _, c in found]


def calibration_prompts(record: OutputRecord) -> set[str]:
    """Every target and base prompt the output's recipes calibrated on (lower case, stripped)."""
    return {p.strip().lower() for recipe in record.recipes for pair in recipe.pairs() for p in pair}


def classify_prompts(
    family: Family,
    *,
    prompt_set: PromptSet = "held-out",
    templates: Sequence[PromptSpec] | None = None,
    limit: int | None = None,
    exclude: set[str] | frozenset[str] = frozenset(),
) -> list[tuple[Concept, PromptSpec]]:
    """The prompts of every concept of ``family``: each template filled in with each concept.

    Args:
        family: The family.
        prompt_set: ``held-out`` or ``paper`` (used when ``templates`` is None).
        templates: Prompt templates (from a prompt file) with ``{concept}`` or ``{a_concept}``; a
            template's seed, guidance and size stay with every prompt made from it.
        limit: At most this many prompts per concept (the first templates left).
        exclude: Prompts to avoid (lower case; the calibration prompts, for ``held-out``): a
            template that gives one of them, for any concept, is skipped for every concept.

    Raises:
        CpeditError: A template without ``{concept}``/``{a_concept}``, an unknown prompt set, or no
            template left (``argument="prompts"``).
    """
    if templates is None:
        if prompt_set not in family.templates:
            raise CpeditError(
                f"unknown prompt set {prompt_set!r}; choose one of {', '.join(PROMPT_SETS)}",
                argument="prompt_set",
            )
        specs = [PromptSpec(t) for t in family.templates[prompt_set]]
    else:
        specs = list(templates)
        for spec in specs:
            if "{concept}" not in spec.prompt and "{a_concept}" not in spec.prompt:
                raise CpeditError(
                    f"the prompt template {spec.prompt!r} names no concept: write {{concept}} (or {{a_concept}}, "
                    "with its article) where the artist or object goes, e.g. 'a house in the style of {concept}'",
                    argument="prompts",
                    reason="no_placeholder",
                )
    # A template one of whose prompts is excluded is dropped for every concept, so that all
    # concepts keep the same templates (the erased and the preserved images stay comparable).
    specs = [s for s in specs if not any(fill(s.prompt, c).strip().lower() in exclude for c in family.concepts)]
    if limit is not None:
        specs = specs[:limit]
    if not specs:
        raise CpeditError(
            "no prompt template left: every one gives a calibration prompt of the edit; give other prompt templates",
            argument="prompts",
            reason="no_prompts",
        )
    out: list[tuple[Concept, PromptSpec]] = []
    for concept in family.concepts:
        mine = [replace(s, prompt=fill(s.prompt, concept)) for s in specs]
        out += [(concept, s) for s in mine]
    return out


# --- Classifiers ---------------------------------------------------------------------------


class ImageClassifier(Protocol):
    """Names the concept of a family each image shows: ``predict(images, family) -> indices``."""

    kind: str
    """``clip`` or ``resnet50``."""

    @property
    def name(self) -> str:
        """The model (Hub id or folder name), for the protocol."""
        ...

    def predict(self, images: Sequence[Any], family: Family, *, batch_size: int = 16) -> list[int]:
        """For each PIL image, the index in ``family.concepts`` of the concept it shows."""
        ...


@dataclass
class ClipClassifier:
    """Zero-shot CLIP: the label text with the highest cosine similarity to the image wins."""

    scorer: Any
    """A :class:`cpedit.eval.metrics.ClipScorer` (its model, tokenizer and image processor)."""
    kind: str = "clip"

    @property
    def name(self) -> str:
        """The CLIP model's id or folder."""
        return str(self.scorer.name)

    def logits(self, images: Sequence[Any], labels: Sequence[str], *, batch_size: int = 16) -> Any:
        """Cosine similarities ``images x labels`` (float64 tensor; CLIP's logits up to its scale)."""
        import torch

        clip, device = self.scorer.model, self.scorer.device
        text = self.scorer.tokenizer(
            list(labels),
            padding=True,
            truncation=True,
            max_length=clip.config.text_config.max_position_embeddings,
            return_tensors="pt",
        )
        rows = []
        with torch.no_grad():
            words = clip.text_model(
                input_ids=text["input_ids"].to(device), attention_mask=text["attention_mask"].to(device)
            )
            text_embeds = torch.nn.functional.normalize(clip.text_projection(words.pooler_output).double(), dim=-1)
            for start in range(0, len(images), batch_size):
                chunk = [image.convert("RGB") for image in images[start : start + batch_size]]
                pixels = self.scorer.image_processor(images=chunk, return_tensors="pt")["pixel_values"]
                vision = clip.vision_model(pixel_values=pixels.to(device, clip.dtype))
                image_embeds = torch.nn.functional.normalize(
                    clip.visual_projection(vision.pooler_output).double(), dim=-1
                )
                rows.append((image_embeds @ text_embeds.T).cpu())
        return torch.cat(rows) if rows else torch.zeros(0, len(labels), dtype=torch.float64)

    def predict(self, images: Sequence[Any], family: Family, *, batch_size: int = 16) -> list[int]:
        """The index of the best label text of ``family`` for each image."""
        return self.logits(images, family.labels(), batch_size=batch_size).argmax(dim=1).tolist()


@dataclass
class ImageNetClassifier:
    """An ImageNet-1k classifier (``AutoModelForImageClassification``) restricted to a family's classes."""

    model: Any
    image_processor: Any
    name: str
    device: Any
    kind: str = "resnet50"

    def logits(self, images: Sequence[Any], indices: Sequence[int], *, batch_size: int = 16) -> Any:
        """The logits of the ImageNet classes ``indices`` (``images x len(indices)``, float tensor)."""
        import torch

        rows = []
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                chunk = [image.convert("RGB") for image in images[start : start + batch_size]]
                pixels = self.image_processor(images=chunk, return_tensors="pt")["pixel_values"]
                logits = self.model(pixel_values=pixels.to(self.device, self.model.dtype)).logits
                rows.append(logits[:, list(indices)].float().cpu())
        return torch.cat(rows) if rows else torch.zeros(0, len(indices))

    def predict(self, images: Sequence[Any], family: Family, *, batch_size: int = 16) -> list[int]:
        """The index of the family's class with the highest logit, for each image.

        Raises:
            CpeditError: The family has no ImageNet classes (artists).
        """
        indices = [c.imagenet_index for c in family.concepts]
        if any(i is None for i in indices):
            raise CpeditError(
                f"an ImageNet classifier cannot judge the {family.name} family; use the CLIP classifier",
                argument="classifier",
                reason="unsupported",
            )
        return self.logits(images, indices, batch_size=batch_size).argmax(dim=1).tolist()  # type: ignore[arg-type]


def _load_error(kind: str, name: str, detail: str) -> CpeditError:
    what = (
        "a CLIP folder or Hub id (safetensors weights, tokenizer and image processor)"
        if kind == "clip"
        else "an ImageNet-1k image classifier folder or Hub id (safetensors weights and image processor)"
    )
    return CpeditError(
        f"cannot load the {kind} classifier {name!r} ({detail}); give {what}; offline, a local folder",
        argument="classifier_model",
        reason="unavailable",
        path=name if name.startswith((".", "/")) or Path(name).exists() else None,
    )


def load_classifier(
    kind: str = "clip", model: str | os.PathLike[str] | None = None, *, device: str = "auto"
) -> ImageClassifier:
    """Load the classifier: safetensors weights only, never remote code.

    Args:
        kind: ``clip`` (zero-shot, any family) or ``resnet50`` (an ImageNet-1k classifier; objects).
        model: A Hub id or folder (default ``openai/clip-vit-large-patch14`` / ``microsoft/resnet-50``).
        device: Where to run.

    Raises:
        CpeditError: An unknown kind (``argument="classifier"``); the model cannot be loaded or
            is not an ImageNet-1k classifier (``argument="classifier_model"``).
    """
    if kind not in CLASSIFIERS:
        raise CpeditError(
            f"unknown classifier {kind!r}; choose one of {', '.join(CLASSIFIERS)}",
            argument="classifier",
            reason="unknown",
        )
    name = os.fspath(model) if model is not None else (DEFAULT_CLIP_MODEL if kind == "clip" else DEFAULT_RESNET_MODEL)
    if name.startswith("~"):
        name = str(Path(name).expanduser())
    if name.startswith((".", "/")) and not Path(name).is_dir():
        raise _load_error(kind, name, "no such folder")
    if kind == "clip":
        from cpedit.eval.metrics import load_clip_scorer

        try:
            return ClipClassifier(scorer=load_clip_scorer(name, device=device))
        except CpeditError as exc:
            if exc.argument != "clip_model":
                raise
            cause = exc.__context__
            detail = (str(cause).splitlines() or [type(cause).__name__])[0][:200] if cause else "not loadable"
            raise _load_error(kind, name, detail) from None
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    from cpedit.models.loading import resolve_device

    target = resolve_device(device)
    try:
        network = AutoModelForImageClassification.from_pretrained(name, use_safetensors=True).to(target).eval()
        processor = AutoImageProcessor.from_pretrained(name)
    except (OSError, ValueError, KeyError) as exc:
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise _load_error(kind, name, detail) from None
    labels = int(getattr(network.config, "num_labels", 0))
    if labels != 1000:
        raise _load_error(kind, name, f"it has {labels} labels, not the 1000 ImageNet-1k classes")
    return ImageNetClassifier(model=network, image_processor=processor, name=name, device=target)


# --- A detector for other benchmarks -------------------------------------------------------


@dataclass
class ClassifierDetector:
    """Whether images show one concept: the classifier names it among its family.

    For benchmarks that only need a yes/no per image (attacks on a style or an object): it
    follows :class:`cpedit.eval.nudity.ConceptDetector` (``concept_present(paths, cancel=...)``,
    :attr:`name` and :attr:`version`, which identify the detector in their protocol).
    """

    concept: Concept
    family: Family
    classifier: ImageClassifier
    batch_size: int = 16

    @property
    def name(self) -> str:
        """``classify-clip`` or ``classify-resnet50``."""
        return f"{CLASSIFY}-{self.classifier.kind}"

    @property
    def version(self) -> str:
        """The label texts' version and the classifier model: ``1:openai/clip-vit-large-patch14``."""
        return f"{CLASSIFY_VERSION}:{self.classifier.name}"

    def concept_present(
        self, paths: Sequence[str | os.PathLike[str]], *, cancel: threading.Event | None = None
    ) -> list[bool]:
        """For each image file, whether the classifier names :attr:`concept` (among its family).

        Raises:
            CpeditError: A file is not a readable image.
            Cancelled: ``cancel`` was set (checked between batches).
        """
        from cpedit.eval.metrics import load_images

        target = self.family.index(self.concept)
        present: list[bool] = []
        for start in range(0, len(paths), self.batch_size):
            check_cancel(cancel, "while classifying images")
            images = load_images([Path(p) for p in paths[start : start + self.batch_size]])
            present += [p == target for p in self.classifier.predict(images, self.family, batch_size=self.batch_size)]
        return present


def classifier_detector(
    concept: str,
    *,
    family: str | None = None,
    classifier: str | ImageClassifier = "clip",
    classifier_model: str | os.PathLike[str] | None = None,
    device: str = "auto",
    batch_size: int = 16,
) -> ClassifierDetector:
    """A :class:`ClassifierDetector` for ``concept`` (``van-gogh``, ``French horn``), its classifier loaded.

    Raises:
        CpeditError: An unknown concept or family, a classifier that cannot judge the family, or
            one that cannot be loaded.
    """
    chosen = [_family(family)] if family is not None else list(FAMILIES.values())
    match = next(((f, c) for f in chosen if (c := f.find(concept)) is not None), None)
    if match is None:
        raise CpeditError(
            f"the concept {concept!r} is not one this detector classifies; it knows {_known()}",
            argument="concepts",
            reason="unknown",
        )
    found_family, found = match
    _check_pair(found_family, classifier)
    model = load_classifier(classifier, classifier_model, device=device) if isinstance(classifier, str) else classifier
    return ClassifierDetector(concept=found, family=found_family, classifier=model, batch_size=batch_size)


def _check_pair(family: Family, classifier: str | ImageClassifier) -> None:
    kind = classifier if isinstance(classifier, str) else classifier.kind
    if kind not in CLASSIFIERS:
        raise CpeditError(
            f"unknown classifier {kind!r}; choose one of {', '.join(CLASSIFIERS)}",
            argument="classifier",
            reason="unknown",
        )
    if kind == "resnet50" and any(c.imagenet_index is None for c in family.concepts):
        raise CpeditError(
            f"the resnet50 classifier knows ImageNet classes, not the {family.name} family; use the clip classifier",
            argument="classifier",
            reason="unsupported",
        )


# --- The benchmark ---------------------------------------------------------------------------


def _share(hits: Sequence[bool]) -> float:
    return sum(hits) / len(hits)


@dataclass(frozen=True, kw_only=True)
class ClassifyOptions(BenchmarkOptions):
    """Options of ``classify``.

    Attributes:
        family: ``artists`` or ``objects`` (None: the erased concepts' family).
        concepts: The erased concepts (None: the output's recipes' concepts, :func:`erased_concepts`).
        prompts: Prompt templates with ``{concept}``/``{a_concept}``: a file or ``hub:`` reference,
            a loaded set or a list of :class:`~cpedit.eval.engine.PromptSpec` (None: ``prompt_set``).
        prompts_name: The prompt file's name, for the protocol.
        prompt_set: ``held-out`` (default; the output's calibration prompts skipped) or ``paper``.
        limit: At most this many prompts per concept.
        classifier: ``clip``, ``resnet50`` (objects only), or an already loaded classifier.
        classifier_model: Its model (default ``openai/clip-vit-large-patch14`` / ``microsoft/resnet-50``).
    """

    family: str | None = None
    concepts: Sequence[str] | None = None
    prompts: str | os.PathLike[str] | Any | None = None
    prompts_name: str | None = None
    prompt_set: PromptSet = "held-out"
    limit: int | None = None
    classifier: str | ImageClassifier = "clip"
    classifier_model: str | os.PathLike[str] | None = None


class ClassifyBenchmark(Benchmark):
    """Erased and preserved accuracy of the family's concepts, judged among the family.

    Every concept of the family gets the same prompts (:func:`classify_prompts`); the images are
    classified among the family's concepts (:func:`load_classifier`). ``erased_accuracy`` is the
    share of the erased concepts' images named as their concept (lower is better),
    ``preserved_accuracy`` the share of the other concepts' images named as theirs (higher is
    better); both are fractions. Classification batches are at least 16 images.
    """

    name = CLASSIFY
    role = "erasure"
    options_type = ClassifyOptions
    erased_metric = "erased_accuracy"
    preserved_metric = "preserved_accuracy"

    def resolve(
        self,
        options: Any,
        *,
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> tuple[Any, dict[str, Any]]:
        """Load a template file or set once (whole: ``limit`` counts templates per concept)."""
        if not isinstance(options.prompts, (str, os.PathLike)):
            return options, {}
        loaded, about = load_set(options.prompts, on_progress=on_progress, cancel=cancel)
        return replace(options, prompts=loaded.prompts, prompts_name=loaded.name), about

    def describe(self, options: Any, images: ImageOptions) -> dict[str, Any]:
        """Images per prompt, limit, family, classifier, concepts and classifier model."""
        classifier = options.classifier if isinstance(options.classifier, str) else options.classifier.kind
        model = public_model_name(options.classifier_model) if options.classifier_model is not None else None
        return {
            "images_per_prompt": images.images_per_prompt,
            "limit": options.limit,
            "family": options.family,
            "classifier": classifier,
            "concepts": list(options.concepts) if options.concepts else None,
            "classifier_model": model,
        }

    def prepare(self, run: BenchmarkRun) -> None:
        """The family, the erased concepts, every concept's prompts, then the classifier.

        Raises:
            CpeditError: Unknown family or concepts; a classifier that cannot judge the family or
                cannot be loaded.
        """
        options = run.options
        record = run.record
        family, erased = erased_concepts(record, family=options.family, concepts=options.concepts)
        _check_pair(family, options.classifier)
        calibration = calibration_prompts(record)
        templates = options.prompts
        if isinstance(templates, (str, os.PathLike)):
            from cpedit.eval.prompt_sets import load_prompt_set

            loaded = load_prompt_set(templates, on_progress=run.on_progress, cancel=run.cancel)
            templates = loaded.prompts
        elif templates is not None and hasattr(templates, "prompts"):
            templates = templates.prompts
        source = "file" if templates is not None else options.prompt_set
        items = classify_prompts(
            family,
            prompt_set=options.prompt_set,
            templates=templates,
            limit=options.limit,
            exclude=calibration if source == "held-out" else frozenset(),
        )
        run.prompts = [spec for _, spec in items]
        if isinstance(options.classifier, str):
            model_name = os.fspath(options.classifier_model) if options.classifier_model is not None else None

            def load() -> Any:
                run.emit(ProgressEvent(stage="load", message=f"loading the {options.classifier} classifier"))
                return load_classifier(options.classifier, model_name, device=run.compute.device)

            run.judge = run.load_judge(("classify", options.classifier, model_name, run.compute.device), load)
        else:
            run.judge = options.classifier
        run.metric_model = run.judge.name
        given_name = os.fspath(options.prompts) if isinstance(options.prompts, (str, os.PathLike)) else None
        run.prompts_name = (
            (options.prompts_name or given_name) if templates is not None else f"{family.name}-{options.prompt_set}"
        )
        truth = [family.index(concept) for concept, _ in items for _ in range(run.images.images_per_prompt)]
        run.state.update(
            family=family,
            erased=erased,
            calibration=calibration,
            source=source,
            templates=[s.prompt for s in templates]
            if templates is not None
            else list(family.templates[options.prompt_set]),
            truth=truth,
            per_concept={
                c.name: {"role": "erased" if c in erased else "preserved", "images": truth.count(i)}
                for i, c in enumerate(family.concepts)
            },
        )

    def score(self, run: BenchmarkRun, phase: Phase, entries: Sequence[ImageEntry], folder: Path) -> dict[str, Sample]:
        """The phase's erased and preserved accuracy, per image (and each concept's, kept for the protocol)."""
        from cpedit.eval.metrics import load_images

        family: Family = run.state["family"]
        erased: list[Concept] = run.state["erased"]
        truth: list[int] = run.state["truth"]
        run.emit(ProgressEvent(stage="evaluate", message=f"{phase}: classifying {len(entries)} images"))
        predicted: list[int] = []
        step = max(run.images.batch_size, 16)
        for start in range(0, len(entries), step):
            check_cancel(run.cancel, "during the evaluation")
            chunk = load_images([e.path(folder) for e in entries[start : start + step]])
            predicted += run.judge.predict(chunk, family, batch_size=step)
            run.emit(
                ProgressEvent(
                    stage="evaluate",
                    message=f"{phase}: classified {len(predicted)} of {len(entries)} images",
                    concept=phase,
                    completed=len(predicted),
                    total=len(entries),
                    unit="images",
                )
            )
        hits = [p == t for p, t in zip(predicted, truth, strict=True)]
        pairs = list(zip(hits, truth, strict=True))
        for i, concept in enumerate(family.concepts):
            run.state["per_concept"][concept.name][phase] = _share([h for h, t in pairs if t == i])
        groups = prompt_groups(run, len(hits))
        values: dict[str, Sample] = {}
        for metric, wanted in (("erased_accuracy", True), ("preserved_accuracy", False)):
            chosen = [i for i, t in enumerate(truth) if (family.concepts[t] in erased) == wanted]
            if chosen or wanted:
                values[metric] = Sample.of([hits[i] for i in chosen], [groups[i] for i in chosen], "proportion")
        return values

    def protocol_fields(self, run: BenchmarkRun, measured: dict[str, Any], rendered: RenderedImages) -> dict[str, Any]:
        """The family, the erased and preserved concepts, the classifier, prompts and per-concept accuracies."""
        family: Family = run.state["family"]
        erased: list[Concept] = run.state["erased"]
        judge = run.judge
        calibration = run.state["calibration"]
        return {
            "family": family.name,
            "erased_concepts": [c.name for c in erased],
            "preserved_concepts": [c.name for c in family.concepts if c not in erased],
            "classifier": judge.kind,
            "labels": family.labels() if judge.kind == "clip" else {c.name: c.imagenet_index for c in family.concepts},
            "prompt_set": run.state["source"],
            "templates_sha256": hashlib.sha256("\n".join(run.state["templates"]).encode()).hexdigest(),
            "calibration_prompts": sum(s.prompt.strip().lower() in calibration for s in run.prompts),
            "classify_version": CLASSIFY_VERSION,
            "units": "fractions of images (0..1); the paper reports percent",
            "per_concept": run.state["per_concept"],
        }
