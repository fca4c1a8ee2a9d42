"""The versions of cpedit and of the libraries that determine its results (recorded in every report)."""

from __future__ import annotations

import platform
from importlib import metadata

RESULT_LIBRARIES = ("cpedit", "torch", "diffusers", "transformers", "huggingface_hub", "safetensors")


def library_versions() -> dict[str, str]:
    """Python's version and each of :data:`RESULT_LIBRARIES`' installed version (``unknown`` if missing)."""
    versions = {"python": platform.python_version()}
    for package in RESULT_LIBRARIES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "unknown"
    return versions
