"""ComputeOptions: one validated object for device, dtype, offload and revision, built once.

Each bad field is refused when the object is made, with the field as the error's argument and
no CLI flag in the message; the CLI builds one object from its flags before the command body
runs, and a bad value is a usage error that names the flag (before any model loads).
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import cpedit
from cpedit.cli.main import cli
from cpedit.errors import CpeditError
from cpedit.models.compute import DTYPE_ALIASES, DTYPE_NAMES, ComputeOptions


@pytest.mark.parametrize(
    ("values", "field", "reason"),
    [
        ({"device": "tpu"}, "device", "unknown"),
        ({"device": "cuda:x"}, "device", "unknown"),
        ({"device": ""}, "device", "unknown"),
        ({"device": 0}, "device", "unknown"),
        ({"dtype": "float8"}, "dtype", "unknown"),
        ({"dtype": 16}, "dtype", "unknown"),
        ({"offload": "yes"}, "offload", "wrong_type"),
        ({"offload": True, "device": "cpu"}, "offload", "needs_cuda"),
        ({"offload": True, "device": "mps"}, "offload", "needs_cuda"),
        ({"revision": ""}, "revision", "invalid"),
        ({"revision": "main..dev"}, "revision", "invalid"),
        ({"revision": "a b"}, "revision", "invalid"),
        ({"revision": 3}, "revision", "wrong_type"),
    ],
)
def test_each_bad_field_is_refused_naming_the_field(values: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(CpeditError) as info:
        ComputeOptions(**values)
    assert (info.value.argument, info.value.reason) == (field, reason)
    assert "--" not in str(info.value)  # the library never names a CLI flag


def test_good_values_are_kept_and_short_dtypes_become_long() -> None:
    assert ComputeOptions() == ComputeOptions(device="auto", dtype=None, offload=False, revision=None)
    for device in ("auto", "cpu", "cuda", "cuda:1", "mps"):
        assert ComputeOptions(device=device).device == device
    for short, long in DTYPE_ALIASES.items():
        assert ComputeOptions(dtype=short).dtype == long
    assert all(ComputeOptions(dtype=name).dtype == name for name in DTYPE_NAMES)
    assert ComputeOptions(revision="refs/pr/1").revision == "refs/pr/1"
    assert ComputeOptions(offload=True, device="cuda:0").offload  # the GPU itself is checked when loading


def test_it_is_frozen_and_keyword_only() -> None:
    options = ComputeOptions(device="cpu")
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.device = "cuda"  # type: ignore[misc]
    with pytest.raises(TypeError):
        ComputeOptions("cpu")  # type: ignore[misc]


def test_refuse_offload_stops_only_with_offload() -> None:
    ComputeOptions().refuse_offload("it swaps components")
    with pytest.raises(CpeditError, match="offload does not apply here: it swaps components") as info:
        ComputeOptions(device="cuda", offload=True).refuse_offload("it swaps components")
    assert (info.value.argument, info.value.reason) == ("offload", "conflict")


def test_offload_is_refused_where_the_base_is_swapped_into_the_loaded_pipeline(tmp_path: Path) -> None:
    from cpedit.output.preview import compare_samples, render_preview

    offload = ComputeOptions(device="cuda", offload=True)  # made on any machine; the GPU is checked when loading
    for render in (
        lambda: compare_samples(str(tmp_path), settings=cpedit.SampleSettings(), compute=offload),
        lambda: render_preview(tmp_path, compute=offload),
    ):
        with pytest.raises(CpeditError, match="offload does not apply here") as info:
            render()
        assert (info.value.argument, info.value.reason) == ("offload", "conflict")


def test_it_is_core_api_and_imports_no_torch() -> None:
    assert cpedit.ComputeOptions is ComputeOptions
    code = "import sys, cpedit; cpedit.ComputeOptions(dtype='bf16'); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_a_loaded_pipeline_takes_no_compute_options() -> None:
    with pytest.raises(CpeditError, match="move the pipeline yourself") as info:
        cpedit.EditSession.open(object(), ["shapes-striped"], compute=ComputeOptions(device="cpu"))
    assert info.value.argument == "model"


# --- the CLI builds one object ------------------------------------------------------------------


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What ``cpedit prune`` gives the library as ``compute`` (the prune itself is stopped there)."""
    import cpedit.cli.prune

    seen: list[Any] = []

    def stop(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("compute"))
        raise CpeditError("stopped by the test")

    monkeypatch.setattr(cpedit.cli.prune, "prune", stop)
    return seen


def test_the_cli_gives_the_library_one_compute_object(captured: list[Any], tmp_path: Path) -> None:
    args = ["prune", "-r", "shapes-striped", "-o", str(tmp_path / "out")]
    result = CliRunner().invoke(cli, [*args, "--device", "cuda:1", "--dtype", "bf16", "--revision", "v1", "--offload"])
    assert result.exit_code == 1 and "stopped by the test" in result.output
    assert captured == [ComputeOptions(device="cuda:1", dtype="bfloat16", revision="v1", offload=True)]


@pytest.mark.parametrize(
    ("flags", "flag"),
    [
        (["--device", "tpu"], "--device"),
        (["--device", "cpu", "--offload"], "--offload"),
        (["--revision", "a..b"], "--revision"),
        (["--dtype", "float8"], "--dtype"),  # click's own choice check
    ],
)
def test_a_bad_compute_flag_is_a_usage_error_before_loading(
    captured: list[Any], tmp_path: Path, flags: list[str], flag: str
) -> None:
    result = CliRunner().invoke(cli, ["prune", "-r", "shapes-striped", "-o", str(tmp_path / "out"), *flags])
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{flag}'" in result.output
    assert captured == []  # refused before the library was called
    assert not (tmp_path / "out").exists()


def test_commands_with_a_device_only_build_the_object_too(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["eval", "shapes", str(tmp_path), "--device", "tpu"])
    assert result.exit_code == 2 and "Invalid value for '--device'" in result.output
    result = CliRunner().invoke(cli, ["audit", str(tmp_path), "--device", "npu"])
    assert result.exit_code == 2 and "Invalid value for '--device'" in result.output
