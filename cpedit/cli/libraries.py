"""Keeping the model libraries quiet under the CLI, which shows its own progress."""

from __future__ import annotations


def quiet_libraries() -> None:
    """Silence diffusers, transformers and huggingface_hub progress bars and advice.

    The library reports loading, downloads and uploads as progress events and the CLI
    renders them, so the libraries' own tqdm bars (huggingface_hub's download bars
    included) and their logging advice are turned off. Imports diffusers and transformers:
    call it only from commands that load models (the CLI does so for ``prune``, ``sample``
    and ``eval`` before they run).
    """
    import diffusers
    import huggingface_hub.utils
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    huggingface_hub.utils.disable_progress_bars()
