"""The memory estimate before loading: the numbers from the files, the verdict, and the refusal."""

from __future__ import annotations

from pathlib import Path

import pytest
import support.helpers as helpers
from click.testing import CliRunner
from support.helpers import CPU

import cpedit
import cpedit.edit.memory as memory
import cpedit.models.loading
from cpedit.cli.main import cli
from cpedit.durable import format_bytes
from cpedit.edit.memory import MemorySide, estimate_memory
from cpedit.errors import CpeditError
from cpedit.models.compute import ComputeOptions
from cpedit.models.files import read_safetensors_header


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    return helpers.write_recipe(tmp_path / "recipes", name="mem-test", concept="Van Gogh", tau=2, steps=4)


def float_bytes(folder: Path) -> int:
    """The loaded components' float32 weights, as their default files hold them."""
    total = 0
    for file in folder.glob("*/*.safetensors"):
        assert ".fp16." not in file.name
        total += sum(e.end - e.start for e in read_safetensors_header(file).tensors.values() if e.dtype == "F32")
    return total


def test_the_weights_are_counted_from_the_headers_at_the_chosen_dtype(tiny_sd_path: Path, recipe: Path) -> None:
    recipes = [cpedit.resolve_recipe(recipe)]
    fp32 = estimate_memory(tiny_sd_path, recipes, compute=CPU)
    bf16 = estimate_memory(tiny_sd_path, recipes, compute=ComputeOptions(device="cpu", dtype="bf16"))
    assert fp32.weights >= float_bytes(tiny_sd_path) > 0
    assert fp32.weights - float_bytes(tiny_sd_path) < 0.01 * fp32.weights  # the rest: integer buffers
    assert abs(bf16.weights - fp32.weights / 2) < 0.01 * fp32.weights
    assert fp32.dtype == "float32" and bf16.dtype == "bfloat16"
    assert 0 < fp32.statistics and 0 < fp32.activations
    four = estimate_memory(tiny_sd_path, recipes, compute=CPU, batch_size=4)
    assert four.activations == 4 * fp32.activations
    [host] = fp32.sides
    assert host.name == "host" and host.need == fp32.weights + fp32.statistics + fp32.activations


@pytest.mark.parametrize(
    ("need", "free", "verdict"),
    [(80, 100, "fits"), (81, 100, "tight"), (100, 100, "tight"), (101, 100, "will not fit"), (5, None, "unknown")],
)
def test_the_verdict(need: int, free: int | None, verdict: str) -> None:
    assert MemorySide(name="host", need=need, free=free).verdict == verdict


def test_a_run_that_cannot_fit_is_refused_with_the_numbers_before_loading(
    tiny_sd_path: Path, recipe: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(memory, "available_host_memory", lambda: 10**6)

    def no_loading(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(cpedit.models.loading, "load_pipeline", no_loading)
    events: list[cpedit.ProgressEvent] = []
    with pytest.raises(CpeditError) as caught:
        cpedit.prune(tiny_sd_path, [recipe], out=tmp_path / "out", compute=CPU, on_progress=events.append)
    estimate = estimate_memory(tiny_sd_path, [cpedit.resolve_recipe(recipe)], compute=CPU)
    message = str(caught.value)
    assert caught.value.reason == "out_of_memory" and caught.value.argument == "memory_check"
    assert f"host: needs about {format_bytes(estimate.sides[0].need)}, 1 MB free" in message
    assert f"weights {format_bytes(estimate.weights)} in float32" in message
    assert "dtype float16 or bfloat16" in message and "--" not in message
    assert any(e.stage == "load" and e.message.startswith("memory: will not fit") for e in events)
    assert not (tmp_path / "out").exists()


def test_without_the_memory_check_the_run_goes_ahead(
    tiny_sd_path: Path, recipe: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(memory, "available_host_memory", lambda: 10**6)
    events: list[cpedit.ProgressEvent] = []
    result = cpedit.prune(tiny_sd_path, [recipe], compute=CPU, memory_check=False, on_progress=events.append)
    assert result.report.totals.pruned_weights > 0
    assert any(e.message.startswith("memory: will not fit") for e in events)


def test_the_cli_names_its_options_in_the_hint(
    tiny_sd_path: Path, recipe: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(memory, "available_host_memory", lambda: 10**6)
    result = CliRunner().invoke(
        cli, ["prune", str(tiny_sd_path), "--recipe", str(recipe), "--out", str(tmp_path / "out"), "--device", "cpu"]
    )
    assert result.exit_code != 0
    assert "will not fit in memory" in result.output and "--no-memory-check" in result.output
