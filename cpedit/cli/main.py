"""``cpedit``: the command-line entry point.

Commands follow ``cpedit <verb>`` / ``cpedit <noun> <verb>`` with kebab-case options.
Errors the user can fix are printed as one message (no traceback) with exit status 1;
Ctrl-C exits with 130 and leaves nothing half-written.
"""

from __future__ import annotations

from typing import Any

import click

from cpedit import __version__
from cpedit.cli.card import card_command
from cpedit.cli.eval import eval_group
from cpedit.cli.models import models_group
from cpedit.cli.prune import prune_command
from cpedit.cli.push import push_command
from cpedit.cli.recipes import recipes_group
from cpedit.cli.sample import sample_command
from cpedit.errors import CpeditError


class UserError(click.ClickException):
    """A :class:`CpeditError` shown as ``Error: ...`` with exit status 1."""


class CpeditGroup(click.Group):
    """A click group that turns library errors and Ctrl-C into clean exits."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CpeditError as exc:
            raise UserError(str(exc)) from None
        except KeyboardInterrupt:
            click.echo("\nInterrupted; nothing was written.", err=True)
            raise click.exceptions.Exit(130) from None


@click.group(cls=CpeditGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cpedit")
def cli() -> None:
    """Erase concepts from text-to-image diffusion models by pruning skilled FFN weights.

    \b
    Examples:
      cpedit recipes list
      cpedit prune CompVis/stable-diffusion-v1-4 --recipe van-gogh --out sd14-no-van-gogh
      cpedit sample sd14-no-van-gogh --compare --out grid.png
      cpedit models search "stable diffusion"
      cpedit push sd14-no-van-gogh --repo alice/sd14-no-van-gogh
    """


cli.add_command(prune_command)
cli.add_command(sample_command)
cli.add_command(recipes_group)
cli.add_command(eval_group)
cli.add_command(models_group)
cli.add_command(push_command)
cli.add_command(card_command)


def quiet_libraries() -> None:
    """Silence diffusers/transformers progress bars and advice: the CLI shows its own progress.

    huggingface_hub's download bars stay on (transformers turns them off globally): they are
    the download progress of a pull.
    """
    import diffusers
    import huggingface_hub.utils
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    huggingface_hub.utils.enable_progress_bars()


def main() -> None:
    """Console-script entry point."""
    quiet_libraries()
    cli()


if __name__ == "__main__":
    main()
