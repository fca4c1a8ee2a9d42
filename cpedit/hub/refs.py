"""``hub:`` references: a recipe file or a prompt-set dataset on the Hugging Face Hub, as users write them.

Two things are named this way, with one syntax and one type (:class:`HubRef`):

- a recipe: ``hub:NAMESPACE/NAME/path/to/recipe.yaml[@REVISION]`` (a file of a model repo);
- a prompt set: ``hub:OWNER/NAME[/FILE][@REVISION]`` (a dataset repo, or one file of it).

References come from users, recipes and result files, so :meth:`HubRef.parse` refuses anything
that could name something else than it seems: a repo id the Hub would refuse
(:func:`~cpedit.hub.repos.check_repo_id`), empty, ``.`` or ``..`` path parts, backslashes,
control or invisible characters, a revision that is not a plain branch, tag or commit name, and
text longer than :data:`MAX_REF_CHARS`. ``str(ref)`` writes a reference back as it parses.

Example:
    >>> from cpedit.hub.refs import HubRef
    >>> ref = HubRef.parse("hub:AIML-TUDA/i2p@main", kind="prompts")
    >>> ref.repo_id, ref.path, ref.revision, ref.repo_type, str(ref)
    ('AIML-TUDA/i2p', None, 'main', 'dataset', 'hub:AIML-TUDA/i2p@main')
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, TypeGuard

from cpedit.errors import CpeditError
from cpedit.hub.kinds import RepoType
from cpedit.text import is_unsafe_char, shown

HUB_PREFIX = "hub:"
"""How a reference to the Hub starts (a recipe, a prompt set)."""
MAX_REF_CHARS = 1024
"""The longest reference accepted, in characters."""

RefKind = Literal["recipe", "prompts"]
"""What a reference names: a recipe file (in a model repo) or a prompt set (a dataset repo or one file of it)."""


@dataclass(frozen=True)
class _Kind:
    what: str
    form: str
    repo_type: RepoType
    argument: str
    needs_path: bool
    suffixes: tuple[str, ...] = ()


_KINDS: dict[str, _Kind] = {
    "recipe": _Kind(
        what="Hub recipe reference",
        form="hub:NAMESPACE/NAME/path/to/recipe.yaml, optionally with @REVISION",
        repo_type="model",
        argument="recipes",
        needs_path=True,
        suffixes=(".yaml", ".yml"),
    ),
    "prompts": _Kind(
        what="Hub prompt set",
        form="hub:OWNER/NAME (a dataset repo, such as hub:AIML-TUDA/i2p), optionally followed by /FILE "
        "(one file of it) and @REVISION",
        repo_type="dataset",
        argument="prompts",
        needs_path=False,
    ),
}
_REVISION = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+/-]*$")
"""A branch, tag or commit: git's safe characters, starting with a letter, digit or underscore."""


class HubRefError(CpeditError):
    """A ``hub:`` reference is malformed.

    Attributes:
        ref: The text given (as given; messages show it quoted and cut short).
        kind: What it was meant to name (``recipe`` or ``prompts``).
        problem: What is wrong with it, in words.
        form: How such a reference is written.
    """

    def __init__(self, ref: str, *, kind: RefKind, problem: str) -> None:
        spec = _KINDS[kind]
        self.ref = ref
        self.kind = kind
        self.problem = problem
        self.form = spec.form
        super().__init__(
            f"{shown(ref)} is not a {spec.what}: {problem}; write {spec.form}", reason="invalid", argument=spec.argument
        )


def is_hub_ref(ref: object) -> TypeGuard[str]:
    """Whether ``ref`` is a string starting with ``hub:`` (a reference to parse, not a file name)."""
    return isinstance(ref, str) and ref.startswith(HUB_PREFIX)


@dataclass(frozen=True)
class HubRef:
    """A file or a whole repo on the Hub, at a revision.

    Attributes:
        repo_id: ``NAMESPACE/NAME``.
        path: The file in the repo (``/``-separated), or None for the repo itself.
        revision: A branch, tag or commit, or None for the main branch.
        repo_type: ``model`` (recipes live in model repos) or ``dataset`` (prompt sets).
    """

    repo_id: str
    path: str | None = None
    revision: str | None = None
    repo_type: RepoType = "model"

    def __str__(self) -> str:
        """The reference as users write it: ``hub:NAMESPACE/NAME[/PATH][@REVISION]`` (what :meth:`parse` reads)."""
        return (
            f"{HUB_PREFIX}{self.repo_id}"
            + (f"/{self.path}" if self.path else "")
            + (f"@{self.revision}" if self.revision else "")
        )

    @classmethod
    def parse(cls, text: str, *, kind: RefKind) -> HubRef:
        """Read ``hub:NAMESPACE/NAME[/PATH][@REVISION]`` (no request: the syntax and the repo id only).

        Args:
            text: The reference.
            kind: ``recipe`` (a ``.yaml``/``.yml`` file of a model repo: the path is required) or
                ``prompts`` (a dataset repo, the path optional).

        Raises:
            HubRefError: ``text`` is not such a reference; ``problem`` says why (``reason="invalid"``,
                ``argument`` ``recipes`` or ``prompts``).
        """
        spec = _KINDS[kind]

        def fail(problem: str) -> HubRefError:
            return HubRefError(text, kind=kind, problem=problem)

        if not is_hub_ref(text):
            raise fail(f"it does not start with {HUB_PREFIX}")
        if len(text) > MAX_REF_CHARS:
            raise fail(f"it is longer than {MAX_REF_CHARS} characters")
        if any(is_unsafe_char(c) or (c.isspace() and c != " ") for c in text):
            raise fail("it holds control or invisible characters")
        body, at, revision = text[len(HUB_PREFIX) :].partition("@")
        problem = _revision_problem(revision) if at else None
        if problem is not None:
            raise fail(problem)
        parts = body.split("/")
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise fail("it names no repo (NAMESPACE/NAME after hub:)")
        repo_id = "/".join(parts[:2])
        from cpedit.hub.repos import check_repo_id

        try:
            check_repo_id(repo_id, argument=spec.argument)
        except CpeditError as exc:
            raise fail(str(exc)) from None
        path_parts = parts[2:]
        problem = _path_problem(path_parts)
        if problem is not None:
            raise fail(f"its file path {problem}")
        path = "/".join(path_parts) or None
        if spec.needs_path and path is None:
            raise fail("it names no file in the repo")
        if path is not None and spec.suffixes and not path.endswith(spec.suffixes):
            raise fail(f"its file is not {' or '.join(spec.suffixes)}")
        return cls(repo_id=repo_id, path=path, revision=revision or None, repo_type=spec.repo_type)


def _path_problem(parts: list[str]) -> str | None:
    """What makes a path in a repo (its ``/``-separated parts) unsafe to use, or None."""
    if any(p in ("", ".", "..") for p in parts):
        return "has an empty, '.' or '..' part"
    if any("\\" in p or p != p.strip() for p in parts):
        return "holds a backslash, or a part that starts or ends with a space"
    if any(is_unsafe_char(c) or (c.isspace() and c != " ") for p in parts for c in p):
        return "holds control or invisible characters"
    return None


def check_path_in_repo(path: str, *, argument: str = "path_in_repo") -> str:
    """A folder or file path inside a repo, leading and trailing ``/`` dropped (``""``: the top level).

    Raises:
        CpeditError: ``..``, ``.`` or empty parts, backslashes, control characters (``reason="invalid"``).
    """
    folder = path.strip("/")
    problem = _path_problem(folder.split("/")) if folder else None
    if problem is not None:
        raise CpeditError(f"the path in the repo {shown(path)} {problem}", reason="invalid", argument=argument)
    return folder


def check_revision(revision: str | None, *, repo_id: str | None = None) -> None:
    """Refuse a revision that is not a plain branch, tag or commit name, before the Hub or its cache sees it.

    The cache keeps a branch's commit in ``refs/REVISION``: a ``..`` in it would read outside the
    cache, a control character would reach the terminal in messages.

    Raises:
        CpeditError: ``reason="invalid"``, ``argument="revision"``.
    """
    problem = None if revision is None else _revision_problem(revision)
    if problem is not None:
        raise CpeditError(f"the revision {problem}", repo_id=repo_id, reason="invalid", argument="revision")


def _revision_problem(revision: str) -> str | None:
    """What makes ``revision`` (the text after ``@``) not a plain branch, tag or commit name, or None."""
    if not revision:
        return "nothing follows @ (give a branch, tag or commit, or leave @ out)"
    if "@" in revision:
        return "it has more than one @"
    if not is_revision_name(revision):
        return f"{shown(revision)} is not a branch, tag or commit name"
    return None


def is_revision_name(revision: str) -> bool:
    """Whether ``revision`` is a plain branch, tag or commit name (git's safe characters, no ``..``)."""
    return bool(_REVISION.match(revision)) and not (
        ".." in revision or "//" in revision or revision.endswith(("/", "."))
    )
