"""Train the built-in shapes model and its classifier from scratch, reproducibly.

Run ``python -m devtools.train_shapes`` from the repository root (under an hour on 2 CPU cores; see
the training report) to rebuild ``cpedit/shapes/weights/``; ``--device cuda`` trains on a GPU (random
draws stay on the CPU, so the data is the same; ``--workers`` draws the scenes in parallel processes):

1. draw a training set of scenes (:mod:`cpedit.shapes.world`; the held-out attribute
   combinations are never drawn);
2. train the attribute classifier on all combinations, with blur and noise;
3. train a small ``AutoencoderKL`` (32x32 images -> 16x16x4 latents) and set its
   ``scaling_factor`` from the latents' spread, as Stable Diffusion's VAE has;
4. train a small CLIP text encoder (the real CLIP BPE, cut down to the world's words)
   and a ``UNet2DConditionModel`` (``--design``, see :data:`DESIGNS`), jointly, on noise
   prediction, with 10% empty captions for classifier-free guidance and an EMA of the UNet;
5. save a standard ``StableDiffusionPipeline`` folder (DDIM scheduler, SD 1.x betas, or the
   design's shifted ones), reload it with ``from_pretrained`` and measure, with the classifier,
   how often generated images show the prompted attributes on held-out and on seen captions.

The defaults (``--world v1 --design v1``) rebuild the shipped model.  ``--world v2`` trains on
the world's richer V2 vocabulary (issue 27's built-in model v2; the designs were compared with
``benchmarks/shapes_design.py``, see benchmarks/README.md), e.g. ``--world v2 --design
sd-shifted --images 60000 --classifier-steps 3000 --vae-steps 2000``; ``--stages-from`` reuses
the classifier and VAE of an earlier run with the same stage settings.

Everything is seeded; the same command on the same machine and torch version gives the
same weights.  Needs the ``openai-clip`` package for the BPE vocabulary (in the
``test`` extra).  A development tool, not part of the installed library: it needs a checkout of
the repository (``pip install cpedit`` ships the weights, not this script).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cpedit.errors import CpeditError
from cpedit.eval.shapes import generate_images, score_images
from cpedit.models.loading import resolve_device
from cpedit.shapes import world
from cpedit.shapes.classifier import ShapesClassifier, to_model_input
from cpedit.shapes.model import WEIGHTS_DIR

WORDS = list(world.CAPTION_WORDS)
"""The shipped (V1) model's tokenizer words."""


@dataclass(frozen=True)
class ClassifierSettings:
    """How the classifier of a vocabulary is built and trained.

    ``hidden``: the width of its shared layer; ``steps * batch // scene_divisor`` scenes are
    drawn for it (each is seen ``scene_divisor`` times, with fresh blur and noise).
    """

    hidden: int
    scene_divisor: int


CLASSIFIER_SETTINGS = {
    "v1": ClassifierSettings(hidden=128, scene_divisor=4),  # the shipped classifier's
    "v2": ClassifierSettings(hidden=256, scene_divisor=6),  # six heads want a wider shared layer
}
"""The classifier's width and data per world vocabulary."""

VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "block_out_channels": (32, 64),
    "down_block_types": ("DownEncoderBlock2D",) * 2,
    "up_block_types": ("UpDecoderBlock2D",) * 2,
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 16,
    "sample_size": world.IMAGE_SIZE,
}
SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}
"""Stable Diffusion 1.x's noise schedule (DDIM sampling, SD's betas)."""


@dataclass(frozen=True)
class Design:
    """One architecture of the built-in model: its text encoder, its UNet and its noise schedule.

    ``snr_shift`` multiplies the signal-to-noise ratio of SD's schedule at every timestep
    (1: SD's own betas).  A 16x16 latent holds 16 times fewer pixels than SD's 64x64, so the
    same noise level hides its global structure sooner; multiplying the SNR by 16 keeps what
    each timestep still shows of the image roughly where SD has it (the resolution shift of
    Hoogeboom et al., "simple diffusion", 2023), so the paper's first tau of 50 steps see what
    they see on SD.

    ``ffn_sparsity`` weighs a penalty on how spread each token's feed-forward activation (the
    input of every ``ff.net.2``, the neurons ConceptPrune scores) is over the layer's neurons:
    the Hoyer measure ``|h|_1 / (|h|_2 sqrt(width))``, 1 when every neuron is equally active,
    ``sqrt(k / width)`` when k are, ``1/sqrt(width)`` when one is. It is scale-free, so it does not
    push the FFN's output down (the model keeps using its FFNs), and it acts only on a layer whose
    mean measure is above ``ffn_spread_target``: each token's activation is pushed onto about
    ``target**2 * width`` neurons and no fewer (weight 0: no penalty). It was meant to make the
    neurons specialise as a large model's do; on the full run of design ``v2`` the code became
    sparse per token but a concept still spread over many neurons (benchmarks/README.md).
    """

    description: str
    text_encoder: dict[str, Any]
    unet: dict[str, Any]
    snr_shift: float = 1.0
    ffn_sparsity: float = 0.0
    ffn_spread_target: float = 0.3


_V1_TEXT = {
    "hidden_size": 64,
    "intermediate_size": 256,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "projection_dim": 64,
}
_CLIP_TEXT = {
    "hidden_size": 128,
    "intermediate_size": 512,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "projection_dim": 128,
}
_UNET_COMMON = {
    "sample_size": world.IMAGE_SIZE // 2,
    "in_channels": 4,
    "out_channels": 4,
    "attention_head_dim": 8,
    "norm_num_groups": 16,
}
_SD_BLOCKS = {
    # Stable Diffusion 1.x's layout: cross-attention transformer blocks at every resolution but
    # the lowest, a plain block there, a cross-attention mid block; channels x1, x2, x4, x4
    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    "cross_attention_dim": 128,
}
_V1_BLOCKS = {
    # the first built-in model's UNet: 3 resolutions, cross-attention transformer blocks at 8x8 and 4x4
    **_UNET_COMMON,
    "block_out_channels": (32, 64, 96),
    "layers_per_block": 1,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
}
DESIGNS: dict[str, Design] = {
    "v1": Design(
        "the first built-in model's architecture: 3 resolutions, transformer blocks at 8x8 and 4x4 only, "
        "7 FFN layers of inner width 256-384, a 64-wide text encoder; SD's schedule",
        _V1_TEXT,
        {**_V1_BLOCKS, "cross_attention_dim": 64},
    ),
    "sd": Design(
        "SD 1.x's block layout in miniature (channels 32-64-128-128, one layer per block: 10 transformer "
        "blocks at 16x16, 8x8, 4x4 and the 2x2 mid block, GEGLU FFNs of inner width 4 x dim), "
        "a 128-wide CLIP text encoder; SD's schedule",
        _CLIP_TEXT,
        {**_UNET_COMMON, **_SD_BLOCKS, "block_out_channels": (32, 64, 128, 128), "layers_per_block": 1},
    ),
    "sd-shifted": Design(
        "the `sd` design trained with SD's schedule shifted to the 16x16 latent (SNR x16)",
        _CLIP_TEXT,
        {**_UNET_COMMON, **_SD_BLOCKS, "block_out_channels": (32, 64, 128, 128), "layers_per_block": 1},
        snr_shift=16.0,
    ),
    "v2": Design(
        "v1's UNet (transformer blocks at 8x8 and 4x4, 7 GEGLU FFNs of SD's 4x width) with a 128-wide "
        "4-layer CLIP text encoder, and a penalty on FFN activations spread over more than about 6% of a layer's "
        "neurons (Hoyer measure above 0.25, weight 0.05); SD's schedule",
        _CLIP_TEXT,
        {**_V1_BLOCKS, "cross_attention_dim": 128},
        ffn_sparsity=0.05,
        ffn_spread_target=0.25,
    ),
    "sd2-shifted": Design(
        "SD 1.x's block layout with its two layers per block (16 transformer blocks, as in SD), "
        "channels 32-64-128-128, the 128-wide CLIP text encoder; the schedule shifted (SNR x16)",
        _CLIP_TEXT,
        {**_UNET_COMMON, **_SD_BLOCKS, "block_out_channels": (32, 64, 128, 128), "layers_per_block": 2},
        snr_shift=16.0,
    ),
}
"""The designs compared before the long run (benchmarks/README.md); :data:`DEFAULT_DESIGN` ships."""
DEFAULT_DESIGN = "v1"


def scheduler_config(design: Design) -> dict[str, Any]:
    """The DDIM scheduler settings of ``design``: SD's, with explicit betas when its SNR is shifted."""
    if design.snr_shift == 1.0:
        return dict(SCHEDULER_CONFIG)
    steps = SCHEDULER_CONFIG["num_train_timesteps"]
    start, end = SCHEDULER_CONFIG["beta_start"] ** 0.5, SCHEDULER_CONFIG["beta_end"] ** 0.5
    sd_betas = np.linspace(start, end, steps, dtype=np.float64) ** 2
    sd_alphas = np.cumprod(1.0 - sd_betas)
    snr = design.snr_shift * sd_alphas / (1.0 - sd_alphas)
    alphas = snr / (1.0 + snr)
    betas = 1.0 - alphas / np.concatenate([[1.0], alphas[:-1]])
    return {**SCHEDULER_CONFIG, "trained_betas": [float(f"{b:.8g}") for b in betas]}


HELD_OUT_CHECK_SEED = 10_000
"""Seed of the final check's images for the held-out captions (the report's numbers)."""
SEEN_CHECK_SEED = 20_000
"""Seed of the final check's images for the seen captions."""


def log(message: str, start: float) -> None:
    print(f"[{time.perf_counter() - start:7.1f}s] {message}", flush=True)


def use_deterministic_kernels(device: torch.device) -> None:
    """On CUDA, pick deterministic kernels where they exist (a warning names any op that has none)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)


def make_dataset(
    count: int, *, seed: int, workers: int = 1, vocabulary: world.Vocabulary = world.V1
) -> tuple[np.ndarray, list[world.Scene]]:
    """``count`` drawn training scenes (never a held-out combination) and the scenes drawn."""
    pairs = world.sample(count, seed=seed, scenes=world.training_scenes(vocabulary=vocabulary))
    return world.render_many(pairs, workers=workers, vocabulary=vocabulary), [scene for scene, _ in pairs]


def degrade(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mild random blur and noise (model input in [-1, 1]) so the classifier reads soft images."""
    n = batch.shape[0]
    blur = F.avg_pool2d(F.pad(batch, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    amount = torch.rand(n, 1, 1, 1, generator=generator) * 0.6
    mixed = batch * (1 - amount) + blur * amount
    noise = torch.randn(mixed.shape, generator=generator) * torch.rand(n, 1, 1, 1, generator=generator) * 0.08
    return (mixed + noise).clamp(-1, 1)


def labels_of(scenes: list[world.Scene], vocabulary: world.Vocabulary) -> dict[str, torch.Tensor]:
    return {
        name: torch.tensor([values.index(scene.value(name)) for scene in scenes])
        for name, values in vocabulary.attributes.items()
    }


def train_classifier(
    *,
    steps: int,
    batch: int,
    seed: int,
    start: float,
    device: torch.device,
    check_scenes: int = 3000,
    workers: int = 1,
    vocabulary: world.Vocabulary = world.V1,
) -> tuple[ShapesClassifier, dict[str, float]]:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    # the classifier sees every combination: the training scenes plus the held-out ones
    settings = CLASSIFIER_SETTINGS[vocabulary.name]
    images, scenes = make_dataset(
        steps * batch // settings.scene_divisor, seed=seed + 1, workers=workers, vocabulary=vocabulary
    )
    held_pairs = world.sample(len(scenes) // 9, seed=seed + 2, scenes=world.held_out_scenes(vocabulary=vocabulary))
    images = np.concatenate([images, world.render_many(held_pairs, workers=workers, vocabulary=vocabulary)])
    scenes = scenes + [scene for scene, _ in held_pairs]
    inputs = to_model_input(images)
    labels = labels_of(scenes, vocabulary)
    model = ShapesClassifier(vocabulary=vocabulary, hidden=settings.hidden).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4, foreach=True)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=2e-3, total_steps=steps, pct_start=min(0.5, max(0.3, 3 / steps))
    )
    model.train()
    for step in range(steps):
        idx = torch.randint(0, len(inputs), (batch,), generator=generator)
        logits = model(degrade(inputs[idx], generator).to(device))
        loss = sum(F.cross_entropy(logits[name], labels[name][idx].to(device)) for name in vocabulary.attributes)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 200 == 0 or step == steps - 1:
            log(f"classifier step {step}/{steps} loss {loss.item():.4f}", start)
    model.eval()
    # held-out generated scenes: fresh seeds, every combination
    test_pairs = world.sample(check_scenes, seed=seed + 3, vocabulary=vocabulary)
    test_images = world.render_many(test_pairs, workers=workers, vocabulary=vocabulary)
    accuracy = attribute_accuracy(model, test_images, [scene for scene, _ in test_pairs])
    log(f"classifier accuracy on {check_scenes} held-out scenes: {accuracy}", start)
    return model, accuracy


def train_vae(images: np.ndarray, *, steps: int, batch: int, seed: int, start: float, device: torch.device) -> Any:
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    vae = AutoencoderKL(**VAE_CONFIG).to(device)
    inputs = to_model_input(images)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0, foreach=True)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=1e-3, total_steps=steps, pct_start=min(0.5, max(0.05, 3 / steps))
    )
    vae.train()
    for step in range(steps):
        idx = torch.randint(0, len(inputs), (batch,), generator=generator)
        x = inputs[idx].to(device)
        posterior = vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=generator).to(device)
        reconstruction = vae.decode(z).sample
        loss = F.l1_loss(reconstruction, x) + F.mse_loss(reconstruction, x) + 1e-6 * posterior.kl().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 200 == 0 or step == steps - 1:
            log(f"vae step {step}/{steps} loss {loss.item():.4f}", start)
    vae.eval()
    return vae


@torch.no_grad()
def encode_latents(vae: Any, images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and standard deviations of ``images``, on the VAE's device."""
    means, stds = [], []
    inputs = to_model_input(images)
    device = next(vae.parameters()).device
    for i in range(0, len(inputs), 512):
        dist = vae.encode(inputs[i : i + 512].to(device)).latent_dist
        means.append(dist.mean)
        stds.append(dist.std)
    return torch.cat(means), torch.cat(stds)


def ffn_spread(activations: torch.Tensor) -> torch.Tensor:
    """The mean Hoyer measure of ``activations``' last dimension (see :class:`Design`'s ``ffn_sparsity``).

    ``|h|_1 / (|h|_2 sqrt(width))`` per row, averaged over the rows: 1 when every neuron of a row is
    equally active, ``sqrt(k / width)`` when k are, ``1 / sqrt(width)`` when one is.
    """
    width = activations.shape[-1]
    per_row = activations.abs().sum(-1) / (activations.norm(dim=-1) + 1e-6)
    return per_row.mean() / math.sqrt(width)


def train_denoiser(
    latent_mean: torch.Tensor,
    latent_std: torch.Tensor,
    scenes: list[world.Scene],
    tokenizer: Any,
    *,
    design: Design,
    vocabulary: world.Vocabulary = world.V1,
    scaling_factor: float,
    steps: int,
    batch: int,
    seed: int,
    start: float,
    device: torch.device,
) -> tuple[Any, Any]:
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **design.text_encoder,
    )
    text_encoder = CLIPTextModel(text_config).to(device)
    unet = UNet2DConditionModel(**design.unet).to(device)
    ema = copy.deepcopy(unet).requires_grad_(False)
    noise_scheduler = DDPMScheduler(**{k: v for k, v in scheduler_config(design).items() if k != "set_alpha_to_one"})
    parameters = list(unet.parameters()) + list(text_encoder.parameters())
    # foreach (not the default on the CPU): the same numbers as the per-tensor loop, bit for bit
    # (checked), with less per-tensor overhead
    optimizer = torch.optim.AdamW(parameters, lr=8e-4, weight_decay=0.01, foreach=True)
    warmup = min(300, steps // 10)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    ema_parameters = list(ema.parameters())
    unet_parameters = list(unet.parameters())
    spreads: list[torch.Tensor] = []
    if design.ffn_sparsity:

        def record_spread(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            spreads.append(ffn_spread(inputs[0]))

        for name, module in unet.named_modules():
            if name.endswith("ff.net.2"):
                module.register_forward_pre_hook(record_spread)
    token_cache: dict[str, torch.Tensor] = {}

    def tokens_of(captions: list[str]) -> torch.Tensor:
        # the world has a few thousand distinct captions: tokenize each once
        missing = sorted({c for c in captions if c not in token_cache})
        if missing:
            ids = tokenizer(
                missing,
                padding="max_length",
                max_length=tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            ).input_ids
            token_cache.update(zip(missing, ids, strict=True))
        return torch.stack([token_cache[c] for c in captions])

    unet.train()
    text_encoder.train()
    for step in range(steps):
        # every random draw is made on the CPU, so a CUDA run sees the same data as a CPU run
        idx = torch.randint(0, len(latent_mean), (batch,), generator=generator)
        shape = (batch, *latent_mean.shape[1:])
        picked = idx.to(device)
        latents = latent_mean[picked] + latent_std[picked] * torch.randn(shape, generator=generator).to(device)
        latents = latents * scaling_factor
        captions = [
            ""
            if rng.random() < 0.1
            else world.random_caption(scenes[int(i)], rng, omit_probability=0.15, vocabulary=vocabulary)
            for i in idx
        ]
        tokens = tokens_of(captions).to(device)
        noise = torch.randn(shape, generator=generator).to(device)
        timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (batch,), generator=generator)
        timesteps = timesteps.to(device)
        noisy = noise_scheduler.add_noise(latents, noise, timesteps)
        hidden = text_encoder(tokens)[0]
        spreads.clear()
        prediction = unet(noisy, timesteps, encoder_hidden_states=hidden).sample
        loss = F.mse_loss(prediction, noise)
        spread = torch.stack(spreads) if spreads else None
        if spread is not None:
            loss = loss + design.ffn_sparsity * (spread - design.ffn_spread_target).clamp_min(0).mean()
            spread = spread.mean()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0, foreach=True)
        optimizer.step()
        schedule.step()
        decay = min(0.999, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema_parameters, unet_parameters, 1 - decay)
        if step % 250 == 0 or step == steps - 1:
            spread_text = "" if spread is None else f" ffn spread {spread.item():.3f}"
            rate = schedule.get_last_lr()[0]
            log(f"denoiser step {step}/{steps} loss {loss.item():.4f}{spread_text} lr {rate:.2e}", start)
    text_encoder.eval()
    return ema.eval().cpu(), text_encoder.cpu()


def save_pipeline(folder: Path, *, unet: Any, vae: Any, text_encoder: Any, tokenizer: Any, design: Design) -> None:
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=DDIMScheduler(**scheduler_config(design)),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(folder), safe_serialization=True)


@torch.no_grad()
def measure_attributes(
    pipeline_dir: Path,
    classifier: ShapesClassifier,
    scenes: list[world.Scene],
    *,
    per_scene: int,
    seed: int,
    steps: int,
    guidance_scale: float,
    device: torch.device,
) -> dict[str, float]:
    """Per-attribute fraction of generated images whose attribute matches the caption."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(pipeline_dir), use_safetensors=True).to(device)
    pipe.set_progress_bar_config(disable=True)
    truth = [scene for scene in scenes for _ in range(per_scene)]
    images = generate_images(
        pipe,
        [world.caption(scene) for scene in truth],
        seed=seed,
        steps=steps,
        guidance_scale=guidance_scale,
        batch_size=64,
        label="check",
        on_progress=None,
        done=0,
        total=0,
    )
    return attribute_accuracy(classifier, images, truth)


def attribute_accuracy(
    classifier: ShapesClassifier, images: np.ndarray | torch.Tensor, scenes: list[world.Scene]
) -> dict[str, float]:
    """Per attribute, the fraction of ``images`` the classifier reads as their ``scenes``."""
    return score_images(classifier, images, scenes, [], mode="preserved")[1]


STAGE_ARGUMENTS = ("seed", "images", "classifier_steps", "vae_steps", "batch", "check_scenes")
"""The arguments that decide the classifier and the VAE (with the world, the device and torch)."""


def world_fingerprint(vocabulary: world.Vocabulary = world.V1) -> str:
    """A digest of the world's vocabulary and of 16 drawn scenes: equal fingerprints, equal training data."""
    import hashlib

    digest = hashlib.sha256(json.dumps(vocabulary.attributes).encode())
    digest.update(world.render_many(world.sample(16, seed=123, vocabulary=vocabulary), vocabulary=vocabulary).tobytes())
    return digest.hexdigest()[:16]


def reuse_stages(args: argparse.Namespace, tmp: Path) -> tuple[ShapesClassifier, Any, dict[str, Any]]:
    """The classifier and VAE of an earlier run (``--stages-from``), copied into ``tmp``, and what its report says.

    The earlier run must have used the same world, torch version, device type and stage
    arguments, so its classifier and VAE are the ones this run would train (the stages are
    seeded and deterministic); anything else is refused.
    """
    from diffusers import AutoencoderKL

    from cpedit.shapes.classifier import load_classifier

    folder: Path = args.stages_from
    report_file = folder / "training-report.json"
    try:
        report = json.loads(report_file.read_text())
    except (OSError, ValueError) as error:
        raise SystemExit(f"--stages-from: cannot read {report_file}: {error}") from None
    device = torch.device(args.device).type
    wanted = {
        **{name: getattr(args, name) for name in STAGE_ARGUMENTS},
        "world_fingerprint": world_fingerprint(world.VOCABULARIES[args.world]),
        "torch": torch.__version__,
        "device": device,
    }
    found = {
        **{name: report.get("arguments", {}).get(name) for name in STAGE_ARGUMENTS},
        "world_fingerprint": report.get("world_fingerprint"),
        "torch": report.get("torch"),
        "device": report.get("arguments", {}).get("device", "").split(":")[0],
    }
    differing = [f"{k} ({found[k]!r} there, {v!r} here)" for k, v in wanted.items() if found[k] != v]
    if differing:
        raise SystemExit(f"--stages-from: {folder} was trained differently: {', '.join(differing)}")
    shutil.copy(folder / "classifier.safetensors", tmp / "classifier.safetensors")
    classifier = load_classifier(tmp / "classifier.safetensors")
    vae = AutoencoderKL.from_pretrained(str(folder / "pipeline" / "vae")).eval()
    timings = {k: v for k, v in report["timings_s"].items() if k in ("classifier", "vae")}
    return (
        classifier,
        vae,
        {
            "timings_s": timings,
            "classifier_accuracy": report["classifier_accuracy_on_drawn_scenes"],
            "vae_accuracy": report["classifier_accuracy_on_vae_reconstructions"],
            "source": {"command": report["command"], "timings_s": timings},
        },
    )


def check_scenes(scenes: list[world.Scene], count: int) -> list[world.Scene]:
    """``count`` captions spread evenly over ``scenes`` (the final check's captions)."""
    stride = max(1, len(scenes) // count)
    return scenes[::stride][:count]


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.train_shapes",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR, help="folder to (re)write (default: the package's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every stage (default: 0, the shipped weights)")
    parser.add_argument("--threads", type=_positive, default=2, help="CPU threads torch may use (default: 2)")
    parser.add_argument(
        "--workers",
        type=_positive,
        default=2,
        help="processes that draw the scenes (default: 2; the images do not depend on it)",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="cpu (default), cuda[:N], mps or auto; random draws are always made on the CPU, so every device "
        "sees the same data (bitwise-equal weights are promised only for the same device and torch version)",
    )
    parser.add_argument("--images", type=_positive, default=40000, help="training scenes (default: 40000)")
    parser.add_argument("--classifier-steps", type=_positive, default=2000, help="batches of 128 (default: 2000)")
    parser.add_argument("--vae-steps", type=_positive, default=1500, help="VAE batches (default: 1500)")
    parser.add_argument(
        "--denoiser-steps", type=_positive, default=7000, help="UNet and text encoder batches (default: 7000)"
    )
    parser.add_argument("--batch", type=_positive, default=64, help="VAE and denoiser batch size (default: 64)")
    parser.add_argument(
        "--stages-from",
        type=Path,
        default=None,
        metavar="FOLDER",
        help="reuse the classifier and VAE of an earlier run's output FOLDER instead of training them again "
        "(it must have used the same world, seed, stage settings, device type and torch: then they are the same)",
    )
    parser.add_argument(
        "--design",
        choices=sorted(DESIGNS),
        default=DEFAULT_DESIGN,
        help=f"architecture and noise schedule (default: {DEFAULT_DESIGN}, the shipped one; see DESIGNS)",
    )
    parser.add_argument(
        "--world",
        choices=sorted(world.VOCABULARIES),
        default="v1",
        help="the world's vocabulary (default: v1, the shipped model's; v2: the richer one of issue 27)",
    )
    parser.add_argument(
        "--eval-per-scene", type=int, default=8, help="images per caption in the final check (default: 8; 0: skip it)"
    )
    parser.add_argument(
        "--check-captions",
        type=_positive,
        default=30,
        help="held-out and seen captions in the final check, each (default: 30)",
    )
    parser.add_argument(
        "--check-scenes", type=_positive, default=3000, help="drawn scenes the classifier is checked on (default: 3000)"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS; read when CUDA starts
    torch.set_num_threads(args.threads)
    try:
        device = resolve_device(args.device)
    except CpeditError as error:
        parser.error(f"--device: {error}")
    out: Path = args.out
    tmp = out.parent / f".{out.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        _train(args, tmp, argv, device=device)
        # swap in the new folder; the old one is removed only once the new one is in place
        old = out.parent / f".{out.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        if out.exists():
            out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"wrote {out}", flush=True)
    return 0


def _train(args: argparse.Namespace, tmp: Path, argv: list[str] | None, *, device: torch.device) -> None:
    """Every stage, writing into ``tmp``."""
    from transformers import CLIPTokenizer

    from devtools.builders import write_clip_tokenizer

    start = time.perf_counter()
    vocabulary = world.VOCABULARIES[args.world]
    timings: dict[str, float] = {}
    use_deterministic_kernels(device)

    if args.stages_from is not None:
        classifier, vae, stages = reuse_stages(args, tmp)
        timings.update(stages["timings_s"])
        classifier_accuracy, vae_accuracy = stages["classifier_accuracy"], stages["vae_accuracy"]
        log(f"reused the classifier and VAE of {args.stages_from}", start)
        t = time.perf_counter()
        images, scenes = make_dataset(args.images, seed=args.seed, workers=args.workers, vocabulary=vocabulary)
        latent_mean, latent_std = encode_latents(vae, images)
        scaling_factor = float(vae.config.scaling_factor)
        log(f"drew and encoded {len(images)} training scenes", start)
        timings["data"] = time.perf_counter() - t
    else:
        t = time.perf_counter()
        classifier, classifier_accuracy = train_classifier(
            steps=args.classifier_steps,
            batch=128,
            seed=args.seed + 100,
            start=start,
            device=device,
            check_scenes=args.check_scenes,
            workers=args.workers,
            vocabulary=vocabulary,
        )
        from safetensors.torch import save_file

        save_file(
            {k: v.detach().cpu().contiguous() for k, v in classifier.state_dict().items()},
            str(tmp / "classifier.safetensors"),
            metadata={"format": "cpedit-shapes-classifier/1", "heads": ",".join(vocabulary.attributes)},
        )
        timings["classifier"] = time.perf_counter() - t

        t = time.perf_counter()
        images, scenes = make_dataset(args.images, seed=args.seed, workers=args.workers, vocabulary=vocabulary)
        log(f"drew {len(images)} training scenes", start)
        timings["data"] = time.perf_counter() - t

        t = time.perf_counter()
        vae = train_vae(
            images, steps=args.vae_steps, batch=args.batch, seed=args.seed + 200, start=start, device=device
        )
        latent_mean, latent_std = encode_latents(vae, images)
        scaling_factor = float(1.0 / latent_mean.std())
        vae.register_to_config(scaling_factor=scaling_factor)
        recon_check = world.sample(max(1, args.check_scenes * 2 // 3), seed=args.seed + 4, vocabulary=vocabulary)
        recon_images = world.render_many(recon_check, workers=args.workers, vocabulary=vocabulary)
        with torch.no_grad():
            recon_inputs = to_model_input(recon_images).to(device)
            decoded = vae.decode(vae.encode(recon_inputs).latent_dist.mean).sample
        reconstructions = ((decoded.clamp(-1, 1) + 1) / 2).cpu()
        vae_accuracy = attribute_accuracy(classifier, reconstructions, [scene for scene, _ in recon_check])
        log(f"vae: scaling factor {scaling_factor:.4f}; classifier on reconstructions {vae_accuracy}", start)
        timings["vae"] = time.perf_counter() - t

    t = time.perf_counter()
    write_clip_tokenizer(tmp / "tokenizer-src", words=list(vocabulary.caption_words))
    tokenizer = CLIPTokenizer.from_pretrained(str(tmp / "tokenizer-src"), model_max_length=77)
    unet, text_encoder = train_denoiser(
        latent_mean,
        latent_std,
        scenes,
        tokenizer,
        design=DESIGNS[args.design],
        vocabulary=vocabulary,
        scaling_factor=scaling_factor,
        steps=args.denoiser_steps,
        batch=args.batch,
        seed=args.seed + 300,
        start=start,
        device=device,
    )
    timings["denoiser"] = time.perf_counter() - t
    save_pipeline(
        tmp / "pipeline",
        unet=unet,
        vae=vae.cpu(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        design=DESIGNS[args.design],
    )
    shutil.rmtree(tmp / "tokenizer-src")

    t = time.perf_counter()
    settings = {"steps": 25, "guidance_scale": 7.5}
    held_scenes = check_scenes(world.held_out_scenes(vocabulary=vocabulary), args.check_captions)
    seen_scenes = check_scenes(world.training_scenes(vocabulary=vocabulary), args.check_captions)
    held: dict[str, float] | None = None
    seen: dict[str, float] | None = None
    if args.eval_per_scene > 0:
        held = measure_attributes(
            tmp / "pipeline",
            classifier,
            held_scenes,
            per_scene=args.eval_per_scene,
            seed=HELD_OUT_CHECK_SEED,
            device=device,
            **settings,
        )
        seen = measure_attributes(
            tmp / "pipeline",
            classifier,
            seen_scenes,
            per_scene=args.eval_per_scene,
            seed=SEEN_CHECK_SEED,
            device=device,
            **settings,
        )
        log(f"generated images show the prompted attributes: held-out {held}; seen {seen}", start)
    timings["evaluate"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - start

    size = sum(f.stat().st_size for f in (tmp / "pipeline").rglob("*") if f.is_file())
    report = {
        "command": "python -m devtools.train_shapes " + " ".join(argv or []),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "threads": args.threads,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else device.type,
        },
        "torch": torch.__version__,
        "arguments": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "out"},
        "design": {"name": args.design, "description": DESIGNS[args.design].description},
        "world": args.world,
        "world_fingerprint": world_fingerprint(vocabulary),
        "stages_from": None if args.stages_from is None else stages["source"],
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "pipeline_bytes": size,
        "classifier_accuracy_on_drawn_scenes": classifier_accuracy,
        "classifier_accuracy_on_vae_reconstructions": vae_accuracy,
        "generation_settings": settings,
        "generated_attribute_accuracy": {
            "held_out_captions": held,
            "seen_captions": seen,
            "images_per_caption": args.eval_per_scene,
            "held_out_captions_count": len(held_scenes),
            "seen_captions_count": len(seen_scenes),
        },
    }
    (tmp / "training-report.json").write_text(json.dumps(report, indent=2) + "\n")
    log(f"trained (pipeline {size / 1e6:.1f} MB)", start)


if __name__ == "__main__":
    raise SystemExit(main())
