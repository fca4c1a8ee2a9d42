"""Offline builders for random-weight Stable-Diffusion-1.x-shaped pipelines.

Nothing here touches the network: the text tokenizer is derived from the BPE
merges file that ships inside the ``openai-clip`` package, and every model gets
freshly initialised random weights.  The resulting pipelines have the exact
module structure of Stable Diffusion 1.x (UNet transformer blocks with
``ff.net = [GEGLU, Dropout, Linear]``, a CLIP text encoder, a KL VAE), so the
pruning code paths of cpedit can be exercised by tests and benchmarks without
downloading any weights.

Three sizes are provided:

``"tiny"``
    As small as diffusers' own fast tests (16x16 latents, 32x32 px images,
    4 transformer blocks: down, mid, 2 x up); a UNet call at batch 2 takes
    about 6 ms on a 2-core CPU.
``"small"``
    A middle size for CPU benchmarks (32x32 latents, 128x128 px images, 16
    transformer blocks arranged exactly like SD 1.x's, but narrow: channels
    32/64/128/128, cross-attention dim 128); a UNet call at batch 2 takes
    about 65 ms on a 2-core CPU.
``"sd15"``
    The exact Stable Diffusion 1.5 shapes (~1.07 B parameters).  Meant for a
    GPU machine; pass ``device="cuda"`` to :func:`build_random_sd_components`
    to initialise the weights directly on the GPU, or ``device="meta"`` to
    check shapes without allocating memory.

Beyond SD 1.x, :func:`build_random_pipeline` builds tiny random-weight pipelines of
every architecture cpedit supports (``ARCHITECTURES``: SD 1.x, SD 2.x with
v-prediction at a larger native size, SDXL, SD3, FLUX.1, PixArt-alpha/sigma and the 2026 families), sized
like the dummy components of diffusers' own pipeline tests. Pipelines that use T5 get
a small offline T5 tokenizer (a ``tokenizers`` Unigram model wrapped in the
transformers T5 tokenizer class, see :func:`build_t5_tokenizer`), since no
sentencepiece model ships offline; Sana's Gemma gets :func:`build_gemma_tokenizer`.

This module deliberately avoids importing anything heavy at import time beyond
``torch``; diffusers and transformers are imported inside the builders.

A development tool, not part of the installed library (``pip install cpedit`` does not ship
it): import it as ``devtools.builders`` with the repository root on ``sys.path``, as
``tests/conftest.py`` and the benchmarks do.  Needs the ``openai-clip`` package (``test`` extra).
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import math
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

if TYPE_CHECKING:  # pragma: no cover - typing only
    from diffusers import StableDiffusionPipeline

__all__ = [
    "CLIP_VOCAB_SIZE",
    "CLIP_BOS_ID",
    "CLIP_EOS_ID",
    "SizeName",
    "SchedulerName",
    "clip_bpe_path",
    "clip_vocab_and_merges",
    "write_clip_tokenizer",
    "load_clip_tokenizer",
    "sd_component_configs",
    "build_random_sd_components",
    "build_random_sd_pipeline",
    "ArchitectureName",
    "ARCHITECTURES",
    "build_t5_tokenizer",
    "build_qwen2_tokenizer",
    "build_gemma_tokenizer",
    "build_random_components",
    "build_random_pipeline",
    "build_random_wan",
]

SizeName = Literal["tiny", "small", "sd15"]
SchedulerName = Literal["pndm", "ddim"]

#: Number of tokens in the real CLIP BPE vocabulary (also SD 1.x's).
CLIP_VOCAB_SIZE = 49408
#: Id of ``<|startoftext|>`` in the real CLIP vocabulary.
CLIP_BOS_ID = 49406
#: Id of ``<|endoftext|>`` in the real CLIP vocabulary (also the pad token of SD 1.x).
CLIP_EOS_ID = 49407
#: Context length of the CLIP text encoder used by SD 1.x.
CLIP_MAX_LENGTH = 77

_BOS = "<|startoftext|>"
_EOS = "<|endoftext|>"


# --------------------------------------------------------------------------- #
# Tokenizer
# --------------------------------------------------------------------------- #
def _bytes_to_unicode() -> dict[int, str]:
    """Reversible byte -> printable unicode map, exactly as in openai CLIP / GPT-2."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def clip_bpe_path() -> Path:
    """Locate ``bpe_simple_vocab_16e6.txt.gz`` inside the installed ``openai-clip`` package.

    The package is located with :func:`importlib.util.find_spec` and is *not*
    imported (importing ``clip`` pulls in torchvision and more).

    Raises:
        FileNotFoundError: if the package or the file cannot be found.
    """
    spec = importlib.util.find_spec("clip")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / "bpe_simple_vocab_16e6.txt.gz"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("bpe_simple_vocab_16e6.txt.gz not found: is the 'openai-clip' package installed?")


@lru_cache(maxsize=1)
def clip_vocab_and_merges() -> tuple[dict[str, int], tuple[str, ...]]:
    """Derive the CLIP BPE vocabulary and merge list exactly as openai CLIP does.

    Returns:
        ``(vocab, merges)`` where ``vocab`` maps token string -> id (49408
        entries) and ``merges`` holds the 48894 merge rules as ``"a b"`` strings,
        in rank order.
    """
    lines = gzip.open(clip_bpe_path()).read().decode("utf-8").split("\n")
    merge_lines = lines[1 : 49152 - 256 - 2 + 1]
    merges = [tuple(line.split()) for line in merge_lines]
    byte_chars = list(_bytes_to_unicode().values())
    tokens = byte_chars + [c + "</w>" for c in byte_chars]
    tokens.extend("".join(m) for m in merges)
    tokens.extend([_BOS, _EOS])
    vocab = {tok: i for i, tok in enumerate(tokens)}
    if len(vocab) != CLIP_VOCAB_SIZE or len(tokens) != CLIP_VOCAB_SIZE:
        raise RuntimeError(f"unexpected CLIP vocabulary size {len(vocab)} (expected {CLIP_VOCAB_SIZE})")
    return vocab, tuple(" ".join(m) for m in merges)


def _bpe_merges_of_word(word: str, ranks: dict[tuple[str, str], int]) -> list[tuple[str, str]]:
    """The merges CLIP's BPE applies to one lower-case word, in the order it applies them."""
    byte_encoder = _bytes_to_unicode()
    symbols = [byte_encoder[b] for b in word.encode("utf-8")]
    symbols[-1] += "</w>"
    applied: list[tuple[str, str]] = []
    while len(symbols) > 1:
        pairs = [(ranks.get((a, b), math.inf), i) for i, (a, b) in enumerate(zip(symbols, symbols[1:], strict=False))]
        rank, _ = min(pairs)
        if rank == math.inf:
            break
        pair = next((a, b) for (a, b) in zip(symbols, symbols[1:], strict=False) if ranks.get((a, b)) == rank)
        applied.append(pair)
        merged: list[str] = []
        i = 0
        while i < len(symbols):
            if i < len(symbols) - 1 and (symbols[i], symbols[i + 1]) == pair:
                merged.append(symbols[i] + symbols[i + 1])
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    return applied


def reduced_clip_vocab_and_merges(words: Iterable[str]) -> tuple[dict[str, int], tuple[str, ...]]:
    """A CLIP BPE vocabulary cut down to what ``words`` need.

    It keeps the 512 byte-level tokens (so any text still tokenizes, letter by letter),
    the merges CLIP applies to ``words`` (in CLIP's rank order) and the two special
    tokens; every word in ``words`` therefore tokenizes exactly as with the full CLIP
    vocabulary, and a text encoder over it needs a few hundred embeddings, not 49408.
    """
    full_vocab, full_merges = clip_vocab_and_merges()
    ranks = {tuple(m.split()): i for i, m in enumerate(full_merges)}
    used: set[tuple[str, str]] = set()
    for word in words:
        used.update(_bpe_merges_of_word(word.lower(), ranks))
    merges = sorted(used, key=ranks.__getitem__)
    byte_chars = list(_bytes_to_unicode().values())
    tokens = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges] + [_BOS, _EOS]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}
    if not all(tok in full_vocab for tok in vocab):
        raise RuntimeError("reduced vocabulary has tokens that CLIP's does not")
    return vocab, tuple(" ".join(m) for m in merges)


def write_clip_tokenizer(folder: Path, *, words: Iterable[str] | None = None) -> Path:
    """Write a Hugging Face ``CLIPTokenizer`` folder with the real CLIP BPE vocabulary.

    The folder gets ``vocab.json``, ``merges.txt``, ``tokenizer_config.json`` and
    ``special_tokens_map.json`` following the conventions of the Stable Diffusion
    1.5 ``tokenizer/`` folder (``model_max_length`` 77, pad token
    ``<|endoftext|>``).  Load it with ``CLIPTokenizer.from_pretrained(folder)``
    (in transformers 5, constructing ``CLIPTokenizer(vocab_file=..., merges_file=...)``
    directly silently yields a 3-token vocabulary).

    Args:
        folder: destination directory (created if missing).
        words: if given, write the vocabulary cut down to these words
            (:func:`reduced_clip_vocab_and_merges`) instead of the full one.

    Returns:
        ``folder``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = clip_vocab_and_merges() if words is None else reduced_clip_vocab_and_merges(words)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")

    def special(content: str) -> dict[str, Any]:
        return {
            "content": content,
            "lstrip": False,
            "normalized": True,
            "rstrip": False,
            "single_word": False,
        }

    tokenizer_config = {
        "add_prefix_space": False,
        "bos_token": special(_BOS),
        "do_lower_case": True,
        "eos_token": special(_EOS),
        "errors": "replace",
        "model_max_length": CLIP_MAX_LENGTH,
        "pad_token": _EOS,
        "tokenizer_class": "CLIPTokenizer",
        "unk_token": special(_EOS),
    }
    special_tokens_map = {
        "bos_token": special(_BOS),
        "eos_token": special(_EOS),
        "pad_token": _EOS,
        "unk_token": special(_EOS),
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps(special_tokens_map, indent=2), encoding="utf-8")
    return folder


def load_clip_tokenizer(folder: Path) -> Any:
    """Load (through ``from_pretrained``) a tokenizer folder written by :func:`write_clip_tokenizer`.

    Raises:
        RuntimeError: if the loaded tokenizer does not have the full 49408-token vocabulary.
    """
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(folder))
    if len(tok) != CLIP_VOCAB_SIZE:
        raise RuntimeError(f"tokenizer in {folder} has {len(tok)} tokens, expected {CLIP_VOCAB_SIZE}")
    return tok


# --------------------------------------------------------------------------- #
# Model configurations
# --------------------------------------------------------------------------- #
_SCHEDULER_COMMON: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "set_alpha_to_one": False,
    "steps_offset": 1,
}


def sd_component_configs(size: SizeName) -> dict[str, dict[str, Any]]:
    """Constructor keyword arguments of the UNet, VAE and CLIP text encoder of a size.

    Returns:
        ``{"unet": {...}, "vae": {...}, "text_encoder": {...}}``: kwargs for
        ``UNet2DConditionModel``, ``AutoencoderKL`` and ``CLIPTextConfig``.
    """
    # The CLIP text config uses the (legacy) token ids of SD 1.x's
    # text_encoder/config.json (bos 0, eos 2, pad 1); they only affect the pooled
    # output, which the SD pipeline does not use.
    text_common: dict[str, Any] = {
        "vocab_size": CLIP_VOCAB_SIZE,
        "max_position_embeddings": CLIP_MAX_LENGTH,
        "hidden_act": "quick_gelu",
        "layer_norm_eps": 1e-5,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "pad_token_id": 1,
    }
    if size == "tiny":
        return {
            "unet": {
                "sample_size": 16,
                "in_channels": 4,
                "out_channels": 4,
                "block_out_channels": (32, 64),
                "layers_per_block": 1,
                "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
                "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
                "cross_attention_dim": 32,
                "attention_head_dim": 2,
                "norm_num_groups": 32,
            },
            "vae": {
                "in_channels": 3,
                "out_channels": 3,
                "block_out_channels": (32, 64),
                "down_block_types": ("DownEncoderBlock2D",) * 2,
                "up_block_types": ("UpDecoderBlock2D",) * 2,
                "layers_per_block": 1,
                "latent_channels": 4,
                "norm_num_groups": 32,
                "sample_size": 32,
            },
            "text_encoder": {
                **text_common,
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "projection_dim": 32,
            },
        }
    if size == "small":
        # SD 1.x layout (3 cross-attention down blocks + 1 plain, mirrored up
        # blocks, layers_per_block 2 -> 16 transformer blocks), but narrow.
        return {
            "unet": {
                "sample_size": 32,
                "in_channels": 4,
                "out_channels": 4,
                "block_out_channels": (32, 64, 128, 128),
                "layers_per_block": 2,
                "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                "cross_attention_dim": 128,
                "attention_head_dim": 4,
                "norm_num_groups": 32,
            },
            "vae": {
                "in_channels": 3,
                "out_channels": 3,
                "block_out_channels": (32, 64, 64),
                "down_block_types": ("DownEncoderBlock2D",) * 3,
                "up_block_types": ("UpDecoderBlock2D",) * 3,
                "layers_per_block": 1,
                "latent_channels": 4,
                "norm_num_groups": 32,
                "sample_size": 128,
            },
            "text_encoder": {
                **text_common,
                "hidden_size": 128,
                "intermediate_size": 512,
                "num_hidden_layers": 4,
                "num_attention_heads": 4,
                "projection_dim": 128,
            },
        }
    if size == "sd15":
        # Exact shapes of stable-diffusion-v1-5 (unet/, vae/, text_encoder/ configs).
        return {
            "unet": {
                "sample_size": 64,
                "in_channels": 4,
                "out_channels": 4,
                "block_out_channels": (320, 640, 1280, 1280),
                "layers_per_block": 2,
                "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                "cross_attention_dim": 768,
                "attention_head_dim": 8,
                "norm_num_groups": 32,
                "norm_eps": 1e-5,
                "act_fn": "silu",
                "center_input_sample": False,
                "downsample_padding": 1,
                "flip_sin_to_cos": True,
                "freq_shift": 0,
                "mid_block_scale_factor": 1,
            },
            "vae": {
                "in_channels": 3,
                "out_channels": 3,
                "block_out_channels": (128, 256, 512, 512),
                "down_block_types": ("DownEncoderBlock2D",) * 4,
                "up_block_types": ("UpDecoderBlock2D",) * 4,
                "layers_per_block": 2,
                "latent_channels": 4,
                "norm_num_groups": 32,
                "sample_size": 512,
                "act_fn": "silu",
            },
            "text_encoder": {
                **text_common,
                "hidden_size": 768,
                "intermediate_size": 3072,
                "num_hidden_layers": 12,
                "num_attention_heads": 12,
                "projection_dim": 768,
                "attention_dropout": 0.0,
                "dropout": 0.0,
                "initializer_factor": 1.0,
                "initializer_range": 0.02,
            },
        }
    raise ValueError(f"unknown size {size!r}; expected 'tiny', 'small' or 'sd15'")


def _make_scheduler(scheduler: SchedulerName) -> Any:
    from diffusers import DDIMScheduler, PNDMScheduler

    if scheduler == "pndm":
        return PNDMScheduler(**_SCHEDULER_COMMON, skip_prk_steps=True)
    if scheduler == "ddim":
        return DDIMScheduler(**_SCHEDULER_COMMON, clip_sample=False)
    raise ValueError(f"unknown scheduler {scheduler!r}; expected 'pndm' or 'ddim'")


# --------------------------------------------------------------------------- #
# Pipelines
# --------------------------------------------------------------------------- #
def build_random_sd_components(
    *,
    size: SizeName = "tiny",
    scheduler: SchedulerName = "pndm",
    seed: int = 0,
    device: str | torch.device | None = None,
) -> StableDiffusionPipeline:
    """Build a random-weight ``StableDiffusionPipeline`` in memory (nothing is saved).

    Weights are initialised after ``torch.manual_seed(seed)``; on the CPU the
    result is reproducible for a given seed and size.  The tokenizer is the real
    CLIP tokenizer (see :func:`write_clip_tokenizer`).

    Args:
        size: ``"tiny"``, ``"small"`` or ``"sd15"`` (see the module docstring).
        scheduler: ``"pndm"`` (SD 1.x's default, ``skip_prk_steps=True``) or ``"ddim"``,
            both with SD 1.x's betas.
        seed: seed for the random weights.
        device: where to allocate and initialise the weights (default: CPU).
            ``"cuda"`` avoids a slow CPU initialisation of the ~1 B sd15
            parameters (the random values then differ from a CPU build);
            ``"meta"`` builds shapes only.

    Returns:
        The pipeline, with ``safety_checker=None``, ``feature_extractor=None`` and
        ``requires_safety_checker=False``.
    """
    import tempfile

    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    configs = sd_component_configs(size)
    sched = _make_scheduler(scheduler)
    with tempfile.TemporaryDirectory(prefix="cpedit-clip-tokenizer-") as tmp:
        tokenizer = load_clip_tokenizer(write_clip_tokenizer(Path(tmp)))

    target = torch.device(device) if device is not None else torch.device("cpu")
    torch.manual_seed(seed)
    with target:
        unet = UNet2DConditionModel(**configs["unet"])
        vae = AutoencoderKL(**configs["vae"])
        text_encoder = CLIPTextModel(CLIPTextConfig(**configs["text_encoder"]))
    for module in (unet, vae, text_encoder):
        module.eval()

    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=sched,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_random_sd_pipeline(
    folder: Path,
    *,
    size: SizeName = "tiny",
    scheduler: SchedulerName = "pndm",
    seed: int = 0,
) -> Path:
    """Build a random-weight SD 1.x-shaped pipeline and save it as safetensors.

    The folder can be loaded back with
    ``DiffusionPipeline.from_pretrained(folder, use_safetensors=True)``.

    Args:
        folder: destination directory (created if missing).
        size: ``"tiny"``, ``"small"`` or ``"sd15"`` (sd15 writes about 4 GB).
        scheduler: ``"pndm"`` or ``"ddim"``.
        seed: seed for the random weights.

    Returns:
        ``folder``.
    """
    folder = Path(folder)
    pipe = build_random_sd_components(size=size, scheduler=scheduler, seed=seed)
    pipe.save_pretrained(str(folder), safe_serialization=True)
    return folder


# --------------------------------------------------------------------------- #
# Every supported architecture, tiny
# --------------------------------------------------------------------------- #
ArchitectureName = Literal[
    "sd1",
    "sd2",
    "sdxl",
    "sd3",
    "flux",
    "pixart-alpha",
    "pixart-sigma",
    "hidream",
    "qwen-image",
    "z-image",
    "sd35",
    "chroma",
    "flux2",
    "flux2-klein",
    "wan2.1",
    "wan2.2",
    "sana",
]
ARCHITECTURES: tuple[str, ...] = ("sd1", "sd2", "sdxl", "sd3", "flux", "pixart-alpha", "pixart-sigma")
ARCHITECTURES += ("hidream", "qwen-image", "z-image", "sd35", "chroma", "flux2", "flux2-klein", "wan2.1", "wan2.2")
ARCHITECTURES += ("sana",)
"""The architectures :func:`build_random_pipeline` builds."""

_T5_WORDS = (
    "a an the of in on at with and photo picture painting style headshot portrait cat dog car house chair "
    "bird horse man woman boy girl child naked nude van gogh monet picasso dali da vinci church beach road "
    "garden park street tree forest room table bag parachute golf ball truck"
).split()


def build_t5_tokenizer(*, model_max_length: int = 512) -> Any:
    """A small T5-style tokenizer built offline (no sentencepiece model needed).

    A ``tokenizers`` Unigram model over letters and a few common words, case-sensitive (``<pad>`` = 0,
    ``</s>`` = 1, ``<unk>`` = 2, an ``</s>`` appended to every sequence, as T5 does),
    wrapped in transformers' T5 tokenizer class, so pipelines that expect a
    ``T5TokenizerFast`` save and reload it with ``from_pretrained``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    pieces: dict[str, float] = {"<pad>": 0.0, "</s>": 0.0, "<unk>": 0.0, "\u2581": -4.0}
    for letter in letters:
        pieces.setdefault(letter, -5.0)
        pieces.setdefault("\u2581" + letter, -5.0)
    for word in _T5_WORDS:
        pieces.setdefault("\u2581" + word, -1.0)
        pieces.setdefault("\u2581" + word.capitalize(), -1.0)
    model = Tokenizer(models.Unigram(list(pieces.items()), unk_id=2))
    # Case-sensitive and split on whitespace, then Metaspace: what transformers' T5 tokenizer
    # rebuilds when it loads a saved folder, so the reloaded tokenizer is this one.
    model.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace()])
    model.decoder = decoders.Metaspace()
    model.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    return T5TokenizerFast(
        tokenizer_object=model,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        extra_ids=0,
        model_max_length=model_max_length,
    )


def build_gemma_tokenizer() -> Any:
    """A small Gemma-style tokenizer built offline (no tokenizer download needed).

    transformers' own ``GemmaTokenizer`` (a BPE over ``\u2581``-joined text, ``<bos>`` put first)
    with a vocabulary of letters, digits and punctuation and merges that make whole tokens of a
    few common words; anything else is ``<unk>``. It saves and reloads with ``from_pretrained``.
    """
    import string

    from transformers import GemmaTokenizer

    vocab: dict[str, int] = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4, "\u2581": 5}
    for char in string.ascii_letters + string.digits + string.punctuation:
        vocab.setdefault(char, len(vocab))
    merges: list[tuple[str, str]] = []
    for word in _T5_WORDS:
        piece = "\u2581"
        for char in word:
            if piece + char not in vocab:
                merges.append((piece, char))
                vocab[piece + char] = len(vocab)
            piece += char
    return GemmaTokenizer(vocab=vocab, merges=merges, add_bos_token=True)


def _sana_pipeline() -> Any:
    """A tiny SanaPipeline: 2 blocks of linear attention, cross-attention and a ``GLUMBConv`` feed-forward
    (1x1 ``conv_inverted`` 16 -> 2 x 40, depthwise 3x3, 1x1 ``conv_point`` 40 -> 16), a 2-layer Gemma 2
    encoder, a 2-level ``AutoencoderDC`` (2x, not 32x: small images stay cheap) and Sana's flow DPM-Solver."""
    import diffusers as d
    from transformers import Gemma2Config, Gemma2Model

    tokenizer = build_gemma_tokenizer()
    text_encoder = Gemma2Model(
        Gemma2Config(
            vocab_size=len(tokenizer),
            hidden_size=16,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            head_dim=8,
            max_position_embeddings=2048,
            pad_token_id=0,
            eos_token_id=1,
            bos_token_id=2,
        )
    )
    transformer = d.SanaTransformer2DModel(
        patch_size=1,
        in_channels=4,
        out_channels=4,
        num_layers=2,
        num_attention_heads=2,
        attention_head_dim=8,
        num_cross_attention_heads=2,
        cross_attention_head_dim=8,
        cross_attention_dim=16,
        caption_channels=16,
        sample_size=16,  # one of the four native sizes resolution binning knows (512 px at 32x)
    )
    vae = d.AutoencoderDC(
        in_channels=3,
        latent_channels=4,
        attention_head_dim=2,
        encoder_block_types=("ResBlock", "EfficientViTBlock"),
        decoder_block_types=("ResBlock", "EfficientViTBlock"),
        encoder_block_out_channels=(8, 8),
        decoder_block_out_channels=(8, 8),
        encoder_qkv_multiscales=((), (5,)),
        decoder_qkv_multiscales=((), (5,)),
        encoder_layers_per_block=(1, 1),
        decoder_layers_per_block=(1, 1),
        downsample_block_type="conv",
        upsample_block_type="interpolate",
        decoder_norm_types="rms_norm",
        decoder_act_fns="silu",
        scaling_factor=0.41407,
    )
    scheduler = d.DPMSolverMultistepScheduler(  # Sana's own: flow prediction with flow sigmas
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0
    )
    return d.SanaPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer, scheduler=scheduler
    )


@lru_cache(maxsize=1)
def _shared_clip_tokenizer() -> Any:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="cpedit-clip-tokenizer-") as tmp:
        return load_clip_tokenizer(write_clip_tokenizer(Path(tmp)))


def _clip_tokenizer() -> Any:
    import copy

    return copy.deepcopy(_shared_clip_tokenizer())


def _tiny_clip_config(**overrides: Any) -> Any:
    """The CLIP text config of diffusers' SDXL/SD3/FLUX tests (hidden 32, 5 layers), with the real vocabulary."""
    from transformers import CLIPTextConfig

    config: dict[str, Any] = {
        "bos_token_id": 0,
        "eos_token_id": 2,
        "pad_token_id": 1,
        "hidden_size": 32,
        "intermediate_size": 37,
        "layer_norm_eps": 1e-5,
        "num_attention_heads": 4,
        "num_hidden_layers": 5,
        "vocab_size": CLIP_VOCAB_SIZE,
        "max_position_embeddings": CLIP_MAX_LENGTH,
        "hidden_act": "gelu",
        "projection_dim": 32,
    }
    config.update(overrides)
    return CLIPTextConfig(**config)


def _tiny_t5(tokenizer: Any, d_model: int, *, umt5: bool = False) -> Any:
    """A T5 v1.1-style encoder (gated-gelu FFN) as small as diffusers' tiny-random-t5 (``umt5``: Wan's UMT5)."""
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    model, config = (UMT5EncoderModel, UMT5Config) if umt5 else (T5EncoderModel, T5Config)
    return model(
        config(
            vocab_size=len(tokenizer),
            d_model=d_model,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            feed_forward_proj="gated-gelu",
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
        )
    )


def _tiny_flow_vae(latent_channels: int) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        block_out_channels=(4,),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=1,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.0609,
        scaling_factor=1.5035,
    )


HIDREAM_PATCH = 16
"""Patch size of the tiny HiDream transformer: HiDream always runs its native latent area
(``default_sample_size`` 128 latent pixels squared, whatever size is asked), so a large
patch keeps the image tokens few (64) on a CPU."""


def _tiny_hidream() -> Any:
    """HiDream-I1 as small as diffusers' pipeline tests: one dual- and one single-stream block, each with
    a mixture of 4 routed experts (2 active per token) and shared experts; two CLIP (128 positions, as
    HiDream pads them to 128 tokens), a T5 and a 2-layer Llama text encoder."""
    import diffusers as d
    from transformers import CLIPTextModelWithProjection, LlamaConfig, LlamaForCausalLM

    t5_tokenizer = build_t5_tokenizer()
    llama_tokenizer = build_t5_tokenizer()  # HiDream accepts any tokenizer with an end-of-sequence token
    transformer = d.HiDreamImageTransformer2DModel(
        patch_size=HIDREAM_PATCH,
        in_channels=4,
        out_channels=4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_channels=[32, 16],  # T5 width, Llama width
        text_emb_dim=64,  # the two CLIPs' pooled 32 + 32
        num_routed_experts=4,
        num_activated_experts=2,
        axes_dims_rope=(4, 2, 2),
        max_resolution=(128, 128),
        llama_layers=(0, 1),  # one Llama hidden state per block
    )
    llama = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(llama_tokenizer),
            hidden_size=16,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=1,
        )
    )
    return d.HiDreamImagePipeline(
        scheduler=d.FlowMatchEulerDiscreteScheduler(),
        vae=_tiny_flow_vae(4),
        text_encoder=CLIPTextModelWithProjection(_tiny_clip_config(max_position_embeddings=128)),
        tokenizer=_clip_tokenizer(),
        text_encoder_2=CLIPTextModelWithProjection(_tiny_clip_config(max_position_embeddings=128)),
        tokenizer_2=_clip_tokenizer(),
        text_encoder_3=_tiny_t5(t5_tokenizer, 32),
        tokenizer_3=t5_tokenizer,
        text_encoder_4=llama,
        tokenizer_4=llama_tokenizer,
        transformer=transformer,
    )


def build_random_wan(*, two_stage: bool) -> Any:
    """A tiny Wan text-to-video pipeline (sized like diffusers' Wan pipeline tests).

    A UMT5 text encoder (gated-GELU FFN) with :func:`build_t5_tokenizer`'s tokenizer, a
    ``WanTransformer3DModel`` (2 blocks, patch 1x2x2), an ``AutoencoderKLWan`` (8x spatial,
    4x temporal) and flow-matching UniPC as Wan ships. ``two_stage`` builds Wan 2.2 A14B's
    layout: a second, low-noise transformer ``transformer_2`` that takes over below
    ``boundary_ratio`` (0.875) of the training timesteps.
    """
    import diffusers as d

    tokenizer = build_t5_tokenizer()
    text_encoder = _tiny_t5(tokenizer, 32, umt5=True)

    def transformer() -> Any:
        return d.WanTransformer3DModel(
            patch_size=(1, 2, 2),
            num_attention_heads=2,
            attention_head_dim=12,
            in_channels=16,
            out_channels=16,
            text_dim=32,
            freq_dim=256,
            ffn_dim=32,
            num_layers=2,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            rope_max_seq_len=32,
        )

    vae = d.AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )
    scheduler = d.UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0, num_train_timesteps=1000
    )
    return d.WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        scheduler=scheduler,
        transformer=transformer(),
        transformer_2=transformer() if two_stage else None,
        boundary_ratio=0.875 if two_stage else None,
    )


def build_random_components(architecture: ArchitectureName = "sd1", *, seed: int = 0) -> Any:
    """Build a tiny random-weight pipeline of ``architecture`` in memory (nothing is saved).

    Sizes follow the dummy components of diffusers' pipeline tests; text encoders keep
    the real CLIP vocabulary (the real tokenizer) and T5 encoders get the tokenizer of
    :func:`build_t5_tokenizer`.

    Args:
        architecture: One of :data:`ARCHITECTURES`: ``sd1`` (as :func:`build_random_sd_components`
            ``size="tiny"``), ``sd2`` (linear projections, GELU text encoder, v-prediction DDIM,
            a 1.5x larger native size like SD 2's 768 px), ``sdxl`` (two text encoders, added
            time/text conditioning, Euler), ``sd3`` (MMDiT, two CLIP encoders and a T5, flow
            matching), ``flux`` (double and single stream blocks, guidance embedding, CLIP and T5,
            flow matching with dynamic shifting), ``pixart-alpha`` / ``pixart-sigma`` (DiT with
            GELU feed-forwards, T5, DDIM / DPM-Solver), ``hidream`` (HiDream-I1: mixture-of-experts
            feed-forwards in dual- and single-stream blocks, two CLIP, T5 and Llama text encoders,
            flow matching; see :func:`_tiny_hidream`), ``qwen-image`` (image and text MLP per block,
            Qwen2.5-VL text encoder), ``z-image`` (single-stream DiT, Qwen3 text encoder), ``sd35``,
            ``chroma``, ``flux2``, ``flux2-klein`` (see :func:`_build_2026_family`), ``wan2.1`` /
            ``wan2.2`` (Wan text-to-video, UMT5; 2.2 with the second, low-noise transformer:
            :func:`build_random_wan`), ``sana`` (convolutional GLU feed-forwards, Gemma 2, a
            deep-compression autoencoder, flow DPM-Solver; see :func:`_sana_pipeline`).
        seed: Seed of the random weights.

    Raises:
        ValueError: Unknown architecture.
    """
    import diffusers as d
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    if architecture == "sd1":
        return build_random_sd_components(size="tiny", scheduler="pndm", seed=seed)
    torch.manual_seed(seed)
    if architecture == "sd2":
        configs = sd_component_configs("tiny")
        unet = d.UNet2DConditionModel(
            **{**configs["unet"], "sample_size": 24, "attention_head_dim": (2, 4), "use_linear_projection": True}
        )
        from transformers import CLIPTextConfig

        text_encoder = CLIPTextModel(CLIPTextConfig(**{**configs["text_encoder"], "hidden_act": "gelu"}))
        scheduler = d.DDIMScheduler(**_SCHEDULER_COMMON, clip_sample=False, prediction_type="v_prediction")
        pipe = d.StableDiffusionPipeline(
            vae=d.AutoencoderKL(**configs["vae"]),
            text_encoder=text_encoder,
            tokenizer=_clip_tokenizer(),
            unet=unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    elif architecture == "sdxl":
        unet = d.UNet2DConditionModel(
            block_out_channels=(32, 64),
            layers_per_block=2,
            sample_size=16,
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4),
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            transformer_layers_per_block=(1, 2),
            projection_class_embeddings_input_dim=80,  # 6 * 8 time ids + 32 pooled text
            cross_attention_dim=64,  # 32 + 32: both text encoders' hidden states
            norm_num_groups=1,
        )
        vae = d.AutoencoderKL(**sd_component_configs("tiny")["vae"])
        scheduler = d.EulerDiscreteScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            steps_offset=1,
            beta_schedule="scaled_linear",
            timestep_spacing="leading",
        )
        pipe = d.StableDiffusionXLPipeline(
            vae=vae,
            text_encoder=CLIPTextModel(_tiny_clip_config()),
            text_encoder_2=CLIPTextModelWithProjection(_tiny_clip_config()),
            tokenizer=_clip_tokenizer(),
            tokenizer_2=_clip_tokenizer(),
            unet=unet,
            scheduler=scheduler,
        )
    elif architecture == "sd3":
        t5_tokenizer = build_t5_tokenizer()
        transformer = d.SD3Transformer2DModel(
            sample_size=32,
            patch_size=1,
            in_channels=4,
            num_layers=2,  # the last block has no text-stream FFN (context_pre_only); the first has both
            attention_head_dim=8,
            num_attention_heads=4,
            caption_projection_dim=32,
            joint_attention_dim=64,  # the T5 width; the two CLIPs' 32 + 32 are padded to it
            pooled_projection_dim=64,
            out_channels=4,
        )
        pipe = d.StableDiffusion3Pipeline(
            transformer=transformer,
            scheduler=d.FlowMatchEulerDiscreteScheduler(),
            vae=_tiny_flow_vae(4),
            text_encoder=CLIPTextModelWithProjection(_tiny_clip_config()),
            tokenizer=_clip_tokenizer(),
            text_encoder_2=CLIPTextModelWithProjection(_tiny_clip_config()),
            tokenizer_2=_clip_tokenizer(),
            text_encoder_3=_tiny_t5(t5_tokenizer, 64),
            tokenizer_3=t5_tokenizer,
        )
    elif architecture == "flux":
        t5_tokenizer = build_t5_tokenizer()
        transformer = d.FluxTransformer2DModel(
            patch_size=1,
            in_channels=4,
            num_layers=1,
            num_single_layers=2,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=32,
            pooled_projection_dim=32,
            axes_dims_rope=[4, 4, 8],
            guidance_embeds=True,  # FLUX.1-dev: guidance-distilled
        )
        scheduler = d.FlowMatchEulerDiscreteScheduler(
            shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256
        )
        pipe = d.FluxPipeline(
            transformer=transformer,
            scheduler=scheduler,
            vae=_tiny_flow_vae(1),
            text_encoder=CLIPTextModel(_tiny_clip_config()),
            tokenizer=_clip_tokenizer(),
            text_encoder_2=_tiny_t5(t5_tokenizer, 32),
            tokenizer_2=t5_tokenizer,
        )
    elif architecture in ("pixart-alpha", "pixart-sigma"):
        t5_tokenizer = build_t5_tokenizer()
        transformer = d.PixArtTransformer2DModel(
            sample_size=8,
            num_layers=2,
            patch_size=2,
            attention_head_dim=8,
            num_attention_heads=3,
            caption_channels=32,
            in_channels=4,
            cross_attention_dim=24,
            out_channels=8,
            attention_bias=True,
            activation_fn="gelu-approximate",
            num_embeds_ada_norm=1000,
            norm_type="ada_norm_single",
            norm_elementwise_affine=False,
            norm_eps=1e-6,
        )
        vae = d.AutoencoderKL(**sd_component_configs("tiny")["vae"])
        alpha = architecture == "pixart-alpha"
        cls = d.PixArtAlphaPipeline if alpha else d.PixArtSigmaPipeline
        scheduler = d.DDIMScheduler() if alpha else d.DPMSolverMultistepScheduler()
        pipe = cls(
            tokenizer=t5_tokenizer,
            text_encoder=_tiny_t5(t5_tokenizer, 32),
            vae=vae,
            transformer=transformer,
            scheduler=scheduler,
        )
    elif architecture == "hidream":
        pipe = _tiny_hidream()
    elif architecture == "qwen-image":
        pipe = _build_qwen_image()
    elif architecture == "z-image":
        pipe = _build_z_image()
    elif architecture in ("sd35", "chroma", "flux2", "flux2-klein"):
        pipe = _build_2026_family(architecture)
    elif architecture in ("wan2.1", "wan2.2"):
        pipe = build_random_wan(two_stage=architecture == "wan2.2")
    elif architecture == "sana":
        pipe = _sana_pipeline()
    elif architecture == "sana":
        pipe = _sana_pipeline()
    else:
        raise ValueError(f"unknown architecture {architecture!r}; expected one of {', '.join(ARCHITECTURES)}")
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    return pipe


_QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
)


def build_qwen2_tokenizer() -> Any:
    """A small Qwen2-style tokenizer built offline: byte-level BPE over the 256 byte symbols, no merges.

    Qwen's special tokens (``<|endoftext|>`` = padding, ``<|im_start|>``, ``<|im_end|>``), the
    right padding of Qwen's tokenizers, and a ChatML chat template (with Qwen3's
    ``enable_thinking`` switch, as Z-Image calls it), wrapped in transformers' Qwen2 tokenizer class
    so it saves and reloads with ``from_pretrained``. Every text tokenizes (one token per byte).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import Qwen2TokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    model = Tokenizer(models.BPE(vocab={symbol: i for i, symbol in enumerate(alphabet)}, merges=[]))
    model.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    model.decoder = decoders.ByteLevel()
    return Qwen2TokenizerFast(
        tokenizer_object=model,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        model_max_length=131072,
        chat_template=_QWEN_CHAT_TEMPLATE,
    )


def _tiny_llm_config(tokenizer: Any) -> dict[str, Any]:
    """The decoder-LLM sizes of the tiny Qwen text encoders (two layers, width 16)."""
    return dict(
        hidden_size=16,
        intermediate_size=24,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        vocab_size=len(tokenizer),
        max_position_embeddings=2048,
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
    )


def _build_qwen_image() -> Any:
    """Qwen-Image: an MMDiT with ``img_mlp``/``txt_mlp`` per block, a Qwen2.5-VL text encoder
    (its language model and a small vision tower, which the text-to-image pipeline never feeds),
    the Qwen-Image VAE (causal 3D convolutions) and flow matching with dynamic shifting."""
    import diffusers as d
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tokenizer = build_qwen2_tokenizer()
    text = _tiny_llm_config(tokenizer)
    text["rope_scaling"] = {"type": "default", "rope_type": "default", "mrope_section": [1, 1, 2]}
    vision = dict(depth=1, hidden_size=16, intermediate_size=16, num_heads=2, out_hidden_size=16)
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, vocab_size=len(tokenizer))
    transformer = d.QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=16,
        out_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=16,
        guidance_embeds=False,
        axes_dims_rope=(8, 4, 4),
    )
    vae = d.AutoencoderKLQwenImage(
        base_dim=24,
        z_dim=4,
        dim_mult=[1, 2, 4],
        num_res_blocks=1,
        temperal_downsample=[False, True],
        latents_mean=[0.0] * 4,
        latents_std=[1.0] * 4,
    )
    scheduler = d.FlowMatchEulerDiscreteScheduler(
        shift=1.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9, base_image_seq_len=256
    )
    return d.QwenImagePipeline(
        transformer=transformer,
        vae=vae,
        text_encoder=Qwen2_5_VLForConditionalGeneration(config),
        tokenizer=tokenizer,
        scheduler=scheduler,
    )


def _build_z_image() -> Any:
    """Z-Image: a single-stream DiT (noise refiner, caption refiner, main blocks; gated SiLU
    feed-forwards), a Qwen3 text encoder, a flow-matching VAE and scheduler."""
    import diffusers as d
    from transformers import Qwen3Config, Qwen3Model

    tokenizer = build_qwen2_tokenizer()
    transformer = d.ZImageTransformer2DModel(
        all_patch_size=(2,),
        all_f_patch_size=(1,),
        in_channels=4,
        dim=32,
        n_layers=2,
        n_refiner_layers=1,
        n_heads=2,
        n_kv_heads=2,
        cap_feat_dim=16,
        axes_dims=[8, 4, 4],
        axes_lens=[256, 32, 32],
    )
    encoder = Qwen3Model(Qwen3Config(**_tiny_llm_config(tokenizer), head_dim=8))
    return d.ZImagePipeline(
        transformer=transformer,
        vae=_tiny_flow_vae(4),
        text_encoder=encoder,
        tokenizer=tokenizer,
        scheduler=d.FlowMatchEulerDiscreteScheduler(),
    )


def _build_2026_family(architecture: str) -> Any:
    """A tiny ``sd35`` (SD3.5 medium: MMDiT-X), ``chroma``, ``flux2`` (dev) or ``flux2-klein`` (base) pipeline."""
    if architecture == "sd35":
        return build_tiny_sd35_medium()
    if architecture == "chroma":
        return build_tiny_chroma()
    if architecture == "flux2":
        return build_tiny_flux2()
    return build_tiny_flux2_klein()


def build_tiny_sd35_medium() -> Any:
    """SD3.5 medium in miniature: MMDiT-X (a second, image-only self-attention ``attn2`` in the
    first block, ``dual_attention_layers``) with RMS qk-norm, two CLIPs and a T5."""
    import diffusers as d
    from transformers import CLIPTextModelWithProjection

    t5_tokenizer = build_t5_tokenizer()
    transformer = d.SD3Transformer2DModel(
        sample_size=32,
        patch_size=1,
        in_channels=4,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_projection_dim=32,
        joint_attention_dim=64,
        pooled_projection_dim=64,
        out_channels=4,
        dual_attention_layers=(0,),
        qk_norm="rms_norm",
    )
    return d.StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=d.FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_tiny_flow_vae(4),
        text_encoder=CLIPTextModelWithProjection(_tiny_clip_config()),
        tokenizer=_clip_tokenizer(),
        text_encoder_2=CLIPTextModelWithProjection(_tiny_clip_config()),
        tokenizer_2=_clip_tokenizer(),
        text_encoder_3=_tiny_t5(t5_tokenizer, 64),
        tokenizer_3=t5_tokenizer,
    )


def build_tiny_chroma() -> Any:
    """Chroma in miniature: FLUX-like double and single blocks, a T5, real classifier-free guidance."""
    import diffusers as d

    t5_tokenizer = build_t5_tokenizer()
    transformer = d.ChromaTransformer2DModel(
        patch_size=1,
        in_channels=4,
        num_layers=1,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        axes_dims_rope=(4, 4, 8),
        approximator_num_channels=16,
        approximator_hidden_dim=32,
        approximator_layers=1,
    )
    scheduler = d.FlowMatchEulerDiscreteScheduler(
        shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256
    )
    return d.ChromaPipeline(
        transformer=transformer,
        scheduler=scheduler,
        vae=_tiny_flow_vae(1),
        text_encoder=_tiny_t5(t5_tokenizer, 32),
        tokenizer=t5_tokenizer,
    )


MISTRAL_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['content'] is string %}{% set text = message['content'] %}"
    "{% else %}{% set text = message['content'] | selectattr('type', 'equalto', 'text') "
    "| map(attribute='text') | join('') %}{% endif %}"
    "{% if message['role'] == 'system' %}[SYSTEM_PROMPT]{{ text }}[/SYSTEM_PROMPT]"
    "{% elif message['role'] == 'user' %}[INST]{{ text }}[/INST]"
    "{% else %}{{ text }}{{ eos_token }}{% endif %}{% endfor %}"
)
"""Mistral's chat format (system prompt, ``[INST]`` turns; text parts of multimodal content)."""

QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
)
"""Qwen3's chat format (ChatML, with the empty thinking block of ``enable_thinking=False``)."""


def build_chat_tokenizer(*, chat_template: str, specials: tuple[str, ...]) -> Any:
    """A byte-level tokenizer (one token per byte, no merges: it spells out any text) with a chat template.

    Stands in for a decoder LLM's tokenizer offline: ``specials`` are whole tokens (the first
    three are BOS, EOS and padding); saved and reloaded with ``from_pretrained`` as
    ``PreTrainedTokenizerFast``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {char: i for i, char in enumerate(_bytes_to_unicode().values())}
    model = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    model.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    model.decoder = decoders.ByteLevel()
    bos, eos, pad = specials[:3]
    return PreTrainedTokenizerFast(
        tokenizer_object=model,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        additional_special_tokens=list(specials[3:]),
        chat_template=chat_template,
        model_max_length=512,
    )


def _tiny_flux2_transformer(joint_attention_dim: int, *, guidance_embeds: bool) -> Any:
    import diffusers as d

    return d.Flux2Transformer2DModel(
        patch_size=1,
        in_channels=4,
        num_layers=1,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=joint_attention_dim,
        timestep_guidance_channels=32,
        mlp_ratio=2.0,
        axes_dims_rope=(4, 4, 4, 4),
        guidance_embeds=guidance_embeds,
    )


def _tiny_flux2_vae() -> Any:
    from diffusers import AutoencoderKLFlux2

    return AutoencoderKLFlux2(
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
        block_out_channels=(4,),
        layers_per_block=1,
        latent_channels=1,
        norm_num_groups=1,
        sample_size=32,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )


def build_tiny_flux2() -> Any:
    """FLUX.2 dev in miniature: guidance-distilled FLUX.2 DiT, a Mistral 3 text encoder (with its
    Pixtral vision tower) read at layers 10, 20 and 30, and a plain byte-level tokenizer in
    Mistral's chat format (the real component, a ``PixtralProcessor``, needs torchvision)."""
    import diffusers as d
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration

    hidden = 16
    config = Mistral3Config(
        text_config={
            "model_type": "mistral",
            "vocab_size": 264,
            "hidden_size": hidden,
            "intermediate_size": 24,
            "num_hidden_layers": 30,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 8,
            "max_position_embeddings": 512,
        },
        vision_config={
            "model_type": "pixtral",
            "hidden_size": 16,
            "intermediate_size": 24,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "head_dim": 8,
            "image_size": 32,
            "patch_size": 16,
        },
        spatial_merge_size=1,
    )
    tokenizer = build_chat_tokenizer(
        chat_template=MISTRAL_CHAT_TEMPLATE,
        specials=("<s>", "</s>", "<pad>", "[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]"),
    )
    return d.Flux2Pipeline(
        scheduler=_flux2_scheduler(),
        vae=_tiny_flux2_vae(),
        text_encoder=Mistral3ForConditionalGeneration(config),
        tokenizer=tokenizer,
        transformer=_tiny_flux2_transformer(3 * hidden, guidance_embeds=True),
    )


def _flux2_scheduler() -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(
        shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256
    )


def build_tiny_flux2_klein(*, distilled: bool = False) -> Any:
    """FLUX.2 klein in miniature: the FLUX.2 DiT without guidance embedding, a Qwen3 text encoder
    read at layers 9, 18 and 27, a byte-level tokenizer in Qwen's chat format. The base model
    (``distilled=False``) runs classifier-free guidance with the unconditional half as a
    separate transformer call; the step-distilled one none."""
    import diffusers as d
    from transformers import Qwen3Config, Qwen3ForCausalLM

    hidden = 16
    config = Qwen3Config(
        vocab_size=264,
        hidden_size=hidden,
        intermediate_size=24,
        num_hidden_layers=27,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        max_position_embeddings=512,
        tie_word_embeddings=True,
    )
    tokenizer = build_chat_tokenizer(
        chat_template=QWEN_CHAT_TEMPLATE,
        specials=("<|endoftext|>", "<|im_end|>", "<|endoftext|>", "<|im_start|>", "<think>", "</think>"),
    )
    return d.Flux2KleinPipeline(
        scheduler=_flux2_scheduler(),
        vae=_tiny_flux2_vae(),
        text_encoder=Qwen3ForCausalLM(config),
        tokenizer=tokenizer,
        transformer=_tiny_flux2_transformer(3 * hidden, guidance_embeds=False),
        is_distilled=distilled,
    )


def build_random_pipeline(folder: Path, *, architecture: ArchitectureName = "sd1", seed: int = 0) -> Path:
    """Build a tiny random-weight pipeline of ``architecture`` and save it as safetensors.

    The folder loads back with ``DiffusionPipeline.from_pretrained(folder, use_safetensors=True)``.

    Returns:
        ``folder``.
    """
    folder = Path(folder)
    pipe = build_random_components(architecture, seed=seed)
    pipe.save_pretrained(str(folder), safe_serialization=True)
    return folder


def build_tiny_clip_folder(folder: Path, *, seed: int = 0) -> Path:
    """A tiny random CLIP model folder (image and text towers, safetensors, the real CLIP
    tokenizer, a 32-pixel image processor) for the evaluation suite's tests (CLIP score,
    zero-shot classification), loadable with ``CLIPModel.from_pretrained``."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    layers = {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2}
    config = CLIPConfig(
        text_config={**layers, "vocab_size": 49408, "max_position_embeddings": 77},
        vision_config={**layers, "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(folder)
    write_clip_tokenizer(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder
