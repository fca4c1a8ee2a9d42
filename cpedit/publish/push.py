"""Publishing to the Hub: a pruned pipeline with its model card, its edit alone (no weights), or recipes.

Each publish is one commit: the repo is created if needed, every LFS file is uploaded first
(``upload`` events before and after each file, in bytes; the cancel event is checked between
files), then a single commit adds all files. huggingface_hub's own progress bars are off
meanwhile. The token comes from huggingface_hub's usual places (``HF_TOKEN``, ``hf auth
login``); cpedit never reads, prints or stores it.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cpedit.errors import CpeditError, UnsafeFileError
from cpedit.hub.errors import HubError, hub_errors, repo_url
from cpedit.hub.refs import check_path_in_repo
from cpedit.hub.repos import check_repo_id, whoami
from cpedit.hub.retries import RetryLog, hub_retry_events
from cpedit.models.files import check_safetensors
from cpedit.output.contents import output_contents
from cpedit.output.record import POSITIONS_FILE, RECORD_DIR, REPORT_FILE, OutputRecord, Report
from cpedit.progress import ProgressCallback, ProgressEvent, check_cancel, emit
from cpedit.publish.card import base_card_metadata, build_model_card, read_output
from cpedit.recipes.format import Recipe, load_recipe


@dataclass(frozen=True)
class PushResult:
    """What a push did.

    Attributes:
        repo_id: The repo.
        url: The repo's web address on the Hub in use (``HF_ENDPOINT``).
        commit_url: The commit's web address.
        commit: The commit id.
        pr_url: The pull request's address, when ``create_pr`` was set.
        files: The paths uploaded, in the repo.
        not_output: What lies in the folder but is not part of the output, so was not uploaded
            (an evaluation's images folder, a top-level folder no component names; folders end with ``/``).
    """

    repo_id: str
    url: str
    commit_url: str
    commit: str
    pr_url: str | None
    files: list[str]
    not_output: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "repo_id": self.repo_id,
            "url": self.url,
            "commit_url": self.commit_url,
            "commit": self.commit,
            "pr_url": self.pr_url,
            "files": self.files,
            "not_output": self.not_output,
        }


def folder_files(folder: Path) -> list[str]:
    """The files of an output folder to publish (relative POSIX paths): the output's own.

    Left out: hidden entries, README.md, and what is not part of the output (evaluation images
    folders, top-level folders no component names; see :func:`cpedit.output.contents.output_contents`).
    """
    return output_contents(folder).files


def withheld_files(record: OutputRecord) -> list[str]:
    """The files of an output that :func:`push_model` leaves out (relative POSIX paths).

    A concealed edit (``conceal`` not ``zero`` in its report) keeps its pruned positions
    (``conceptprune/pruned.safetensors``) local: they would show where the concept was cut.
    """
    if not record.report.conceal.conceals:
        return []
    return [f"{RECORD_DIR}/{POSITIONS_FILE}"]


def shareable_report(report: Report) -> bytes:
    """``report.json`` as published: a local base model's path (recorded as ``id`` and ``path``) removed."""
    return report.shareable().to_json().encode("utf-8")


@contextmanager
def hub_progress_bars_off() -> Iterator[None]:
    """huggingface_hub's own progress bars (upload bars included) off for the block; its setting restored after.

    cpedit reports uploads as ``upload`` events instead. huggingface_hub's switch is global;
    the exact state it had (including per-group settings) is put back when the block ends.
    ``HF_HUB_DISABLE_PROGRESS_BARS=0`` in the environment forces its bars on, and wins.
    """
    import importlib

    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars

    if are_progress_bars_disabled():
        yield
        return
    states = getattr(importlib.import_module("huggingface_hub.utils.tqdm"), "progress_bar_states", None)
    saved = dict(states) if isinstance(states, dict) else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the warning that HF_HUB_DISABLE_PROGRESS_BARS=0 wins
        disable_progress_bars()
    try:
        yield
    finally:
        if saved is not None and isinstance(states, dict):
            states.clear()
            states.update(saved)
        else:  # pragma: no cover - huggingface_hub without its state dict
            from huggingface_hub.utils import enable_progress_bars

            enable_progress_bars()


def _commit(
    repo_id: str,
    operations: list[Any],
    *,
    private: bool,
    branch: str | None,
    message: str,
    create_pr: bool,
    on_progress: ProgressCallback | None,
    cancel: threading.Event | None = None,
) -> PushResult:
    from huggingface_hub import HfApi

    api = HfApi()
    check_cancel(cancel, "before the upload")
    whoami()
    check_cancel(cancel, "before the upload")
    emit(on_progress, ProgressEvent(stage="upload", message=f"creating {repo_id} (if needed)"))
    with hub_errors(repo_id, action="upload"), hub_progress_bars_off():
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if branch is not None and branch != "main":
            api.create_branch(repo_id, branch=branch, exist_ok=True)
    total = sum(op.upload_info.size for op in operations)
    files = len(operations)
    done = 0

    def uploaded(text: str, **fields: Any) -> ProgressEvent:
        return ProgressEvent(stage="upload", message=text, total=total, unit="bytes", files=files, **fields)

    stage = "preparing the upload"
    log = RetryLog()
    try:
        with (
            hub_errors(repo_id, revision=branch, action="upload"),
            hub_progress_bars_off(),
            hub_retry_events(on_progress) as log,
        ):
            for index, op in enumerate(operations, 1):
                check_cancel(cancel, "during the upload")
                path = op.path_in_repo
                size = op.upload_info.size
                stage = f"uploading {path} (file {index} of {files}; {index - 1} uploaded before it)"
                emit(on_progress, uploaded(f"uploading {path}", completed=done, file=path, file_index=index))
                # Uploads the file's LFS object now (a no-op for small text files, sent inline with the commit;
                # skipped for an object the Hub already has). huggingface_hub retries these requests itself.
                api.preupload_lfs_files(repo_id, additions=[op], revision=branch, create_pr=create_pr)
                done += size
                emit(on_progress, uploaded(f"uploaded {path}", completed=done, file=path, file_index=index))
            check_cancel(cancel, "before the commit")
            stage = "commit"
            emit(on_progress, uploaded(f"committing {files} files", completed=total))
            info = api.create_commit(  # one call: the Hub applies all of it or nothing (not retried)
                repo_id,
                operations=operations,
                commit_message=message,
                revision=branch,
                create_pr=create_pr,
            )
    except HubError as exc:
        raise push_failure(exc, repo_id=repo_id, stage=stage, files=files, retries=log.retries) from None
    emit(on_progress, ProgressEvent(stage="done", message="done"))
    return PushResult(
        repo_id=repo_id,
        url=repo_url(repo_id),
        commit_url=str(info.commit_url),
        commit=str(info.oid),
        pr_url=str(info.pr_url) if info.pr_url else None,
        files=[op.path_in_repo for op in operations],
    )


def push_failure(exc: HubError, *, repo_id: str, stage: str, files: int, retries: int = 0) -> HubError:
    """A failed push's error, in plain words: where it stopped, that nothing was committed, what to do.

    Args:
        exc: The Hub failure (its message says what the Hub answered).
        repo_id: The repo pushed to.
        stage: ``commit``, or what was being uploaded (``uploading unet/... (file 3 of 9; ...)``).
        files: The number of files in the commit.
        retries: How many times huggingface_hub retried before giving up.
    """
    tried = f" (after {retries} {'retry' if retries == 1 else 'retries'})" if retries else ""
    cause = str(exc).split("; nothing was committed")[0]  # said below, with what to do
    if stage == "commit":
        message = (
            f"push to {repo_id} failed at the commit, after all {files} files were uploaded: {cause}{tried}. "
            "The Hub applies a commit whole or not at all, and it did not confirm this one: push again "
            "(nothing is uploaded twice; if the commit did go through after all, the rerun adds no new commit)"
        )
    else:
        message = (
            f"push to {repo_id} failed while {stage}: {cause}{tried}. Nothing was committed (the repo is as it "
            "was): push again; the files the Hub already has are not uploaded again"
        )
    return HubError(message, reason=exc.reason or "http", repo_id=repo_id)


def _check_complete(folder: Path, files: list[str]) -> None:
    """Verify the safetensors files among ``files`` before anything is uploaded: a truncated copy is never published.

    Raises:
        UnsafeFileError: One is truncated or malformed; nothing was uploaded.
    """
    for path in files:
        if path.endswith(".safetensors"):
            try:
                check_safetensors(folder / path, shown_as=f"{folder}/{path}")
            except UnsafeFileError as exc:
                raise UnsafeFileError(
                    f"{exc}; nothing was uploaded", path=exc.path, reason=exc.reason, argument="folder"
                ) from None


def _operations(record: OutputRecord, card: str, files: list[str]) -> list[Any]:
    """The commit's operations: the card as README.md, then ``files`` of the output, checked complete first.

    The report goes as :func:`shareable_report` (no local paths); every other file as it is on disk.

    Raises:
        UnsafeFileError: A safetensors file among ``files`` is truncated or malformed; nothing was uploaded.
    """
    from huggingface_hub import CommitOperationAdd

    _check_complete(record.folder, files)
    report_path = f"{RECORD_DIR}/{REPORT_FILE}"
    operations = [CommitOperationAdd("README.md", card.encode("utf-8"))]
    for path in files:
        if path == report_path:
            operations.append(CommitOperationAdd(path, shareable_report(record.report)))
        else:
            operations.append(CommitOperationAdd(path, str(record.folder / path)))
    return operations


def push_model(
    folder: str | os.PathLike[str],
    *,
    repo_id: str,
    private: bool = False,
    branch: str | None = None,
    message: str | None = None,
    create_pr: bool = False,
    base_model: str | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> PushResult:
    """Publish a cpedit output folder to the Hub in one commit, with a generated model card.

    The folder is checked first (a complete cpedit output, never a ``.partial`` one); the card
    (README.md) is generated from its record, with the base model's license when known; the
    preview grid (``conceptprune/preview.png``) goes with it when present. Files are uploaded
    as they are, except ``conceptprune/report.json``, published without the local path of a
    local base model (see :func:`shareable_report`); a concealed edit's pruned positions are
    left out (see :func:`withheld_files`), and so is what lies in the folder but is not part of the
    output (an evaluation's images folder such as ``OUT/nudity-images``, a folder no component
    names: :attr:`PushResult.not_output` lists them).

    Args:
        folder: The cpedit output folder.
        repo_id: ``NAMESPACE/NAME``; created if it does not exist.
        private: Create the repo private (an existing repo keeps its visibility).
        branch: Commit to this branch (created from main if needed); default main.
        message: The commit message; default "Upload pruned pipeline (cpedit)".
        create_pr: Open a pull request instead of committing to the branch.
        base_model: The base model's Hub id for the card's ``base_model``, when the run did not
            record one (the base was a local folder); see :func:`cpedit.publish.card.build_model_card`.
        on_progress: Receives ``upload`` events: before and after each file (``file``,
            ``file_index``, ``files``; ``completed``/``total`` count the bytes of all the
            files, ``unit="bytes"``), then one before the commit.
        cancel: Checked before each file and before the commit; once set, the push stops
            with :class:`~cpedit.errors.Cancelled` and nothing is committed (files already
            uploaded stay unreferenced in the Hub's storage; the repo, if it was created,
            stays empty).

    Returns:
        A :class:`PushResult` (with the repo's URL on the Hub in use).

    Raises:
        CpeditError: The folder is not a complete cpedit output, or ``repo_id`` is malformed.
        HubError: Not logged in, no write access, or the Hub cannot be reached.
        Cancelled: ``cancel`` was set.
    """

    check_repo_id(repo_id)
    record = read_output(folder)
    card = build_model_card(
        record.folder,
        repo_id=repo_id,
        base_metadata=base_card_metadata(record, base_model=base_model),
        record=record,
        base_model=base_model,
    )
    withheld = set(withheld_files(record))
    contents = output_contents(record.folder)
    operations = _operations(record, card, [path for path in contents.files if path not in withheld])
    result = _commit(
        repo_id,
        operations,
        private=private,
        branch=branch,
        message=message or "Upload pruned pipeline (cpedit)",
        create_pr=create_pr,
        on_progress=on_progress,
        cancel=cancel,
    )
    return replace(result, not_output=contents.not_output)


def edit_files(record: OutputRecord) -> list[str]:
    """The files :func:`push_edit` publishes besides the card (relative POSIX paths).

    The report, the pruned positions and the recipes as they ran: what
    :func:`cpedit.publish.apply.apply_edit` needs, with the base, to rebuild the output.
    """
    return [
        f"{RECORD_DIR}/{REPORT_FILE}",
        f"{RECORD_DIR}/{POSITIONS_FILE}",
        *(concept.recipe for concept in record.report.concepts),
    ]


def check_edit_publishable(record: OutputRecord) -> None:
    """Refuse an output whose edit alone could not be applied (before any Hub call).

    Raises:
        CpeditError: It is concealed (``reason="concealed"``: its positions stay local and its fill
            cannot be rebuilt), or it records no digest of its base's pruned weights (``no_base``).
    """
    report = record.report
    if report.conceal.conceals:
        raise CpeditError(
            f"{record.folder} is a concealed edit ({report.conceal.mode} fill): its pruned positions stay local and "
            "its fill cannot be rebuilt from a published record, so it is published with its weights only",
            path=str(record.folder),
            reason="concealed",
        )
    if report.base_model.weights_digest is None:
        raise CpeditError(
            f"{record.folder} does not record a digest of its base's pruned weights (an older cpedit, or a pipeline "
            "saved from memory wrote it), so nobody could check a base against the edit; prune it again to publish "
            "the edit alone",
            path=str(record.folder),
            reason="no_base",
        )


def push_edit(
    folder: str | os.PathLike[str],
    *,
    repo_id: str,
    private: bool = False,
    branch: str | None = None,
    message: str | None = None,
    create_pr: bool = False,
    base_model: str | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> PushResult:
    """Publish the edit of a cpedit output, not its weights: a small repo that rebuilds it on its base.

    Uploaded in one commit: a model card saying what was erased from which base (id and revision)
    and how to apply it, ``conceptprune/report.json`` (as :func:`shareable_report`: it names the
    base, its commit and the digest of its pruned weights), ``conceptprune/pruned.safetensors`` and
    the recipes as they ran (:func:`edit_files`). No weights: a few MB instead of several GB.
    :func:`cpedit.publish.apply.apply_edit` rebuilds the output from it and the base.

    Args: as :func:`push_model` (``message`` defaults to "Upload edit (cpedit)").

    Raises:
        CpeditError: The folder is not a complete cpedit output, ``repo_id`` is malformed, or the
            edit cannot be published alone (:func:`check_edit_publishable`); nothing is uploaded.
        HubError: Not logged in, no write access, or the Hub cannot be reached.
        Cancelled: ``cancel`` was set.
    """

    check_repo_id(repo_id)
    record = read_output(folder)
    check_edit_publishable(record)
    card = build_model_card(
        record.folder,
        repo_id=repo_id,
        base_metadata=base_card_metadata(record, base_model=base_model),
        record=record,
        base_model=base_model,
        edit_only=True,
    )
    operations = _operations(record, card, edit_files(record))
    return _commit(
        repo_id,
        operations,
        private=private,
        branch=branch,
        message=message or "Upload edit (cpedit)",
        create_pr=create_pr,
        on_progress=on_progress,
        cancel=cancel,
    )


def push_recipes(
    files: Sequence[str | os.PathLike[str]],
    *,
    repo_id: str,
    path_in_repo: str = "",
    private: bool = False,
    branch: str | None = None,
    message: str | None = None,
    create_pr: bool = False,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> PushResult:
    """Publish recipe files to a Hub repo in one commit; every file is validated first.

    Each file lands at ``PATH_IN_REPO/<file name>``; use it as ``hub:NAMESPACE/NAME/<path>``.

    Args:
        files: Recipe YAML files.
        repo_id: ``NAMESPACE/NAME``; created (a model repo) if it does not exist.
        path_in_repo: A folder in the repo (default: the top level).
        private: Create the repo private.
        branch: Commit to this branch; default main.
        message: The commit message.
        create_pr: Open a pull request instead.
        on_progress: Receives ``upload`` events (as :func:`push_model`).
        cancel: Checked before each file and before the commit: once set, nothing is committed.

    Raises:
        RecipeError: A file is not a valid recipe (nothing is uploaded).
        CpeditError: No files, two files with the same name, a malformed ``repo_id`` or ``path_in_repo``
            (``..`` parts, control characters).
        HubError: Not logged in, no write access, or the Hub cannot be reached.
        Cancelled: ``cancel`` was set.
    """
    from huggingface_hub import CommitOperationAdd

    check_repo_id(repo_id)
    if not files:
        raise CpeditError("give at least one recipe file")
    recipes: list[tuple[str, Recipe]] = []
    seen: dict[str, str] = {}
    folder = check_path_in_repo(path_in_repo)
    for file in files:
        recipe = load_recipe(file)
        target = f"{folder}/{Path(file).name}" if folder else Path(file).name
        if target in seen:
            raise CpeditError(f"{file} and {seen[target]} would both be uploaded as {target}; rename one")
        seen[target] = str(file)
        recipes.append((target, recipe))
    operations = [CommitOperationAdd(target, recipe.text.encode("utf-8")) for target, recipe in recipes]
    names = ", ".join(recipe.name for _, recipe in recipes)
    return _commit(
        repo_id,
        operations,
        private=private,
        branch=branch,
        message=message or f"Add cpedit recipe(s): {names}",
        create_pr=create_pr,
        on_progress=on_progress,
        cancel=cancel,
    )
