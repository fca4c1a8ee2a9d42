"""Publishing an edit: the model card, pushes of pruned models, edits and recipes to the Hub, and applying an edit.

Each push is one commit (see :mod:`cpedit.publish.push`); the card is generated only from what the
run recorded (:mod:`cpedit.publish.card`). The names below are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cpedit._lazy import lazy_exports

if TYPE_CHECKING:
    from cpedit.publish.apply import ApplyResult, apply_edit
    from cpedit.publish.card import build_model_card
    from cpedit.publish.push import PushResult, push_edit, push_model, push_recipes

_EXPORTS = {
    "ApplyResult": "cpedit.publish.apply",
    "apply_edit": "cpedit.publish.apply",
    "build_model_card": "cpedit.publish.card",
    "push_edit": "cpedit.publish.push",
    "push_model": "cpedit.publish.push",
    "push_recipes": "cpedit.publish.push",
    "PushResult": "cpedit.publish.push",
}
"""Public name -> the module that defines it (imported when the name is first used)."""

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
