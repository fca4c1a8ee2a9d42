"""The model card (README.md) of a cpedit output, generated from what the run recorded.

Everything in the card comes from the output folder: ``conceptprune/report.json``, the
recipes as they ran in ``conceptprune/recipes/``, the evaluation results in
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
import os
import re
from pathlib import Path
from typing import Any

import yaml

from cpedit.output.record import (
    PREVIEW_FILE,
    RECORD_DIR,
    Evaluation,
    OutputRecord,
    Report,
    read_evaluations,
    read_output,
)
from cpedit.publish.markdown import front_matter, md_code, md_fenced, md_link, md_text
from cpedit.shapes.model import BUILTIN_MODEL_NAME

__all__ = ["base_card_metadata", "build_model_card", "card_metadata", "read_evaluations", "read_output"]
BASE_MODEL_RELATION = "finetune"
BASE_TAGS = ("conceptprune", "concept-erasure", "cpedit")
EDIT_RELATION = "adapter"
"""``base_model_relation`` of an edit published without its weights (see :func:`card_metadata`)."""
EDIT_TAG = "cpedit-edit"
"""The tag of an edit published without its weights."""
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


TARGET_WORDS = {
    "ffn": "feed-forward output weights (the paper's target)",
    "ffn-in": "feed-forward input weights",
    "attn-key": "cross-attention key projection weights",
    "attn-value": "cross-attention value projection weights",
    "text-ffn": "text-encoder MLP output weights",
}
"""What each hook target prunes, in words (the card says what was really pruned)."""


def slugify(text: str) -> str:
    """``Van Gogh`` -> ``van-gogh`` (lowercase letters, digits, single hyphens)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def pruned_what(report: Report) -> str:
    """What the run pruned, in words: the targets (and streams) of its concepts and where they are."""
    parts = []
    for concept in report.concepts:
        words = TARGET_WORDS.get(concept.target, concept.target)
        where = "the text encoders" if concept.target == "text-ffn" else f"the {report.denoiser_label}"
        if concept.target in ("ffn", "ffn-in") and concept.stream != "image":
            words += f" ({'both streams' if concept.stream == 'both' else 'text stream'})"
        part = f"{words} of {where}"
        if part not in parts:
            parts.append(part)
    return _join(parts)


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


def base_card_metadata(record: OutputRecord, *, base_model: str | None = None) -> dict[str, Any]:
    """The base model's card metadata: from the Hub when it can be read, else the copy in the output, else {}.

    ``base_model`` names the base's Hub id when the run did not record it. Never raises:
    offline, a missing or gated base leaves only what the output folder holds.
    """
    repo_id = base_model or record.base_repo_id
    if repo_id is not None:
        from huggingface_hub import HfApi, constants

        if not constants.HF_HUB_OFFLINE:
            base = record.report.base_model
            revision = None if base_model else (base.commit or base.revision)
            try:
                info = HfApi().model_info(repo_id, revision=revision)
                card = info.card_data
                if card is not None:
                    return card.to_dict()
            except Exception:  # noqa: BLE001 - the card falls back on the recorded copy
                pass
    return local_base_card_metadata(record.folder)


def card_metadata(
    record: OutputRecord,
    *,
    base_metadata: dict[str, Any] | None = None,
    base_model: str | None = None,
    edit_only: bool = False,
) -> dict[str, Any]:
    """The YAML metadata of the card (``base_model`` overrides the recorded base Hub id).

    An edit published alone (``edit_only``) is no diffusers model: it has no ``library_name`` nor
    ``pipeline_tag``, its relation to the base is ``adapter`` (it is used on top of the base, as an
    adapter is) and it is tagged ``cpedit-edit``.
    """
    metadata: dict[str, Any] = {}
    repo_id = base_model or record.base_repo_id
    if repo_id is not None:
        metadata["base_model"] = repo_id
        metadata["base_model_relation"] = EDIT_RELATION if edit_only else BASE_MODEL_RELATION
    license_ = (base_metadata or {}).get("license")
    if isinstance(license_, str) and license_:
        metadata["license"] = license_
        for key in ("license_name", "license_link"):
            value = (base_metadata or {}).get(key)
            if license_ == "other" and isinstance(value, str):
                metadata[key] = value
    if not edit_only:
        metadata["library_name"] = "diffusers"
        metadata["pipeline_tag"] = "text-to-image"
    tags = [*BASE_TAGS, EDIT_TAG] if edit_only else list(BASE_TAGS)
    for recipe in record.recipes:
        for tag in (slugify(recipe.concept), recipe.name):
            if tag and tag not in tags:
                tags.append(tag)
    metadata["tags"] = tags
    return metadata


def _metric_rows(add: Any, benchmark: str, evaluation: Evaluation, protocol: dict[str, Any]) -> None:
    """A metric benchmark's results as a before/after table (``-`` where the base was not evaluated),
    each value with its 95% interval, and the paper's published figure beside each metric it
    reported (:mod:`cpedit.eval.paper`)."""
    from cpedit.eval.paper import paper_figure

    counts = (("images", "images"), ("steps", "steps"))
    parts = [f"{md_text(protocol[key])} {label}" for key, label in counts if key in protocol]
    if "prompts" in protocol:
        parts.append(f"prompts: {md_text(protocol['prompts'])}")
    if "metric_model" in protocol:
        parts.append(f"measured with {md_text(protocol['metric_model'])}")
    if parts:
        add("; ".join(parts) + ".")
        add("")
    add("| metric | before | after | change | paper (ConceptPrune, for context) |")
    add("|---|---:|---:|---:|---|")
    for name, values in (evaluation.metrics or {}).items():
        cells = _cells(evaluation, name, values)
        figure = paper_figure(benchmark, name, protocol)
        add(f"| {md_text(name)} | {' | '.join(cells)} | {figure.describe() if figure else '-'} |")
    add("")
    _interval_note(add, evaluation, protocol)


def _cells(evaluation: Evaluation, name: str, values: dict[str, float]) -> list[str]:
    """Before, after and the change of one metric, each with its interval where the result has one."""
    from cpedit.eval.intervals import with_interval

    before, after = values.get("before"), values.get("after")
    change = after - before if before is not None and after is not None else None
    return [
        with_interval(before, evaluation.interval(name, "before"), digits=4),
        with_interval(after, evaluation.interval(name, "after"), digits=4),
        with_interval(change, evaluation.interval(name, "change"), digits=4, sign=True),
    ]


def _interval_note(add: Any, evaluation: Evaluation, protocol: dict[str, Any]) -> None:
    """What the intervals are, and which metrics have none and why (FID)."""
    from cpedit.eval.intervals import INTERVAL_NOTE

    if evaluation.intervals:
        add(f"{INTERVAL_NOTE} (method in `docs/evaluation.md` of cpedit).")
        add("")
    described = protocol.get("intervals")
    none = described.get("none") if isinstance(described, dict) else None
    if isinstance(none, dict):
        for name, why in none.items():
            add(f"No interval for {md_text(name)}: {md_text(why)}.")
        add("")


def build_model_card(
    folder: str | os.PathLike[str],
    *,
    repo_id: str | None = None,
    base_metadata: dict[str, Any] | None = None,
    record: OutputRecord | None = None,
    base_model: str | None = None,
    edit_only: bool = False,
) -> str:
    """The model card (README.md text: YAML metadata and markdown) of a cpedit output.

    Args:
        folder: The cpedit output folder.
        repo_id: Where the model is (or will be) published, for the usage snippet; None
            shows a placeholder.
        base_metadata: The base model's card metadata (for its license); see
            :func:`base_card_metadata`. None: no license.
        record: The folder already read with :func:`read_output` (read here otherwise).
        base_model: The base model's Hub id, when the run did not record one (a base loaded
            from a local folder that is not a Hub cache snapshot); it wins over the recorded one.
        edit_only: The card of the edit published without its weights (``cpedit push --edit-only``):
            it says which base (id and revision) it applies to and how, and shows no preview grid
            (which is not published with it).

    Raises:
        CpeditError: ``folder`` is not a complete cpedit output, or an evaluation file is malformed.
    """
    record = record or read_output(folder)
    report = record.report
    metadata = card_metadata(record, base_metadata=base_metadata, base_model=base_model, edit_only=edit_only)
    base_repo = base_model or record.base_repo_id
    base = report.base_model
    local_label = f"cpedit's built-in model `{BUILTIN_MODEL_NAME}`" if record.base_is_builtin else "a local model"
    base_label = md_link(base_repo, _hub_url(base_repo)) if base_repo else local_label
    concepts = [r.concept for r in record.recipes]
    totals = report.totals
    lines: list[str] = []
    add = lines.append

    title = f"{md_text(', '.join(concepts))} erased from {md_text(base_repo) if base_repo else local_label}"
    add(f"# {title} (edit only)" if edit_only else f"# {title}")
    add("")
    if edit_only:
        revision = base.commit or base.revision or "main"
        on = f"{base_label} at revision {md_code(revision)}" if base_repo else base_label
        add(
            f"This repo holds an **edit** of {on}, not its weights: the pruned positions "
            f"(`{RECORD_DIR}/pruned.safetensors`), the recipes as they ran and the run report, which names the "
            "base model, its revision and a digest of the base weights the edit changes. Applied to that base, it "
            "rebuilds the edited model exactly (see Use below); any other base is refused."
        )
        add("")
    concealed = report.conceal.conceals
    how = (
        "are replaced by random draws that match their layer's own weights (concealment, see below)"
        if concealed
        else "are set to zero"
    )
    add(
        f"This is {base_label} with {md_text(_join(concepts))} erased by "
        f"[cpedit](https://pypi.org/project/cpedit/) (ConceptPrune): {totals.pruned_weights:,} "
        f"{pruned_what(report)} ({100 * totals.pruned_fraction:.4f}% of the {report.edited_label}'s weights) "
        f"{how}. No training was done and nothing else differs from the base model."
    )
    add("")
    add("## What was erased and why")
    add("")
    for recipe in record.recipes:
        why = md_text(recipe.description) if recipe.description.strip() else "no description was given in the recipe"
        add(f"- **{md_text(recipe.concept)}** ({md_text(recipe.kind)}; recipe {md_code(recipe.name)}): {why}")
    add("")
    add("## Method")
    add("")
    add(
        "ConceptPrune runs paired prompts (with and without the concept) through the first denoising steps and "
        f"scores every weight of the layers it hooks, here the {pruned_what(report)}, by its Wanda score "
        "(|weight| times the norm of its input). The weights that score consistently higher for the concept than "
        f'without it are the concept\'s "skilled neurons" and are pruned (set to zero), which erases the concept '
        f"without training. Paper: {PAPER}."
    )
    add("")
    add("```bibtex")
    add(BIBTEX)
    add("```")
    add("")
    add("## Recipes")
    add("")
    add("Every recipe as it ran (also in `conceptprune/recipes/`):")
    add("")
    for recipe, concept in zip(record.recipes, report.concepts, strict=True):
        add(f"### {md_code(concept.recipe)}")
        add("")
        add(md_fenced(recipe.text, info="yaml"))
        add("")
    add("## Settings")
    add("")
    add(
        "| concept | target | stream | prompt pairs | skill_ratio | tau | select_ratio | steps | guidance | seed "
        "| batch | pruned |"
    )
    add("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in report.concepts:
        tau = "-" if c.timesteps_note else str(c.timesteps)
        seed = "per pair" if c.pair_seeds is not None else str(c.seed)  # the list is in the recipe above
        add(
            f"| {md_text(c.name)} | {md_text(c.target)} | {md_text(c.stream)} | {c.prompt_pairs} "
            f"| {c.skill_ratio} | {tau} "
            f"| {c.select_ratio} | {c.steps} | {c.guidance_scale} | {seed} | {c.batch_size} "
            f"| {c.pruned_weights:,} |"
        )
    if report.compute_device:
        add("")
        add(f"Calibrated on {md_code(report.compute_device)} in {md_code(report.compute_dtype)}.")
        add("")
        add(fidelity_note(report.compute_dtype))
    add("")
    add("## Pruned weights")
    add("")
    if concealed:
        _concealed_totals(add, report)
    else:
        _layer_table(add, report)
    add("## Base model")
    add("")
    if base_repo:
        add(f"- Hub id: {base_label}")
        if base_model is None or base_model == record.base_repo_id:  # the recorded revision is this repo's
            add(f"- revision: {md_code(base.revision or 'main')}")
            if base.commit:
                add(f"- commit: {md_code(base.commit)}")
        else:
            add("- given when the card was made (the run loaded the base from a local folder)")
    elif record.base_is_builtin:
        add(
            f"- {local_label}: the small shapes model that ships with cpedit "
            "(`python -m devtools.train_shapes` in the cpedit repository rebuilds it)"
        )
    else:
        add("- a local model (no Hub id was recorded)")
    if "license" in metadata:
        license_ = md_code(metadata["license"])
        add(f"- license: {license_} (from the base model's card; its terms apply to this model too)")
    add("")
    add("## Library versions")
    add("")
    add("| library | version |")
    add("|---|---|")
    for name, version in report.versions.items():
        add(f"| {md_text(name)} | {md_text(version)} |")
    add("")
    if record.evaluations:
        add("## Evaluation")
        add("")
        for ev in record.evaluations:
            add(f"### {md_text(ev.benchmark)}")
            add("")
            if ev.metrics is not None:  # a metric benchmark (`cpedit eval clip-score`, `fid`)
                _metric_rows(add, ev.benchmark, ev, ev.protocol or {})
                continue
            add(
                f"{ev.images} images; erased concepts: {md_text(', '.join(ev.concepts))}; "
                f"pruned fraction {100 * ev.pruned_fraction:.4f}%."
            )
            add("")
            add("| | before | after | change |")
            add("|---|---:|---:|---:|")
            add(f"| erased concepts | {' | '.join(_cells(ev, 'erased', ev.erased))} |")
            add(f"| preserved concepts | {' | '.join(_cells(ev, 'preserved', ev.preserved))} |")
            add("")
            _interval_note(add, ev, {})
    if record.preview is not None and not edit_only:
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
    model = repo_id or "NAMESPACE/NAME"
    if edit_only:
        add("Rebuild the edited model (a diffusers folder) from this edit and its base, then load it:")
        add("")
        add("```bash")
        add("pip install cpedit")
        if record.base_repo_id or record.base_is_builtin:
            pull = ""  # the published report names the base: apply pulls it at the recorded commit
        else:  # a local base: the report names none, so the command must (a Hub id is a checked repo id)
            pull = f" --base-model {base_model}" if base_model else " --base-model BASE_FOLDER"
        add(f"cpedit apply {model}{pull} --out edited-model")
        add("```")
        add("")
        add(
            "`cpedit apply` pulls the base model at the recorded revision (or uses the one given with `--base-model`, "
            "a Hub id or a folder), checks that its weights are the ones the edit was made on, and writes the same "
            "folder `cpedit prune` wrote, byte for byte."
        )
        add("")
        model = "edited-model"
    add("```python")
    add("from diffusers import DiffusionPipeline")
    add("")
    add(f'pipe = DiffusionPipeline.from_pretrained("{model}", use_safetensors=True)')
    add('# pipe = pipe.to("cuda")')
    add(f"image = pipe(prompt={json.dumps(prompt)}).images[0]")
    add('image.save("sample.png")')
    add("```")
    add("")
    if concealed:
        add(
            "Note: the pruned positions are not published and no exact zeros mark them, but anyone with the base "
            "model's weights can find them by comparison; erasure by pruning reduces, but may not remove, the "
            "concept under adversarial prompting."
        )
    else:
        add(
            "Note: the pruned positions are published with the model (and the exact zeros show them too), so "
            "attacks that revive a pruned concept from its positions apply; erasure by pruning reduces, but may "
            "not remove, the concept under adversarial prompting."
        )
    return front_matter(metadata) + "\n" + "\n".join(lines).rstrip("\n") + "\n"


FP16_IOU_CPEDIT = "0.995-0.997"
"""Per-setting IoU of cpedit's fp16 selection against the exact fp32 one (random-weight SD-shaped models)."""
FP16_IOU_AUTHORS = "0.989-0.993"
"""The same for the authors' own fp16 code (their scripts at commit 72927d9, same models and prompts)."""


def fidelity_note(compute_dtype: str) -> str:
    """What "faithful" means for a selection calibrated in ``compute_dtype`` (``float32``, ``float16``, ...).

    In float32 cpedit selects exactly the published procedure's weights (the authors' own scripts give
    identical masks on the same model). In lower precision the activations are rounded first; cpedit
    then normalises, accumulates and scores them in float32, where the authors' code stays in fp16.
    """
    exact = "In float32 cpedit selects exactly the weights of the published procedure (and of the authors' own code)"
    if compute_dtype == "float32":
        return (
            "Calibrated in float32: the selection is identical to the published procedure's (and the authors' own "
            "code's) on the same model."
        )
    if compute_dtype == "float16":
        return (
            "Calibrated in float16, as the authors' own code runs: the activations are rounded to float16, then "
            "cpedit normalises, accumulates and scores them in float32, which keeps its selection closer to the "
            "exact float32 one than the authors' float16 code (which computes in float16): against the float32 "
            f"selection, IoU {FP16_IOU_CPEDIT} for cpedit and {FP16_IOU_AUTHORS} for the authors' code "
            f"(measured on random-weight models). {exact}."
        )
    precision = "bfloat16" if compute_dtype == "bfloat16" else "a precision other than float32"  # no outside text
    return (
        f"Calibrated in {precision}: the activations are rounded first, then normalised, accumulated and scored "
        f"in float32; how close this selection is to the exact float32 one was not measured. {exact}."
    )


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _hub_url(repo_id: str) -> str:
    from cpedit.hub.errors import repo_url

    return repo_url(repo_id)


def _layer_table(add: Any, report: Report) -> None:
    """The per-layer counts of an unconcealed edit, and where its positions are."""
    totals = report.totals
    add("| layer | shape | pruned | % of layer |")
    add("|---|---|---:|---:|")
    for layer in report.layers:
        out_f, in_f = layer.shape
        add(
            f"| {md_code(layer.name, in_table=True)} | {out_f}x{in_f} | {layer.pruned:,} "
            f"| {100 * layer.pruned / max(layer.weights, 1):.3f}% |"
        )
    ffn = totals.ffn_weights
    add(
        f"| **total** | | **{totals.pruned_weights:,}** | **{100 * totals.pruned_fraction:.4f}% of the "
        f"{report.edited_label}** ({totals.edited_weights:,} weights"
        + (f"; {100 * totals.pruned_weights / ffn:.3f}% of the hooked layers' weights" if ffn else "")
        + ") |"
    )
    add("")
    add(
        "`conceptprune/pruned.safetensors` lists the pruned positions (int32 flat indices per layer); "
        "`conceptprune/report.json` is the full run report."
    )
    add("")


def _concealed_totals(add: Any, report: Report) -> None:
    """A concealed edit: totals only (no positions, no per-layer table), and the base-weights caveat."""
    totals = report.totals
    ffn = totals.ffn_weights
    add(
        f"{totals.pruned_weights:,} weights in all: {100 * totals.pruned_fraction:.4f}% of the "
        f"{report.edited_label}'s {totals.edited_weights:,} weights"
        + (f" ({100 * totals.pruned_weights / ffn:.3f}% of the hooked layers' weights)" if ffn else "")
        + "."
    )
    add("")
    add(
        f"**Concealment.** The pruned weights were not set to zero but filled with draws from a normal "
        f"distribution matching their layer's remaining weights ({md_code(report.conceal.mode)}, scale per "
        f"{md_code(report.conceal.scale)}), so no exact zeros mark where the concept was cut, and the pruned positions "
        "(`conceptprune/pruned.safetensors`) are not published. This resists attacks that revive a pruned "
        'concept from the positions of its weights ("Roots Beneath the Cut", arXiv 2603.06640) **only when '
        "the base model's weights are not public**: anyone holding the base finds every changed weight by "
        "comparing the two. It suits, for example, a sanitized proprietary fine-tune, not an edit of a public "
        "base model."
    )
    add("")
