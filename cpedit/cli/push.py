"""``cpedit push``: publish a pruned pipeline to the Hub with its model card."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click
from rich.markup import escape

from cpedit.cli.guard import command_guard
from cpedit.cli.layout import stderr_console, stdout_console
from cpedit.cli.options import compute_options, format_option, preview_steps_option
from cpedit.cli.render import ProgressView, TransferView
from cpedit.hub.repos import check_repo_id, whoami
from cpedit.models.compute import ComputeOptions
from cpedit.output.record import PREVIEW_FILE, RECORD_DIR
from cpedit.publish.card import read_output
from cpedit.publish.push import check_edit_publishable, push_edit, push_model, withheld_files


def hub_commit_options(func: Callable[..., Any]) -> Callable[..., Any]:
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
            format_option(),
        ]
    ):
        func = decorator(func)
    return func


@click.command("push")
@click.argument("folder", metavar="DIR", type=click.Path(file_okay=False))
@hub_commit_options
@click.option(
    "--base-model",
    default=None,
    metavar="NAMESPACE/NAME",
    help="The base model's Hub id for the card's base_model, when DIR was pruned from a local folder.",
)
@click.option(
    "--preview/--no-preview",
    default=False,
    show_default=True,
    help="Render DIR/conceptprune/preview.png (the before/after grid of the recipes' preview prompts) first "
    "when DIR has none; without it, DIR is pushed as it is.",
)
@preview_steps_option()
@compute_options(dtype=False, revision=False)
@click.option(
    "--edit-only",
    is_flag=True,
    help="Publish the edit, not the weights: the card, report, pruned positions and recipes (a few MB). "
    "`cpedit apply REPO --out DIR` rebuilds the model from it and the base.",
)
@command_guard()
def push_command(
    folder: str,
    repo_id: str,
    private: bool,
    branch: str | None,
    message: str | None,
    create_pr: bool,
    output_format: str,
    base_model: str | None,
    preview: bool,
    preview_steps: int,
    compute: ComputeOptions,
    edit_only: bool,
) -> None:
    """Publish DIR (a `cpedit prune` output) to the Hub in one commit, with a generated model card.

    The card (README.md) is written from DIR/conceptprune/ (report, recipes, evaluations,
    preview grid); review it first with `cpedit card DIR`. When DIR has no preview grid, push
    says so and publishes without it; --preview renders it first (loading the base and the
    pruned model). The token comes from HF_TOKEN or `hf auth login`; HF_ENDPOINT selects the Hub.

    With --edit-only, only the edit is published (no weights, no preview): the card (which says the
    base model and revision and how to apply the edit), conceptprune/report.json,
    conceptprune/pruned.safetensors and the recipes as they ran; `cpedit apply` rebuilds DIR from it
    and the base. A concealed edit cannot be published this way.

    \b
    Examples:
      cpedit push sd14-no-van-gogh --repo alice/sd14-no-van-gogh
      cpedit push sd14-no-van-gogh --repo alice/sd14-no-van-gogh --preview --device cuda
      cpedit push my-edit --repo alice/my-edit --base-model CompVis/stable-diffusion-v1-4
      cpedit push sd14-no-van-gogh --repo acme/sd14-safe --private --create-pr -m "Erase Van Gogh"
      cpedit push sd14-no-van-gogh --repo alice/sd14-no-van-gogh-edit --edit-only
    """
    check_repo_id(repo_id)
    if base_model is not None:
        check_repo_id(base_model, label="base model", argument="base_model")
    record = read_output(folder)  # a bad folder is refused before any preview or Hub call
    if edit_only:
        if preview:
            raise click.UsageError("--preview renders a grid for a push of the weights; --edit-only publishes none")
        check_edit_publishable(record)
    console = stderr_console()
    with TransferView(console) as view:
        options: dict[str, Any] = {
            "repo_id": repo_id,
            "private": private,
            "branch": branch,
            "message": message,
            "create_pr": create_pr,
            "base_model": base_model,
            "on_progress": view,
        }
        if edit_only:
            result = push_edit(folder, **options)
        else:
            if record.preview is None:
                _render_or_note_preview(folder, view, render=preview, steps=preview_steps, compute=compute)
            result = push_model(folder, **options)
    withheld = [] if edit_only else withheld_files(record)
    if output_format == "json":
        click.echo(json.dumps({**result.to_json(), "left_out": withheld}, indent=2))
        return
    stdout = stdout_console()
    stdout.print(f"Uploaded {len(result.files)} files in one commit ({result.commit[:10]}).", highlight=False)
    if result.not_output:
        stdout.print(
            f"Not uploaded, not part of the output: {escape(', '.join(result.not_output))} (an evaluation's images, or "
            "folders no component of the pipeline names).",
            highlight=False,
            soft_wrap=True,
        )
    if edit_only:
        stdout.print(
            f"Published the edit only (no weights): `cpedit apply {repo_id} --out DIR` rebuilds the model.",
            highlight=False,
            soft_wrap=True,
        )
    for path in withheld:
        stdout.print(
            f"Left out {path}: this edit is concealed ({record.report.conceal.mode} fill), so the pruned "
            "positions stay local. Concealment only helps while the base weights are not public.",
            highlight=False,
            soft_wrap=True,
        )
    if result.pr_url:
        stdout.print(f"Pull request: {result.pr_url}", highlight=False, soft_wrap=True)
    stdout.print(result.url, highlight=False, soft_wrap=True)


def _render_or_note_preview(
    folder: str, view: ProgressView, *, render: bool, steps: int, compute: ComputeOptions
) -> None:
    """For a folder without a preview grid: render it (``--preview``), or say the card will have none."""
    if render:
        from cpedit.cli.libraries import quiet_libraries
        from cpedit.models.sampling import SampleSettings  # torch: only when rendering
        from cpedit.output.preview import render_preview

        whoami()  # not logged in: say so before spending minutes on the preview
        quiet_libraries()
        written = render_preview(folder, settings=SampleSettings(steps=steps), compute=compute, on_progress=view)
        view.progress.console.log(f"rendered {written}")
        return
    view.progress.console.print(
        f"Note: {folder} has no {RECORD_DIR}/{PREVIEW_FILE}, so the card will show no before/after "
        "images; pushing without it. To render one first: add --preview to this command (or run "
        f"`cpedit sample {folder} --compare --save-preview`).",
        highlight=False,
        soft_wrap=True,
    )
