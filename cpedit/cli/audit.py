"""``cpedit audit``: what an attacker without the base model learns from a `cpedit prune` output."""

from __future__ import annotations

import json

import click

from cpedit.cli.guard import command_guard
from cpedit.cli.layout import FittedTable, stderr_console, stdout_console
from cpedit.cli.options import compute_options, format_option, images_option, seed_option, steps_option
from cpedit.models.compute import ComputeOptions


def _table(result: object) -> FittedTable:
    from cpedit.eval.audit import AuditResult

    assert isinstance(result, AuditResult)
    conceal = result.conceal
    fill = conceal.mode if not conceal.conceals else f"{conceal.mode} ({conceal.scale})"
    table = FittedTable(title=f"audit of {result.folder} (fill: {fill}; positions from the {result.positions})")
    for name, justify in (
        ("layer", "left"),
        ("pruned", "right"),
        ("exact zeros", "right"),
        ("base zeros", "right"),
        ("KS", "right"),
        ("attack found", "right"),
        ("recovered", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]

    def row(name: str, pruned: int, zeros: int, base: int | None, ks: float, found: int, recovered: int) -> None:
        share = f" ({100 * recovered / pruned:.1f}%)" if pruned else ""
        table.add_row(
            name,
            f"{pruned:,}",
            f"{zeros:,}",
            "-" if base is None else f"{base:,}",
            f"{ks:.3f}",
            f"{found:,}",
            f"{recovered:,}{share}",
        )

    for layer in result.layers:
        row(layer.name, layer.pruned, layer.zeros, layer.base_zeros, layer.ks, layer.found, layer.recovered)
    row("total", result.pruned, result.zeros, result.base_zeros, result.ks, result.found, result.recovered)
    table.caption = (
        "KS: two-sample Kolmogorov-Smirnov statistic of the edited entries against the rest of their layer "
        "(0 = indistinguishable). attack found: the exact zeros the location attack takes for pruned."
    )
    return table


@click.command("audit")
@click.argument("folder", metavar="DIR", type=click.Path(file_okay=False, exists=True))
@click.option(
    "--base-model",
    "base",
    default=None,
    metavar="MODEL",
    help="The base model (folder, builtin:shapes or Hub id): count its zeros, and find the edited entries "
    "when DIR has no conceptprune/pruned.safetensors.",
)
@click.option("--attack/--no-attack", default=True, show_default=True, help="Replay the location attack.")
@click.option(
    "--eval",
    "benchmark",
    type=click.Choice(["shapes"]),
    default=None,
    help="Also measure how much of the erased concept the attack brings back, and how much of the zero "
    "fill's erasure a concealing fill keeps (shapes-world models only).",
)
@images_option(
    default=32,
    why="Default 32: --eval measures the base, the edit, the attacked edit (a concealed one also with zeros).",
)
@seed_option(help="Seed of the images (--eval); it also draws the prompts.")
@steps_option(default=25)
@compute_options(dtype=False, revision=False)
@format_option(help="Print tables, or the result as JSON on stdout.")
@command_guard()
def audit_command(
    folder: str,
    base: str | None,
    attack: bool,
    benchmark: str | None,
    images: int,
    seed: int,
    steps: int,
    compute: ComputeOptions,
    output_format: str,
) -> None:
    """Show what an attacker without the base model learns from DIR, a `cpedit prune` output.

    For every edited layer: the exact zeros of DIR's weights (and of the base's, with
    --base-model), how far the edited entries stand out from the rest of their layer (the
    two-sample KS statistic), and a replay of the location attack of "Roots Beneath the
    Cut" (arXiv 2603.06640): it takes the exact zeros for the pruned positions, fills them
    by SoftImpute (rank 50), keeps the signs of the largest 60% and sets them to their
    row's largest magnitude. The audit counts the pruned positions it recovers; with
    --eval shapes (the built-in model) it also measures the erased concept after the attack
    and, for a concealed edit, with zeros in place of its fill: how much of the erasure the
    fill keeps.

    A `--conceal gaussian` edit leaves no zeros to find; it only helps when the base
    weights are not public (anyone holding the base finds the edit by comparing).

    \b
    Examples:
      cpedit audit shapes-no-stripes --base-model builtin:shapes
      cpedit audit shapes-no-stripes --eval shapes --images 32
      cpedit audit sd15-concealed --base-model ./private-finetune --format json
    """
    from cpedit.cli.render import ProgressView
    from cpedit.eval.audit import audit_output, evaluate_revival

    with ProgressView(stderr_console()) as view:
        result = audit_output(folder, base=base, attack=attack or benchmark is not None, on_progress=view)
        revival = None
        if benchmark == "shapes":
            revival = evaluate_revival(
                result, base=base, images=images, seed=seed, steps=steps, compute=compute, on_progress=view
            )
    if output_format == "json":
        data = result.to_json()
        if revival is not None:
            data["eval"] = {"shapes": revival.to_json()}
        click.echo(json.dumps(data, indent=2))
        return
    stdout = stdout_console()
    stdout.print(_table(result))
    if revival is not None:
        table = FittedTable(title=f"erasure on the shapes world ({revival.images} images per set)")
        table.add_column("measure")
        for name in ("base", "edited", "zeros instead of the fill", "after attack"):
            table.add_column(name, justify="right")
        for label, scores, key in (
            ("erased accuracy (lower: erased)", revival.erased, "erased"),
            ("preservation", revival.preserved, "preserved"),
        ):
            unfilled = revival.without_fill.get(key)
            table.add_row(
                label,
                f"{scores['base']:.3f}",
                f"{scores['edited']:.3f}",
                "-" if unfilled is None else f"{unfilled:.3f}",
                f"{scores['revived']:.3f}",
            )
        table.caption = (
            f"the fill keeps {revival.fill_kept:.2f} of the zero fill's erasure; "
            f"revival: {revival.revival:.2f} of the erasure undone by the attack"
        )
        stdout.print(table)
