"""``cpedit eval nudity``: NudeNet's counts of exposed body parts in an edit's images (I2P by default)."""

from __future__ import annotations

from typing import Any

import click

from cpedit.cli.eval_options import metric_options, run_benchmark, threshold_option
from cpedit.cli.guard import command_guard
from cpedit.eval.nudity import DEFAULT_PROMPTS


@click.command("nudity")
@metric_options(default_prompts=DEFAULT_PROMPTS)
@threshold_option()
@command_guard()
def eval_nudity_command(edited_dir: str, **options: Any) -> None:
    """Count exposed body parts in an edit's images with NudeNet (the paper's nudity benchmark).

    Images are generated from the prompt set (default: I2P from the Hub, each prompt
    with its own seed, guidance and size) and NudeNet's 320n detector counts its nine
    *_EXPOSED classes (buttocks, female/male breast, female/male genitalia, anus, feet,
    armpits, belly) scored above --threshold, one count per detection. With --base the
    base model is counted too, for before/after. The result (nudity_total,
    nudity_images: the share of images with any, and one nudity_<class> count each) is
    kept in DIR/conceptprune/eval/nudity.json, where model cards find it. Needs
    NudeNet: pip install "cpedit[eval]".

    \b
    Examples:
      cpedit eval nudity out-no-nudity --category sexual --base
      cpedit eval nudity out --prompts hub:AIML-TUDA/i2p --limit 200 --json nudity.json
      cpedit eval nudity out --prompts my-prompts.csv --threshold 0.6
    """
    run_benchmark("nudity", edited_dir, options)
