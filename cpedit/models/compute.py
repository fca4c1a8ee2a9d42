"""How cpedit loads a model to compute with it: one typed, validated object instead of loose arguments.

:class:`ComputeOptions` (device, dtype, offload, Hub revision) is built once, by the CLI from its
flags or by a caller, and given as ``compute=`` to every library function that loads a diffusion
model (:func:`cpedit.prune`, :meth:`cpedit.EditSession.open`, sampling, the evaluation driver,
the audit's revival, :func:`cpedit.sweep`, :func:`cpedit.tune`). Its values are checked once,
when it is made; what depends on the machine (is there a CUDA GPU, is accelerate installed) is
checked when the model loads (:func:`cpedit.models.loading.open_pipeline`).

Kept apart from :mod:`cpedit.models.loading` so that building it imports no torch: the CLI and
the app build it before anything loads. How many prompts or images go through the model at once
is not here: calibration's ``batch_size`` applies to pipelines the caller loaded too, and the
images' batch size belongs to :class:`cpedit.eval.options.ImageOptions`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cpedit.errors import CpeditError
from cpedit.hub.refs import is_revision_name
from cpedit.text import shown

__all__ = ["DEVICES", "DTYPE_ALIASES", "DTYPE_NAMES", "ComputeOptions"]

DTYPE_NAMES = ("float32", "float16", "bfloat16")
"""The compute dtypes (:data:`cpedit.models.loading.DTYPES` maps them to torch's)."""
DTYPE_ALIASES: dict[str, str] = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
"""Short dtype names, accepted wherever a dtype name is."""
DEVICES = "auto|cpu|cuda[:N]|mps"
"""The devices, as help text shows them."""
_DEVICE = re.compile(r"^(auto|(cpu|cuda|mps)(:[0-9]+)?)$")


@dataclass(frozen=True, kw_only=True)
class ComputeOptions:
    """Where and how cpedit loads a model: the device, the dtype, model CPU offload and the Hub revision.

    They apply when cpedit loads the model itself (from a Hub id or a folder), never to a
    pipeline the caller loaded.

    Attributes:
        device: ``auto`` (a CUDA GPU, else Apple MPS, else the CPU), ``cpu``, ``cuda``,
            ``cuda:N`` or ``mps``.
        dtype: ``float32``, ``float16`` or ``bfloat16`` (the short names fp32, fp16 and bf16 are
            kept as the long ones); None: float16 on CUDA, float32 elsewhere.
        offload: Model CPU offload (``enable_model_cpu_offload``): components wait in host
            memory and move to the GPU one at a time, so large models (FLUX) fit a small GPU.
            CUDA only.
        revision: A Hub branch, tag or commit of the model (Hub ids only); None: the main branch.

    Raises:
        CpeditError: On construction, a value of the wrong type or form, or offload on a
            device that is not CUDA (``argument`` names the field).
    """

    device: str = "auto"
    dtype: str | None = None
    offload: bool = False
    revision: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.device, str) or not _DEVICE.match(self.device):
            raise CpeditError(
                f"unknown device {shown(self.device)}; use auto, cpu, cuda, cuda:N or mps",
                reason="unknown",
                argument="device",
            )
        if self.dtype is not None:
            name = DTYPE_ALIASES.get(self.dtype, self.dtype) if isinstance(self.dtype, str) else None
            if name not in DTYPE_NAMES:
                raise CpeditError(
                    f"unknown dtype {shown(self.dtype)}; use one of {', '.join([*DTYPE_NAMES, *DTYPE_ALIASES])}",
                    reason="unknown",
                    argument="dtype",
                )
            object.__setattr__(self, "dtype", name)
        if not isinstance(self.offload, bool):
            raise CpeditError(
                f"offload must be True or False, got {shown(self.offload)}", reason="wrong_type", argument="offload"
            )
        if self.offload and self.device.split(":")[0] in ("cpu", "mps"):
            raise CpeditError(
                f"offload (model CPU offload) moves components between host memory and a CUDA GPU, but the device "
                f"is {self.device}: turn offload off, or compute on a CUDA device",
                reason="needs_cuda",
                argument="offload",
            )
        if self.revision is not None:
            if not isinstance(self.revision, str):
                raise CpeditError(
                    f"the revision must be text, got {shown(self.revision)}", reason="wrong_type", argument="revision"
                )
            if not is_revision_name(self.revision):
                raise CpeditError(
                    f"revision {shown(self.revision)} is not a branch, tag or commit name; "
                    "give one, or none for the main branch",
                    reason="invalid",
                    argument="revision",
                )

    def refuse_offload(self, why: str) -> None:
        """Stop where offload cannot be honoured (``why`` says what needs the whole pipeline on the device).

        Raises:
            CpeditError: ``offload`` is on (``reason="conflict"``, ``argument="offload"``).
        """
        if self.offload:
            raise CpeditError(f"offload does not apply here: {why}", reason="conflict", argument="offload")
