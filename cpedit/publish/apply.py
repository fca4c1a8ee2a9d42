"""Rebuilding an edited model from an edit published without its weights, and a base model.

``cpedit push --edit-only`` publishes an edit's record alone: the report (base model id, revision
and a digest of the pruned weights' base bytes), the pruned positions and the recipes as they
ran (:func:`cpedit.publish.push.push_edit`). :func:`apply_edit` turns such an edit (a Hub repo,
or any folder holding ``conceptprune/``) and the base it was made on into the folder
``cpedit prune`` wrote, byte for byte: the base folder is written through the same save path
(:func:`cpedit.output.folder.write_pipeline_folder`, which patches only the pruned tensors'
bytes) and the record through the same writer (:func:`cpedit.output.record.write_record`).

Before anything is written, the base is checked: its Hub commit (when known on both sides) and
the digest of its pruned weights' bytes must be the recorded ones. A concealed edit is refused:
its fill (random draws matching each layer's weights) is not rebuilt from what it records.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cpedit.errors import CpeditError
from cpedit.hub.download import download_files, list_files, resolve_commit
from cpedit.hub.repos import check_repo_id
from cpedit.models.files import SafetensorsProblem, allowed_root, check_entry, read_safetensors_header
from cpedit.models.loading import ModelSource, resolve_source
from cpedit.output.folder import (
    atomic_folder,
    base_weights_digest,
    check_free_space,
    check_not_inside,
    check_output_target,
    output_size,
    weight_fills,
    write_pipeline_folder,
)
from cpedit.output.positions import read_positions
from cpedit.output.record import (
    POSITIONS_FILE,
    RECIPES_DIR,
    RECORD_DIR,
    REPORT_FILE,
    EditRecord,
    RecordError,
    Report,
    read_edit,
    write_record,
)
from cpedit.output.weights_files import TensorFill
from cpedit.progress import ProgressCallback, ProgressEvent, check_cancel, emit
from cpedit.shapes.model import BUILTIN_MODEL_NAME, is_builtin_model

if TYPE_CHECKING:
    import torch

POSITIONS_METADATA = {"format", "denoiser", "shapes"}
"""The metadata keys of a positions file (:func:`cpedit.output.record.save_positions`)."""
EDIT_FILES = (f"{RECORD_DIR}/{REPORT_FILE}", f"{RECORD_DIR}/{POSITIONS_FILE}")
"""The files of an edit besides its recipes (``conceptprune/recipes/*.yaml``)."""


@dataclass(frozen=True)
class ApplyResult:
    """What :func:`apply_edit` wrote.

    Attributes:
        path: The output folder (the same folder ``cpedit prune`` wrote).
        report: The edit's report, as written into ``path``.
        base: Where the base came from.
        edit: Where the edit came from (``NAMESPACE/NAME@COMMIT``, or its folder).
    """

    path: Path
    report: Report
    base: ModelSource
    edit: str


def is_edit_file(path: str) -> bool:
    """Whether a repo path is part of an edit: its report, its positions or a recipe it ran."""
    parts = path.split("/")
    recipe = len(parts) == 3 and parts[:2] == [RECORD_DIR, RECIPES_DIR] and parts[2].endswith(".yaml")
    return path in EDIT_FILES or recipe


@contextmanager
def edit_folder(
    edit: str | os.PathLike[str],
    *,
    revision: str | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> Iterator[tuple[Path, str]]:
    """A local folder holding the edit's ``conceptprune/``, and how to name the edit.

    A local folder is used as it is. A Hub repo's edit files (only those: never weights) are
    downloaded into the Hub cache at one commit and copied into a private temporary folder
    (removed after the block), so the record is read as plain files, never through links.

    Raises:
        CpeditError: Not a folder and not a Hub id; the repo holds no edit (``reason="not_output"``).
        HubError: The repo or revision cannot be had.
    """
    path = Path(edit).expanduser()
    if path.exists():
        if revision is not None:
            raise CpeditError(
                f"a revision applies to Hub repos only; {edit} is a local folder", reason="local", argument="revision"
            )
        yield path, str(path)
        return
    repo_id = check_repo_id(os.fspath(edit), label="edit", argument="edit")
    emit(on_progress, ProgressEvent(stage="download", message=f"reading the edit {repo_id}"))
    commit = resolve_commit(repo_id, revision=revision, instead="a local edit folder")
    wanted = {p: size for p, size in list_files(repo_id, commit=commit).items() if is_edit_file(p)}
    if f"{RECORD_DIR}/{REPORT_FILE}" not in wanted:
        raise CpeditError(
            f"{repo_id} holds no cpedit edit (no {RECORD_DIR}/{REPORT_FILE} at {commit[:10]})",
            repo_id=repo_id,
            reason="not_output",
            argument="edit",
        )
    snapshot = download_files(repo_id, wanted, commit=commit, on_progress=on_progress, cancel=cancel)
    root = allowed_root(snapshot)
    with tempfile.TemporaryDirectory(prefix="cpedit-edit-") as tmp:
        for relative in sorted(wanted):
            source = snapshot / relative
            check_entry(source, root=root, shown_as=f"{repo_id}/{relative}")
            (Path(tmp) / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, Path(tmp) / relative)
        yield Path(tmp), f"{repo_id}@{commit}"


def apply_edit(
    edit: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str],
    base: str | os.PathLike[str] | None = None,
    base_revision: str | None = None,
    revision: str | None = None,
    overwrite: bool = False,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> ApplyResult:
    """Rebuild an edited model from an edit and its base: the folder ``cpedit prune`` wrote, byte for byte.

    Args:
        edit: A Hub repo holding an edit (``cpedit push --edit-only``, or a full push), or a
            folder holding one (a cpedit output, or the edit's files alone).
        out: The output folder.
        base: The base model: a Hub id or a local pipeline folder; default the Hub id the edit
            records (pulled at its recorded commit), or ``builtin:shapes``.
        base_revision: A branch, tag or commit of a Hub ``base``; default the recorded commit
            when ``base`` is the recorded repo.
        revision: A branch, tag or commit of the edit's repo (Hub edits only).
        overwrite: Replace ``out`` if it exists (and is a cpedit output).
        on_progress: Receives ``download`` events (the edit, the base) and ``save`` events.
        cancel: Checked between downloads, tensors and files; nothing is written once set.

    Returns:
        An :class:`ApplyResult`.

    Raises:
        CpeditError: The edit is concealed (``reason="concealed"``); the base is not the one the
            edit was made on (``mismatch``: another commit, or other pruned weights); the edit
            records no base digest or names no base (``no_base``); the output cannot be written
            (as :func:`cpedit.output.folder.check_output_target`). All are raised before
            anything is written.
        RecordError: The edit's report, recipes or positions are missing or malformed.
        ModelLoadError: The base cannot be had.
        HubError: The edit's repo cannot be had.
        Cancelled: ``cancel`` was set.
    """
    out_path = check_output_target(out, overwrite=overwrite)
    with edit_folder(edit, revision=revision, on_progress=on_progress, cancel=cancel) as (folder, label):
        record = read_edit(folder)
        expected = _check_applicable(record, label)
        assert record.positions is not None  # only a concealed edit has none
        masks = read_positions(record.positions, layers=record.report.layers)
        _check_positions_file(record.positions, masks)
        edits = _edits(record, masks)
        source = _resolve_base(record, base=base, base_revision=base_revision, on_progress=on_progress, cancel=cancel)
        check_not_inside(out_path, source.path)
        _check_commit(record.report, source)
        emit(on_progress, ProgressEvent(stage="load", message=f"checking the base's pruned weights ({source.ref})"))
        found = base_weights_digest(source.path, edits, cancel=cancel)
        if found != expected:
            raise _mismatch(f"its pruned weights differ from the edit's base (digest {found} != {expected})", source)
        needed = output_size(source.path)
        check_free_space(out_path, needed)
        check_cancel(cancel, "before writing the output")
        with atomic_folder(out_path, overwrite=overwrite, needed=needed) as tmp:
            written = write_pipeline_folder(source.path, tmp, edits=edits, on_progress=on_progress, cancel=cancel)
            if written.base_weights_digest != expected:  # the base changed while it was copied
                raise _mismatch("its pruned weights changed while they were copied", source)
            write_record(
                tmp, masks=masks, recipes=record.recipes, report=record.report, positions_file=record.positions
            )
            check_cancel(cancel, "before moving the output into place")
    emit(on_progress, ProgressEvent(stage="done", message=f"wrote {out_path}"))
    return ApplyResult(path=out_path, report=record.report, base=source, edit=label)


def _check_applicable(record: EditRecord, label: str) -> str:
    """Refuse an edit that cannot be rebuilt; the recorded digest of its base's pruned weights."""
    report = record.report
    if report.conceal.conceals:
        raise CpeditError(
            f"{label} is a concealed edit ({report.conceal.mode} fill): its pruned weights hold random draws "
            "matched to each layer, which its record does not carry and which cannot be drawn again the same "
            "(the seed is never published, and the draws depend on the machine that made them); publish and "
            "share its weights instead",
            path=str(record.folder),
            reason="concealed",
        )
    digest = report.base_model.weights_digest
    if digest is None:
        raise CpeditError(
            f"{label} does not record a digest of its base's pruned weights (it was pruned by an older cpedit, or "
            "saved from a pipeline in memory), so no base can be checked against it; prune it again to apply it",
            path=str(record.folder),
            reason="no_base",
        )
    return digest


def _check_positions_file(path: Path, masks: dict[str, torch.Tensor]) -> None:
    """The positions file holds what :func:`~cpedit.output.positions.read_positions` read and nothing else.

    It is copied as it is, so it must hold nothing besides.

    Raises:
        RecordError: It holds other tensors or metadata than one tensor per layer it lists.
    """
    try:
        header = read_safetensors_header(path)
    except (SafetensorsProblem, OSError) as exc:
        raise RecordError(
            f"{path} is not a valid safetensors file: {exc}", path=str(path), reason="malformed"
        ) from None
    if set(header.tensors) != set(masks) or set(header.metadata or {}) != POSITIONS_METADATA:
        raise RecordError(
            f"{path} holds other tensors or metadata than the pruned positions of the layers it lists",
            path=str(path),
            reason="malformed",
        )


def _edits(record: EditRecord, masks: dict[str, torch.Tensor]) -> dict[str, dict[str, TensorFill]]:
    """Per edited component, the zeros to write, from the positions checked against the report's layers."""
    report = record.report
    where = f"{record.positions}"
    layers = {layer.name: layer for layer in report.layers}
    per_component: dict[str, dict[str, torch.Tensor]] = {}
    for key, mask in masks.items():
        layer = layers.get(key)
        if layer is None:
            raise RecordError(f"{where}: layer {key} is not in the report", path=where, reason="mismatch")
        if tuple(mask.shape) != layer.shape or int(mask.sum()) != layer.pruned:
            raise RecordError(
                f"{where}: layer {key} has {int(mask.sum())} positions in a {tuple(mask.shape)} weight; the report "
                f"says {layer.pruned} in {layer.shape}",
                path=where,
                reason="mismatch",
            )
        name = key if layer.component == report.denoiser_component else key.removeprefix(f"{layer.component}/")
        per_component.setdefault(layer.component, {})[name] = mask
    unlisted = [layer.name for layer in report.layers if layer.pruned and layer.name not in masks]
    if unlisted:
        raise RecordError(
            f"{where}: layer {unlisted[0]} ({len(unlisted)} in all) has pruned weights in the report but no positions",
            path=where,
            reason="mismatch",
        )
    total = sum(layer.pruned for layer in report.layers)
    if total != report.totals.pruned_weights:
        raise RecordError(
            f"{where}: the layers hold {total} pruned weights, the report's totals {report.totals.pruned_weights}",
            path=where,
            reason="mismatch",
        )
    return {component: weight_fills(per_component.get(component, {})) for component in report.edited_components}


def _resolve_base(
    record: EditRecord,
    *,
    base: str | os.PathLike[str] | None,
    base_revision: str | None,
    on_progress: ProgressCallback | None,
    cancel: threading.Event | None,
) -> ModelSource:
    """The base folder: the one given, else the recorded Hub id at its recorded commit (or the built-in model)."""
    recorded = record.report.base_model
    recorded_repo = recorded.repo_id or (
        recorded.id if recorded.id and not recorded.local and not is_builtin_model(recorded.id) else None
    )
    pinned = recorded.commit or recorded.revision
    if base is None:
        if recorded.id and is_builtin_model(recorded.id):
            return resolve_source(BUILTIN_MODEL_NAME)
        if recorded_repo is None:
            raise CpeditError(
                "the edit does not record its base model's Hub id (it was pruned from a local folder); give the "
                "base model (the folder it was pruned from, or its Hub id)",
                path=str(record.folder),
                reason="no_base",
                argument="base",
            )
        base = recorded_repo
    ref = os.fspath(base)
    if base_revision is None and ref == recorded_repo and not Path(ref).expanduser().exists():
        base_revision = pinned
    return resolve_source(ref, revision=base_revision, on_progress=on_progress, cancel=cancel)


def _check_commit(report: Report, source: ModelSource) -> None:
    """Refuse a base at another Hub commit than the recorded one (when both are known)."""
    recorded = report.base_model.commit
    if recorded is not None and source.commit is not None and source.commit != recorded:
        raise _mismatch(f"it is commit {source.commit}, the edit was made on commit {recorded}", source)


def _mismatch(why: str, source: ModelSource) -> CpeditError:
    return CpeditError(
        f"the base {source.ref} is not the model this edit was made on: {why}; nothing was written. Give the "
        "base the edit was made on (its report names it)",
        path=str(source.path),
        repo_id=source.repo_id,
        reason="mismatch",
        argument="base",
    )


__all__ = ["ApplyResult", "apply_edit", "edit_folder", "is_edit_file"]
