"""Options shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

DTYPE_NAMES = ("float32", "float16", "bfloat16")
"""The compute dtypes (:data:`cpedit.loading.DTYPES`' keys; names here, so no torch is imported)."""
DTYPE_ALIASES = ("fp32", "fp16", "bf16")
"""Their short names (:data:`cpedit.loading.DTYPE_ALIASES`)."""


def compute_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--device``, ``--dtype`` and ``--revision``."""
    func = click.option(
        "--revision", default=None, metavar="REV", help="Hub branch, tag or commit of MODEL (Hub ids only)."
    )(func)
    func = click.option(
        "--dtype",
        type=click.Choice([*DTYPE_NAMES, *DTYPE_ALIASES]),
        default=None,
        help="Compute dtype (bf16, fp16, fp32 are short names). Default: float16 on CUDA, float32 elsewhere. "
        "bfloat16 suits FLUX and SD3.",
    )(func)
    func = click.option(
        "--device", default="auto", show_default=True, metavar="auto|cpu|cuda[:N]|mps", help="Where to compute."
    )(func)
    return func


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
