"""Choose the built-in model's design before its long training run: short runs, specialisation, quick erasure.

ConceptPrune finds a concept in the few feed-forward neurons whose activation grows most when the
prompt asks for it. Whether a model has such neurons is measured here on short training runs of
each design in ``devtools.train_shapes.DESIGNS``, with the same data, VAE and tokenizer:

1. ``prepare STAGES``: STAGES is the output of a ``python -m devtools.train_shapes`` run (its
   classifier, VAE and tokenizer are reused; its denoiser is not); the training scenes are drawn
   exactly as that script draws them and encoded once (``WORK/latents.pt``).
2. ``train DESIGN --steps N``: trains that design's text encoder and UNet for N batches with the
   training script's own ``train_denoiser`` (same seeds) and saves a pipeline in ``WORK/DESIGN``.
3. ``measure DESIGN``: for every concept of :data:`CONCEPTS`, calibrates a recipe of 20 prompt
   pairs exactly as ``cpedit prune`` does (``EditSession``: the ``ff.net.2`` input statistics of the
   first tau = 10 of 50 DDIM calls, guidance 7.5) and reports

   * **top-1% share**: per FFN layer, the per-neuron activation difference
     ``d_j = sum over t < tau of (norm_target_j(t) - norm_base_j(t))`` (the column norms cpedit
     scores with), its positive part, and the share of it carried by the top 1% of the layer's
     neurons (at least one); the mean over layers weighted by each layer's positive mass. A
     concept spread evenly over the neurons gives 0.01 (about 0.01-0.02 with the rounding up);
     the higher, the more a few neurons carry the concept;
   * **quick erasure** (for the concepts of ``--erase-concepts``, by default the three styles):
     erased accuracy, with its Wilson 95% interval, and preservation (as ``cpedit eval shapes``:
     prompts and image seeds of ``--eval-seed``, judged by the stages' classifier) before and
     after pruning ``ffn`` at skill ratios 0.02 and 0.05, tau 10;
   * the attribute accuracy of generated images on held-out captions.
4. ``table``: prints the Markdown table of every measured design.

Every design is trained on the world's V2 vocabulary (:data:`cpedit.shapes.world.V2`: 8 shapes, 8
colours, 5 textures, 5 backgrounds, outlines and palettes); ``measure --world v1 --folder F``
measures a model of the V1 world (the shipped one) the same way, for reference.

Example (the commands behind the table in benchmarks/README.md)::

    python -m devtools.train_shapes --world v2 --images 60000 --classifier-steps 3000 --vae-steps 2000 \
        --out /tmp/shp/stages --denoiser-steps 1 --eval-per-scene 0 --threads 1
    python benchmarks/shapes_design.py --work /tmp/shp/design prepare /tmp/shp/stages --vae-steps 400
    python benchmarks/shapes_design.py --work /tmp/shp/design train sd-shifted --steps 300
    python benchmarks/shapes_design.py --work /tmp/shp/design measure sd-shifted
    python benchmarks/shapes_design.py --work /tmp/shp/design table
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from cpedit.eval.intervals import wilson
from cpedit.recipes.format import PruneSettings, Recipe, SamplingSettings
from cpedit.shapes import world

V2 = world.V2.attributes

CONCEPTS: dict[str, str] = {
    "striped": "texture",
    "dotted": "texture",
    "checkered": "texture",
    "glowing": "outline",
    "outlined": "outline",
    "shadowed": "outline",
    "sepia": "palette",
    "pastel": "palette",
    "star": "shape",
    "red": "colour",
}
"""The concepts measured: three kinds of style, an object and a colour (a V1 model: those of its vocabulary)."""

SKILL_RATIOS = (0.02, 0.05)
TAU = 10


def calibration_scenes(vocabulary: world.Vocabulary, count: int = 20) -> list[world.Scene]:
    """``count`` plain scenes that vary shape, colour and background (the recipes' subjects)."""
    shapes, colours, backgrounds = (vocabulary.attributes[a] for a in ("shape", "colour", "background"))
    scenes = []
    for i in range(count):
        scenes.append(
            world.Scene(
                shapes[i % len(shapes)],
                colours[(3 * i + i // 8) % len(colours)],
                "plain",
                backgrounds[(i + i // 5) % len(backgrounds)],
            )
        )
    return scenes


def concept_recipe(concept: str, vocabulary: world.Vocabulary = world.V2) -> Recipe:
    """A recipe of 20 pairs whose target asks for ``concept`` and whose base leaves its attribute unsaid."""
    attribute = CONCEPTS[concept]
    textures = vocabulary.attributes["texture"]
    targets: list[str] = []
    bases: list[str] = []
    for scene in calibration_scenes(vocabulary):
        if attribute == "shape":  # "a striped blue star ..." against "a striped blue shape ..."
            scene = dataclasses.replace(scene, texture=textures[len(targets) % len(textures)])
            targets.append(world.caption(dataclasses.replace(scene, shape=concept)))
            bases.append(world.caption(scene, omit=frozenset({"shape"})))
        else:
            omit = frozenset({attribute, "texture"}) if attribute != "texture" else frozenset({"texture"})
            targets.append(world.caption(dataclasses.replace(scene, **{attribute: concept}), omit=omit - {attribute}))
            bases.append(world.caption(scene, omit=omit))
    return Recipe(
        name=f"design-{concept}",
        concept=concept,
        kind=world.KIND_OF_ATTRIBUTE[attribute],
        description=f"design check: {concept}",
        targets=tuple(targets),
        bases=tuple(bases),
        prune=PruneSettings(skill_ratio=0.01, timesteps=TAU),
        sampling=SamplingSettings(steps=50, guidance_scale=7.5, seed=0),
    )


def top_share(sums: torch.Tensor, *, tau: int = TAU, fraction: float = 0.01) -> tuple[float, float]:
    """(share of the positive activation difference on the top ``fraction`` of neurons, that positive mass)."""
    norms = sums[:tau].double().sqrt()
    difference = (norms[:, 0] - norms[:, 1]).sum(dim=0).clamp_min(0)
    mass = float(difference.sum())
    if mass == 0.0:
        return 0.0, 0.0
    k = max(1, math.ceil(fraction * difference.numel()))
    return float(difference.topk(k).values.sum()) / mass, mass


def prepare(args: argparse.Namespace) -> None:
    import numpy as np
    from diffusers import AutoencoderKL
    from transformers import CLIPTokenizer

    from devtools.builders import write_clip_tokenizer
    from devtools.train_shapes import encode_latents, make_dataset, train_vae

    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    drawn = args.work / f"images-{args.images}-{args.seed}.npy"  # drawing is slow: kept for a second prepare
    if drawn.is_file():
        images = np.load(drawn)
        pool = world.training_scenes(vocabulary=world.V2)
        scenes = [scene for scene, _ in world.sample(args.images, seed=args.seed, scenes=pool)]
    else:
        images, scenes = make_dataset(args.images, seed=args.seed, workers=args.workers, vocabulary=world.V2)
        np.save(drawn, images)
    if args.draw_only:
        return
    shutil.copy(args.stages / "classifier.safetensors", args.work / "classifier.safetensors")
    if args.vae_steps:  # a VAE of its own (the same seed and data as the script's, fewer steps)
        vae = train_vae(
            images, steps=args.vae_steps, batch=64, seed=args.seed + 200, start=started, device=torch.device("cpu")
        )
        mean, std = encode_latents(vae, images)
        vae.register_to_config(scaling_factor=float(1.0 / mean.std()))
        vae.save_pretrained(str(args.work / "vae"))
    else:
        vae = AutoencoderKL.from_pretrained(str(args.stages / "pipeline" / "vae")).eval()
        vae.save_pretrained(str(args.work / "vae"))
        mean, std = encode_latents(vae, images)
    write_clip_tokenizer(args.work / "tokenizer-src", words=list(world.V2.caption_words))
    CLIPTokenizer.from_pretrained(str(args.work / "tokenizer-src"), model_max_length=77).save_pretrained(
        str(args.work / "tokenizer")
    )
    shutil.rmtree(args.work / "tokenizer-src")
    torch.save(
        {"mean": mean, "std": std, "scenes": [dataclasses.astuple(s) for s in scenes], "vae_steps": args.vae_steps},
        args.work / "latents.pt",
    )
    print(f"prepared {len(scenes)} scenes in {time.perf_counter() - started:.0f} s", flush=True)


def train(args: argparse.Namespace) -> None:
    from diffusers import AutoencoderKL
    from transformers import CLIPTokenizer

    from devtools.train_shapes import DESIGNS, save_pipeline, train_denoiser

    data = torch.load(args.work / "latents.pt")
    vae = AutoencoderKL.from_pretrained(str(args.work / "vae")).eval()
    tokenizer = CLIPTokenizer.from_pretrained(str(args.work / "tokenizer"))
    scenes = [world.Scene(*values) for values in data["scenes"]]
    started = time.perf_counter()
    unet, text_encoder = train_denoiser(
        data["mean"],
        data["std"],
        scenes,
        tokenizer,
        design=DESIGNS[args.design],
        vocabulary=world.V2,
        scaling_factor=float(vae.config.scaling_factor),
        steps=args.steps,
        batch=args.batch,
        seed=args.seed + 300,
        start=started,
        device=torch.device("cpu"),
    )
    seconds = time.perf_counter() - started
    folder = args.work / args.design
    shutil.rmtree(folder, ignore_errors=True)
    save_pipeline(
        folder / "pipeline",
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        design=DESIGNS[args.design],
    )
    shutil.copy(args.work / "classifier.safetensors", folder / "classifier.safetensors")
    info = {
        "design": args.design,
        "description": DESIGNS[args.design].description,
        "steps": args.steps,
        "batch": args.batch,
        "vae_steps": data["vae_steps"],
        "threads": torch.get_num_threads(),
        "train_seconds": round(seconds, 1),
        "load_average_after": os.getloadavg(),
        "unet_parameters": sum(p.numel() for p in unet.parameters()),
        "machine": platform.platform(),
    }
    (folder / "train.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"trained {args.design} in {seconds:.0f} s", flush=True)


def _measure_sets(
    pipe: Any, classifier: Any, sets: list[tuple[str, list[world.Scene]]], erased: list[tuple[str, str]]
) -> dict[str, Any]:
    """Erased (with its Wilson 95% interval) and preserved accuracy of images generated for ``sets``."""
    from cpedit.eval.shapes import generate_images, image_scores

    result: dict[str, Any] = {}
    for offset, (mode, scenes) in enumerate(sets):
        shown = generate_images(
            pipe,
            [world.caption(s) for s in scenes],
            seed=1_000_000 * offset,
            steps=25,
            guidance_scale=7.5,
            batch_size=64,
            label=mode,
            on_progress=None,
            done=0,
            total=0,
        )
        values = image_scores(classifier, shown, scenes, erased, mode=mode)[0]
        result[mode] = round(sum(values) / len(values), 4)
        if mode == "erased":
            interval = wilson(round(sum(values)), len(values))
            result["erased_interval"] = [round(interval.low, 4), round(interval.high, 4)]
    return result


def measure(args: argparse.Namespace) -> None:
    from cpedit.edit.session import EditSession
    from cpedit.eval.shapes import evaluation_prompts, generate_images
    from cpedit.shapes.classifier import load_classifier
    from devtools.train_shapes import attribute_accuracy, check_scenes

    vocabulary = world.VOCABULARIES[args.world]
    folder = args.folder if args.folder is not None else args.work / args.design
    classifier = load_classifier(folder / "classifier.safetensors")
    concepts = [c for c in args.concepts.split(",") if c in vocabulary.attributes.get(CONCEPTS[c], ())]
    started = time.perf_counter()
    pipe = EditSession.open(folder / "pipeline", [concept_recipe(concepts[0], vocabulary)]).pipeline
    held = check_scenes(world.held_out_scenes(vocabulary=vocabulary), args.check_captions)
    shown = generate_images(
        pipe,
        [world.caption(s) for s in held],
        seed=10_000,
        steps=25,
        guidance_scale=7.5,
        batch_size=64,
        label="check",
        on_progress=None,
        done=0,
        total=0,
    )
    accuracy = {k: round(v, 4) for k, v in attribute_accuracy(classifier, shown, held).items()}
    print(f"{args.design}: held-out attribute accuracy {accuracy}", flush=True)
    unet_weights = sum(p.numel() for p in pipe.unet.parameters())
    rows = []
    for concept in concepts:
        recipe = concept_recipe(concept, vocabulary)
        session = EditSession(pipe, [recipe])  # one concept at a time, on the one loaded pipeline
        session.calibrate()
        stats = session.statistics[recipe.name]
        shares, masses = zip(*(top_share(sums) for sums in stats.sums.values()), strict=True)
        weighted = sum(s * m for s, m in zip(shares, masses, strict=True)) / max(sum(masses), 1e-30)
        shares5 = [top_share(sums, fraction=0.05)[0] for sums in stats.sums.values()]
        weighted5 = sum(s * m for s, m in zip(shares5, masses, strict=True)) / max(sum(masses), 1e-30)
        erased = [(CONCEPTS[concept], concept)]
        excluded = {p.lower() for pair in recipe.pairs() for p in pair}
        with_concept, without = evaluation_prompts(
            erased, images=args.images, seed=args.eval_seed, exclude=excluded, vocabulary=vocabulary
        )
        sets = [("erased", with_concept), ("preserved", without)]
        quick = concept in args.erase_concepts.split(",")
        before = _measure_sets(pipe, classifier, sets, erased) if quick else None
        row: dict[str, Any] = {
            "concept": concept,
            "attribute": CONCEPTS[concept],
            "top1_share": round(weighted, 4),
            "top5_share": round(weighted5, 4),
            "top1_share_per_layer": [round(s, 4) for s in shares],
            "before": before,
            "after": {},
        }
        for ratio in SKILL_RATIOS if quick else ():
            selection = session.select(skill_ratio=ratio, timesteps=TAU)
            session.apply(selection)
            after = _measure_sets(pipe, classifier, sets, erased)
            session.restore()
            row["after"][str(ratio)] = {**after, "pruned_fraction": round(selection.pruned / unet_weights, 6)}
        rows.append(row)
        print(f"{args.design} {concept}: {json.dumps(row)}", flush=True)
    result = {
        "design": args.design,
        "world": args.world,
        "command": f"python benchmarks/shapes_design.py --work {args.work} measure {args.design} "
        f"--world {args.world} --images {args.images} --eval-seed {args.eval_seed}",
        "images_per_set": args.images,
        "eval_seed": args.eval_seed,
        "held_out_attribute_accuracy": accuracy,
        "held_out_images": len(held),
        "measure_seconds": round(time.perf_counter() - started, 1),
        "threads": torch.get_num_threads(),
        "machine": platform.platform(),
        "rows": rows,
    }
    out = args.work / args.design
    out.mkdir(parents=True, exist_ok=True)
    (out / f"measure-seed{args.eval_seed}.json").write_text(json.dumps(result, indent=2) + "\n")


def table(args: argparse.Namespace) -> None:
    header = (
        "| design | steps x batch | train s | UNet params | held-out accuracy (min attribute) | concept "
        "| top-1% share | top-5% share | erased before | erased after 0.02 / 0.05 (95% interval) "
        "| preserved before | preserved after 0.02 / 0.05 |"
    )
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for file in sorted(args.work.glob("*/measure-seed*.json")):
        measured = json.loads(file.read_text())
        info = file.parent / "train.json"
        trained = json.loads(info.read_text()) if info.is_file() else {}
        accuracy = measured["held_out_attribute_accuracy"]
        worst = min(accuracy, key=accuracy.__getitem__)
        steps = f"{trained['steps']} x {trained['batch']}" if trained else "?"
        seconds = f"{trained['train_seconds']:.0f}" if trained else "?"
        params = f"{trained['unet_parameters'] / 1e6:.1f} M" if trained else "?"
        for row in measured["rows"]:
            after = row["after"]
            if not after:  # share only
                print(
                    f"| `{measured['design']}` ({measured['world']}) | {steps} | {seconds} | {params} "
                    f"| {accuracy[worst]:.2f} ({worst}) | {row['concept']} | {row['top1_share']:.3f} "
                    f"| {row['top5_share']:.3f} | - | - | - | - |"
                )
                continue
            erased_after = " / ".join(
                f"{after[str(r)]['erased']:.2f} ({after[str(r)]['erased_interval'][0]:.2f}-"
                f"{after[str(r)]['erased_interval'][1]:.2f})"
                for r in SKILL_RATIOS
            )
            print(
                f"| `{measured['design']}` ({measured['world']}, seed {measured['eval_seed']}) | {steps} | {seconds} "
                f"| {params} | {accuracy[worst]:.2f} ({worst}) | {row['concept']} "
                f"| {row['top1_share']:.3f} | {row['top5_share']:.3f} | {row['before']['erased']:.2f} | {erased_after} "
                f"| {row['before']['preserved']:.3f} | "
                + " / ".join(f"{after[str(r)]['preserved']:.3f}" for r in SKILL_RATIOS)
                + " |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/cpedit-shapes-design"))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("prepare")
    p.add_argument("stages", type=Path)
    p.add_argument("--images", type=int, default=60000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--draw-only", action="store_true", help="only draw the scenes (before the stages are trained)")
    p.add_argument("--vae-steps", type=int, default=0, help="train a VAE of N steps here instead of the stages' one")
    p = commands.add_parser("train")
    p.add_argument("design")
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p = commands.add_parser("measure")
    p.add_argument("design")
    p.add_argument("--images", type=int, default=48, help="images per set for the quick erasure (default: 48)")
    p.add_argument("--eval-seed", type=int, default=0, help="seed of the evaluation prompts (default: 0)")
    p.add_argument("--world", choices=sorted(world.VOCABULARIES), default="v2", help="the model's vocabulary")
    p.add_argument("--folder", type=Path, default=None, help="the model's folder (default: WORK/DESIGN)")
    p.add_argument("--check-captions", type=int, default=48, help="held-out captions of the accuracy check")
    p.add_argument(
        "--erase-concepts",
        default="striped,glowing,sepia",
        help="the concepts whose quick erasure is measured (the others: their top-1%% share only)",
    )
    p.add_argument("--concepts", default=",".join(CONCEPTS))
    commands.add_parser("table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    {"prepare": prepare, "train": train, "measure": measure, "table": table}[args.command](args)


if __name__ == "__main__":
    main()
