"""Where the built-in shapes model lives, and its short name.

The trained pipeline (a standard diffusers folder) and the classifier ship inside the
package, under ``cpedit/shapes/weights/``; they are produced by
``python -m devtools.train_shapes``, run from the repository root (a development tool in
``devtools/train_shapes.py``, not installed with the package).
"""

from __future__ import annotations

from pathlib import Path

BUILTIN_MODEL_NAME = "builtin:shapes"
"""The short name that selects the built-in model wherever a MODEL is expected."""

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def builtin_pipeline_path() -> Path:
    """The shipped diffusers folder of the built-in shapes model."""
    return WEIGHTS_DIR / "pipeline"


def builtin_classifier_path() -> Path:
    """The shipped attribute classifier weights (safetensors)."""
    return WEIGHTS_DIR / "classifier.safetensors"


def training_report_path() -> Path:
    """The JSON report the training run wrote (settings, timings, accuracies)."""
    return WEIGHTS_DIR / "training-report.json"


def is_builtin_model(name: str) -> bool:
    """Whether ``name`` is the built-in model's short name."""
    return name.strip().lower() == BUILTIN_MODEL_NAME
