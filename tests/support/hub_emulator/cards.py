"""The model card metadata the emulated Hub validates (``POST /api/validate-yaml``), as strictly as the Hub."""

from __future__ import annotations

import re
from typing import Any

import yaml

from support.hub_emulator.storage import REPO_ID

LICENSES = {
    "apache-2.0",
    "mit",
    "openrail",
    "openrail++",
    "creativeml-openrail-m",
    "bigscience-openrail-m",
    "cc-by-4.0",
    "cc-by-nc-4.0",
    "cc-by-sa-4.0",
    "bsd-3-clause",
    "llama3",
    "gemma",
    "other",
    "unknown",
}
PIPELINE_TAGS = {"text-to-image", "image-to-image", "unconditional-image-generation", "text-generation", "other"}
BASE_MODEL_RELATIONS = {"adapter", "merge", "quantized", "finetune"}


def parse_card_metadata(text: str) -> dict[str, Any] | None:
    """The YAML front matter of a README (None when there is none). Raises ValueError if it is not a mapping."""
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, re.DOTALL)
    if match is None:
        return None
    data = yaml.safe_load(match.group(1))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError("the metadata must be a YAML mapping")
    return data


def validate_card_metadata(text: str) -> tuple[list[str], list[str]]:
    """``(errors, warnings)`` for a model card, checked like the Hub's validate-yaml."""
    try:
        data = parse_card_metadata(text)
    except (yaml.YAMLError, ValueError) as exc:
        return [f"Invalid YAML metadata: {exc}"], []
    if not data:
        return [], ["Empty or missing yaml metadata in repo card"]
    errors: list[str] = []
    license_ = data.get("license")
    if license_ is not None and (not isinstance(license_, str) or license_ not in LICENSES):
        errors.append(f'"license" must be one of the Hub licenses, got {license_!r}')
    base = data.get("base_model")
    bases = base if isinstance(base, list) else [base] if base is not None else []
    if any(not isinstance(b, str) or not REPO_ID.match(b) for b in bases):
        errors.append(f'"base_model" must be a repo id or a list of repo ids, got {base!r}')
    relation = data.get("base_model_relation")
    if relation is not None:
        if relation not in BASE_MODEL_RELATIONS:
            errors.append(f'"base_model_relation" must be one of {sorted(BASE_MODEL_RELATIONS)}, got {relation!r}')
        if not bases:
            errors.append('"base_model_relation" needs "base_model"')
    tag = data.get("pipeline_tag")
    if tag is not None and tag not in PIPELINE_TAGS:
        errors.append(f'"pipeline_tag" must be a known task, got {tag!r}')
    tags = data.get("tags")
    if tags is not None and (not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags)):
        errors.append('"tags" must be a list of strings')
    library = data.get("library_name")
    if library is not None and not isinstance(library, str):
        errors.append('"library_name" must be a string')
    return errors, []
