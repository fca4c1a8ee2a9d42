"""Hugging Face Hub integration: find models, describe them, publish pruned models and recipes.

The library never prints: slow steps report through ``on_progress`` callbacks, failures are
:class:`~cpedit.hub.errors.HubError` (a :class:`~cpedit.errors.CpeditError`) with a message
that says what to do. The token is huggingface_hub's (``HF_TOKEN``, ``hf auth login``) and
``HF_ENDPOINT`` selects the Hub.
"""

from cpedit.hub.card import build_model_card, read_evaluations, read_output
from cpedit.hub.errors import HubError
from cpedit.hub.info import ModelDetails, editability, model_details
from cpedit.hub.publish import PushResult, push_model, push_recipes
from cpedit.hub.recipes import load_hub_recipe, parse_hub_ref
from cpedit.hub.search import ModelSummary, search_models

__all__ = [
    "HubError",
    "ModelDetails",
    "ModelSummary",
    "PushResult",
    "build_model_card",
    "editability",
    "load_hub_recipe",
    "model_details",
    "parse_hub_ref",
    "push_model",
    "push_recipes",
    "read_evaluations",
    "read_output",
    "search_models",
]
