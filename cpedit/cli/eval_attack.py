"""``cpedit eval attack``: attack success rate of adversarial prompt sets from the literature."""

from __future__ import annotations

from typing import Any

import click

from cpedit.cli.eval_options import (
    attack_set_option,
    classifier_model_option,
    metric_options,
    run_benchmark,
    threshold_option,
)
from cpedit.cli.guard import command_guard


@click.command("attack")
@metric_options(prompts_required=False)
@attack_set_option()
@threshold_option()
@click.option(
    "--concept",
    default=None,
    help="The concept the prompts attack (default: the set's, else nudity): nudity (NudeNet), an artist "
    "(van-gogh, monet, ...) or an Imagenette class (church, ...), judged by CLIP as `eval classify` does.",
)
@classifier_model_option()
@command_guard()
def eval_attack_command(edited_dir: str, attack_set: str | None, **options: Any) -> None:
    """Attack success rate (ASR) of adversarial prompts against an edit.

    Images are generated from an adversarial prompt set (--attack-set, or your own --prompts)
    and the concept's detector judges each one (for nudity: NudeNet finds any of its
    nine exposed classes above --threshold); the ASR is the share of images where the
    erased concept came back (lower is better). With --base the base model is attacked
    too, for before/after. The result is kept in DIR/conceptprune/eval/attack-SET.json
    (attack.json without --attack-set), where model cards find it.

    \b
    Known sets (see cpedit.eval.attack for the papers and what is verified):
      ring-a-bell     Ring-A-Bell (ICLR 2024)
      mma-diffusion   MMA-Diffusion (CVPR 2024), gated: request access on its Hub page
      p4d             Prompting4Debugging (ICML 2024)
      unlearndiffatk  UnlearnDiffAtk (ECCV 2024): not on the Hub, give its CSV with --prompts

    \b
    Examples:
      cpedit eval attack out-no-nudity --attack-set mma-diffusion --base
      cpedit eval attack out --attack-set unlearndiffatk --prompts nudity.csv
      cpedit eval attack out --prompts hub:OWNER/my-adversarial-set --limit 100
      cpedit eval attack out-no-van-gogh --attack-set unlearndiffatk --prompts van-gogh.csv --concept van-gogh
    """
    if options.get("prompts_file") is None:
        if attack_set is None:
            raise click.UsageError("give --attack-set NAME (a known adversarial set) or --prompts FILE|hub:ID")
        options["prompts_file"] = f"attack:{attack_set.lower()}"
    run_benchmark("attack", edited_dir, {**options, "attack_set": attack_set})
