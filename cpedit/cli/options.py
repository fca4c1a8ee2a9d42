"""Options shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from cpedit.loading import DTYPES


def compute_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--device``, ``--dtype`` and ``--revision``."""
    func = click.option(
        "--revision", default=None, metavar="REV", help="Hub branch, tag or commit of MODEL (Hub ids only)."
    )(func)
    func = click.option(
        "--dtype",
        type=click.Choice(list(DTYPES)),
        default=None,
        help="Compute dtype. Default: float16 on CUDA, float32 elsewhere.",
    )(func)
    func = click.option(
        "--device", default="auto", show_default=True, metavar="auto|cpu|cuda[:N]|mps", help="Where to compute."
    )(func)
    return func
