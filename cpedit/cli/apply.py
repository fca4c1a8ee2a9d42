"""``cpedit apply``: rebuild an edited model from an edit published without its weights and its base."""

from __future__ import annotations

import json

import click
from rich.markup import escape

from cpedit.cli.guard import command_guard
from cpedit.cli.layout import stderr_console, stdout_console
from cpedit.cli.options import format_option
from cpedit.cli.render import ProgressView
from cpedit.publish.apply import apply_edit


@click.command("apply")
@click.argument("edit", metavar="REPO_OR_DIR")
@click.option(
    "--base-model",
    "base",
    default=None,
    metavar="MODEL",
    help="The base model: a Hub id or a local pipeline folder (default: the Hub id the edit records, "
    "pulled at its recorded commit).",
)
@click.option(
    "--base-revision",
    default=None,
    metavar="REV",
    help="A branch, tag or commit of a Hub --base-model (default: the recorded commit, for the recorded repo).",
)
@click.option("--revision", default=None, metavar="REV", help="A branch, tag or commit of the edit's Hub repo.")
@click.option(
    "--out", "-o", required=True, type=click.Path(file_okay=False), help="Output folder (written atomically)."
)
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists (a cpedit output only).")
@format_option()
@command_guard()
def apply_command(
    edit: str,
    base: str | None,
    base_revision: str | None,
    revision: str | None,
    out: str,
    overwrite: bool,
    output_format: str,
) -> None:
    """Rebuild an edited model from REPO_OR_DIR (an edit from `cpedit push --edit-only`) and its base.

    The base is checked first: its Hub commit (when known) and a digest of the weights the edit
    prunes must be the ones the edit was made on; another base is refused before anything is
    written. The pruned positions are set to zero and OUT is the same folder `cpedit prune`
    wrote, byte for byte. A concealed edit cannot be applied (its random fill is not published).

    \b
    Examples:
      cpedit apply alice/sd14-no-van-gogh-edit --out sd14-no-van-gogh
      cpedit apply alice/sd14-no-van-gogh-edit --base-model ./stable-diffusion-v1-4 --out sd14-no-van-gogh
      cpedit apply ./edit-folder --base-model CompVis/stable-diffusion-v1-4 --out sd14-no-van-gogh
    """
    with ProgressView(stderr_console()) as view:
        result = apply_edit(
            edit,
            out=out,
            base=base,
            base_revision=base_revision,
            revision=revision,
            overwrite=overwrite,
            on_progress=view,
        )
    if output_format == "json":
        click.echo(
            json.dumps(
                {
                    "out": str(result.path),
                    "edit": result.edit,
                    "base": result.base.repo_id or result.base.ref,
                    "base_commit": result.base.commit,
                    "pruned_weights": result.report.totals.pruned_weights,
                },
                indent=2,
            )
        )
        return
    stdout = stdout_console()
    commit = f" at {result.base.commit[:10]}" if result.base.commit else ""
    stdout.print(
        f"Applied {result.edit} ({result.report.totals.pruned_weights:,} pruned weights) to "
        f"{result.base.repo_id or result.base.ref}{commit}.",
        highlight=False,
        soft_wrap=True,
    )
    stdout.print(f"Saved to [bold]{escape(str(result.path))}[/]")
