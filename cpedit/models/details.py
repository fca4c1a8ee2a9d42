"""What cpedit can tell about a Hub model without downloading its weights.

:func:`model_details` reads the repo's metadata (one API call with file sizes), its
``model_index.json`` and its denoiser's ``config.json``, builds the denoiser on the meta
device (no memory, no weights) and counts its FFN output weights with
:func:`cpedit.models.ffn.find_ffn_output_layers`, exactly as a prune would find them.

Whether cpedit can edit a model is decided in one place, :mod:`cpedit.models.support`
(:func:`~cpedit.models.support.editability`; re-exported here with :class:`Editability` and
:func:`text_to_image_refusal`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cpedit.errors import CpeditError
from cpedit.hub.errors import HubError, hub_errors
from cpedit.hub.pipeline_files import pull_safetensors
from cpedit.models.files import load_json_text
from cpedit.models.support import DENOISER_COMPONENTS, Editability, editability, text_to_image_refusal
from cpedit.progress import ProgressCallback, ProgressEvent, emit

__all__ = [
    "DENOISER_COMPONENTS",
    "Editability",
    "ModelDetails",
    "build_meta_denoiser",
    "count_ffn",
    "count_layers",
    "editability",
    "model_details",
    "pull_safetensors",
    "text_to_image_refusal",
]


@dataclass(frozen=True)
class ModelDetails:
    """What ``cpedit models info`` shows.

    Attributes:
        id: The repo id.
        revision: The revision asked for (None: the default branch).
        commit: The commit the information comes from.
        pipeline_class: ``_class_name`` of model_index.json (None if the repo has none).
        denoiser: ``unet`` or ``transformer`` (None if there is none).
        denoiser_class: The denoiser's class name from its config.json.
        editable: Whether cpedit can edit it (see :func:`cpedit.models.support.editability`).
        reason: Why (not).
        ffn_layers: FFN output projections found (0 when unknown).
        ffn_weights: Weights in them (the weights ConceptPrune can prune).
        denoiser_weights: All weights of the denoiser.
        license: From the model card metadata (None when the card gives none).
        gated: False, or the Hub's gating mode (``auto``/``manual``).
        private: Whether the repo is private.
        safetensors_bytes: Total size of the safetensors files a pull downloads (the pipeline's
            components, default variant).
        safetensors_files: How many files that is.
        downloads: Downloads (last 30 days) as the Hub reports them.
        likes: Likes.
        last_modified: Last commit date.
    """

    id: str
    revision: str | None
    commit: str | None
    pipeline_class: str | None
    denoiser: str | None
    denoiser_class: str | None
    editable: bool
    reason: str
    ffn_layers: int
    ffn_weights: int
    denoiser_weights: int
    license: str | None
    gated: str | bool
    private: bool
    safetensors_bytes: int
    safetensors_files: int
    downloads: int | None
    likes: int | None
    last_modified: datetime | None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (dates as ISO strings)."""
        data = asdict(self)
        data["last_modified"] = self.last_modified.isoformat() if self.last_modified else None
        return data


def build_meta_denoiser(config: dict[str, Any]) -> Any:
    """The denoiser a config describes, built on the meta device (no memory, no weights).

    Raises:
        CpeditError: The config names no diffusers model class, or it cannot be built.
    """
    import diffusers
    import torch
    from torch import nn

    name = config.get("_class_name")
    cls = getattr(diffusers, name, None) if isinstance(name, str) else None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module) and hasattr(cls, "from_config")):
        raise CpeditError(f"denoiser class {name!r} is not a diffusers model class")
    try:
        with torch.device("meta"):
            return cls.from_config(config)
    except Exception as exc:  # noqa: BLE001 - any config the class rejects
        raise CpeditError(f"cannot build {name} from its config.json: {exc}") from None


def count_ffn(config: dict[str, Any], *, pipeline_class: str = "") -> tuple[int, int, int]:
    """``(ffn_layers, ffn_weights, denoiser_weights)`` of a denoiser config, built on the meta device.

    The layers are those ``cpedit prune`` hooks by default for ``pipeline_class``
    (:func:`cpedit.models.architectures.default_layers`); for a FLUX single-stream block only
    the MLP columns of ``proj_out`` count.

    Raises:
        CpeditError: The config names no diffusers model class, or it cannot be built.
    """
    return count_layers(build_meta_denoiser(config), pipeline_class=pipeline_class)


def count_layers(model: Any, *, pipeline_class: str = "") -> tuple[int, int, int]:
    """``(ffn_layers, ffn_weights, denoiser_weights)`` of a (meta-device) denoiser."""
    from cpedit.models.architectures import default_layers

    layers = default_layers(pipeline_class, model)
    return (
        len(layers),
        sum(layer.shape[0] * layer.in_features for layer in layers),
        sum(p.numel() for p in model.parameters()),
    )


def model_details(
    repo_id: str, *, revision: str | None = None, on_progress: ProgressCallback | None = None
) -> ModelDetails:
    """Describe a Hub model for cpedit without downloading its weights.

    Args:
        repo_id: ``namespace/name``.
        revision: Branch, tag or commit (default: the default branch).
        on_progress: Receives a ``load`` event per step.

    Returns:
        A :class:`ModelDetails`.

    Raises:
        HubError: The repo cannot be read (missing, gated, private, revision, network, offline).
    """
    from huggingface_hub import HfApi

    from cpedit.hub.download import fetch_file
    from cpedit.hub.repos import check_repo_id

    check_repo_id(repo_id, label="model id")  # `../x`, `a/b/c`: refused before any request
    api = HfApi()
    emit(on_progress, ProgressEvent(stage="load", message=f"reading {repo_id} metadata"))
    with hub_errors(repo_id, revision=revision):
        info = api.model_info(repo_id, revision=revision, files_metadata=True)
    commit = info.sha
    files = {s.rfilename: (s.size or 0) for s in info.siblings or []}
    pin = commit or revision

    def fetch_json(path: str) -> Any:
        if path not in files:
            return None
        emit(on_progress, ProgressEvent(stage="load", message=f"reading {path}"))
        local = fetch_file(repo_id, path, revision=pin)
        try:
            return load_json_text(Path(local).read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise HubError(f"{repo_id}: {path} is not valid JSON ({exc})", reason="invalid") from None

    index = fetch_json("model_index.json")
    denoiser = denoiser_class = meta_denoiser = None
    ffn_layers = ffn_weights = denoiser_weights = 0
    weights: dict[str, int] = {}
    if isinstance(index, dict):
        weights = pull_safetensors(index, files)
        denoiser = next((c for c in DENOISER_COMPONENTS if isinstance(index.get(c), list)), None)
        if denoiser is not None and text_to_image_refusal(index) is None:
            config = fetch_json(f"{denoiser}/config.json")
            if isinstance(config, dict) and isinstance(config.get("_class_name"), str):
                emit(on_progress, ProgressEvent(stage="load", message=f"counting FFN weights of {denoiser}"))
                try:
                    meta_denoiser = build_meta_denoiser(config)
                    ffn_layers, ffn_weights, denoiser_weights = count_layers(
                        meta_denoiser, pipeline_class=str(index.get("_class_name"))
                    )
                    denoiser_class = config["_class_name"]
                except CpeditError:
                    denoiser_class = None
    verdict = editability(
        index=index,
        denoiser_class=denoiser_class,
        ffn_layers=ffn_layers,
        safetensors_files=len(weights),
        denoiser=meta_denoiser,
    )
    card = info.card_data
    license_ = getattr(card, "license", None) if card is not None else None
    emit(on_progress, ProgressEvent(stage="done", message="done"))
    return ModelDetails(
        id=info.id,
        revision=revision,
        commit=commit,
        pipeline_class=index.get("_class_name")
        if isinstance(index, dict) and isinstance(index.get("_class_name"), str)
        else None,
        denoiser=denoiser,
        denoiser_class=denoiser_class,
        editable=verdict.editable,
        reason=verdict.reason,
        ffn_layers=ffn_layers,
        ffn_weights=ffn_weights,
        denoiser_weights=denoiser_weights,
        license=license_ if isinstance(license_, str) else None,
        gated=info.gated if info.gated else False,
        private=bool(info.private),
        safetensors_bytes=sum(weights.values()),
        safetensors_files=len(weights),
        downloads=info.downloads,
        likes=info.likes,
        last_modified=info.last_modified,
    )
