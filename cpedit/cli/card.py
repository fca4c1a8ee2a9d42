"""``cpedit card``: print or write the model card of a pruned pipeline, without pushing."""

from __future__ import annotations

from pathlib import Path

import click

from cpedit.cli.layout import stdout_console
from cpedit.durable import write_bytes_atomically
from cpedit.errors import CpeditError
from cpedit.hub.repos import check_repo_id
from cpedit.output.record import check_outside_record
from cpedit.publish.card import base_card_metadata, build_model_card, read_output
from cpedit.text import strip_unsafe


@click.command("card")
@click.argument("folder", metavar="DIR", type=click.Path(file_okay=False))
@click.option(
    "--out", "-o", type=click.Path(dir_okay=False), default=None, help="Write the card here instead of printing it."
)
@click.option(
    "--repo",
    "repo_id",
    default=None,
    metavar="NAMESPACE/NAME",
    help="The repo it will be pushed to (for the usage snippet).",
)
@click.option(
    "--base-model",
    default=None,
    metavar="NAMESPACE/NAME",
    help="The base model's Hub id, for a base loaded from a local folder (the card's base_model and license). "
    "A folder inside the Hub cache is recognised by itself.",
)
def card_command(folder: str, out: str | None, repo_id: str | None, base_model: str | None) -> None:
    """Generate the model card (README.md) that `cpedit push` would publish for DIR.

    Everything in it comes from DIR/conceptprune/; the license is the base model's (read
    from the Hub when reachable, else from the base card copied into DIR).

    \b
    Examples:
      cpedit card sd14-no-van-gogh | less
      cpedit card sd14-no-van-gogh --repo alice/sd14-no-van-gogh --out card.md
      cpedit card ./my-edit --base-model stable-diffusion-v1-5/stable-diffusion-v1-5
    """
    if base_model is not None:
        check_repo_id(base_model, label="base model", argument="base_model")
    record = read_output(folder)
    card = build_model_card(
        folder,
        repo_id=repo_id,
        base_metadata=base_card_metadata(record, base_model=base_model),
        record=record,
        base_model=base_model,
    )
    if out is None:
        click.echo(strip_unsafe(card, keep_newlines=True), nl=False)  # the card escapes; the terminal is sure
        return
    target = Path(out)
    if target.resolve() == (Path(folder) / "README.md").resolve():
        raise CpeditError(f"--out {out} would replace the base model's card in {folder}; write it elsewhere")
    check_outside_record(target, argument="out")
    write_bytes_atomically(target, card.encode("utf-8"), what="the model card", argument="out")
    stdout_console().print(f"Wrote [bold]{out}[/]", highlight=False)
