"""The kinds of Hub repo cpedit reads (a module of its own: errors, references and downloads all name it)."""

from __future__ import annotations

from typing import Literal

RepoType = Literal["model", "dataset"]
"""The kinds of Hub repo cpedit reads: models (pipelines, recipes) and datasets (prompt sets)."""
