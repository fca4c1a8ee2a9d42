"""Metrics on generated images: CLIP score and the Fréchet (Inception) distance.

* :class:`ClipScorer`: ``100 * max(cos(image, text), 0)`` averaged over the images (the
  definition of torchmetrics' ``CLIPScore``), computed with transformers' CLIP model directly
  (safetensors only, never remote code).
* :func:`frechet_distance`: the Fréchet distance between two Gaussians, in float64
  (``scipy.linalg.sqrtm`` when scipy is installed, else through symmetric eigen-decompositions).
  The features come from a :class:`FeatureExtractor`: the standard one is torch-fidelity's
  ``inception-v3-compat`` (:func:`inception_extractor`); any other (a small network in tests)
  goes through the same code.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from cpedit.errors import CpeditError

INCEPTION_NAME = "inception-v3-compat"
INCEPTION_WEIGHTS_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)
"""The weights torch-fidelity downloads on first use (into ``$TORCH_HOME/hub/checkpoints/``)."""
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")

__all__ = [
    "ClipScorer",
    "FeatureExtractor",
    "frechet_distance",
    "image_features",
    "inception_extractor",
    "load_clip_scorer",
    "load_images",
    "reference_images",
]


# --- CLIP score --------------------------------------------------------------------------


@dataclass
class ClipScorer:
    """A loaded CLIP model with its tokenizer and image processor."""

    model: Any
    tokenizer: Any
    image_processor: Any
    name: str
    device: Any

    def scores(self, images: Sequence[Any], prompts: Sequence[str], *, batch_size: int = 16) -> list[float]:
        """``100 * max(cos(image_i, prompt_i), 0)`` for each pair (PIL images)."""
        import torch

        if len(images) != len(prompts):
            raise ValueError("one prompt per image")
        out: list[float] = []
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                chunk_images = [image.convert("RGB") for image in images[start : start + batch_size]]
                chunk_prompts = list(prompts[start : start + batch_size])
                pixels = self.image_processor(images=chunk_images, return_tensors="pt")["pixel_values"]
                text = self.tokenizer(
                    chunk_prompts,
                    padding=True,
                    truncation=True,
                    max_length=self.model.config.text_config.max_position_embeddings,
                    return_tensors="pt",
                )
                vision = self.model.vision_model(pixel_values=pixels.to(self.device, self.model.dtype))
                image_embeds = self.model.visual_projection(vision.pooler_output)
                words = self.model.text_model(
                    input_ids=text["input_ids"].to(self.device), attention_mask=text["attention_mask"].to(self.device)
                )
                text_embeds = self.model.text_projection(words.pooler_output)
                cos = torch.nn.functional.cosine_similarity(image_embeds.double(), text_embeds.double(), dim=-1)
                out += (100 * cos.clamp(min=0)).tolist()
        return out

    def score(self, images: Sequence[Any], prompts: Sequence[str], *, batch_size: int = 16) -> float:
        """The CLIP score of the images: the mean of :meth:`scores`."""
        values = self.scores(images, prompts, batch_size=batch_size)
        if not values:
            raise CpeditError("no images to score", argument="prompts")
        return float(np.mean(values))


def load_clip_scorer(model: str | os.PathLike[str], *, device: str = "auto") -> ClipScorer:
    """Load a CLIP model (a Hub id or a folder) for :class:`ClipScorer`: safetensors only, no remote code.

    Raises:
        CpeditError: It cannot be loaded (``argument="clip_model"``; offline, the message says to
            give a local CLIP folder).
    """
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

    from cpedit.models.loading import resolve_device

    name = os.fspath(model)
    target = resolve_device(device)
    try:
        # transformers wraps PreTrainedModel.to with functools.wraps(nn.Module.to), which types it as unbound
        clip = CLIPModel.from_pretrained(name, use_safetensors=True).to(target).eval()  # type: ignore[arg-type]
        tokenizer = AutoTokenizer.from_pretrained(name)
        processor = CLIPImageProcessor.from_pretrained(name)
    except (OSError, ValueError) as exc:
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise CpeditError(
            f"cannot load the CLIP model {name!r} ({detail}); give a CLIP folder or Hub id "
            "(safetensors weights, tokenizer and image processor; offline, a local folder)",
            argument="clip_model",
            reason="unavailable",
        ) from None
    return ClipScorer(model=clip, tokenizer=tokenizer, image_processor=processor, name=name, device=target)


# --- FID ---------------------------------------------------------------------------------


class FeatureExtractor(Protocol):
    """Images to features: ``extractor(uint8 tensor N x 3 x size x size) -> float tensor N x D``."""

    name: str
    size: int
    """Images are resized to ``size`` x ``size`` before extraction."""

    def __call__(self, images: Any) -> Any: ...


@dataclass
class _TorchFidelityInception:
    module: Any
    name: str = INCEPTION_NAME
    size: int = 299

    def __call__(self, images: Any) -> Any:
        return self.module(images)[0]


def inception_extractor(*, device: str = "auto") -> FeatureExtractor:
    """torch-fidelity's ``inception-v3-compat`` (2048 pool features), the standard FID network.

    Raises:
        CpeditError: torch-fidelity is not installed, or its weights are not in the torch hub
            cache and cannot be downloaded (the message names the file and its URL).
    """
    import torch

    from cpedit.models.loading import resolve_device

    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError:
        raise CpeditError(
            "FID needs torch-fidelity's Inception network: pip install torch-fidelity (its weights, "
            f"{INCEPTION_WEIGHTS_URL.rsplit('/', 1)[1]}, download on first use from {INCEPTION_WEIGHTS_URL})",
            reason="missing_dependency",
            argument="feature_extractor",
        ) from None
    cached = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_URL.rsplit("/", 1)[1]
    try:
        module = FeatureExtractorInceptionV3(INCEPTION_NAME, ["2048"]).to(resolve_device(device)).eval()
    except Exception as exc:  # noqa: BLE001 - a download that fails offline raises anything (URLError, OSError, ...)
        raise CpeditError(
            f"cannot load the Inception weights for FID ({type(exc).__name__}: {str(exc)[:160]}); they are "
            f"downloaded from {INCEPTION_WEIGHTS_URL} to {cached}: offline, put that file there",
            reason="unavailable",
            path=str(cached),
            argument="feature_extractor",
        ) from None
    return _TorchFidelityInception(module=module)


def load_images(paths: Sequence[Path]) -> list[Any]:
    """PIL images (RGB) from files.

    Raises:
        CpeditError: A file is not a readable image, or too large (:func:`cpedit.eval.image_files.read_rgb`).
    """
    from cpedit.eval.image_files import read_rgb

    return [read_rgb(path) for path in paths]


def reference_images(folder: str | os.PathLike[str]) -> list[Path]:
    """The image files of a reference folder (and its subfolders; hidden files and links skipped).

    Raises:
        CpeditError: It is not a folder, or holds fewer than 2 images.
    """
    root = Path(folder)
    if not root.is_dir():
        raise CpeditError(f"{root}: the reference is not a folder of images", path=str(root), argument="reference")
    files = sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.is_symlink() and not p.name.startswith(".")
    )
    if len(files) < 2:
        raise CpeditError(
            f"{root}: FID needs at least 2 reference images, found {len(files)}", path=str(root), argument="reference"
        )
    return files


def image_features(extractor: FeatureExtractor, images: Sequence[Any], *, batch_size: int = 32) -> np.ndarray:
    """Features (float64, N x D) of PIL images, resized to the extractor's size, in batches."""
    import torch
    from PIL import Image

    rows = []
    device = None
    module = getattr(extractor, "module", extractor)
    parameters = getattr(module, "parameters", None)
    if callable(parameters):
        first = next(iter(parameters()), None)
        device = first.device if first is not None else None
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            chunk = [
                np.asarray(image.convert("RGB").resize((extractor.size, extractor.size), Image.Resampling.BICUBIC))
                for image in images[start : start + batch_size]
            ]
            batch = torch.from_numpy(np.stack(chunk)).permute(0, 3, 1, 2).contiguous()
            if device is not None:
                batch = batch.to(device)
            rows.append(extractor(batch).detach().double().cpu().numpy().reshape(len(chunk), -1))
    return np.concatenate(rows)


def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of features, float64.

    Raises:
        CpeditError: Fewer than 2 feature rows.
    """
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise CpeditError(f"FID needs at least 2 images per set, got {features.shape[0]}", argument="limit")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``tr(sqrtm(sigma1 @ sigma2))`` for covariance matrices, in float64."""
    try:
        from scipy import linalg
    except ImportError:
        linalg = None
    if linalg is not None:
        root, _ = linalg.sqrtm(sigma1 @ sigma2, disp=False)
        if not np.isfinite(root).all():
            offset = np.eye(sigma1.shape[0]) * 1e-6
            root = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
        return float(np.real(np.trace(root)))
    # sigma1 @ sigma2 is similar to the PSD matrix sqrt(sigma1) sigma2 sqrt(sigma1): same eigenvalues.
    half = _sqrt_psd(sigma1)
    values = np.linalg.eigvalsh(half @ sigma2 @ half)
    return float(np.sqrt(np.clip(values, 0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """``|mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 sqrtm(sigma1 sigma2))``, in float64."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError("the two sets' statistics have different shapes")
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt_product(sigma1, sigma2)
    return float(max(value, 0.0))


def fid_of_features(features1: np.ndarray, features2: np.ndarray) -> float:
    """The FID between two sets of features."""
    return frechet_distance(*statistics(features1), *statistics(features2))
