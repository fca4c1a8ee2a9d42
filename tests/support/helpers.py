"""Helpers shared by the test modules: small recipes and independently loaded pipelines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cpedit.models.compute import ComputeOptions

CPU = ComputeOptions(device="cpu")
"""The compute options of the tests: the CPU, the default dtype (float32 there)."""
SUBJECTS = ("cat", "dog", "car", "house")
"""Default subjects of :func:`recipe_text`: 4 subjects, 8 prompts."""


def recipe_text(
    *,
    name: str,
    concept: str = "Van Gogh",
    subjects: tuple[str, ...] = SUBJECTS,
    skill_ratio: float = 0.05,
    tau: int = 4,
    select_ratio: float = 0.0,
    steps: int = 6,
    guidance_scale: float = 7.5,
    seed: int = 0,
    target: str | None = None,
    base: str = "a photo of a {subject}",
    preview: tuple[str, ...] = (),
    prune_target: str | None = None,
    stream: str | None = None,
    size: int | None = None,
    pair_seeds: tuple[int, ...] | None = None,
) -> str:
    """A small style recipe for the tiny model: non-trivial masks in well under a second.

    ``prune_target`` / ``stream`` set ``prune.target`` / ``prune.stream``; ``size`` sets
    ``sampling.height`` and ``width``; ``pair_seeds`` replaces ``seed`` with one seed per
    pair; all are left out of the text when None.
    """
    seeds = f"pair_seeds: [{', '.join(map(str, pair_seeds))}]" if pair_seeds is not None else f"seed: {seed}"
    target = target or f"a {{subject}} in the style of {concept}"
    text = (
        "cpedit: 1\n"
        f"name: {name}\n"
        f"concept: {concept}\n"
        "kind: style\n"
        "description: a test recipe\n"
        "prompts:\n"
        f"  subjects: [{', '.join(subjects)}]\n"
        f'  target: "{target}"\n'
        f'  base: "{base}"\n'
        f"prune: {{skill_ratio: {skill_ratio}, timesteps: {tau}, select_ratio: {select_ratio}"
        + (f", target: {prune_target}" if prune_target is not None else "")
        + (f", stream: {stream}" if stream is not None else "")
        + "}\n"
        f"sampling: {{steps: {steps}, guidance_scale: {guidance_scale}, {seeds}"
        + (f", height: {size}, width: {size}" if size is not None else "")
        + "}\n"
    )
    if preview:
        text += "preview:\n  prompts: [" + ", ".join(f'"{p}"' for p in preview) + "]\n"
    return text


def write_recipe(folder: Path, **settings: Any) -> Path:
    """Write :func:`recipe_text` to ``folder/NAME.yaml`` (creating ``folder``) and return the path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{settings['name']}.yaml"
    path.write_text(recipe_text(**settings), encoding="utf-8")
    return path


def load_fresh(path: Path, *, dtype: Any = None) -> Any:
    """The unpruned pipeline, loaded independently of cpedit (in ``dtype``, a torch dtype; default float32)."""
    import warnings

    from diffusers import DiffusionPipeline

    with warnings.catch_warnings():  # older diffusers know only `torch_dtype`; 0.42 renames it `dtype`
        warnings.filterwarnings("ignore", message=".*torch_dtype.*deprecated", category=FutureWarning)
        pipe = DiffusionPipeline.from_pretrained(str(path), use_safetensors=True, torch_dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


class _NoSleep:
    """The ``time`` module without waiting."""

    def __getattr__(self, name: str) -> object:
        import time

        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        pass


def instant_hub_retries(monkeypatch: Any) -> None:
    """huggingface_hub's retry backoff runs instantly for the test (``monkeypatch``: pytest's fixture)."""
    import huggingface_hub.utils._http

    monkeypatch.setattr(huggingface_hub.utils._http, "time", _NoSleep())
