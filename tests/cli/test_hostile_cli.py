"""Careless and hostile command lines: --out and --overwrite, signals, sampling values, ids, endpoints, warnings."""

from __future__ import annotations

import errno
import os
import signal
import time
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

import cpedit
from cpedit.cli.main import cli
from cpedit.errors import CpeditError, CpeditWarning, OutputExistsError
from cpedit.models.compute import ComputeOptions
from cpedit.models.sampling import SampleSettings, check_sample_settings, warn_truncated
from cpedit.output.folder import atomic_folder, check_output_target, remove_stale_partials
from cpedit.shapes.model import builtin_pipeline_path


def _prune_refused(out: Path | str, *, overwrite: bool = False) -> CpeditError:
    with pytest.raises(CpeditError) as info:
        cpedit.prune(
            "builtin:shapes", ["shapes-striped"], out=out, overwrite=overwrite, compute=ComputeOptions(device="cpu")
        )
    assert info.value.argument == "out"
    return info.value


def _fake_output(folder: Path) -> Path:
    (folder / "conceptprune").mkdir(parents=True)
    (folder / "conceptprune" / "report.json").write_text("{}", encoding="utf-8")
    (folder / "model_index.json").write_text("{}", encoding="utf-8")
    return folder


# --- --overwrite -------------------------------------------------------------------------


def test_overwrite_refuses_a_folder_that_is_not_a_cpedit_output(tmp_path: Path, no_model_loading: None) -> None:
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("years of work", encoding="utf-8")
    error = _prune_refused(mine, overwrite=True)
    assert error.reason == "not_output" and "not a cpedit output" in str(error)
    assert (mine / "chapter1.tex").read_text(encoding="utf-8") == "years of work"


def test_overwrite_accepts_a_cpedit_output_or_an_empty_folder(tmp_path: Path) -> None:
    check_output_target(_fake_output(tmp_path / "old"), overwrite=True)
    (tmp_path / "empty").mkdir()
    check_output_target(tmp_path / "empty", overwrite=True)
    with pytest.raises(OutputExistsError):
        check_output_target(tmp_path / "empty", overwrite=False)


def test_the_builtin_model_folder_is_never_an_output(no_model_loading: None) -> None:
    builtin = builtin_pipeline_path()
    assert _prune_refused(builtin, overwrite=True).reason == "builtin"
    assert _prune_refused(builtin / "unet" / "x", overwrite=True).reason == "builtin"
    assert _prune_refused(builtin.parent, overwrite=True).reason == "builtin"  # holds it


def test_the_hub_cache_is_never_an_output(no_model_loading: None) -> None:
    from huggingface_hub import constants

    cache = Path(constants.HF_HUB_CACHE)
    assert _prune_refused(cache / "models--a--b" / "snapshots" / "x", overwrite=True).reason == "hub_cache"


# --- odd --out, checked before loading ----------------------------------------------------


def test_odd_outs_are_refused_before_the_model_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_model_loading: None
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file.txt").write_text("x", encoding="utf-8")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    assert _prune_refused(".", overwrite=True).reason == "current_folder"
    assert _prune_refused(tmp_path, overwrite=True).reason == "current_folder"
    assert _prune_refused("file.txt/out").reason == "not_folder"
    assert _prune_refused("file.txt").reason == "not_folder"
    assert _prune_refused("dangling").reason == "link"


def test_an_unwritable_out_is_refused_before_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_model_loading: None
) -> None:
    import cpedit.output.folder

    readonly = tmp_path / "ro"
    readonly.mkdir()
    if os.geteuid() != 0:
        readonly.chmod(0o500)
    else:  # root writes anywhere: make the probe meet the error a read-only disk gives

        def refuse(*args: object, **kwargs: object) -> str:
            raise OSError(errno.EROFS, "Read-only file system")

        monkeypatch.setattr(cpedit.output.folder.tempfile, "mkdtemp", refuse)
    error = _prune_refused(readonly / "out")
    assert error.reason == "unwritable" and "not writable" in str(error)


def test_the_cli_says_it_with_a_hint_and_no_traceback(tmp_path: Path, no_model_loading: None) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep", encoding="utf-8")
    result = CliRunner().invoke(cli, ["prune", "-r", "shapes-striped", "--out", str(tmp_path / "mine"), "--overwrite"])
    assert result.exit_code == 1 and "not a cpedit output" in result.output and "--out" in result.output
    assert "Traceback" not in result.output


# --- partial folders, ENOSPC, SIGTERM -----------------------------------------------------


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_partials_of_killed_runs_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    out = tmp_path / "out"
    dead = tmp_path / f".out.partial-{_dead_pid()}-abcd1234"
    live = tmp_path / f".out.partial-{os.getpid()}-abcd1234"
    other = tmp_path / ".other.partial-1-abcd1234"
    for folder in (dead, live, other):
        (folder / "unet").mkdir(parents=True)
    check_output_target(out, overwrite=False)
    assert not dead.exists() and live.exists() and other.exists()
    assert remove_stale_partials(out) == []


def test_no_space_left_names_the_output_and_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(CpeditError) as info:
        with atomic_folder(out, overwrite=False) as tmp:
            (tmp / "unet").mkdir()
            raise OSError(errno.ENOSPC, "No space left on device", "/models/base/unet/weights.safetensors")
    assert info.value.reason == "no_space" and info.value.argument == "out"
    assert str(out) in str(info.value) and "/models/base" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_sigterm_during_a_save_leaves_no_partial(tmp_path: Path) -> None:
    from cpedit.cli.guard import terminate_as_interrupt

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt), terminate_as_interrupt(), atomic_folder(out, overwrite=False) as tmp:
        (tmp / "weights").write_bytes(b"unpruned")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is not None


def test_sigterm_stops_prune_like_ctrl_c(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cpedit.edit.prune

    def killed(*args: object, **kwargs: object) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        raise AssertionError("SIGTERM did not stop the run")

    monkeypatch.setattr(cpedit.edit.prune.EditSession, "open", killed)
    previous = signal.getsignal(signal.SIGTERM)
    result = CliRunner().invoke(cli, ["prune", "-r", "shapes-striped", "--out", str(tmp_path / "out")])
    assert result.exit_code == 130 and "Interrupted" in result.output
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) == previous


# --- sampling values ----------------------------------------------------------------------

_PIPE = SimpleNamespace(scheduler=SimpleNamespace(config=SimpleNamespace(num_train_timesteps=1000)))


@pytest.mark.parametrize(
    "values,argument",
    [
        ({"steps": 5000}, "steps"),
        ({"steps": 0}, "steps"),
        ({"guidance_scale": float("nan")}, "guidance_scale"),
        ({"guidance_scale": float("inf")}, "guidance_scale"),
        ({"height": 100, "width": 96}, "height"),
        ({"height": 64, "width": 10**6}, "width"),
        ({"height": 64}, "height"),
    ],
)
def test_odd_sampling_values_are_explained(values: dict[str, Any], argument: str) -> None:
    with pytest.raises(CpeditError) as info:
        check_sample_settings(SampleSettings(**values), _PIPE)
    assert info.value.argument == argument


@pytest.mark.parametrize(
    "args,flag",
    [
        (["--height", "100", "--width", "96"], "--height"),
        (["--guidance-scale", "nan"], "--guidance-scale"),
        (["--width", "100000", "--height", "64"], "--width"),
    ],
)
def test_sample_refuses_odd_values_before_loading(
    tmp_path: Path, no_model_loading: None, args: list[str], flag: str
) -> None:
    command = ["sample", "builtin:shapes", "-p", "a red circle", "--out", str(tmp_path / "x.png"), *args]
    result = CliRunner().invoke(cli, command)
    assert result.exit_code == 1 and "Traceback" not in result.output and flag in result.output, result.output


def test_allocation_failures_are_explained() -> None:
    import torch

    from cpedit.models.sampling import generate

    class Pipe:
        device = torch.device("cpu")
        scheduler = _PIPE.scheduler

        def __call__(self, *args: object, **kwargs: object) -> None:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough memory")

    with pytest.raises(CpeditError, match="not enough memory") as info:
        generate(Pipe(), ["a cat"], SampleSettings(steps=1, height=4096, width=4096))
    assert info.value.reason == "out_of_memory"


def test_prompts_cut_to_the_token_limit_warn() -> None:
    class Tokenizer:
        model_max_length = 77

        def __call__(self, prompt: str, truncation: bool = True) -> Any:
            return SimpleNamespace(input_ids=prompt.split())

    pipe = SimpleNamespace(tokenizer=Tokenizer())
    with pytest.warns(CpeditWarning, match="longer than the 77 tokens"):
        warn_truncated(pipe, ["word " * 100])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_truncated(pipe, ["a short prompt"])


def test_nothing_pruned_warns_and_the_cli_shows_it(tmp_path: Path) -> None:
    recipe = tmp_path / "same.yaml"
    recipe.write_text(
        "cpedit: 1\nname: same\nconcept: nothing\nprompts: {target: a red circle, base: a red circle}\n"
        "prune: {timesteps: 2}\nsampling: {steps: 2}\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(cli, ["prune", "-r", str(recipe), "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "Warning: no weight was pruned" in result.output


# --- ids, endpoints, wording --------------------------------------------------------------


@pytest.mark.parametrize("bad", ["../x", "a/b/c", "/etc/passwd", "x"])
def test_models_info_refuses_odd_ids_without_a_traceback(bad: str, hub: Any) -> None:
    result = CliRunner().invoke(cli, ["models", "info", bad])
    assert result.exit_code == 1 and "Traceback" not in result.output and bad in result.output
    assert hub.requests == []


def test_credentials_in_hf_endpoint_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    from cpedit.hub.errors import describe_hub_error, endpoint, redact

    monkeypatch.setattr(constants, "ENDPOINT", "https://bob:s3cret@hub.example.com/")
    assert "s3cret" not in endpoint() and endpoint() == "https://***@hub.example.com"
    assert "s3cret" not in redact("GET https://bob:s3cret@hub.example.com/api failed")
    described = describe_hub_error(ConnectionRefusedError("refused"), repo_id="a/b")
    assert described is not None and "s3cret" not in described[1]


def test_push_failures_say_upload_not_download() -> None:
    from cpedit.hub.errors import describe_hub_error

    described = describe_hub_error(ConnectionRefusedError("refused"), repo_id="alice/out", action="upload")
    assert described is not None
    reason, message = described
    assert reason == "network" and "upload" in message
    assert "download" not in message and "cache" not in message
