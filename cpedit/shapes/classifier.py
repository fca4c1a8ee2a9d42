"""The attribute classifier that judges images of the shapes world.

A small CNN with one head per attribute of its vocabulary (V1's shape, colour, texture,
background; :data:`cpedit.shapes.world.V2` adds outline and palette).  It is
trained by ``devtools/train_shapes.py`` on scenes drawn by :mod:`cpedit.shapes.world`,
with mild blur and noise so that it also reads the slightly soft images a diffusion model
makes, and ships with the built-in model (``classifier.safetensors`` beside it).

Example:
    >>> from cpedit.shapes.classifier import load_classifier, classify
    >>> from cpedit.shapes.world import Scene, render
    >>> model = load_classifier()
    >>> classify(model, [render(Scene("star", "red", "striped", "white"), seed=0)])[0]["shape"]
    'star'
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cpedit.errors import CpeditError
from cpedit.shapes.model import builtin_classifier_path
from cpedit.shapes.world import ATTRIBUTES, IMAGE_SIZE, VOCABULARIES, Vocabulary

HEADS = tuple(ATTRIBUTES)
"""Attribute names of the shipped (V1) classifier, in head order."""

HIDDEN = 128
"""Width of the shared layer that feeds every head (the shipped classifier's)."""


class ShapesClassifier(nn.Module):
    """Three conv blocks (32x32 -> 4x4), a shared hidden layer and a linear head per attribute of ``vocabulary``."""

    def __init__(self, *, vocabulary: Vocabulary | None = None, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.attributes: dict[str, tuple[str, ...]] = dict(ATTRIBUTES if vocabulary is None else vocabulary.attributes)
        """The attributes the heads read, and their values in logit order."""

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(cout, cout, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2),
            )

        self.features = nn.Sequential(block(3, 32), block(32, 64), block(64, 96), nn.Flatten())
        self.hidden = nn.Sequential(nn.Linear(96 * 4 * 4, hidden), nn.ReLU())
        self.heads = nn.ModuleDict({name: nn.Linear(hidden, len(values)) for name, values in self.attributes.items()})

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per attribute for ``images`` of shape ``(N, 3, 32, 32)`` in ``[-1, 1]``."""
        hidden = self.hidden(self.features(images))
        return {name: head(hidden) for name, head in self.heads.items()}


def load_classifier(path: Path | None = None, *, device: str | torch.device = "cpu") -> ShapesClassifier:
    """Load the classifier (safetensors only) in eval mode; its vocabulary and width are read from its heads.

    Args:
        path: a ``classifier.safetensors``; default: the one shipped with cpedit.
        device: where to put it.

    Raises:
        FileNotFoundError: if the weights file does not exist.
        CpeditError: its heads match no vocabulary of the world (``mismatch``), or it has no
            hidden layer (``malformed``).
    """
    from safetensors.torch import load_file

    file = Path(path) if path is not None else builtin_classifier_path()
    if not file.is_file():
        raise FileNotFoundError(f"classifier weights not found: {file}")
    state = load_file(str(file))
    model = ShapesClassifier(vocabulary=_vocabulary_of(state, file), hidden=_hidden_width(state, file))
    model.load_state_dict(state)
    return model.to(device).eval()


def _vocabulary_of(state: dict[str, torch.Tensor], file: Path) -> Vocabulary:
    """The vocabulary whose attributes and value counts the heads of ``state`` match."""
    heads = {key.split(".")[1]: int(value.shape[0]) for key, value in state.items() if key.startswith("heads.")}
    for vocabulary in VOCABULARIES.values():
        if heads == {name: len(values) for name, values in vocabulary.attributes.items()}:
            return vocabulary
    raise CpeditError(
        f"{file}: the classifier's heads {sorted(heads.items())} match no vocabulary of the shapes world",
        path=str(file),
        reason="mismatch",
    )


def _hidden_width(state: dict[str, torch.Tensor], file: Path) -> int:
    weight = state.get("hidden.0.weight")
    if weight is None or weight.ndim != 2:
        raise CpeditError(f"{file}: the classifier has no hidden.0.weight matrix", path=str(file), reason="malformed")
    return int(weight.shape[0])


def to_model_input(images: Sequence[np.ndarray] | np.ndarray | torch.Tensor) -> torch.Tensor:
    """Turn uint8 HxWx3 arrays (or a float tensor in ``[0, 1]`` of shape N,3,H,W) into model input."""
    if isinstance(images, torch.Tensor):
        tensor = images.float()
    else:
        array = np.stack([np.asarray(image) for image in images]) if not isinstance(images, np.ndarray) else images
        if array.ndim == 3:
            array = array[None]
        tensor = torch.from_numpy(array.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
    if tensor.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
        tensor = torch.nn.functional.interpolate(tensor, size=(IMAGE_SIZE, IMAGE_SIZE), mode="area")
    return tensor * 2.0 - 1.0


@torch.no_grad()
def classify(
    model: ShapesClassifier,
    images: Sequence[np.ndarray] | np.ndarray | torch.Tensor,
    *,
    batch_size: int = 256,
) -> list[dict[str, str]]:
    """The predicted attributes of each image, e.g. ``[{"shape": "star", "colour": "red", ...}]``.

    Args:
        model: from :func:`load_classifier`.
        images: uint8 RGB arrays ``(H, W, 3)`` (PIL images work through ``np.asarray``), or a
            float tensor ``(N, 3, H, W)`` in ``[0, 1]``; resized to 32x32 if needed.
        batch_size: images per forward pass.
    """
    inputs = to_model_input(images)
    device = next(model.parameters()).device
    results: list[dict[str, str]] = []
    for start in range(0, len(inputs), batch_size):
        logits = model(inputs[start : start + batch_size].to(device))
        picks = {name: logits[name].argmax(dim=1).tolist() for name in model.attributes}
        for i in range(len(inputs[start : start + batch_size])):
            results.append({name: values[picks[name][i]] for name, values in model.attributes.items()})
    return results
