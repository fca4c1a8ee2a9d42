"""Hugging Face Hub integration: find models, describe them, publish pruned models and recipes.

The library never prints: slow steps report through ``on_progress`` callbacks, failures are
:class:`~cpedit.hub.errors.HubError` (a :class:`~cpedit.errors.CpeditError`) with a message
that says what to do. The token is huggingface_hub's (``HF_TOKEN``, ``hf auth login``) and
``HF_ENDPOINT`` selects the Hub.

The names below are imported on first use (importing :mod:`cpedit.hub` or one of its
modules does not import the others).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cpedit.hub.card import build_model_card, read_evaluations, read_output
    from cpedit.hub.errors import HubError
    from cpedit.hub.info import ModelDetails, editability, model_details
    from cpedit.hub.publish import PushResult, check_repo_id, push_model, push_recipes, whoami
    from cpedit.hub.recipes import load_hub_recipe, parse_hub_ref
    from cpedit.hub.search import ModelSummary, search_models

_EXPORTS = {
    "HubError": "cpedit.hub.errors",
    "ModelDetails": "cpedit.hub.info",
    "ModelSummary": "cpedit.hub.search",
    "PushResult": "cpedit.hub.publish",
    "build_model_card": "cpedit.hub.card",
    "check_repo_id": "cpedit.hub.publish",
    "editability": "cpedit.hub.info",
    "load_hub_recipe": "cpedit.hub.recipes",
    "model_details": "cpedit.hub.info",
    "parse_hub_ref": "cpedit.hub.recipes",
    "push_model": "cpedit.hub.publish",
    "push_recipes": "cpedit.hub.publish",
    "read_evaluations": "cpedit.hub.card",
    "read_output": "cpedit.hub.card",
    "search_models": "cpedit.hub.search",
    "whoami": "cpedit.hub.publish",
}

__all__ = [
    "HubError",
    "ModelDetails",
    "ModelSummary",
    "PushResult",
    "build_model_card",
    "check_repo_id",
    "editability",
    "load_hub_recipe",
    "model_details",
    "parse_hub_ref",
    "push_model",
    "push_recipes",
    "read_evaluations",
    "read_output",
    "search_models",
    "whoami",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
