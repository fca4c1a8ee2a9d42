"""``cpedit export``: an edited pipeline folder as one single-file checkpoint (ComfyUI, A1111, Forge)."""

from __future__ import annotations

import json

import click

from cpedit.cli.guard import command_guard
from cpedit.cli.layout import stderr_console, stdout_console
from cpedit.cli.options import SINGLE_FILE_DTYPE_HELP, SINGLE_FILE_HELP, format_option
from cpedit.cli.render import ProgressView

SINGLE_FILE_DTYPES = ("float32", "float16", "bfloat16")


@click.command("export")
@click.argument("folder", metavar="DIR", type=click.Path(file_okay=False, exists=True))
@click.option(
    "--single-file",
    "out",
    required=True,
    type=click.Path(dir_okay=False),
    metavar="OUT.safetensors",
    help=SINGLE_FILE_HELP,
)
@click.option(
    "--single-file-dtype",
    "dtype",
    type=click.Choice(SINGLE_FILE_DTYPES),
    default=None,
    help=SINGLE_FILE_DTYPE_HELP,
)
@click.option("--overwrite", is_flag=True, help="Replace OUT.safetensors if cpedit wrote it.")
@format_option(help="How to print the result: a line, or the file's metadata as JSON on stdout.")
@command_guard()
def export_command(folder: str, out: str, dtype: str | None, overwrite: bool, output_format: str) -> None:
    """Export DIR, a `cpedit prune` output, as one single-file checkpoint for ComfyUI, A1111 and Forge.

    The file holds the edited weights under the original checkpoint's key names (diffusers'
    from_single_file, ComfyUI, Automatic1111 and Forge load it): SD 1.x/2.x and SDXL with their
    UNet, VAE and text encoders, SD3 with its MMDiT, VAE and text encoders (T5 when DIR has it),
    FLUX.1 as the transformer alone (load the VAE and text encoders as usual). Its metadata
    records cpedit's version, the base model's Hub id and revision, the recipes, the pruned count
    and the SHA-256 of DIR/conceptprune/pruned.safetensors; never a local path.

    \b
    Examples:
      cpedit export sd15-no-van-gogh --single-file sd15-no-van-gogh.safetensors
      cpedit export flux-no-van-gogh --single-file flux-no-van-gogh.safetensors --dtype bfloat16
    """
    from cpedit.export.single_file import export_single_file

    with ProgressView(stderr_console()) as view:
        result = export_single_file(folder, out, dtype=dtype, overwrite=overwrite, on_progress=view)
    if output_format == "json":
        click.echo(json.dumps(result.metadata, indent=2))
        return
    stdout_console().print(
        f"Wrote [bold]{result.path}[/] ({result.family}: {', '.join(result.components)}; "
        f"{result.tensors:,} tensors, {result.size / 1e6:,.1f} MB)",
        highlight=False,
        soft_wrap=True,
    )
