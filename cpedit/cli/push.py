"""``cpedit push``: publish a pruned pipeline to the Hub with its model card."""

from __future__ import annotations

import json

import click
from rich.console import Console

from cpedit.cli.render import UploadView
from cpedit.hub.publish import push_model


def hub_commit_options(func):  # type: ignore[no-untyped-def]
    """``--repo``, ``--private``, ``--branch``, ``--message``, ``--create-pr`` and ``--format``."""
    for decorator in reversed(
        [
            click.option(
                "--repo", "repo_id", required=True, metavar="NAMESPACE/NAME", help="The Hub repo (created if needed)."
            ),
            click.option(
                "--private", is_flag=True, help="Create the repo private (an existing repo keeps its visibility)."
            ),
            click.option("--branch", default=None, metavar="BRANCH", help="Commit to this branch (created if needed)."),
            click.option("--message", "-m", default=None, help="The commit message."),
            click.option("--create-pr", is_flag=True, help="Open a pull request instead of committing to the branch."),
            click.option(
                "--format", "output_format", type=click.Choice(["table", "json"]), default="table", show_default=True
            ),
        ]
    ):
        func = decorator(func)
    return func


@click.command("push")
@click.argument("folder", metavar="DIR", type=click.Path(file_okay=False))
@hub_commit_options
def push_command(
    folder: str,
    repo_id: str,
    private: bool,
    branch: str | None,
    message: str | None,
    create_pr: bool,
    output_format: str,
) -> None:
    """Publish DIR (a `cpedit prune` output) to the Hub in one commit, with a generated model card.

    The card (README.md) is written from DIR/conceptprune/ (report, recipes, evaluations,
    preview grid); review it first with `cpedit card DIR`. The token comes from HF_TOKEN or
    `hf auth login`; HF_ENDPOINT selects the Hub.

    \b
    Examples:
      cpedit push sd14-no-van-gogh --repo alice/sd14-no-van-gogh
      cpedit push sd14-no-van-gogh --repo acme/sd14-safe --private --create-pr -m "Erase Van Gogh"
    """
    with UploadView(Console(stderr=True, log_path=False)) as view:
        result = push_model(
            folder,
            repo_id=repo_id,
            private=private,
            branch=branch,
            message=message,
            create_pr=create_pr,
            on_progress=view,
        )
    if output_format == "json":
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    console = Console()
    console.print(f"Uploaded {len(result.files)} files in one commit ({result.commit[:10]}).", highlight=False)
    if result.pr_url:
        console.print(f"Pull request: {result.pr_url}", highlight=False, soft_wrap=True)
    console.print(result.url, highlight=False, soft_wrap=True)
