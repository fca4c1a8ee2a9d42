"""cpedit: erase concepts from text-to-image diffusion models by pruning skilled weights.

A training-free implementation of ConceptPrune (Chavhan, Li, Hospedales, ICLR 2025). The names
here are the core API: :func:`prune` (one call), :class:`EditSession` (calibrate once, then select,
apply, sample, save and restore), how they load models (:class:`ComputeOptions`), recipes, the run
report and its reader, progress events, errors, and :func:`sweep` / :func:`tune`. Each layer's own
API lives in its package: :mod:`cpedit.recipes`,
:mod:`cpedit.models`, :mod:`cpedit.edit`, :mod:`cpedit.output`, :mod:`cpedit.hub`,
:mod:`cpedit.publish`, :mod:`cpedit.eval`, :mod:`cpedit.tuning` (see docs/python-api.md).

Importing :mod:`cpedit` is cheap (no torch): every name below is imported from its module on first
use (PEP 562), so ``cpedit.__version__`` or the recipe functions cost no model libraries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cpedit._lazy import lazy_exports

if TYPE_CHECKING:
    from cpedit.edit.prune import PruneResult, prune
    from cpedit.edit.selection import Selection
    from cpedit.edit.session import EditSession, SaveResult
    from cpedit.errors import (
        Cancelled,
        CpeditError,
        CpeditWarning,
        ModelLoadError,
        OutputExistsError,
        RecipeError,
        UnsupportedModelError,
    )
    from cpedit.models.compute import ComputeOptions
    from cpedit.models.settings import SampleSettings
    from cpedit.output.record import OutputRecord, Report, read_output, read_report
    from cpedit.progress import ProgressCallback, ProgressEvent
    from cpedit.recipes.format import Recipe, load_recipe, parse_recipe
    from cpedit.recipes.sources import list_recipes, resolve_recipe
    from cpedit.tuning.grid import sweep
    from cpedit.tuning.search import tune

__version__ = "0.1.0"

_EXPORTS = {
    "Cancelled": "cpedit.errors",
    "ComputeOptions": "cpedit.models.compute",
    "CpeditError": "cpedit.errors",
    "CpeditWarning": "cpedit.errors",
    "EditSession": "cpedit.edit.session",
    "ModelLoadError": "cpedit.errors",
    "OutputExistsError": "cpedit.errors",
    "OutputRecord": "cpedit.output.record",
    "ProgressCallback": "cpedit.progress",
    "ProgressEvent": "cpedit.progress",
    "PruneResult": "cpedit.edit.prune",
    "Recipe": "cpedit.recipes.format",
    "RecipeError": "cpedit.errors",
    "Report": "cpedit.output.record",
    "SampleSettings": "cpedit.models.settings",
    "SaveResult": "cpedit.edit.session",
    "Selection": "cpedit.edit.selection",
    "UnsupportedModelError": "cpedit.errors",
    "list_recipes": "cpedit.recipes.sources",
    "load_recipe": "cpedit.recipes.format",
    "parse_recipe": "cpedit.recipes.format",
    "prune": "cpedit.edit.prune",
    "read_output": "cpedit.output.record",
    "read_report": "cpedit.output.record",
    "resolve_recipe": "cpedit.recipes.sources",
    "sweep": "cpedit.tuning.grid",
    "tune": "cpedit.tuning.search",
}
"""Public name -> the module that defines it (imported when the name is first used)."""

__all__ = ["__version__", *sorted(_EXPORTS)]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
