"""``cpedit audit``: what an attacker without the base model learns from a cpedit output.

Three measurements, per edited layer and in all:

* **exact zeros** in the output's weights, against the base model's (when the base is at
  hand): pruning by zeroing leaves one exact zero per pruned weight, which a trained layer
  almost never has;
* **how far the edited entries stand out** from the rest of their layer: the two-sample
  Kolmogorov-Smirnov statistic between the edited entries' values and the layer's other
  values (0: the same distribution; 1: fully apart; zeros among weights centred on zero give about 0.5);
* a **replay of the location attack** of "Roots Beneath the Cut" (Zhang et al., arXiv
  2603.06640): the attacker takes the exact zeros of each edited layer as the pruned
  positions, fills them by low-rank matrix completion (SoftImpute: iterative SVD
  soft-thresholding, rank at most 50), keeps the signs of the largest 60% of the filled values
  and sets each kept weight to its row's largest remaining magnitude. The audit counts the
  pruned positions the attack finds and, with :func:`evaluate_revival` on a shapes-world
  model, how much of the erased concept the revived weights bring back.

The positions come from ``conceptprune/pruned.safetensors`` (the edit's own record, which stays
local for a concealed edit) or, without it, from comparing the output with the base.

Example:
    >>> from cpedit.eval.audit import audit_output
    >>> result = audit_output("shapes-no-stripes")
    >>> result.recovered_fraction
    1.0
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open

from cpedit.errors import CpeditError
from cpedit.hub.pipeline_files import variant_of
from cpedit.models.compute import ComputeOptions
from cpedit.models.matrices import as_matrix, matrix_shape
from cpedit.output.positions import read_positions
from cpedit.output.record import POSITIONS_FILE, RECORD_DIR, LayerRecord, read_output
from cpedit.progress import ProgressCallback, ProgressEvent, check_cancel, emit
from cpedit.recipes.conceal import Conceal

ATTACK_RANK = 50
"""The attack's rank cap (the paper's SoftImpute rank)."""
ATTACK_KEEP = 0.6
"""The fraction of filled values (the largest) whose signs the attack keeps."""
ATTACK_ITERATIONS = 100
"""At most this many SoftImpute iterations per layer."""
ATTACK_TOLERANCE = 1e-3
"""SoftImpute stops when the filled entries change by less than this (relative)."""


class AuditError(CpeditError):
    """An output cannot be audited (``reason``: ``no_positions``, ``no_base``, ``mismatch``)."""


# --- the pieces ------------------------------------------------------------------------------


def ks_statistic(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov statistic: the largest gap between the two empirical CDFs.

    0 when both samples have the same values; 1 when every value of one lies beyond all of the
    other's. Either sample empty: 0.
    """
    x = np.sort(np.asarray(a, dtype=np.float64).ravel())
    y = np.sort(np.asarray(b, dtype=np.float64).ravel())
    if x.size == 0 or y.size == 0:
        return 0.0
    grid = np.concatenate([x, y])
    cdf_x = np.searchsorted(x, grid, side="right") / x.size
    cdf_y = np.searchsorted(y, grid, side="right") / y.size
    return float(np.max(np.abs(cdf_x - cdf_y)))


def soft_impute(
    weight: torch.Tensor,
    missing: torch.Tensor,
    *,
    rank: int = ATTACK_RANK,
    iterations: int = ATTACK_ITERATIONS,
    tolerance: float = ATTACK_TOLERANCE,
    shrinkage: float | None = None,
) -> torch.Tensor:
    """Fill the ``missing`` entries of a matrix by SoftImpute (Mazumder, Hastie, Tibshirani 2010).

    Start with the missing entries at zero; repeat: take the SVD of the filled matrix,
    soft-threshold its singular values by ``shrinkage`` (default: the largest singular value of
    the start matrix over 50, as the common implementation does), keep at most ``rank`` of them,
    and copy the reconstruction into the missing entries, until they change by less than
    ``tolerance`` (relative) or after ``iterations``. Runs on the CPU in float32.

    Returns:
        The filled matrix (float32, CPU); the observed entries are ``weight``'s.
    """
    matrix = weight.detach().to("cpu", torch.float32).reshape(weight.shape[0], -1).clone()
    missing = missing.to("cpu", torch.bool).reshape(matrix.shape)
    matrix[missing] = 0
    if not bool(missing.any()):
        return matrix
    cap = max(1, min(rank, *matrix.shape))
    if shrinkage is None:
        shrinkage = float(torch.linalg.matrix_norm(matrix, ord=2)) / 50
    for _ in range(iterations):
        if min(matrix.shape) <= 1024:
            u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
            u, s, vh = u[:, :cap], s[:cap], vh[:cap]
        else:  # large layers: a randomized SVD of the top singular vectors
            u, s, v = torch.svd_lowrank(matrix, q=min(cap + 10, *matrix.shape), niter=4)
            u, s, vh = u[:, :cap], s[:cap], v[:, :cap].T
        s = (s - shrinkage).clamp(min=0)
        kept = int((s > 0).sum())
        reconstruction = (u[:, :kept] * s[:kept]) @ vh[:kept]
        old = matrix[missing]
        new = reconstruction[missing]
        matrix[missing] = new
        old_norm = float(old.norm())
        if old_norm > 0 and float((old - new).norm()) / old_norm < tolerance:
            break
    return matrix


@dataclass(frozen=True)
class AttackResult:
    """The location attack on one layer.

    Attributes:
        found: The positions the attacker takes for pruned (the layer's exact zeros), bool.
        revived: The layer's weights after the attack (float32, CPU).
        kept: How many found positions the attack set (the largest ``keep`` fraction of the fill).
    """

    found: torch.Tensor
    revived: torch.Tensor
    kept: int


def location_attack(
    weight: torch.Tensor,
    *,
    rank: int = ATTACK_RANK,
    keep: float = ATTACK_KEEP,
    iterations: int = ATTACK_ITERATIONS,
) -> AttackResult:
    """Replay the location attack of "Roots Beneath the Cut" on one layer, knowing only its weights.

    The exact zeros are taken as the pruned positions and filled by :func:`soft_impute`; the
    largest ``keep`` fraction of the filled values (by magnitude, over the layer) keep their
    sign and get their row's largest magnitude among the other entries; the rest stay zero.
    """
    matrix = weight.detach().to("cpu", torch.float32).reshape(weight.shape[0], -1)
    found = matrix == 0
    count = int(found.sum())
    revived = matrix.clone()
    if count == 0:
        return AttackResult(found=found, revived=revived, kept=0)
    filled = soft_impute(matrix, found, rank=rank, iterations=iterations)
    values = filled[found]
    kept = int(round(keep * count))
    order = values.abs().argsort(descending=True)
    chosen = torch.zeros(count, dtype=torch.bool)
    chosen[order[:kept]] = True
    row_max = torch.where(found, torch.zeros(()), matrix.abs()).amax(dim=1)
    rows = found.nonzero()[:, 0]
    new = torch.where(chosen, values.sign() * row_max[rows], torch.zeros(()))
    revived[found] = new
    return AttackResult(found=found, revived=revived, kept=kept)


# --- reading an output --------------------------------------------------------------------


def read_layer_weights(folder: Path, layers: list[LayerRecord]) -> dict[str, torch.Tensor]:
    """The weights of the given layers (as ``[out, in]`` matrices) from a pipeline folder's default-variant files.

    A layer's name is its record name (``component/name`` for a text-encoder layer).

    Raises:
        AuditError: A layer's weight is not in the files, or has another shape.
    """
    wanted: dict[str, dict[str, str]] = {}
    for layer in layers:
        name = layer.name.split("/", 1)[1] if "/" in layer.name else layer.name
        wanted.setdefault(layer.component, {})[f"{name}.weight"] = layer.name
    found: dict[str, torch.Tensor] = {}
    for component, keys in wanted.items():
        for file in sorted((folder / component).glob("*.safetensors")):
            if variant_of(file.name):
                continue
            with safe_open(file, framework="pt") as handle:
                for key in set(handle.keys()) & keys.keys():
                    found[keys[key]] = handle.get_tensor(key)
    for layer in layers:
        tensor = found.get(layer.name)
        if tensor is None:
            raise AuditError(f"{folder}: the weight of {layer.name} is not in its files", path=str(folder))
        if matrix_shape(tensor.shape) != tuple(layer.shape):
            raise AuditError(
                f"{folder}: {layer.name} has shape {tuple(tensor.shape)}, the report says {tuple(layer.shape)}",
                path=str(folder),
                reason="mismatch",
            )
        found[layer.name] = as_matrix(tensor)  # a 1x1 convolution's [out, in, 1, 1] as its matrix
    return found


def base_folder(base: str | os.PathLike[str], *, cancel: threading.Event | None = None) -> Path:
    """The local folder of a base model (a folder, ``builtin:shapes`` or a Hub id, downloaded if needed)."""
    from cpedit.models.loading import resolve_source

    return resolve_source(base, cancel=cancel).path


# --- the audit ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerAudit:
    """One edited layer, as the audit saw it.

    Attributes:
        name: The layer (its record name).
        weights: Its weights in all.
        pruned: Its pruned (edited) entries.
        zeros: Exact zeros in the output's weights.
        base_zeros: Exact zeros in the base's weights (None: no base).
        ks: KS statistic between the edited entries and the layer's other entries, in the output.
        found: Positions the location attack took for pruned (the exact zeros).
        recovered: Of those, truly pruned positions.
    """

    name: str
    weights: int
    pruned: int
    zeros: int
    base_zeros: int | None
    ks: float
    found: int
    recovered: int

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "name": self.name,
            "weights": self.weights,
            "pruned": self.pruned,
            "zeros": self.zeros,
            "base_zeros": self.base_zeros,
            "ks": self.ks,
            "found": self.found,
            "recovered": self.recovered,
        }


@dataclass(frozen=True)
class AuditResult:
    """What :func:`audit_output` measured.

    Attributes:
        folder: The audited output.
        conceal: How its pruned entries were filled (from its report).
        positions: Where the true positions came from: ``record`` (``conceptprune/pruned.safetensors``)
            or ``base`` (the entries that differ from the base).
        layers: Per edited layer.
        revived: Per layer, the weights after the location attack (not in the JSON).
        masks: Per layer, the edited positions (bool, shaped like the weight; not in the JSON):
            :func:`evaluate_revival` zeroes them to measure the erasure without the fill.
    """

    folder: Path
    conceal: Conceal
    positions: str
    layers: tuple[LayerAudit, ...]
    revived: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    masks: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def pruned(self) -> int:
        """Pruned entries in all."""
        return sum(layer.pruned for layer in self.layers)

    @property
    def zeros(self) -> int:
        """Exact zeros in the edited layers of the output."""
        return sum(layer.zeros for layer in self.layers)

    @property
    def base_zeros(self) -> int | None:
        """Exact zeros in the same layers of the base (None: no base)."""
        if any(layer.base_zeros is None for layer in self.layers):
            return None
        return sum(layer.base_zeros or 0 for layer in self.layers)

    @property
    def found(self) -> int:
        """Positions the attack took for pruned."""
        return sum(layer.found for layer in self.layers)

    @property
    def recovered(self) -> int:
        """Pruned positions the attack found."""
        return sum(layer.recovered for layer in self.layers)

    @property
    def recovered_fraction(self) -> float:
        """``recovered / pruned`` (0 when nothing was pruned)."""
        return self.recovered / self.pruned if self.pruned else 0.0

    @property
    def ks(self) -> float:
        """The edited entries' KS statistic over the layers, weighted by their pruned entries."""
        return sum(layer.ks * layer.pruned for layer in self.layers) / self.pruned if self.pruned else 0.0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (without the revived weights)."""
        return {
            "folder": str(self.folder),
            "conceal": self.conceal.to_dict() | {"seed": None},
            "positions": self.positions,
            "totals": {
                "pruned": self.pruned,
                "zeros": self.zeros,
                "base_zeros": self.base_zeros,
                "ks": self.ks,
                "found": self.found,
                "recovered": self.recovered,
                "recovered_fraction": self.recovered_fraction,
            },
            "layers": [layer.to_json() for layer in self.layers],
        }


def audit_output(
    folder: str | os.PathLike[str],
    *,
    base: str | os.PathLike[str] | None = None,
    attack: bool = True,
    rank: int = ATTACK_RANK,
    keep: float = ATTACK_KEEP,
    iterations: int = ATTACK_ITERATIONS,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> AuditResult:
    """Audit a cpedit output: zeros, how far the edited entries stand out, and the location attack.

    Args:
        folder: A cpedit output folder.
        base: The base model (a folder, ``builtin:shapes`` or a Hub id) to count its zeros and,
            when the output has no ``conceptprune/pruned.safetensors``, to find the edited
            entries; None: none (then the positions file is needed).
        attack: Replay the location attack (:func:`location_attack`) on every edited layer.
        rank: The attack's rank cap.
        keep: The attack's kept fraction.
        iterations: The attack's SoftImpute iterations, at most.
        on_progress: Receives ``evaluate`` events, one per layer (``unit="layers"``).
        cancel: Checked before every layer.

    Returns:
        An :class:`AuditResult` (with the revived weights when ``attack``).

    Raises:
        RecordError: ``folder`` is not a complete cpedit output, or its positions file is not one cpedit
            wrote for these layers (see :func:`cpedit.output.positions.read_positions`).
        AuditError: No positions file and no base to find the edited entries with, or the
            weights do not match the report.
        ModelLoadError: The base cannot be found.
        Cancelled: ``cancel`` was set.
    """
    if not 0 < keep <= 1:
        raise CpeditError(f"keep must be in (0, 1], got {keep}", argument="keep")
    if rank < 1 or iterations < 1:
        raise CpeditError("rank and iterations must be at least 1", argument="rank" if rank < 1 else "iterations")
    record = read_output(folder)
    path = record.folder
    layers = [layer for layer in record.report.layers if layer.pruned > 0]
    weights = read_layer_weights(path, layers)
    base_weights = None
    if base is not None:
        check_cancel(cancel, "before reading the base")
        base_weights = read_layer_weights(base_folder(base, cancel=cancel), layers)
    positions_file = path / RECORD_DIR / POSITIONS_FILE
    if positions_file.is_file():
        masks = read_positions(positions_file, layers=layers)  # their shapes checked against the weights above
        source = "record"
    elif base_weights is not None:
        masks = {name: weights[name] != base_weights[name] for name in weights}
        source = "base"
    else:
        raise AuditError(
            f"{path} has no {RECORD_DIR}/{POSITIONS_FILE} (a concealed edit as published); give the base model "
            "to find the edited entries",
            path=str(path),
            argument="base",
            reason="no_positions",
        )
    audited: list[LayerAudit] = []
    revived: dict[str, torch.Tensor] = {}
    edited: dict[str, torch.Tensor] = {}
    for index, layer in enumerate(layers):
        check_cancel(cancel, "during the audit")
        emit(
            on_progress,
            ProgressEvent(
                stage="evaluate",
                message=f"auditing {layer.name}",
                completed=index,
                total=len(layers),
                unit="layers",
            ),
        )
        weight = weights[layer.name].to(torch.float32)
        mask = masks.get(layer.name, torch.zeros(weight.shape, dtype=torch.bool)).reshape(weight.shape)
        edited[layer.name] = mask
        zeros = int((weight == 0).sum())
        found = recovered = 0
        if attack:
            result = location_attack(weight, rank=rank, keep=keep, iterations=iterations)
            revived[layer.name] = result.revived.to(weights[layer.name].dtype)
            found = int(result.found.sum())
            recovered = int((result.found & mask).sum())
        else:
            found = zeros
            recovered = int(((weight == 0) & mask).sum())
        audited.append(
            LayerAudit(
                name=layer.name,
                weights=weight.numel(),
                pruned=int(mask.sum()),
                zeros=zeros,
                base_zeros=int((base_weights[layer.name] == 0).sum()) if base_weights is not None else None,
                ks=ks_statistic(weight[mask], weight[~mask]),
                found=found,
                recovered=recovered,
            )
        )
    emit(
        on_progress,
        ProgressEvent(stage="evaluate", message="audit done", completed=len(layers), total=len(layers), unit="layers"),
    )
    return AuditResult(
        folder=path,
        conceal=record.report.conceal,
        positions=source,
        layers=tuple(audited),
        revived=revived,
        masks=edited,
    )


# --- revival on the shapes world --------------------------------------------------------------


@dataclass(frozen=True)
class RevivalEvaluation:
    """Erasure and preservation of the base, the edited and the attacked (revived) model, on the shapes world.

    Fractions in [0, 1]; erased: lower is better for the edit; preserved: higher is better.

    Attributes:
        concepts: The erased values of the world.
        images: Images per prompt set, per model.
        erased: Erased accuracy of ``base``, ``edited`` and ``revived``.
        preserved: Preservation of the same.
        without_fill: ``erased`` and ``preserved`` of the edited output with its edited entries
            set to zero (the paper's fill) instead of its concealing fill; for a zero-filled
            output, the edited model's own.
    """

    concepts: list[str]
    images: int
    erased: dict[str, float]
    preserved: dict[str, float]
    without_fill: dict[str, float] = field(default_factory=dict)

    @property
    def fill_kept(self) -> float:
        """How much of the zero fill's erasure the output's fill keeps: (base - edited) / (base - zero fill).

        1: as erased as with zeros; below 1: the fill gave some of the concept back; above 1: it
        erased more. 1 for a zero-filled output; 0 when zeros erase nothing.
        """
        zero = self.without_fill.get("erased", self.erased["edited"])
        gap = self.erased["base"] - zero
        return (self.erased["base"] - self.erased["edited"]) / gap if gap > 0 else 0.0

    @property
    def revival(self) -> float:
        """How much of the erasure the attack undid: (revived - edited) / (base - edited), 0 when nothing was erased."""
        gap = self.erased["base"] - self.erased["edited"]
        return (self.erased["revived"] - self.erased["edited"]) / gap if gap > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "concepts": list(self.concepts),
            "images": self.images,
            "erased": dict(self.erased),
            "preserved": dict(self.preserved),
            "revival": self.revival,
            "without_fill": dict(self.without_fill),
            "fill_kept": self.fill_kept,
        }


def evaluate_revival(
    audit: AuditResult,
    *,
    base: str | os.PathLike[str] | None = None,
    images: int = 32,
    seed: int = 0,
    steps: int = 25,
    guidance_scale: float = 7.5,
    batch_size: int = 64,
    compute: ComputeOptions = ComputeOptions(),
    base_scores: tuple[float, float] | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> RevivalEvaluation:
    """Measure on the shapes world how much of the erased concept the location attack brings back.

    The base (default: the one the output records), the edited output and the edited output with
    the audit's revived weights generate images from the same held-out prompts and seeds as
    ``cpedit eval shapes``, judged by the shipped classifier. For a concealed output, the edited
    output with its edited entries set to zero does too: the erasure with and without the fill
    (:attr:`RevivalEvaluation.fill_kept`).

    Args:
        audit: An audit of a shapes-world output, with the attack.
        base: The base model; default: the one the output records.
        images: Images per prompt set (erased and preserved), per model.
        seed: Draws the prompts and seeds the images.
        steps: Denoising steps per image.
        guidance_scale: Classifier-free guidance scale.
        batch_size: Images generated at once.
        compute: The device and dtype both models load with (no revision: the base is ``base`` or the
            recorded one; no offload: the revived weights are written into the loaded denoiser).
        base_scores: The base's (erased, preserved) from an earlier call with the same
            ``images``, ``seed``, ``steps`` and concepts: the base's images are not generated again.
        on_progress: Receives ``load``, ``sample`` and ``done`` events.
        cancel: Checked before every image batch.

    Raises:
        CpeditError: The audit ran without the attack, the output's concepts are not values of
            the shapes world, no base is recorded, or ``compute`` asks for offload or a revision.
        ModelLoadError: A model cannot be loaded.
        Cancelled: ``cancel`` was set.
    """
    from cpedit.eval.shapes import (
        _calibration_prompts,
        erased_values,
        evaluation_prompts,
        generate_images,
        score_images,
    )
    from cpedit.models import loading
    from cpedit.shapes import world
    from cpedit.shapes.classifier import load_classifier

    if images < 1:
        raise CpeditError(f"images must be at least 1, got {images}", argument="images")
    compute.refuse_offload("the revived weights are written into the loaded denoiser")
    if compute.revision is not None:
        raise CpeditError(
            "a revision does not apply here: the base is the one given or recorded",
            reason="conflict",
            argument="revision",
        )
    if not audit.revived and audit.found:
        raise CpeditError("the audit ran without the attack; audit with attack=True first", argument="attack")
    record = read_output(audit.folder)
    erased = sorted(set(erased_values(record.report, audit.folder).values()))
    base_ref = os.fspath(base) if base is not None else record.report.base_ref
    if not base_ref:
        raise CpeditError(f"{audit.folder}: the report does not record a base model; give one", argument="base")
    with_concept, without = evaluation_prompts(
        erased, images=images, seed=seed, exclude=_calibration_prompts(record.recipes)
    )
    classifier = load_classifier()
    concealed = audit.conceal.conceals
    total = (8 if concealed else 6) * images
    erased_scores: dict[str, float] = {}
    preserved_scores: dict[str, float] = {}
    unfilled: dict[str, float] = {}

    def measure(pipe: Any, phase: str, index: int) -> None:
        for offset, (mode, scenes) in enumerate((("erased", with_concept), ("preserved", without))):
            shown = generate_images(
                pipe,
                [world.caption(s) for s in scenes],
                seed=seed + 1_000_000 * offset,
                steps=steps,
                guidance_scale=guidance_scale,
                batch_size=batch_size,
                label=f"{phase}: {mode}",
                concept="revival",
                on_progress=on_progress,
                done=(2 * index + offset) * images,
                total=total,
                cancel=cancel,
            )
            score, _ = score_images(classifier, shown, scenes, erased, mode=mode)
            if phase == "zero":
                unfilled[mode] = score
            else:
                (erased_scores if mode == "erased" else preserved_scores)[phase] = score

    phases = [("base", 0, base_ref), ("edited", 1, str(audit.folder))]
    if base_scores is not None:
        erased_scores["base"], preserved_scores["base"] = base_scores
        phases = phases[1:]
    for phase, index, ref in phases:
        emit(on_progress, ProgressEvent(stage="load", message=f"loading {ref} ({phase})"))
        _, pipe = loading.open_pipeline(
            ref, compute=compute, safety_checker=False, on_progress=on_progress, cancel=cancel
        )
        pipe.set_progress_bar_config(disable=True)
        measure(pipe, phase, index)
        if phase == "edited":
            if concealed:  # the same output with the paper's zeros in place of its fill, then its fill back
                filled = {}
                with torch.no_grad():
                    for name, mask in audit.masks.items():
                        target = _layer_weight(pipe, name)
                        where = mask.reshape(target.shape).to(target.device)
                        filled[name] = (where, target[where].clone())
                        target[where] = 0
                measure(pipe, "zero", 2)
                with torch.no_grad():
                    for name, (where, values) in filled.items():
                        _layer_weight(pipe, name)[where] = values
            with torch.no_grad():
                for name, weight in audit.revived.items():
                    target = _layer_weight(pipe, name)
                    target.copy_(weight.reshape(target.shape).to(target.device, target.dtype))
            measure(pipe, "revived", 3 if concealed else 2)
        del pipe
    emit(on_progress, ProgressEvent(stage="done", message="revival measured", completed=total, total=total))
    if not concealed:
        unfilled = {"erased": erased_scores["edited"], "preserved": preserved_scores["edited"]}
    return RevivalEvaluation(
        concepts=[v for _, v in erased],
        images=images,
        erased=erased_scores,
        preserved=preserved_scores,
        without_fill=unfilled,
    )


def _layer_weight(pipe: Any, name: str) -> torch.nn.Parameter:
    """The weight of an edited layer of a loaded pipeline, by its record name (``component/name`` off the denoiser)."""
    from cpedit.models.ffn import get_denoiser

    component, _, module_name = name.rpartition("/")
    owner = getattr(pipe, component) if component else get_denoiser(pipe)
    return owner.get_submodule(module_name).get_parameter("weight")
