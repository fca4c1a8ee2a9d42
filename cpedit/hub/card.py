"""The model card (README.md) of a cpedit output, generated from what the run recorded.

Everything in the card comes from the output folder: ``conceptprune/report.json``, the
recipes stored verbatim in ``conceptprune/recipes/``, the evaluation results in
``conceptprune/eval/*.json`` and the preview grid ``conceptprune/preview.png``; the license
comes from the base model's card (on the Hub, or the copy the output folder keeps). Nothing is
typed by hand and nothing is guessed: a field that was not recorded is left out. Local paths
never appear (a local base model is "a local model").

The metadata uses ``base_model_relation: finetune``: the Hub knows four relations (adapter,
merge, quantized, finetune); a pruned model is the base model with some of its own weights
changed (set to zero), shipped as full weights, which is neither an adapter, a merge of several
models nor a quantization, so it is the Hub's "finetune" (a derivative with modified weights).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cpedit.errors import CpeditError, RecipeError
from cpedit.output import POSITIONS_FILE, PREVIEW_FILE, RECORD_DIR, REPORT_FILE
from cpedit.recipes import Recipe, parse_recipe
from cpedit.shapes.model import BUILTIN_MODEL_NAME, is_builtin_model

EVAL_DIR = "eval"
"""``DIR/conceptprune/eval/<benchmark>.json``: evaluation results, one file per benchmark."""
EVAL_KEYS = {"concepts", "images", "erased", "preserved", "pruned_fraction"}
BASE_MODEL_RELATION = "finetune"
BASE_TAGS = ("conceptprune", "concept-erasure", "cpedit")
PAPER = (
    "Chavhan, Li, Hospedales, *ConceptPrune: Concept Editing in Diffusion Models via Skilled Neuron "
    "Pruning*, ICLR 2025, [arXiv:2405.19237](https://arxiv.org/abs/2405.19237)"
)
BIBTEX = """@inproceedings{chavhan2025conceptprune,
  title     = {ConceptPrune: Concept Editing in Diffusion Models via Skilled Neuron Pruning},
  author    = {Chavhan, Ruchika and Li, Da and Hospedales, Timothy},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2025},
  eprint    = {2405.19237},
  archivePrefix = {arXiv}
}"""


@dataclass(frozen=True)
class Evaluation:
    """One ``conceptprune/eval/<benchmark>.json`` file."""

    benchmark: str
    concepts: list[str]
    images: int
    erased: dict[str, float]
    preserved: dict[str, float]
    pruned_fraction: float


@dataclass(frozen=True)
class OutputRecord:
    """A checked cpedit output folder and what its run recorded."""

    folder: Path
    report: dict[str, Any]
    recipes: list[Recipe]
    evaluations: list[Evaluation] = field(default_factory=list)
    preview: Path | None = None

    @property
    def base_repo_id(self) -> str | None:
        """The base model's Hub id, None for a local base model."""
        base = self.report.get("base_model") or {}
        if base.get("local") or not isinstance(base.get("id"), str) or is_builtin_model(base["id"]):
            return None
        return base["id"]

    @property
    def base_is_builtin(self) -> bool:
        """Whether the base is cpedit's built-in shapes model (not on the Hub)."""
        base = self.report.get("base_model") or {}
        return isinstance(base.get("id"), str) and is_builtin_model(base["id"])


def slugify(text: str) -> str:
    """``Van Gogh`` -> ``van-gogh`` (lowercase letters, digits, single hyphens)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def read_output(folder: str | os.PathLike[str]) -> OutputRecord:
    """Check that ``folder`` is a complete cpedit output and read what its run recorded.

    Raises:
        CpeditError: It is not a cpedit output, the record does not parse, or files are
            missing; the message says which.
    """
    path = Path(folder)
    if not path.is_dir():
        raise CpeditError(f"{folder} is not a folder")
    if ".partial" in path.name or ".old-" in path.name:
        raise CpeditError(
            f"{folder} is an unfinished or replaced cpedit output (a temporary folder); use the final one"
        )
    leftovers = sorted(str(p.relative_to(path)) for p in path.rglob("*.partial*"))
    if leftovers:
        raise CpeditError(f"{folder} holds unfinished files ({', '.join(leftovers[:3])}); it is not a complete output")
    report_path = path / RECORD_DIR / REPORT_FILE
    if not report_path.is_file():
        raise CpeditError(f"{folder} is not a cpedit output (no {RECORD_DIR}/{REPORT_FILE})")
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CpeditError(
            f"{folder} is not a valid cpedit output: {RECORD_DIR}/{REPORT_FILE} does not parse ({exc})"
        ) from None
    problems = _report_problems(report)
    if problems:
        raise CpeditError(f"{folder} is not a valid cpedit output: {RECORD_DIR}/{REPORT_FILE} {problems}")
    if not (path / "model_index.json").is_file():
        raise CpeditError(f"{folder} is not a complete cpedit output: model_index.json is missing")
    component = report["denoiser"]["component"]
    if not list((path / component).glob("*.safetensors")):
        raise CpeditError(f"{folder} is not a complete cpedit output: no weights in {component}/ (*.safetensors)")
    if not (path / RECORD_DIR / POSITIONS_FILE).is_file():
        raise CpeditError(f"{folder} is not a complete cpedit output: {RECORD_DIR}/{POSITIONS_FILE} is missing")
    recipes = []
    for concept in report["concepts"]:
        recipe_path = path / concept["recipe"]
        try:
            text = recipe_path.read_text(encoding="utf-8")
        except OSError:
            raise CpeditError(f"{folder} is not a complete cpedit output: {concept['recipe']} is missing") from None
        try:
            recipes.append(parse_recipe(text, source=concept["recipe"]))
        except RecipeError as exc:
            raise CpeditError(f"{folder}: its recorded recipe is invalid:\n{exc}") from None
    preview = path / RECORD_DIR / PREVIEW_FILE
    return OutputRecord(
        folder=path,
        report=report,
        recipes=recipes,
        evaluations=read_evaluations(path),
        preview=preview if preview.is_file() else None,
    )


def _report_problems(report: Any) -> str:
    if not isinstance(report, dict):
        return "is not a JSON object"
    for key, kind in (
        ("base_model", dict),
        ("denoiser", dict),
        ("concepts", list),
        ("layers", list),
        ("totals", dict),
        ("versions", dict),
    ):
        if not isinstance(report.get(key), kind):
            return f"has no {key!r} ({kind.__name__})"
    if report["denoiser"].get("component") not in ("unet", "transformer"):
        return "names no denoiser component"
    if not report["concepts"]:
        return "records no concept"
    for concept in report["concepts"]:
        if not isinstance(concept, dict) or not isinstance(concept.get("recipe"), str):
            return "has a concept without its recipe file"
        recipe = Path(concept["recipe"])
        if recipe.is_absolute() or ".." in recipe.parts or recipe.parts[:1] != (RECORD_DIR,):
            return f"points to a recipe outside {RECORD_DIR}/: {concept['recipe']!r}"
    for key in ("pruned_weights", "unet_weights", "pruned_fraction"):
        if not isinstance(report["totals"].get(key), (int, float)):
            return f"has no totals.{key}"
    return ""


def read_evaluations(folder: str | os.PathLike[str]) -> list[Evaluation]:
    """The evaluation results in ``folder/conceptprune/eval/*.json``, by benchmark name.

    Each file holds exactly ``{"concepts": [...], "images": N, "erased": {"before": f, "after": f},
    "preserved": {"before": f, "after": f}, "pruned_fraction": f}``.

    Raises:
        CpeditError: A file does not follow that format (the message names it).
    """
    results = []
    for file in sorted((Path(folder) / RECORD_DIR / EVAL_DIR).glob("*.json")):
        where = f"{RECORD_DIR}/{EVAL_DIR}/{file.name}"
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CpeditError(f"{where} does not parse ({exc})") from None
        if not isinstance(data, dict) or set(data) != EVAL_KEYS:
            raise CpeditError(f"{where} must hold exactly the keys {sorted(EVAL_KEYS)}")
        ok = (
            isinstance(data["concepts"], list)
            and all(isinstance(c, str) for c in data["concepts"])
            and isinstance(data["images"], int)
            and _is_number(data["pruned_fraction"])
            and all(
                isinstance(data[k], dict)
                and set(data[k]) == {"before", "after"}
                and all(map(_is_number, data[k].values()))
                for k in ("erased", "preserved")
            )
        )
        if not ok:
            raise CpeditError(
                f"{where}: expected concepts (list of strings), images (integer), erased and preserved "
                "({before, after} numbers), pruned_fraction (number)"
            )
        results.append(
            Evaluation(
                benchmark=file.stem,
                concepts=list(data["concepts"]),
                images=data["images"],
                erased={k: float(v) for k, v in data["erased"].items()},
                preserved={k: float(v) for k, v in data["preserved"].items()},
                pruned_fraction=float(data["pruned_fraction"]),
            )
        )
    return results


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def local_base_card_metadata(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata of the base model's card as copied into the output folder (``README.md``), or {}."""
    readme = Path(folder) / "README.md"
    try:
        text = readme.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, re.DOTALL)
    if match is None:
        return {}
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError:
        return {}
    if not isinstance(data, dict) or "conceptprune" in (data.get("tags") or []):
        return {}  # a card cpedit wrote itself says nothing new about the base
    return data


def base_card_metadata(record: OutputRecord) -> dict[str, Any]:
    """The base model's card metadata: from the Hub when it can be read, else the copy in the output, else {}.

    Never raises: offline, a missing or gated base leaves only what the output folder holds.
    """
    repo_id = record.base_repo_id
    if repo_id is not None:
        from huggingface_hub import HfApi, constants

        if not constants.HF_HUB_OFFLINE:
            base = record.report["base_model"]
            try:
                info = HfApi().model_info(repo_id, revision=base.get("commit") or base.get("revision"))
                card = info.card_data
                if card is not None:
                    return card.to_dict()
            except Exception:  # noqa: BLE001 - the card falls back on the recorded copy
                pass
    return local_base_card_metadata(record.folder)


def card_metadata(record: OutputRecord, *, base_metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """The YAML metadata of the card."""
    metadata: dict[str, Any] = {}
    repo_id = record.base_repo_id
    if repo_id is not None:
        metadata["base_model"] = repo_id
        metadata["base_model_relation"] = BASE_MODEL_RELATION
    license_ = (base_metadata or {}).get("license")
    if isinstance(license_, str) and license_:
        metadata["license"] = license_
        for key in ("license_name", "license_link"):
            value = (base_metadata or {}).get(key)
            if license_ == "other" and isinstance(value, str):
                metadata[key] = value
    metadata["library_name"] = "diffusers"
    metadata["pipeline_tag"] = "text-to-image"
    tags = list(BASE_TAGS)
    for recipe in record.recipes:
        for tag in (slugify(recipe.concept), recipe.name):
            if tag and tag not in tags:
                tags.append(tag)
    metadata["tags"] = tags
    return metadata


def _md(text: str) -> str:
    """Plain text made safe for one markdown table cell or line."""
    return text.replace("|", "\\|").replace("\n", " ").strip()


def build_model_card(
    folder: str | os.PathLike[str],
    *,
    repo_id: str | None = None,
    base_metadata: dict[str, Any] | None = None,
    record: OutputRecord | None = None,
) -> str:
    """The model card (README.md text: YAML metadata and markdown) of a cpedit output.

    Args:
        folder: The cpedit output folder.
        repo_id: Where the model is (or will be) published, for the usage snippet; None
            shows a placeholder.
        base_metadata: The base model's card metadata (for its license); see
            :func:`base_card_metadata`. None: no license.
        record: The folder already read with :func:`read_output` (read here otherwise).

    Raises:
        CpeditError: ``folder`` is not a complete cpedit output, or an evaluation file is malformed.
    """
    record = record or read_output(folder)
    report = record.report
    metadata = card_metadata(record, base_metadata=base_metadata)
    base_repo = record.base_repo_id
    base = report["base_model"]
    local_label = f"cpedit's built-in model `{BUILTIN_MODEL_NAME}`" if record.base_is_builtin else "a local model"
    base_label = f"[{base_repo}]({_hub_url(base_repo)})" if base_repo else local_label
    concepts = [r.concept for r in record.recipes]
    totals = report["totals"]
    component = report["denoiser"]["component"]
    denoiser_name = "UNet" if component == "unet" else "transformer"
    lines: list[str] = []
    add = lines.append

    add(f"# {_md(', '.join(concepts))} erased from {base_repo or local_label}")
    add("")
    add(
        f"This is {base_label} with {_md(_join(concepts))} erased by "
        f"[cpedit](https://pypi.org/project/cpedit/) (ConceptPrune): {totals['pruned_weights']:,} feed-forward "
        f"weights of the {denoiser_name} ({100 * totals['pruned_fraction']:.4f}% of its weights) are set to zero. "
        "No training was done and nothing else differs from the base model."
    )
    add("")
    add("## What was erased and why")
    add("")
    for recipe in record.recipes:
        why = _md(recipe.description) if recipe.description.strip() else "no description was given in the recipe"
        add(f"- **{_md(recipe.concept)}** ({recipe.kind}; recipe `{recipe.name}`): {why}")
    add("")
    add("## Method")
    add("")
    add(
        "ConceptPrune runs paired prompts (with and without the concept) through the first denoising steps and "
        "scores every input neuron of the feed-forward blocks by its Wanda score (|weight| times input norm). "
        "The weights that score consistently higher for the concept than without it are the concept's "
        f'"skilled neurons" and are pruned (set to zero), which erases the concept without training. Paper: {PAPER}.'
    )
    add("")
    add("```bibtex")
    add(BIBTEX)
    add("```")
    add("")
    add("## Recipes")
    add("")
    add("Every recipe used, verbatim (also in `conceptprune/recipes/`):")
    add("")
    for recipe, concept in zip(record.recipes, report["concepts"], strict=True):
        add(f"### `{concept['recipe']}`")
        add("")
        add("```yaml")
        add(recipe.text.rstrip("\n"))
        add("```")
        add("")
    add("## Settings")
    add("")
    add("| concept | prompt pairs | skill_ratio | tau | select_ratio | steps | guidance | seed | batch | pruned |")
    add("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in report["concepts"]:
        add(
            f"| {_md(str(c.get('name')))} | {c.get('prompt_pairs')} | {c.get('skill_ratio')} | {c.get('timesteps')} "
            f"| {c.get('select_ratio')} | {c.get('steps')} | {c.get('guidance_scale')} | {c.get('seed')} "
            f"| {c.get('batch_size')} | {_count(c.get('pruned_weights'))} |"
        )
    compute = report.get("compute") or {}
    if compute:
        add("")
        add(f"Calibrated on `{_md(str(compute.get('device')))}` in `{_md(str(compute.get('dtype')))}`.")
    add("")
    add("## Pruned weights")
    add("")
    add("| layer | shape | pruned | % of layer |")
    add("|---|---|---:|---:|")
    for layer in report["layers"]:
        out_f, in_f = layer["shape"]
        add(
            f"| `{layer['name']}` | {out_f}x{in_f} | {layer['pruned']:,} | "
            f"{100 * layer['pruned'] / max(out_f * in_f, 1):.3f}% |"
        )
    ffn = totals.get("ffn_weights")
    add(
        f"| **total** | | **{totals['pruned_weights']:,}** | **{100 * totals['pruned_fraction']:.4f}% of the "
        f"{denoiser_name}** ({totals['unet_weights']:,} weights"
        + (f"; {100 * totals['pruned_weights'] / ffn:.3f}% of its FFN output weights" if ffn else "")
        + ") |"
    )
    add("")
    add(
        "`conceptprune/pruned.safetensors` lists the pruned positions (int32 flat indices per layer); "
        "`conceptprune/report.json` is the full run report."
    )
    add("")
    add("## Base model")
    add("")
    if base_repo:
        add(f"- Hub id: {base_label}")
        add(f"- revision: `{base.get('revision') or 'main'}`")
        if base.get("commit"):
            add(f"- commit: `{base['commit']}`")
    elif record.base_is_builtin:
        add(f"- {local_label}: the small shapes model that ships with cpedit (`python -m cpedit.shapes.train`)")
    else:
        add("- a local model (no Hub id was recorded)")
    if "license" in metadata:
        add(f"- license: `{metadata['license']}` (from the base model's card; its terms apply to this model too)")
    add("")
    add("## Library versions")
    add("")
    add("| library | version |")
    add("|---|---|")
    for name, version in report["versions"].items():
        add(f"| {_md(str(name))} | {_md(str(version))} |")
    add("")
    if record.evaluations:
        add("## Evaluation")
        add("")
        for ev in record.evaluations:
            add(f"### {_md(ev.benchmark)}")
            add("")
            add(
                f"{ev.images} images; erased concepts: {_md(', '.join(ev.concepts))}; "
                f"pruned fraction {100 * ev.pruned_fraction:.4f}%."
            )
            add("")
            add("| | before | after |")
            add("|---|---:|---:|")
            add(f"| erased concepts | {ev.erased['before']:.4f} | {ev.erased['after']:.4f} |")
            add(f"| preserved concepts | {ev.preserved['before']:.4f} | {ev.preserved['after']:.4f} |")
            add("")
    if record.preview is not None:
        add("## Before / after")
        add("")
        add("The base model (left) and this model (right) on the same prompts, with the same seeds:")
        add("")
        add(f"![before/after]({RECORD_DIR}/{PREVIEW_FILE})")
        add("")
    add("## Use")
    add("")
    prompt = next((p for r in record.recipes for p in r.preview_prompts), None) or (
        record.recipes[0].targets[0] if record.recipes[0].targets else "a photo of a cat"
    )
    add("```python")
    add("from diffusers import DiffusionPipeline")
    add("")
    add(f'pipe = DiffusionPipeline.from_pretrained("{repo_id or "NAMESPACE/NAME"}", use_safetensors=True)')
    add('# pipe = pipe.to("cuda")')
    add(f"image = pipe({json.dumps(prompt)}).images[0]")
    add('image.save("sample.png")')
    add("```")
    add("")
    add(
        "Note: the pruned positions are published with the model; erasure by pruning reduces, but may not "
        "remove, the concept under adversarial prompting."
    )
    front = yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True)
    return f"---\n{front}---\n\n" + "\n".join(lines).rstrip("\n") + "\n"


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def _hub_url(repo_id: str) -> str:
    from cpedit.hub.errors import repo_url

    return repo_url(repo_id)
