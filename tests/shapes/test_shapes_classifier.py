"""The attribute classifier reads its vocabulary and width from its weights (V1 shipped, V2 for a model v2)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from cpedit.errors import CpeditError
from cpedit.shapes import world
from cpedit.shapes.classifier import ShapesClassifier, classify, load_classifier


def _save(model: ShapesClassifier, path: Path) -> Path:
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def test_the_shipped_classifier_loads_with_the_shipped_vocabulary() -> None:
    from devtools.train_shapes import CLASSIFIER_SETTINGS

    model = load_classifier()
    assert model.attributes == world.BUILTIN.attributes
    assert model.hidden[0].out_features == CLASSIFIER_SETTINGS[world.BUILTIN.name].hidden


def test_a_v2_classifier_loads_with_its_heads_and_width_and_names_every_attribute(tmp_path: Path) -> None:
    torch.manual_seed(0)
    saved = ShapesClassifier(vocabulary=world.V2, hidden=32)
    model = load_classifier(_save(saved, tmp_path / "c.safetensors"))
    assert model.attributes == world.V2.attributes and model.hidden[0].out_features == 32
    scenes = [world.Scene("heart", "pink", "gradient", "navy", outline="glowing", palette="sepia")] * 3
    images = world.render_many([(s, i) for i, s in enumerate(scenes)], vocabulary=world.V2)
    predictions = classify(model, images, batch_size=2)  # two batches, the second one short
    assert len(predictions) == 3 and set(predictions[0]) == set(world.V2.attributes)
    with torch.no_grad():
        logits = saved(torch.zeros(1, 3, 32, 32))
    expected = world.V2.attributes["palette"][int(logits["palette"].argmax())]
    assert classify(model, torch.full((1, 3, 32, 32), 0.5))[0]["palette"] == expected


def test_a_classifier_of_no_known_vocabulary_is_refused_with_its_file(tmp_path: Path) -> None:
    model = ShapesClassifier(hidden=16)
    model.heads["shape"] = torch.nn.Linear(16, 7)  # 7 shapes: neither V1 (5) nor V2 (8)
    file = _save(model, tmp_path / "odd.safetensors")
    with pytest.raises(CpeditError, match="match no vocabulary") as error:
        load_classifier(file)
    assert error.value.reason == "mismatch" and error.value.path == str(file)
