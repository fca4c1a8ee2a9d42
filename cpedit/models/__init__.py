"""Models: loading pipelines safely (safetensors only, Hub downloads as events), the supported
architectures and their layers, whether cpedit can edit a model, and sampling images.

The names below are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cpedit._lazy import lazy_exports

if TYPE_CHECKING:
    from cpedit.models.compute import ComputeOptions
    from cpedit.models.details import ModelDetails, editability, model_details
    from cpedit.models.loading import check_model_folder
    from cpedit.models.settings import SampleSettings
    from cpedit.models.support import SupportInfo, describe_support

_EXPORTS = {
    "ComputeOptions": "cpedit.models.compute",
    "check_model_folder": "cpedit.models.loading",
    "describe_support": "cpedit.models.support",
    "editability": "cpedit.models.details",
    "model_details": "cpedit.models.details",
    "ModelDetails": "cpedit.models.details",
    "SampleSettings": "cpedit.models.settings",
    "SupportInfo": "cpedit.models.support",
}
"""Public name -> the module that defines it (imported when the name is first used)."""

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
