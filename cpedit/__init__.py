"""cpedit: erase concepts from text-to-image diffusion models by pruning skilled FFN weights.

A training-free implementation of ConceptPrune (Chavhan, Li, Hospedales, ICLR 2025).
The public API is :func:`prune`; recipes are loaded with :func:`load_recipe`.
"""

from cpedit.api import PruneResult, prune
from cpedit.architectures import SupportInfo, describe_support
from cpedit.errors import (
    CpeditError,
    ModelLoadError,
    OutputExistsError,
    PruneCancelled,
    RecipeError,
    UnsupportedModelError,
)
from cpedit.progress import ProgressCallback, ProgressEvent
from cpedit.recipes import Recipe, load_recipe, parse_recipe, resolve_recipe

__version__ = "0.1.0"

__all__ = [
    "CpeditError",
    "ModelLoadError",
    "OutputExistsError",
    "ProgressCallback",
    "ProgressEvent",
    "PruneCancelled",
    "PruneResult",
    "Recipe",
    "RecipeError",
    "SupportInfo",
    "UnsupportedModelError",
    "describe_support",
    "load_recipe",
    "parse_recipe",
    "prune",
    "resolve_recipe",
    "__version__",
]
