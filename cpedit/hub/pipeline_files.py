"""Which files of a diffusers pipeline repo a pull needs: weight formats, variants, shards (no torch).

Shared by the loader (which files to download), the output writer (which files to copy and
rewrite), ``cpedit models info`` (what a pull downloads) and the offline error messages (what is
missing from the cache), so they agree on every name.
"""

from __future__ import annotations

import re
from typing import Any

UNSAFE_WEIGHT_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl", ".msgpack", ".h5", ".onnx", ".pb")
"""Weight formats cpedit never loads nor copies: they can run code when loaded, or would carry unpruned weights."""


_SHARD = re.compile(r"-\d+-of-\d+$")


def variant_of(filename: str) -> str:
    """The variant of a safetensors file name, ``""`` for the default one.

    ``diffusion_pytorch_model.fp16.safetensors`` -> ``fp16``; shards keep their variant, in
    either naming: ``model-00001-of-00002.fp16.safetensors`` and ``model.fp16-00001-of-00002.safetensors``
    -> ``fp16``; ``model-00001-of-00002.safetensors`` -> ``""``.
    """
    stem = filename.removesuffix(".safetensors")
    parts = [_SHARD.sub("", part) for part in stem.split(".")[1:]]
    parts = [part for part in parts if part]
    return parts[-1] if parts else ""


def pull_safetensors(index: dict[str, Any], files: dict[str, int]) -> dict[str, int]:
    """The safetensors files (path -> size) a pull downloads: the components' default-variant weights.

    A component with only variant files (e.g. ``*.fp16.safetensors``) counts those.
    """
    components = {k for k, v in index.items() if not k.startswith("_") and isinstance(v, list)}
    chosen: dict[str, int] = {}
    for component in sorted(components):
        weights = {
            p: s
            for p, s in files.items()
            if p.startswith(component + "/") and p.count("/") == 1 and p.endswith(".safetensors")
        }
        default = {p: s for p, s in weights.items() if variant_of(p.split("/")[1]) == ""}
        chosen.update(default or weights)
    return chosen


_SKIPPED_SUFFIXES = (*UNSAFE_WEIGHT_SUFFIXES, ".onnx_data", ".gguf", ".py", ".pyc")
"""Files of a component folder never downloaded: weights in formats other than safetensors, code."""


_UNSAFE_INDEX = re.compile(r"\.(?:bin|ckpt|pt|pth|pkl|msgpack|h5|onnx|pb)\.index(?:\.[^./]+)?\.json$")


_SHARD_ANYWHERE = re.compile(r"-\d+-of-\d+")


def _index_variant_needed(index_name: str, chosen: list[str]) -> bool:
    """Whether a safetensors index file (``X.safetensors.index[.VARIANT].json``) belongs to a chosen weight file."""
    stem, _, rest = index_name.partition(".safetensors.index")
    variant = rest[1 : -len(".json")] if rest != ".json" else ""
    for name in chosen:
        base = name[: -len(".safetensors")]
        if base.startswith(stem) and _SHARD_ANYWHERE.sub("", base[len(stem) :]).lstrip(".") == variant:
            return True
    return False


def pipeline_files(index: dict[str, Any], files: dict[str, int]) -> dict[str, int]:
    """The files of a Hub repo that loading its pipeline from safetensors needs, in the repo's order.

    That is what diffusers fetches for ``use_safetensors=True``: ``model_index.json``; for
    each component model_index.json lists, the files directly in its folder (configs,
    tokenizer and scheduler files) and its safetensors weights of the default variant (or the
    variant files when the component has only those; the rule of
    :func:`pull_safetensors`), with the safetensors index files of those
    weights. Never weights in other formats (``.bin``, ``.ckpt``, ``.pt``, ``.pth``,
    ``.msgpack``, ``.h5``, ``.onnx``, ...), code files, hidden files, or files of folders
    that are not components.

    Args:
        index: The parsed model_index.json.
        files: The repo's files (path -> size in bytes).

    Returns:
        path -> size of the files to download.
    """
    components = {k for k, v in index.items() if not k.startswith("_") and isinstance(v, list)}
    weights = pull_safetensors(index, files)
    chosen: dict[str, list[str]] = {}
    for path in weights:
        component, name = path.split("/", 1)
        chosen.setdefault(component, []).append(name)
    needed: dict[str, int] = {}
    for path, size in files.items():
        if path == "model_index.json" or path in weights:
            needed[path] = size
            continue
        component, _, name = path.partition("/")
        if component not in components or not name or "/" in name or name.startswith("."):
            continue
        if name.endswith((".safetensors", *_SKIPPED_SUFFIXES)) or _UNSAFE_INDEX.search(name):
            continue
        if ".safetensors.index" in name and not _index_variant_needed(name, chosen.get(component, [])):
            continue
        needed[path] = size
    return needed


def components_without_safetensors(index: dict[str, Any], files: dict[str, int]) -> list[str]:
    """The components whose folder holds weights, but none in safetensors (cpedit cannot load those)."""
    with_safetensors = {path.split("/", 1)[0] for path in pull_safetensors(index, files)}
    missing = set()
    for path in files:
        component, _, name = path.partition("/")
        if isinstance(index.get(component), list) and "/" not in name and name.endswith(UNSAFE_WEIGHT_SUFFIXES):
            if component not in with_safetensors:
                missing.add(component)
    return sorted(missing)
