"""Whether cpedit can edit a model: every such decision, in one place.

* :func:`text_to_image_refusal`: whether a ``model_index.json`` describes a diffusers
  text-to-image pipeline at all (before anything is downloaded; no torch needed).
* :func:`describe_support`: whether and how a pipeline class is supported (the
  :data:`cpedit.models.architectures.SPECS` registry), optionally with its loaded denoiser.
* :func:`editability`: the verdict ``cpedit models info`` shows for a Hub model.
* :func:`require_support`: the check a prune makes on a loaded pipeline (spec, FFN blocks,
  a prompt-to-image ``__call__``); :func:`require_text_to_image_call` is its last part.

The module imports no torch: :mod:`cpedit.models.architectures` (which does) is imported inside the
functions that need the registry.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cpedit.errors import UnsupportedModelError

if TYPE_CHECKING:
    from cpedit.models.architectures import ArchitectureSpec

__all__ = [
    "CALL_ARGUMENTS",
    "DENOISER_COMPONENTS",
    "Editability",
    "SupportInfo",
    "describe_support",
    "editability",
    "require_support",
    "require_text_to_image_call",
    "text_to_image_refusal",
]

DENOISER_COMPONENTS = ("unet", "transformer")
"""The pipeline components cpedit edits (the denoiser), in the order they are looked for."""
CALL_ARGUMENTS = ("prompt", "generator", "output_type", "num_inference_steps")
"""Arguments calibration passes to the pipeline's ``__call__`` (the prompt-to-image call path)."""
_NOT_TEXT_TO_IMAGE_MARKERS = (
    "Img2Img",
    "Inpaint",
    "Depth2Img",
    "ImageVariation",
    "InstructPix2Pix",
    "Upscale",
    "SuperResolution",
    "Video",
    "Audio",
    "Music",
    "3D",
    "Shap",
    "Unclip",
    "UnCLIP",
)


@dataclass(frozen=True)
class SupportInfo:
    """Whether and how cpedit supports a pipeline (see :func:`describe_support`).

    Attributes:
        supported: True when ``cpedit prune`` can edit it.
        architecture: The family's short name (``sd``, ``sdxl``, ``sd3``, ``flux``,
            ``pixart``; also for an unsupported pipeline of a known family, such as
            ``StableDiffusionXLImg2ImgPipeline``), or ``unknown``.
        how: One line on what cpedit does with it (denoiser, FFN layers, guidance, streams).
        missing: When unsupported, what is missing, in words; else None.
        pipeline_class: The pipeline class described (``model_index.json``'s ``_class_name``).
    """

    supported: bool
    architecture: str
    how: str
    missing: str | None = None
    pipeline_class: str = ""


@dataclass(frozen=True)
class Editability:
    """Whether cpedit can edit a model, and why (not)."""

    editable: bool
    reason: str


def text_to_image_refusal(index: Any) -> str | None:
    """Why a ``model_index.json`` is not a diffusers text-to-image pipeline cpedit can load, or None.

    Args:
        index: The parsed model_index.json.
    """
    if not isinstance(index, dict):
        return "model_index.json is not a JSON object"
    name = index.get("_class_name")
    if not isinstance(name, str):
        return (
            "its pipeline is custom code (model_index.json `_class_name` is not a diffusers class); "
            "cpedit never runs remote code"
        )
    if not any(isinstance(index.get(c), list) for c in DENOISER_COMPONENTS):
        return f"{name} has no unet or transformer component; cpedit edits text-to-image diffusion pipelines"
    if not any(k.startswith("text_encoder") and isinstance(v, list) for k, v in index.items()):
        return f"{name} has no text encoder, so it is not a text-to-image pipeline"
    if any(marker in name for marker in _NOT_TEXT_TO_IMAGE_MARKERS):
        return f"{name} is not a text-to-image pipeline; give its text-to-image base model instead"
    return None


def describe_support(pipeline_class: str, denoiser: Any = None) -> SupportInfo:
    """Say whether cpedit supports a pipeline class, how, and otherwise what is missing.

    Args:
        pipeline_class: The diffusers pipeline class name (``model_index.json``'s
            ``_class_name``), e.g. ``FluxPipeline``.
        denoiser: The loaded denoiser (an ``nn.Module``; a meta-device one will do), if
            available; then the FFN blocks are counted and a denoiser without any makes the
            pipeline unsupported.

    Returns:
        A :class:`SupportInfo`; never raises for unknown names.
    """
    from cpedit.models.architectures import SPECS, find_target_layers, spec_for_class

    spec = spec_for_class(pipeline_class)
    if spec is None:
        prefixes = [
            (len(p), s) for s in SPECS for p in s.pipelines if pipeline_class.startswith(p.removesuffix("Pipeline"))
        ]
        family = [s for _, s in sorted(prefixes, key=lambda item: -item[0])]
        why = (
            f"{pipeline_class} is not a text-to-image pipeline cpedit calibrates "
            f"(it belongs to the {family[0].name} family, but only {', '.join(family[0].pipelines)} is supported: "
            "calibration needs the plain prompt-to-image call path)"
            if family
            else f"no cpedit architecture spec for {pipeline_class}"
        )
        supported = ", ".join(p for s in SPECS for p in s.pipelines)
        return SupportInfo(
            supported=False,
            architecture=family[0].name if family else "unknown",
            how="",
            missing=f"{why}; supported pipelines: {supported}",
            pipeline_class=pipeline_class,
        )
    streams = "image stream by default, text stream with prune.stream" if len(spec.streams) > 1 else "one stream"
    guidance = "classifier-free guidance (both halves)" if spec.guidance == "cfg" else "distilled guidance, no CFG"
    how = (
        f"{spec.label}: prunes FFN weights of pipe.{spec.denoiser}"
        + "".join(f" and pipe.{extra} where present (each with the steps it runs)" for extra in spec.extra_denoisers)
        + f" ({streams}); "
        f"calibrates through {pipeline_class}.__call__ with {guidance}"
    )
    if denoiser is not None:
        every_stream = "both" if "text" in spec.streams else "image"
        layers = find_target_layers(None, spec, target="ffn", stream=every_stream, denoiser=denoiser)
        if not layers:
            return SupportInfo(
                supported=False,
                architecture=spec.name,
                how=how,
                missing=(
                    f"its {type(denoiser).__name__} has no feed-forward (diffusers FeedForward) blocks, so there "
                    "are no skilled neurons to prune; ConceptPrune needs a denoiser with transformer blocks"
                ),
                pipeline_class=pipeline_class,
            )
        how += f"; {len(layers)} FFN layers"
    return SupportInfo(supported=True, architecture=spec.name, how=how, pipeline_class=pipeline_class)


def editability(
    *,
    index: Any,
    denoiser_class: str | None,
    ffn_layers: int,
    safetensors_files: int,
    denoiser: Any = None,
) -> Editability:
    """Whether cpedit can edit a model described by its files (``cpedit models info``).

    The pipeline class is judged by :func:`describe_support` (the same registry
    ``cpedit prune`` uses), which also says how the model is edited.

    Args:
        index: The parsed model_index.json (None if the repo has none).
        denoiser_class: The denoiser's class name (None if unknown).
        ffn_layers: FFN output projections found in the denoiser.
        safetensors_files: Safetensors files of the pipeline's components.
        denoiser: The denoiser built on the meta device from its config, when it could be.
    """
    if index is None:
        return Editability(False, "not a diffusers pipeline (no model_index.json)")
    refusal = text_to_image_refusal(index)
    if refusal is not None:
        return Editability(False, refusal)
    support = describe_support(str(index.get("_class_name")), denoiser)
    if not support.supported:
        return Editability(False, support.missing or f"{index.get('_class_name')} is not supported")
    if denoiser_class is None:
        return Editability(False, "its denoiser config.json is missing or names no diffusers class")
    if ffn_layers == 0:
        return Editability(False, f"{denoiser_class} has no feed-forward (diffusers FeedForward) blocks to prune")
    if safetensors_files == 0:
        return Editability(False, "no safetensors weights (cpedit loads safetensors only)")
    return Editability(True, support.how)


def require_text_to_image_call(pipe: Any) -> None:
    """Raise unless the pipeline's ``__call__`` takes the arguments calibration passes (:data:`CALL_ARGUMENTS`).

    Raises:
        UnsupportedModelError: The pipeline is not text-to-image (no ``prompt``,
            ``generator``, ``output_type`` or ``num_inference_steps`` argument).
    """
    parameters = inspect.signature(pipe.__call__).parameters
    missing = [name for name in CALL_ARGUMENTS if name not in parameters]
    if missing:
        raise UnsupportedModelError(
            f"{type(pipe).__name__} is not a text-to-image pipeline cpedit can calibrate "
            f"(its __call__ has no {', '.join(missing)} argument)",
            reason="unsupported",
        )


def require_support(pipe: Any) -> ArchitectureSpec:
    """The loaded pipeline's architecture spec, or :class:`UnsupportedModelError` naming what is missing.

    Raises:
        UnsupportedModelError: Unknown pipeline class, no denoiser, no FFN blocks, or a
            ``__call__`` that is not the prompt-to-image call path.
    """
    from cpedit.models.architectures import spec_for_pipeline
    from cpedit.models.ffn import get_denoiser

    spec = spec_for_pipeline(pipe)
    name = type(pipe).__name__
    if spec is None:
        info = describe_support(name)
        raise UnsupportedModelError(f"{name} is not supported: {info.missing}", reason="unsupported")
    info = describe_support(spec.pipelines[0], get_denoiser(pipe))
    if not info.supported:
        raise UnsupportedModelError(f"{name} is not supported: {info.missing}", reason="unsupported")
    require_text_to_image_call(pipe)
    return spec
