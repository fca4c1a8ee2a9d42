"""Publishing to the Hub: a pruned pipeline with its model card, or recipes.

Each publish is one commit: the repo is created if needed, every LFS file is uploaded first
(one progress event per file), then a single commit adds all files. The token comes from
huggingface_hub's usual places (``HF_TOKEN``, ``hf auth login``); cpedit never reads, prints
or stores it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cpedit.errors import CpeditError
from cpedit.hub.card import base_card_metadata, build_model_card, read_output
from cpedit.hub.errors import hub_errors, repo_url, service_errors
from cpedit.output import RECORD_DIR, REPORT_FILE
from cpedit.progress import ProgressCallback, ProgressEvent, emit
from cpedit.recipes import Recipe, load_recipe

REPO_ID_HELP = "NAMESPACE/NAME (your user name or an organisation, then the repo name)"


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
    """

    repo_id: str
    url: str
    commit_url: str
    commit: str
    pr_url: str | None
    files: list[str]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "repo_id": self.repo_id,
            "url": self.url,
            "commit_url": self.commit_url,
            "commit": self.commit,
            "pr_url": self.pr_url,
            "files": self.files,
        }


def check_repo_id(repo_id: str) -> str:
    """Check the ``NAMESPACE/NAME`` form (before any network call).

    Raises:
        CpeditError: It is not of that form.
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise CpeditError(f"--repo {repo_id!r}: give {REPO_ID_HELP}")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise CpeditError(f"--repo {repo_id!r} is not a valid Hub repo id: {exc}") from None
    return repo_id


def whoami() -> str:
    """The user name the token belongs to.

    Raises:
        HubError: Not logged in, token rejected, or the Hub cannot be reached.
    """
    from huggingface_hub import HfApi

    with service_errors("publish (checking who you are)"):
        return str(HfApi().whoami()["name"])


def folder_files(folder: Path) -> list[str]:
    """The files of an output folder to publish (relative POSIX paths), hidden entries and README.md left out."""
    files = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        if relative.as_posix() == "README.md":
            continue  # replaced by the generated card
        files.append(relative.as_posix())
    return files


def shareable_report(report: dict[str, Any]) -> bytes:
    """``report.json`` as published: a local base model's path (recorded as ``id`` and ``path``) removed."""
    shared = json.loads(json.dumps(report))
    base = shared.get("base_model") or {}
    if base.get("local"):
        base["id"] = None
        base["path"] = None
    return (json.dumps(shared, indent=2) + "\n").encode("utf-8")


def _commit(
    repo_id: str,
    operations: list[Any],
    *,
    private: bool,
    branch: str | None,
    message: str,
    create_pr: bool,
    on_progress: ProgressCallback | None,
) -> PushResult:
    from huggingface_hub import HfApi

    api = HfApi()
    whoami()
    emit(on_progress, ProgressEvent(stage="upload", message=f"creating {repo_id} (if needed)"))
    with hub_errors(repo_id):
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if branch is not None and branch != "main":
            api.create_branch(repo_id, branch=branch, exist_ok=True)
    total = sum(op.upload_info.size for op in operations)
    done = 0
    with hub_errors(repo_id, revision=branch):
        for index, op in enumerate(operations, 1):
            emit(
                on_progress,
                ProgressEvent(
                    stage="upload",
                    message=f"uploading {op.path_in_repo}",
                    batch=index,
                    batches=len(operations),
                    completed=done,
                    total=total,
                ),
            )
            # Uploads the file's LFS object now (a no-op for small text files, sent inline with the commit).
            api.preupload_lfs_files(repo_id, additions=[op], revision=branch, create_pr=create_pr)
            done += op.upload_info.size
        emit(
            on_progress,
            ProgressEvent(
                stage="upload",
                message="committing",
                batch=len(operations),
                batches=len(operations),
                completed=total,
                total=total,
            ),
        )
        info = api.create_commit(
            repo_id,
            operations=operations,
            commit_message=message,
            revision=branch,
            create_pr=create_pr,
        )
    emit(on_progress, ProgressEvent(stage="done", message="done"))
    return PushResult(
        repo_id=repo_id,
        url=repo_url(repo_id),
        commit_url=str(info.commit_url),
        commit=str(info.oid),
        pr_url=str(info.pr_url) if info.pr_url else None,
        files=[op.path_in_repo for op in operations],
    )


def push_model(
    folder: str | os.PathLike[str],
    *,
    repo_id: str,
    private: bool = False,
    branch: str | None = None,
    message: str | None = None,
    create_pr: bool = False,
    on_progress: ProgressCallback | None = None,
) -> PushResult:
    """Publish a cpedit output folder to the Hub in one commit, with a generated model card.

    The folder is checked first (a complete cpedit output, never a ``.partial`` one); the card
    (README.md) is generated from its record, with the base model's license when known; the
    preview grid (``conceptprune/preview.png``) goes with it when present. Files are uploaded
    as they are, except ``conceptprune/report.json``, published without the local path of a
    local base model (see :func:`shareable_report`).

    Args:
        folder: The cpedit output folder.
        repo_id: ``NAMESPACE/NAME``; created if it does not exist.
        private: Create the repo private (an existing repo keeps its visibility).
        branch: Commit to this branch (created from main if needed); default main.
        message: The commit message; default "Upload pruned pipeline (cpedit)".
        create_pr: Open a pull request instead of committing to the branch.
        on_progress: Receives ``upload`` events (one per file, with bytes done/total).

    Returns:
        A :class:`PushResult` (with the repo's URL on the Hub in use).

    Raises:
        CpeditError: The folder is not a complete cpedit output, or ``repo_id`` is malformed.
        HubError: Not logged in, no write access, or the Hub cannot be reached.
    """
    from huggingface_hub import CommitOperationAdd

    check_repo_id(repo_id)
    record = read_output(folder)
    card = build_model_card(record.folder, repo_id=repo_id, base_metadata=base_card_metadata(record), record=record)
    operations = [CommitOperationAdd("README.md", card.encode("utf-8"))]
    report_path = f"{RECORD_DIR}/{REPORT_FILE}"
    for path in folder_files(record.folder):
        if path == report_path:
            operations.append(CommitOperationAdd(path, shareable_report(record.report)))
        else:
            operations.append(CommitOperationAdd(path, str(record.folder / path)))
    return _commit(
        repo_id,
        operations,
        private=private,
        branch=branch,
        message=message or "Upload pruned pipeline (cpedit)",
        create_pr=create_pr,
        on_progress=on_progress,
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
        on_progress: Receives ``upload`` events.

    Raises:
        RecipeError: A file is not a valid recipe (nothing is uploaded).
        CpeditError: No files, two files with the same name, or a malformed ``repo_id``.
        HubError: Not logged in, no write access, or the Hub cannot be reached.
    """
    from huggingface_hub import CommitOperationAdd

    check_repo_id(repo_id)
    if not files:
        raise CpeditError("give at least one recipe file")
    recipes: list[tuple[str, Recipe]] = []
    seen: dict[str, str] = {}
    folder = path_in_repo.strip("/")
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
    )
