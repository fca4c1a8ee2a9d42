"""The benchmark registry and the one driver: a benchmark of one's own is one class and a registration,
and then the driver, the result file, sweep/tune's plan and the CLI's choices all take it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from support.helpers import CPU

from cpedit.cli.main import cli
from cpedit.errors import CpeditError
from cpedit.eval.benchmark import Benchmark, BenchmarkRun, PromptOptions, prepare_prompts
from cpedit.eval.driver import evaluate, record_result
from cpedit.eval.engine import ImageEntry, PromptSpec
from cpedit.eval.options import ImageOptions
from cpedit.eval.registry import BUILTIN, benchmark_names, get_benchmark, register, unregister
from cpedit.output.record import read_output
from cpedit.progress import ProgressEvent
from cpedit.tuning.measure import measure, plan_evaluation

PROMPTS = [PromptSpec("a red circle"), PromptSpec("a blue square", seed=7)]
IMAGES = ImageOptions(steps=2, batch_size=4)


@dataclass(frozen=True, kw_only=True)
class BrightnessOptions(PromptOptions):
    """The toy benchmark's options: its prompts, and a scale applied to the brightness."""

    scale: float = 1.0


class Brightness(Benchmark):
    """A toy erasure benchmark: the mean pixel value of the images (0..1), times ``scale``."""

    name = "toy-brightness"
    role = "erasure"
    options_type = BrightnessOptions
    erased_metric = "brightness"
    preserved_metric = "brightness"

    def prepare(self, run: BenchmarkRun) -> None:
        prepare_prompts(run)
        run.judge = run.options.scale
        run.metric_model = "mean pixel"

    def score(self, run: BenchmarkRun, phase: Any, entries: Sequence[ImageEntry], folder: Path) -> dict[str, float]:
        run.emit(ProgressEvent(stage="evaluate", message=f"{phase}: brightness"))
        return {"brightness": run.judge * _brightness([e.path(folder) for e in entries])}


def _brightness(paths: list[Path]) -> float:
    return float(np.mean([np.asarray(Image.open(p).convert("RGB"), dtype=np.float64) / 255 for p in paths]))


@pytest.fixture
def toy() -> Iterator[Brightness]:
    benchmark = register(Brightness())
    try:
        yield benchmark
    finally:
        unregister(benchmark.name)


@pytest.fixture(scope="module")
def no_red(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("registry") / "no-red"
    result = CliRunner().invoke(cli, ["prune", "builtin:shapes", "--recipe", "shapes-red", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_a_registered_benchmark_runs_through_the_driver_and_keeps_its_result(
    toy: Brightness, no_red: Path, tmp_path: Path
) -> None:
    assert toy.name in benchmark_names("erasure") and toy.name not in benchmark_names("preservation")
    assert get_benchmark(toy.name) is toy
    events: list[ProgressEvent] = []
    options = BrightnessOptions(prompts=PROMPTS, scale=2.0)
    result = evaluate(
        toy.name,
        no_red,
        options,
        images=IMAGES,
        base=True,
        images_dir=tmp_path / "images",
        compute=CPU,
        on_progress=events.append,
    )
    rendered = result.images
    assert rendered is not None and len(rendered.base) == len(rendered.edited) == 2
    for phase, entries in (("before", rendered.base), ("after", rendered.edited)):
        expected = 2.0 * _brightness([e.path(rendered.folder) for e in entries])
        assert result.metrics["brightness"][phase] == pytest.approx(expected, rel=1e-12)
    assert [e.message for e in events if e.stage == "evaluate"] == ["before: brightness", "after: brightness"]
    assert events[-1].stage == "done"
    protocol = result.protocol
    assert protocol["benchmark"] == toy.name and protocol["metric_model"] == "mean pixel"
    assert protocol["prompt_count"] == 2 and protocol["seeds"] == [0, 7] and protocol["steps"] == 2
    path = record_result(no_red, result, json_file=tmp_path / "toy.json")
    assert path == no_red / "conceptprune" / "eval" / f"{toy.name}.json"
    kept = [e for e in read_output(no_red).evaluations if e.benchmark == toy.name]
    assert len(kept) == 1 and kept[0].metrics == result.metrics
    # another benchmark's options are refused, by name
    with pytest.raises(CpeditError, match="BrightnessOptions") as info:
        evaluate("shapes", no_red, options, compute=CPU)
    assert info.value.argument == "options"


def test_sweep_and_tune_plan_and_measure_a_registered_benchmark(toy: Brightness, no_red: Path, tmp_path: Path) -> None:
    plan = plan_evaluation(toy.name, BrightnessOptions(prompts=PROMPTS), images=IMAGES)
    assert plan.erased_metric == plan.preserved_metric == "brightness"
    assert plan.described == {"benchmark": toy.name, "seed": 0, "steps": 2, "guidance_scale": 7.5, "batch_size": 4}
    measured = measure(no_red, plan, images_root=tmp_path / "images", compute=CPU)
    assert set(measured.erased) == {"before", "after"}
    assert measured.drop == pytest.approx(measured.preserved["before"] - measured.preserved["after"])
    assert (tmp_path / "images" / toy.name / "manifest.jsonl").is_file()


def test_the_cli_choices_come_from_the_registry(toy: Brightness) -> None:
    runner = CliRunner()
    for command in ("sweep", "tune"):
        shown = runner.invoke(cli, [command, "--help"], terminal_width=400)
        assert shown.exit_code == 0 and toy.name in shown.output, shown.output
        refused = runner.invoke(cli, [command, "--eval", "nope"])
        assert refused.exit_code == 2
        assert all(name in refused.output for name in benchmark_names("erasure"))
        assert "clip-score" not in refused.output.split("--eval")[-1].split("\n")[0]
    unregister(toy.name)
    assert toy.name not in runner.invoke(cli, ["sweep", "--help"], terminal_width=400).output


def test_every_builtin_benchmark_has_its_eval_command_and_its_metrics() -> None:
    from cpedit.cli.eval import eval_group

    assert set(eval_group.commands) == {entry.name for entry in BUILTIN}
    for entry in BUILTIN:
        benchmark = get_benchmark(entry.name)
        assert benchmark.name == entry.name and benchmark.role == entry.role
        if entry.role == "erasure":
            assert benchmark.erased_metric
        else:
            assert benchmark.preserved_metric and not benchmark.erased_metric


def test_registering_twice_or_an_unknown_name_are_clear_errors(toy: Brightness) -> None:
    with pytest.raises(CpeditError, match="registered already"):
        register(Brightness())
    with pytest.raises(CpeditError, match="unknown benchmark 'nope'") as info:
        get_benchmark("nope")
    assert info.value.argument == "benchmark" and info.value.reason == "unknown"


def test_image_options_are_validated_once_with_the_field_named() -> None:
    for bad, argument in (
        ({"steps": 0}, "steps"),
        ({"height": 30, "width": 32}, "height"),
        ({"batch_size": 0}, "batch_size"),
    ):
        with pytest.raises(CpeditError) as info:
            ImageOptions(**bad)
        assert info.value.argument == argument
    with pytest.raises(TypeError):
        ImageOptions(0, 30)  # type: ignore[misc]  # keyword-only
