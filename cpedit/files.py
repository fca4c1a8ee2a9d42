"""How the files of a diffusers pipeline folder are named: weight formats and variants (no torch).

Shared by the loader (which files to download), the writer (which files to copy and rewrite)
and ``cpedit models info`` (what a pull downloads), so they agree on every name.
"""

from __future__ import annotations

import re

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
