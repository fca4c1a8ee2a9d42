"""The published procedure as a whole process, for whole-process timing against `cpedit prune`.

Loads a pipeline folder, runs tests/naive_reference.py (one prompt at a time, full
generation with VAE decode, hooks copying activations to the CPU), prunes, and saves the
UNet, as the authors' scripts do. Usage:

    python benchmarks/reference_prune.py MODEL_DIR RECIPE OUT_DIR
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    model, recipe_ref, out = sys.argv[1:4]
    start = time.perf_counter()
    from diffusers import DiffusionPipeline
    from support.naive_reference import naive_masks_for_recipe, naive_prune

    from cpedit.recipes.sources import resolve_recipe

    recipe = resolve_recipe(recipe_ref)
    pipe = DiffusionPipeline.from_pretrained(model, use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    masks = naive_masks_for_recipe(pipe, recipe)
    naive_prune(pipe, masks)
    pipe.unet.save_pretrained(out)
    print(f"reference pruned {sum(int(m.sum()) for m in masks.values())} weights in {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    main()
