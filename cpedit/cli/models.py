"""``cpedit models``: find text-to-image diffusers models on the Hub and see what cpedit can do with them."""

from __future__ import annotations

import json

import click
from rich.markup import escape

from cpedit.cli.layout import FittedTable, stderr_console, stdout_console
from cpedit.cli.options import format_option, revision_option
from cpedit.hub.search import SORT_KEYS, search_models
from cpedit.models.details import model_details


@click.group("models")
def models_group() -> None:
    """Search the Hub for models cpedit can edit, and inspect one.

    \b
    Examples:
      cpedit models search "stable diffusion" --limit 10 --sort likes
      cpedit models info CompVis/stable-diffusion-v1-4
    """


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"  # pragma: no cover


@models_group.command("search")
@click.argument("query", required=False)
@click.option("--limit", type=click.IntRange(min=1, max=1000), default=20, show_default=True, help="Results at most.")
@click.option(
    "--sort",
    type=click.Choice(list(SORT_KEYS)),
    default="downloads",
    show_default=True,
    help="Most first / newest first.",
)
@format_option()
def search_command(query: str | None, limit: int, sort: str, output_format: str) -> None:
    """Search text-to-image diffusers models on the Hub (QUERY: text the id contains).

    \b
    Examples:
      cpedit models search
      cpedit models search stable-diffusion --sort likes --limit 5 --format json
    """
    models = search_models(query=query, limit=limit, sort=sort)  # type: ignore[arg-type]
    if output_format == "json":
        click.echo(json.dumps([m.to_json() for m in models], indent=2))
        return
    table = FittedTable(title=f"Text-to-image diffusers models ({len(models)})")
    table.add_column("id", no_wrap=True)
    table.add_column("downloads", justify="right")
    table.add_column("likes", justify="right")
    table.add_column("updated")
    table.add_column("gated")
    for m in models:
        table.add_row(
            escape(m.id),
            f"{m.downloads:,}" if m.downloads is not None else "",
            f"{m.likes:,}" if m.likes is not None else "",
            m.last_modified.date().isoformat() if m.last_modified else "",
            "gated" if m.gated else "no",
        )
    stdout_console().print(table)


@models_group.command("info")
@click.argument("repo_id", metavar="ID")
@revision_option()
@format_option()
def info_command(repo_id: str, revision: str | None, output_format: str) -> None:
    """What cpedit can do with Hub model ID, without downloading its weights.

    Shows the pipeline class, whether cpedit can edit it, its FFN weights (counted on a
    weightless copy of the denoiser built from its config), license, gating, and the size of
    the safetensors files a prune would download.

    \b
    Examples:
      cpedit models info CompVis/stable-diffusion-v1-4
      cpedit models info stabilityai/stable-diffusion-2-1 --revision main --format json
    """
    console = stderr_console()
    with console.status(f"reading {repo_id}…") as status:
        details = model_details(repo_id, revision=revision, on_progress=lambda e: status.update(e.message))
    if output_format == "json":
        click.echo(json.dumps(details.to_json(), indent=2))
        return
    table = FittedTable(title=escape(details.id), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    rows = [
        (
            "revision",
            f"{details.revision or 'main'} ({details.commit})" if details.commit else details.revision or "main",
        ),
        ("pipeline", details.pipeline_class or "none (no model_index.json)"),
        (
            "denoiser",
            f"{details.denoiser}: {details.denoiser_class}" if details.denoiser_class else details.denoiser or "none",
        ),
        ("cpedit can edit", ("yes: " if details.editable else "no: ") + details.reason),
        ("FFN layers", f"{details.ffn_layers:,}"),
        (
            "FFN weights",
            f"{details.ffn_weights:,}"
            + (
                f" ({100 * details.ffn_weights / details.denoiser_weights:.1f}% of {details.denoiser_weights:,})"
                if details.denoiser_weights
                else ""
            ),
        ),
        ("license", details.license or "not given in the model card"),
        ("gated", f"yes ({details.gated})" if details.gated else "no"),
        ("safetensors to download", f"{_size(details.safetensors_bytes)} in {details.safetensors_files} files"),
        ("downloads / likes", f"{details.downloads or 0:,} / {details.likes or 0:,}"),
    ]
    for name, value in rows:
        table.add_row(name, escape(str(value)))
    stdout_console().print(table)
