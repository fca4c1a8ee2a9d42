"""Hub repos and accounts: the ``NAMESPACE/NAME`` form of a repo id, and who the token belongs to."""

from __future__ import annotations

from cpedit.errors import CpeditError
from cpedit.hub.errors import service_errors

REPO_ID_HELP = "NAMESPACE/NAME (your user name or an organisation, then the repo name)"


def check_repo_id(repo_id: str, *, label: str = "repo id", argument: str = "repo_id") -> str:
    """Check the ``NAMESPACE/NAME`` form (before any network call).

    Args:
        repo_id: The id to check.
        label: How the message names it (``repo id``, ``base model``).
        argument: The library argument it is (:attr:`~cpedit.errors.CpeditError.argument`); front ends
            name their option for it.

    Raises:
        CpeditError: It is not of that form.
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise CpeditError(
            f"{label} {repo_id!r}: give {REPO_ID_HELP}", argument=argument, reason="invalid", repo_id=repo_id
        )
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise CpeditError(
            f"{label} {repo_id!r} is not a valid Hub repo id: {exc}",
            argument=argument,
            reason="invalid",
            repo_id=repo_id,
        ) from None
    return repo_id


def whoami() -> str:
    """The user name the token belongs to.

    Raises:
        HubError: Not logged in, token rejected, or the Hub cannot be reached.
    """
    from huggingface_hub import HfApi

    with service_errors("publish (checking who you are)"):
        return str(HfApi().whoami()["name"])
