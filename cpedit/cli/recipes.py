"""``cpedit recipes``: validate, list and show recipes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.syntax import Syntax

from cpedit.cli.layout import FittedTable, stderr_console, stdout_console
from cpedit.cli.options import format_option
from cpedit.errors import RecipeError
from cpedit.hub.refs import HubRef, is_hub_ref
from cpedit.recipes.format import Recipe, load_recipe
from cpedit.recipes.sources import RecipeEntry, builtin_recipes_dir, list_recipes, resolve_recipe

PUSH_SHORT_HELP = "Share recipe FILES through a Hub repo (one commit); each is validated first."


class RecipesGroup(click.Group):
    """The ``recipes`` group; ``recipes push`` (the Hub upload machinery) is built only when it is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, "push"})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name == "push" and "push" not in self.commands:
            self.add_command(_push_command())
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            command = self.commands.get(name) or click.Command(name, help=PUSH_SHORT_HELP)
            rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group("recipes", cls=RecipesGroup)
def recipes_group() -> None:
    """Validate, list, show and share concept recipes (YAML files, one concept each).

    \b
    Examples:
      cpedit recipes list
      cpedit recipes show van-gogh
      cpedit recipes validate recipes/artists/*.yaml my-recipe.yaml
      cpedit recipes push my-recipe.yaml --repo acme/recipes
    """


@recipes_group.command("validate")
@click.argument("files", nargs=-1, required=True)
def validate_command(files: tuple[str, ...]) -> None:
    """Check recipe FILES (also shipped NAMEs, hub:NAMESPACE/NAME/path.yaml refs) without loading any model.

    Each is checked; the exit status is 1 if any is invalid.

    \b
    Examples:
      cpedit recipes validate recipes/artists/*.yaml my-recipe.yaml
      cpedit recipes validate van-gogh
      cpedit recipes validate hub:acme/recipes/my-recipe.yaml
    """
    console = stdout_console()
    failed = 0
    for file in files:
        try:
            recipe = resolve_recipe(file) if _is_reference(file) else load_recipe(file)
        except RecipeError as exc:
            failed += 1
            console.print(f"[red]✗[/] {escape(str(exc))}", highlight=False)
            continue
        console.print(f"[green]✓[/] {escape(file)}: {escape(_summary(recipe))}", highlight=False)
    if failed:
        raise click.exceptions.Exit(1)


def _is_reference(ref: str) -> bool:
    """A hub: ref, or a NAME (no existing file, no folder part, no .yaml suffix): resolved, not read as a file."""
    if is_hub_ref(ref):
        return True
    path = Path(ref)
    return not path.exists() and len(path.parts) == 1 and path.suffix.lower() not in (".yaml", ".yml")


def _summary(recipe: Recipe) -> str:
    return (
        f"{recipe.name} ({recipe.kind}, {len(recipe.targets)} prompt pairs, "
        f"skill_ratio {recipe.prune.skill_ratio:g}, tau {recipe.prune.timesteps}"
        + (f", target {recipe.prune.target}" if recipe.prune.target != "ffn" else "")
        + (f", stream {recipe.prune.stream}" if recipe.prune.stream != "image" else "")
        + ")"
    )


@recipes_group.command("list")
@click.argument("folders", nargs=-1, type=click.Path(exists=True), metavar="[FOLDER]...")
@format_option()
def list_command(folders: tuple[str, ...], output_format: str) -> None:
    """List the recipes shipped with cpedit, or those in FOLDERs (use a shipped NAME wherever a recipe is expected).

    Every *.yaml file is listed with its settings and the layers it prunes (target: ffn, the
    paper's feed-forward output weights; ffn-in, attn-key, attn-value or text-ffn); an invalid
    one is a row with its error, and the exit status is then 1.

    \b
    Examples:
      cpedit recipes list
      cpedit recipes list --format json
      cpedit recipes list my-recipes/
    """
    roots = [Path(f) for f in folders] or [builtin_recipes_dir()]
    entries = list_recipes(roots if folders else None)
    rows = [_row(entry, roots) for entry in entries]
    if output_format == "json":
        click.echo(json.dumps(rows, indent=2))
    else:
        where = ", ".join(str(r) for r in roots)
        title = f"Shipped recipes ({where})" if not folders else f"Recipes in {where}"
        table = FittedTable(title=escape(title))
        table.add_column("name", no_wrap=True)
        for column in ("kind", "concept", "pairs", "skill_ratio", "tau", "target", "file"):
            table.add_column(column, overflow="fold")
        for r, entry in zip(rows, entries, strict=True):
            if entry.error is not None:
                problems = "\n".join(
                    f"- {field}: {message}" if field else f"- {message}" for field, message in entry.error.problems
                )
                table.add_row(escape(r["name"]), "[red]invalid[/]", escape(problems), "", "", "", "", escape(r["file"]))
                continue
            table.add_row(
                escape(r["name"]),
                r["kind"],
                escape(r["concept"]),
                str(r["pairs"]),
                f"{r['skill_ratio']:g}",
                str(r["timesteps"]),
                str(r["target"]) + ("" if r["stream"] == "image" else f" ({r['stream']} stream)"),
                escape(r["file"]),
            )
        stdout_console().print(table)
    if any(entry.error is not None for entry in entries):
        raise click.exceptions.Exit(1)


def _row(entry: RecipeEntry, roots: list[Path]) -> dict[str, Any]:
    """One JSON row: the recipe's settings, ``file`` relative to its folder, ``error`` (None when valid)."""
    file = str(entry.path)
    for root in roots:
        if entry.path.is_relative_to(root):
            file = entry.path.relative_to(root).as_posix() if root.is_dir() else entry.path.name
            break
    recipe = entry.recipe
    return {
        "name": entry.name,
        "kind": recipe.kind if recipe else None,
        "concept": recipe.concept if recipe else None,
        "pairs": len(recipe.targets) if recipe else None,
        "skill_ratio": recipe.prune.skill_ratio if recipe else None,
        "timesteps": recipe.prune.timesteps if recipe else None,
        "select_ratio": recipe.prune.select_ratio if recipe else None,
        "target": recipe.prune.target if recipe else None,
        "stream": recipe.prune.stream if recipe else None,
        "file": file,
        "error": str(entry.error) if entry.error else None,
    }


@recipes_group.command("show")
@click.argument("recipe", metavar="NAME|FILE")
@click.option("--pairs/--no-pairs", default=True, show_default=True, help="Also list the expanded prompt pairs.")
def show_command(recipe: str, pairs: bool) -> None:
    """Print a recipe (a shipped NAME or a FILE) and the prompt pairs it expands to.

    \b
    Examples:
      cpedit recipes show van-gogh
      cpedit recipes show my-recipe.yaml --no-pairs
    """
    loaded = resolve_recipe(recipe)
    console = stdout_console()
    console.print(
        f"[bold]{loaded.name}[/]: {escape(loaded.concept)} ({loaded.kind}) — {escape(str(Path(loaded.source)))}",
        highlight=False,
    )
    console.print(Syntax(loaded.text, "yaml", background_color="default"))
    if pairs:
        table = FittedTable(title=f"{len(loaded.targets)} prompt pairs")
        table.add_column("#", justify="right")
        table.add_column("target")
        table.add_column("base")
        per_pair = loaded.sampling.pair_seeds is not None
        if per_pair:
            table.add_column("seed", justify="right")
        for i, ((target, base), seed) in enumerate(zip(loaded.pairs(), loaded.calibration_seeds(), strict=True), 1):
            seed_cell = (str(seed),) if per_pair else ()
            table.add_row(str(i), escape(target), escape(base), *seed_cell)  # prompts are data, not rich markup
        console.print(table)


def _push_command() -> click.Command:
    """``cpedit recipes push``, built on first use (its options come from :mod:`cpedit.cli.push`)."""
    from cpedit.cli.push import hub_commit_options

    @click.command("push")
    @click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
    @click.option("--path-in-repo", default="", metavar="FOLDER", help="A folder in the repo (default: the top level).")
    @hub_commit_options
    def push_command(
        files: tuple[str, ...],
        path_in_repo: str,
        repo_id: str,
        private: bool,
        branch: str | None,
        message: str | None,
        create_pr: bool,
        output_format: str,
    ) -> None:
        """Share recipe FILES through a Hub repo (one commit); each is validated first.

        Use them anywhere a recipe is expected as hub:NAMESPACE/NAME/FILE.yaml (add @REVISION to pin one).

        \b
        Examples:
          cpedit recipes push my-recipe.yaml --repo acme/recipes
          cpedit prune CompVis/stable-diffusion-v1-4 --recipe hub:acme/recipes/my-recipe.yaml --out out
        """
        from cpedit.cli.render import TransferView
        from cpedit.publish.push import push_recipes

        with TransferView(stderr_console()) as view:
            result = push_recipes(
                list(files),
                repo_id=repo_id,
                path_in_repo=path_in_repo,
                private=private,
                branch=branch,
                message=message,
                create_pr=create_pr,
                on_progress=view,
            )
        if output_format == "json":
            click.echo(json.dumps(result.to_json(), indent=2))
            return
        console = stdout_console()
        for path in result.files:
            console.print(str(HubRef(result.repo_id, path)), highlight=False, soft_wrap=True)
        if result.pr_url:
            console.print(f"Pull request: {result.pr_url}", highlight=False, soft_wrap=True)
        console.print(result.url, highlight=False, soft_wrap=True)

    return push_command
