"""What a local base model holds, for the image cache: a cheap content fingerprint, and its match with the output.

The base model's images are cached by a key that names the model. A Hub base is named by its
commit; a local folder's path names nothing (the folder can be replaced by other weights), so a
local base is named by the content of what the base images are made from: the edited components'
``config.json`` and default-variant safetensors files, each by its size, modification time and
header (tensor names, dtypes, shapes, offsets), hashed. This reads a few kB per file, never the
weights. The same pass checks that the base still fits the output: every tensor of those
components has the shape it has in the output, else the base images cannot be made from it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from cpedit.errors import CpeditError
from cpedit.hub.pipeline_files import variant_of
from cpedit.models.files import SafetensorsHeader, check_safetensors
from cpedit.output.record import OutputRecord

MAX_CONFIG_BYTES = 1 * 2**20
"""A component's ``config.json`` larger than this is refused."""

__all__ = ["local_base_content"]


def _weights_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.safetensors") if not variant_of(p.name))


def _headers(files: list[Path]) -> dict[str, SafetensorsHeader]:
    """Each file's safetensors header (its framing checked), by file name."""
    return {file.name: check_safetensors(file) for file in files}


def _shapes(headers: dict[str, SafetensorsHeader]) -> dict[str, list[int]]:
    """Tensor name -> shape, over the headers."""
    return {name: list(entry.shape) for header in headers.values() for name, entry in header.tensors.items()}


def _header_summary(headers: dict[str, SafetensorsHeader]) -> dict[str, Any]:
    """The headers as plain data for the fingerprint: each tensor's dtype, shape and byte range, and the metadata."""
    return {
        file: {
            "tensors": {name: [e.dtype, list(e.shape), e.start, e.end] for name, e in header.tensors.items()},
            "metadata": header.metadata,
        }
        for file, header in headers.items()
    }


def _mismatch(record: OutputRecord, base: Path, message: str) -> CpeditError:
    return CpeditError(
        f"the base model {base} no longer matches the edited output {record.folder}: {message}; the base images "
        "cannot be made from it (give the base the output was made from)",
        path=str(base),
        reason="mismatch",
    )


def local_base_content(record: OutputRecord) -> str | None:
    """A fingerprint of the local base's edited components (None: the base is not a local folder).

    Raises:
        CpeditError: The base folder is gone (``reason="not_found"``), a file of it is not a complete
            safetensors file (``truncated``) or a config too large (``too_large``), or its edited
            components no longer have the output's tensors and shapes (``mismatch``).
    """
    base_model = record.report.base_model
    if not base_model.local or not base_model.path:
        return None
    base = Path(base_model.path)
    if not base.is_dir():
        raise CpeditError(
            f"the base model folder {base} of {record.folder} is not there any more", path=str(base), reason="not_found"
        )
    digest = hashlib.sha256()
    try:
        for component in record.report.edited_components:
            config = base / component / "config.json"
            files = _weights_files(base / component)
            if not files:
                raise _mismatch(record, base, f"it has no {component} weights (*.safetensors)")
            headers = _headers(files)
            base_shapes, output_shapes = _shapes(headers), _shapes(_headers(_weights_files(record.folder / component)))
            for name, shape in output_shapes.items():
                if base_shapes.get(name) != shape:
                    there = "is missing" if name not in base_shapes else f"has shape {base_shapes[name]}"
                    raise _mismatch(record, base, f"{component} tensor {name} {there}, in the output {shape}")
            for file in [config, *files]:
                info = file.stat()
                digest.update(f"{component}/{file.name}:{info.st_size}:{info.st_mtime_ns}\n".encode())
            if config.stat().st_size > MAX_CONFIG_BYTES:
                raise CpeditError(f"{config} is larger than 1 MiB", path=str(config), reason="too_large")
            digest.update(config.read_bytes())
            digest.update(json.dumps(_header_summary(headers), sort_keys=True).encode())
    except FileNotFoundError as exc:
        raise _mismatch(record, base, f"{exc.filename} is missing") from None
    return digest.hexdigest()
