"""Options shared by several commands: one definition each, so a name means the same everywhere.

The vocabulary (``tests/test_cli_options.py`` checks it over every command):

- ``--recipe/-r``, ``--out/-o``, ``--prompt/-p``: the same short flags everywhere.
- ``--device``, ``--dtype``, ``--offload``, ``--revision``: where and how a model is computed and which
  Hub revision; :func:`compute_options` turns them into one :class:`~cpedit.models.compute.ComputeOptions`.
- ``--batch-size``: calibration prompts per batch (``prune``, ``sweep``, ``tune``);
  ``--image-batch-size``: images per pipeline call (``eval``, ``sweep``, ``tune``).
- ``--images``: images per prompt set of the shapes benchmark; its default depends on how many
  models a command measures, and each command's help says why.
- ``--steps``, ``--guidance-scale``, ``--height``/``--width``, ``--seed``: image generation.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from cpedit.cli.hints import SPECIFIC, flag_for
from cpedit.errors import CpeditError
from cpedit.models.compute import DEVICES, DTYPE_NAMES, ComputeOptions
from cpedit.models.compute import DTYPE_ALIASES as _ALIASES

DTYPE_ALIASES = tuple(_ALIASES)
"""The dtypes' short names (:data:`cpedit.models.compute.DTYPE_ALIASES`), as ``--dtype`` offers them."""
COMPUTE_FLAGS = ("device", "dtype", "offload", "revision")
"""The parameters :func:`compute_options` takes out of a command's options, in ComputeOptions' field names."""

RECIPE_HELP = (
    "A recipe: a file, a shipped recipe name (see `cpedit recipes list`) or a Hub recipe "
    "hub:NAMESPACE/NAME/path.yaml[@REVISION]."
)

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def apply(*decorators: Decorator) -> Decorator:
    """The decorators applied in the order written (the first is the first option of ``--help``)."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return decorate


def compute_options(*, dtype: bool = True, revision: bool = True, offload: bool = False) -> Decorator:
    """``--device``, and ``--dtype``, ``--revision`` and ``--offload`` where asked: one ``compute`` argument.

    The command's body gets one :class:`~cpedit.models.compute.ComputeOptions` as ``compute``
    (built once, here, before the body runs) instead of the flags; a value it refuses is a usage
    error that names the flag (exit 2), before anything loads.
    """
    flags: list[Decorator] = [device_option()]
    if dtype:
        flags.append(
            click.option(
                "--dtype",
                type=click.Choice([*DTYPE_NAMES, *DTYPE_ALIASES]),
                default=None,
                help="Compute dtype (bf16, fp16, fp32 are short names). Default: float16 on CUDA, float32 "
                "elsewhere. bfloat16 suits FLUX and SD3.",
            )
        )
    if revision:
        flags.append(revision_option())
    if offload:
        flags.append(
            click.option(
                "--offload",
                is_flag=True,
                help="Model CPU offload: keep components in host memory and move each to the GPU only while it "
                "runs (large models such as FLUX on a 24 GB GPU, with --dtype bf16). CUDA only.",
            )
        )

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def with_compute(*args: Any, **kwargs: Any) -> Any:
            return func(*args, compute=compute_from(kwargs), **kwargs)

        return apply(*flags)(with_compute)

    return decorate


def device_option() -> Decorator:
    """``--device`` (default ``auto``) alone: for commands that gather their flags in a dict and
    build the options with :func:`compute_from` (the ``eval`` commands); others use :func:`compute_options`."""
    return click.option("--device", default="auto", show_default=True, metavar=DEVICES, help="Where to compute.")


def compute_from(flags: dict[str, Any]) -> ComputeOptions:
    """The :class:`~cpedit.models.compute.ComputeOptions` of a command's compute flags, taken out of ``flags``.

    Flags the command does not have keep the options' defaults.

    Raises:
        click.BadParameter: A value the options refuse; it names the running command's flag.
    """
    values = {name: flags.pop(name) for name in COMPUTE_FLAGS if name in flags}
    try:
        return ComputeOptions(**values)
    except CpeditError as exc:
        ctx = click.get_current_context(silent=True)
        flag = flag_for(ctx.command, exc.argument) if ctx is not None and exc.argument else None
        template = SPECIFIC.get((exc.argument or "", exc.reason)) if flag else None
        hint = f"\nhint: {template.format(flag=flag)}" if template else ""
        raise click.BadParameter(f"{exc}{hint}", ctx=ctx, param_hint=f"'{flag}'" if flag else None) from None


def revision_option() -> Decorator:
    """``--revision``: a Hub branch, tag or commit."""
    return click.option(
        "--revision", default=None, metavar="REV", help="Hub branch, tag or commit of the model (Hub ids only)."
    )


def recipe_option(*, multiple: bool, required: bool = True) -> Decorator:
    """``--recipe/-r`` (``recipes``, repeatable, with ``multiple``; else ``recipe``, one)."""
    if multiple:
        return click.option(
            "--recipe",
            "-r",
            "recipes",
            multiple=True,
            required=required,
            metavar="FILE|NAME",
            help=f"{RECIPE_HELP} Repeat it for several concepts.",
        )
    return click.option("--recipe", "-r", "recipe", required=True, metavar="FILE|NAME", help=RECIPE_HELP)


def calibration_batch_option() -> Decorator:
    """``--batch-size``: prompts per calibration batch."""
    return click.option(
        "--batch-size",
        type=click.IntRange(min=1),
        default=None,
        help="Prompts per calibration batch, rounded down to whole (target, base) pairs. "
        "Default: as many as fit in memory.",
    )


def _count_option(name: str, *, default: int, help: str) -> Decorator:
    """A whole-number option of at least 1, its default shown."""
    return click.option(name, type=click.IntRange(min=1), default=default, show_default=True, help=help)


def preview_steps_option() -> Decorator:
    """``--preview-steps``: denoising steps of the before/after preview."""
    return _count_option("--preview-steps", default=30, help="Denoising steps of the preview.")


def image_batch_option(*, default: int, why: str) -> Decorator:
    """``--image-batch-size``: images per pipeline call; ``why`` says why its ``default`` suits the command."""
    return _count_option("--image-batch-size", default=default, help=f"Images per pipeline call. {why}")


def images_option(*, default: int, why: str) -> Decorator:
    """``--images``: images per prompt set of the shapes benchmark; ``why`` explains ``default``."""
    return _count_option(
        "--images", default=default, help=f"Images per prompt set, per model, of the shapes benchmark. {why}"
    )


def steps_option(*, default: int) -> Decorator:
    """``--steps``: denoising steps."""
    return _count_option("--steps", default=default, help="Denoising steps.")


def guidance_option() -> Decorator:
    """``--guidance-scale``."""
    return click.option(
        "--guidance-scale",
        type=click.FloatRange(min=0),
        default=7.5,
        show_default=True,
        help="Classifier-free guidance scale.",
    )


def size_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--height`` and ``--width`` (default: the model's native size)."""
    return apply(
        *(
            click.option(
                f"--{side}",
                type=click.IntRange(min=8),
                default=None,
                help=f"Image {side} (default: the model's native size).",
            )
            for side in ("height", "width")
        )
    )(func)


def seed_option(*, help: str) -> Decorator:
    """``--seed`` (default 0); ``help`` says what it draws in this command."""
    return click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help=help)


def format_option(*, help: str = "How to print the result: a table, or JSON on stdout.") -> Callable[..., Any]:
    """``--format table|json`` (default ``table``), passed to the command as ``output_format``."""
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(["table", "json"]),
        default="table",
        show_default=True,
        help=help,
    )


SINGLE_FILE_HELP = (
    "Write the edited model as one single-file checkpoint OUT.safetensors in the original layout ComfyUI, "
    "A1111 and Forge load (atomically; every pruned entry included)."
)
"""``--single-file``'s help, the same in ``prune`` and ``export``."""

SINGLE_FILE_DTYPE_HELP = (
    "The dtype of the single-file checkpoint's weights (float16 halves a float32 folder). "
    "Default: as the output folder stores them."
)
"""``--single-file-dtype``'s help, the same in ``prune`` and ``export``."""
