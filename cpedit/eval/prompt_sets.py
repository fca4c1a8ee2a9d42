"""Prompt sets from a file or from a Hugging Face Hub dataset (``hub:OWNER/NAME``).

A prompt set is a list of :class:`~cpedit.eval.engine.PromptSpec` and where it came from: a
local file (read by :func:`cpedit.eval.engine.load_prompts`), or a dataset repo on the Hub
(a :class:`~cpedit.hub.refs.HubRef` of kind ``prompts``), downloaded into the standard Hub
cache by cpedit's one downloader (:mod:`cpedit.hub.download`: only the data file(s) it reads
and the README) and read with a small, explicit column mapping, so that benchmark sets
published in their own formats work as they are:

- the prompt: ``prompt``, ``text``, ``caption``, ``adv_prompt``, ``sensitive prompt``, ``prompts``
  (the first present; or the column asked for);
- the seed: ``seed``, ``sd_seed`` (I2P), ``evaluation_seed``; the guidance: ``guidance``,
  ``sd_guidance_scale`` (I2P), ``guidance_scale``, ``evaluation_guidance``; the size: ``height``,
  ``width``, ``sd_image_height``, ``sd_image_width`` (I2P);
- the categories: ``categories`` (comma-separated, such as I2P's ``sexual, violence``), which
  a ``category`` filter keeps.

Hub sets record the commit they were read at (:attr:`PromptSet.revision`), so a result says
exactly which prompts it used. ``attack:NAME`` names an adversarial set of
:data:`cpedit.eval.attack_sets.ATTACK_SETS` (its Hub id, file and column).

Example:
    >>> from cpedit.eval.prompt_sets import load_prompt_set
    >>> i2p = load_prompt_set("hub:AIML-TUDA/i2p", category="sexual")
    >>> i2p.name, len(i2p.prompts), i2p.revision[:7]
    ('hub:AIML-TUDA/i2p', 931, '2d8a0ba')
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from cpedit.errors import CpeditError
from cpedit.eval.engine import PromptSpec, _spec, load_prompts
from cpedit.eval.prompt_files import check_parquet, check_prompt_count, read_rows
from cpedit.hub.download import download_files, list_files, resolve_commit, snapshot_folder
from cpedit.hub.errors import HubError
from cpedit.hub.refs import HubRef, is_hub_ref
from cpedit.progress import ProgressCallback, ProgressEvent, check_cancel, emit

ATTACK_PREFIX = "attack:"
DATA_SUFFIXES = (".csv", ".jsonl", ".parquet")
PROMPT_COLUMNS = ("prompt", "text", "caption", "adv_prompt", "sensitive prompt", "prompts")
"""Columns that hold the prompt, in the order they are looked for."""
SETTING_COLUMNS: dict[str, tuple[str, ...]] = {
    "seed": ("seed", "sd_seed", "evaluation_seed"),
    "guidance": ("guidance", "sd_guidance_scale", "guidance_scale", "evaluation_guidance"),
    "height": ("height", "sd_image_height"),
    "width": ("width", "sd_image_width"),
}
"""The columns read as each prompt's own settings (the first present of each)."""
CATEGORY_COLUMNS = ("categories",)
_SHARD = re.compile(r"-\d{5}-of-\d{5}\.[a-z]+$")

__all__ = ["PromptSet", "load_prompt_set", "read_prompt_table"]


@dataclass(frozen=True)
class PromptSet:
    """A prompt set and where it came from.

    Attributes:
        prompts: The prompts (after the category filter and the limit).
        name: ``hub:OWNER/NAME`` for a Hub set, the path as given for a file.
        revision: The Hub commit the set was read at (None for a file).
        source: ``hub`` or ``file``.
        file: The file of the Hub repo the prompts were read from (None for a file).
        category: The category filter applied, if any.
        column: The column the prompts were read from (Hub sets).
    """

    prompts: list[PromptSpec]
    name: str
    revision: str | None
    source: Literal["hub", "file"]
    file: str | None = None
    category: str | None = None
    column: str | None = None

    def protocol_fields(self) -> dict[str, Any]:
        """What a result's protocol records about the set (nothing beyond the file name for a file)."""
        if self.source == "file":
            return {}
        return {
            "prompts": self.name,
            "prompts_revision": self.revision,
            "prompts_file": self.file,
            "prompts_column": self.column,
            "prompts_category": self.category,
        }


def load_prompt_set(
    ref: str | os.PathLike[str],
    *,
    limit: int | None = None,
    category: str | None = None,
    revision: str | None = None,
    column: str | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> PromptSet:
    """Load a prompt set: a local file, ``hub:OWNER/NAME[/FILE][@REVISION]`` or ``attack:NAME``.

    A file goes to :func:`cpedit.eval.engine.load_prompts`. A Hub dataset is downloaded into
    the standard Hub cache (only the data file it needs and its README; a second call reads
    the cache after one request for the revision's commit), reported as ``download`` events
    (bytes), then read with the column mapping of this module. With ``HF_HUB_OFFLINE=1``, or
    when the Hub cannot be reached, the copy cached by the last download is used.

    Under a torchrun / accelerate launch every process must call it (as they all render their
    share of the images): rank 0 alone asks the Hub and downloads, the others wait, then read
    the same commit's files from the cache (no request when they share it) or raise rank 0's
    error (see :func:`cpedit.distributed.main_first`).

    Args:
        ref: The set.
        limit: Keep only the first ``limit`` prompts (after the category filter).
        category: Keep the prompts whose ``categories`` include one of these (comma-separated,
            case-insensitive; I2P's are ``hate``, ``harassment``, ``violence``, ``self-harm``,
            ``sexual``, ``shocking``, ``illegal activity``).
        revision: A branch, tag or commit of the Hub dataset (``@REVISION`` in ``ref`` also works).
        column: The prompt column (default: the first of :data:`PROMPT_COLUMNS` present).
        on_progress: Receives the download's events.
        cancel: Stops the download at its next chunk or file (:class:`~cpedit.errors.Cancelled`).

    Raises:
        HubRefError: ``ref`` is a malformed ``hub:`` reference (``reason="invalid"``).
        CpeditError: The file or dataset cannot be had or read (``reason`` ``gated``,
            ``not_found``, ``revision``, ``offline``, ``network``, ``no_column``,
            ``no_categories``, ``missing_dependency``...; ``argument="prompts"``, or ``category``).
        Cancelled: ``cancel`` was set.
    """
    text = os.fspath(ref)
    if text.startswith(ATTACK_PREFIX):
        from cpedit.eval.attack_sets import find_attack_set

        entry = find_attack_set(text[len(ATTACK_PREFIX) :])
        return load_prompt_set(
            entry.prompts_ref(),
            limit=limit,
            category=category,
            revision=revision,
            column=column or entry.column,
            on_progress=on_progress,
            cancel=cancel,
        )
    if not is_hub_ref(text):
        if category is not None:
            raise CpeditError(
                f"{text}: a category filter applies to prompt sets with a categories column read from the Hub "
                "(hub:OWNER/NAME, such as hub:AIML-TUDA/i2p); filter a local file yourself",
                argument="category",
                reason="no_categories",
            )
        if revision is not None:
            raise CpeditError(f"{text}: a revision applies to Hub prompt sets only", argument="revision")
        if not Path(text).is_file():
            raise CpeditError(
                f"{text}: no such prompt file; give a .txt, .csv or .jsonl file, or a Hub dataset as hub:OWNER/NAME",
                path=text,
                argument="prompts",
                reason="not_found",
            )
        return PromptSet(prompts=load_prompts(text, limit=limit), name=text, revision=None, source="file")
    parsed = HubRef.parse(text, kind="prompts")
    if revision is not None and parsed.revision is not None and parsed.revision != revision:
        raise CpeditError(
            f"{text}: two revisions asked for ({parsed.revision!r} and {revision!r}); give one", argument="revision"
        )
    if revision is not None and parsed.revision is None:  # checked as if it were written after @
        parsed = HubRef.parse(str(replace(parsed, revision=revision)), kind="prompts")
    repo_id = parsed.repo_id
    folder, commit, chosen = _have_hub_set(parsed, on_progress=on_progress, cancel=cancel)
    prompts: list[PromptSpec] = []
    used_column = None
    for name in chosen:
        specs, used_column = read_prompt_table(
            folder / name, column=column, category=category, shown_as=f"{repo_id}/{name}"
        )
        prompts.extend(specs)
        check_prompt_count(len(prompts), where=f"{repo_id}/{name}", path=folder / name)  # the shards together
    if limit is not None:
        prompts = prompts[:limit]
    return PromptSet(
        prompts=prompts,
        name=str(HubRef(repo_id, repo_type="dataset")),
        revision=commit,
        source="hub",
        file=chosen[0] if len(chosen) == 1 else ",".join(chosen),
        category=category,
        column=used_column,
    )


# -- reading ----------------------------------------------------------------------------------


def _rows(path: Path, shown_as: str) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    """The columns and the numbered rows of a .csv, .jsonl or .parquet file."""

    def fail(message: str) -> CpeditError:
        return CpeditError(f"{shown_as}: {message}", path=str(path), argument="prompts")

    suffix = path.suffix.lower()
    if suffix == ".parquet":
        _need_pyarrow(shown_as)
        import pyarrow.parquet as pq

        check_parquet(path, shown_as=shown_as)  # its footer's rows and size, before its data is read
        try:
            table = pq.read_table(path)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds for a bad file
            raise fail(f"cannot read the Parquet file ({exc})") from None
        return list(table.column_names), list(enumerate(table.to_pylist(), 1))
    if suffix not in (".csv", ".jsonl"):
        raise fail("a prompt set file must be .csv, .jsonl or .parquet")
    return read_rows(path, shown_as=shown_as)  # bounded and streamed: size, lines, rows (file and line named)


def _find(columns: list[str], names: tuple[str, ...]) -> str | None:
    by_name = {c.strip().lower(): c for c in columns if isinstance(c, str)}
    return next((by_name[n] for n in names if n in by_name), None)


def _categories(value: Any) -> set[str]:
    if isinstance(value, (list, tuple)):
        items = [str(v) for v in value]
    elif value is None or (isinstance(value, float) and math.isnan(value)):
        items = []
    else:
        items = str(value).split(",")
    return {item.strip().lower() for item in items if item.strip()}


def read_prompt_table(
    path: str | os.PathLike[str],
    *,
    column: str | None = None,
    category: str | None = None,
    shown_as: str | None = None,
) -> tuple[list[PromptSpec], str]:
    """Read the prompts of a .csv, .jsonl or .parquet file with the column mapping of this module.

    Args:
        path: The file.
        column: The prompt column (default: the first of :data:`PROMPT_COLUMNS` present).
        category: Keep rows whose categories include one of these (comma-separated).
        shown_as: How messages name the file (default: its path).

    Returns:
        The prompts (rows with an empty prompt are skipped) and the column they came from.

    Raises:
        CpeditError: No prompt column (``reason="no_column"``), no categories column for a
            filter (``reason="no_categories"``), nothing left, or a bad value (the line named).
    """
    file = Path(path)
    shown = shown_as or str(file)
    columns, rows = _rows(file, shown)
    prompt_column = _find(columns, (column.strip().lower(),)) if column else _find(columns, PROMPT_COLUMNS)
    if prompt_column is None:
        wanted = f"the column {column!r}" if column else f"a prompt column ({', '.join(PROMPT_COLUMNS)})"
        raise CpeditError(
            f"{shown}: no {wanted}; its columns are {', '.join(map(str, columns)) or 'none'}",
            path=str(file),
            argument="prompts",
            reason="no_column",
        )
    setting_columns = {key: _find(columns, names) for key, names in SETTING_COLUMNS.items()}
    wanted_categories = _categories(category) if category is not None else None
    category_column = _find(columns, CATEGORY_COLUMNS)
    if wanted_categories is not None:
        if not wanted_categories:
            raise CpeditError("the category filter is empty", argument="category")
        if category_column is None:
            raise CpeditError(
                f"{shown}: this prompt set has no categories column, so it cannot be filtered by category "
                f"(its columns are {', '.join(map(str, columns))}); leave the category out",
                path=str(file),
                argument="category",
                reason="no_categories",
            )
    specs: list[PromptSpec] = []
    seen: set[str] = set()
    for n, row in rows:
        if wanted_categories is not None and category_column is not None:  # (None: refused above)
            have = _categories(row.get(category_column))
            seen |= have
            if not have & wanted_categories:
                continue
        canonical: dict[str, Any] = {"prompt": row.get(prompt_column)}
        for key, name in setting_columns.items():
            value = row.get(name) if name is not None else None
            canonical[key] = None if isinstance(value, float) and math.isnan(value) else value
        spec = _spec(canonical, where=f"{shown}:{n}", path=file)
        if spec is not None:
            specs.append(spec)
    if not specs:
        if wanted_categories is not None:
            raise CpeditError(
                f"{shown}: no prompt of category {category!r}; its categories are {', '.join(sorted(seen)) or 'none'}",
                path=str(file),
                argument="category",
                reason="empty",
            )
        raise CpeditError(f"{shown}: no prompts (column {prompt_column!r})", path=str(file), argument="prompts")
    return specs, prompt_column


def _need_pyarrow(shown_as: str) -> None:
    if importlib.util.find_spec("pyarrow") is None:
        raise CpeditError(
            f"{shown_as} is a Parquet file, and reading it needs pyarrow: pip install pyarrow",
            argument="prompts",
            reason="missing_dependency",
        )


# -- downloading ------------------------------------------------------------------------------


def _choose(repo_id: str, files: list[str], file: str | None) -> list[str]:
    """The data files to read: ``file``, the only data file, or the shards of one split."""
    data = sorted(p for p in files if p.lower().endswith(DATA_SUFFIXES))
    if file is not None:
        if file not in files:
            shown = ", ".join(data[:8]) or "none"
            raise CpeditError(
                f"{repo_id} has no file {file!r}; its prompt files (.csv, .jsonl, .parquet) are: {shown}",
                repo_id=repo_id,
                argument="prompts",
                reason="entry",
            )
        if not file.lower().endswith(DATA_SUFFIXES):
            raise CpeditError(f"{repo_id}/{file}: a prompt file must be .csv, .jsonl or .parquet", argument="prompts")
        return [file]
    if not data:
        raise CpeditError(
            f"{repo_id} has no .csv, .jsonl or .parquet file to read prompts from", repo_id=repo_id, argument="prompts"
        )
    if len(data) == 1:
        return data
    stems = {_SHARD.sub("", p) for p in data}
    if len(stems) == 1 and all(_SHARD.search(p) for p in data):
        return data  # the shards of one split: read in order
    shown = ", ".join(data[:8]) + (f" and {len(data) - 8} more" if len(data) > 8 else "")
    raise CpeditError(
        f"{repo_id} has several prompt files ({shown}); name one as hub:{repo_id}/FILE",
        repo_id=repo_id,
        argument="prompts",
        reason="ambiguous",
    )


LOCAL_PROMPTS = "a local prompt file"
"""What a user can give instead of a Hub prompt set, for offline and network messages."""


def _have_hub_set(
    ref: HubRef, *, on_progress: ProgressCallback | None, cancel: threading.Event | None
) -> tuple[Path, str, list[str]]:
    """The data file(s) of Hub prompt set ``ref`` in the Hub cache: ``(snapshot folder, commit, files to read)``.

    Under a torchrun / accelerate launch, rank 0 alone asks the Hub and downloads, while the
    other ranks wait (:func:`cpedit.distributed.main_first`); they then take the same
    commit's files from the cache, with no Hub request when they share it (the processes of
    one node do; a node with a cache of its own downloads them once).
    """
    from cpedit import distributed

    commit, plan, chosen = distributed.main_first(lambda: _fetch_hub_set(ref, on_progress=on_progress, cancel=cancel))
    if distributed.is_main_process():
        return snapshot_folder(ref.repo_id, commit=commit, repo_type="dataset"), commit, chosen
    try:
        folder = download_files(
            ref.repo_id, plan, commit=commit, repo_type="dataset", instead=LOCAL_PROMPTS, cancel=cancel
        )
    except HubError as exc:
        raise _set_error(exc) from None
    return folder, commit, chosen


def _fetch_hub_set(
    ref: HubRef, *, on_progress: ProgressCallback | None, cancel: threading.Event | None
) -> tuple[str, dict[str, int], list[str]]:
    """Download what prompt set ``ref`` needs into the Hub cache: ``(commit, files downloaded, files to read)``.

    The data file(s) (see :func:`_choose`) and the README. Offline or with the Hub out of reach,
    the commit and listing the cache recorded at the last download are used.
    """
    check_cancel(cancel, "before the download")
    emit(on_progress, ProgressEvent(stage="download", message=f"reading the dataset {ref.repo_id}"))
    try:
        commit = resolve_commit(ref.repo_id, repo_type="dataset", revision=ref.revision, instead=LOCAL_PROMPTS)
        sizes = list_files(ref.repo_id, commit=commit, repo_type="dataset", instead=LOCAL_PROMPTS)
    except HubError as exc:
        raise _set_error(exc) from None
    chosen = _choose(ref.repo_id, list(sizes), ref.path)
    if any(p.lower().endswith(".parquet") for p in chosen):
        _need_pyarrow(f"{ref.repo_id}/{chosen[0]}")
    plan = {p: sizes[p] for p in chosen}
    if "README.md" in sizes:
        plan["README.md"] = sizes["README.md"]
    try:
        download_files(
            ref.repo_id,
            plan,
            commit=commit,
            repo_type="dataset",
            instead=LOCAL_PROMPTS,
            on_progress=on_progress,
            cancel=cancel,
        )
    except HubError as exc:
        raise _set_error(exc) from None
    return commit, plan, chosen


def _set_error(exc: HubError) -> CpeditError:
    """A Hub failure as a prompt-set error: the same message and reason, about the ``prompts`` argument."""
    return CpeditError(str(exc), repo_id=exc.repo_id, reason=exc.reason, argument=exc.argument or "prompts")
