"""The training script of the built-in model runs end to end and is reproducible (tiny settings)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devtools.train_shapes import main

TINY = [
    "--images", "256", "--classifier-steps", "4", "--vae-steps", "3", "--denoiser-steps", "3",
    "--batch", "8", "--eval-per-scene", "0", "--check-scenes", "60", "--threads", "1",
]  # fmt: skip


def test_training_writes_a_loadable_pipeline_and_is_reproducible(tmp_path: Path) -> None:
    import torch
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import load_file

    assert main(["--out", str(tmp_path / "a"), *TINY]) == 0
    assert main(["--out", str(tmp_path / "b"), *TINY]) == 0
    for run in ("a", "b"):
        assert not list(tmp_path.glob(f".{run}.partial*"))
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.safetensors"))
    assert {str(f) for f in files} >= {"classifier.safetensors", "pipeline/unet/diffusion_pytorch_model.safetensors"}
    for f in files:  # the same tensors (the safetensors header's key order may differ)
        a, b = load_file(str(tmp_path / "a" / f)), load_file(str(tmp_path / "b" / f))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f
    report = json.loads((tmp_path / "a" / "training-report.json").read_text())
    assert report["arguments"]["denoiser_steps"] == 3 and "total" in report["timings_s"]
    pipe = StableDiffusionPipeline.from_pretrained(str(tmp_path / "a" / "pipeline"), use_safetensors=True)
    assert pipe.vae.config.scaling_factor != 1.0  # set from the latents' spread
    assert len(pipe.tokenizer) < 700  # the CLIP BPE cut down to the world's words


def test_an_unusable_device_is_refused_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for device in ("tpu", "no-such-device"):
        with pytest.raises(SystemExit) as exit_info:
            main(["--out", str(tmp_path / "w"), "--device", device, *TINY])
        assert exit_info.value.code == 2
        assert "--device" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no output, no partial folder


def test_a_v2_design_trains_on_the_v2_world(tmp_path: Path) -> None:
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline
    from transformers import CLIPTokenizer

    from cpedit.shapes import world
    from cpedit.shapes.classifier import load_classifier
    from devtools.builders import write_clip_tokenizer
    from devtools.train_shapes import DESIGNS, SCHEDULER_CONFIG

    assert main(["--out", str(tmp_path / "v2"), *TINY, "--world", "v2", "--design", "sd-shifted"]) == 0
    assert load_classifier(tmp_path / "v2" / "classifier.safetensors").attributes == world.V2.attributes
    pipe = StableDiffusionPipeline.from_pretrained(str(tmp_path / "v2" / "pipeline"), use_safetensors=True)
    full = CLIPTokenizer.from_pretrained(str(write_clip_tokenizer(tmp_path / "full")), model_max_length=77)
    text = "a sepia glowing gradient cyan hexagon on a navy background"  # V2's words, none of them V1's
    assert pipe.tokenizer.tokenize(text) == full.tokenize(text)  # its words, not spelled out letter by letter
    assert pipe.unet.config.down_block_types == list(DESIGNS["sd-shifted"].unet["down_block_types"])
    # the shifted schedule: at every timestep 16 times the signal-to-noise ratio of SD's
    shifted = pipe.scheduler.alphas_cumprod.double()
    sd = DDIMScheduler(**SCHEDULER_CONFIG).alphas_cumprod.double()
    ratio = (shifted / (1 - shifted)) / (sd / (1 - sd))
    assert torch.allclose(ratio, torch.full_like(ratio, 16.0), rtol=1e-3)  # betas kept to 8 digits, float32
    report = json.loads((tmp_path / "v2" / "training-report.json").read_text())
    assert report["world"] == "v2" and report["design"]["name"] == "sd-shifted"


def test_ffn_spread_reads_how_many_neurons_carry_each_row() -> None:
    import torch

    from devtools.train_shapes import ffn_spread

    width = 256
    one = torch.zeros(3, 5, width)
    one[..., 7] = 2.0
    assert ffn_spread(one).item() == pytest.approx(1 / 16, rel=1e-4)  # one neuron: 1/sqrt(width)
    assert ffn_spread(torch.full((4, width), -0.5)).item() == pytest.approx(1.0, rel=1e-4)  # all alike
    sixteen = torch.zeros(2, width)
    sixteen[:, :16] = torch.tensor([1.0, -1.0]).repeat(8)
    assert ffn_spread(sixteen).item() == pytest.approx((16 / width) ** 0.5, rel=1e-4)  # sqrt(k / width)


def test_the_v2_design_trains_with_its_ffn_spread_penalty(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--out", str(tmp_path / "v2"), *TINY, "--world", "v2", "--design", "v2"]) == 0
    logged = capsys.readouterr().out
    assert "ffn spread" in logged  # the penalty's measure is computed on every ff.net.2 input and logged
    report = json.loads((tmp_path / "v2" / "training-report.json").read_text())
    assert report["design"]["name"] == "v2" and report["world"] == "v2"
