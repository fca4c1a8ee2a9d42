"""The one reader of image files cpedit scores (rendered images, reference folders): bounded and checked.

An image file is read back from folders a user or another run can change: a "PNG" whose header
claims 100,000 x 100,000 pixels decompresses to tens of gigabytes (a decompression bomb), a
truncated or foreign file fails deep inside PIL. :func:`read_rgb` reads the header first and
refuses more than :data:`MAX_IMAGE_PIXELS` before any pixel is decoded, and turns every PIL
failure into a :class:`~cpedit.errors.CpeditError` naming the file.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from cpedit.errors import CpeditError
from cpedit.recipes.format import MAX_SIDE

MAX_IMAGE_PIXELS = MAX_SIDE * MAX_SIDE
"""Pixels of one image at most (8,192 x 8,192: the largest image cpedit renders)."""

__all__ = ["MAX_IMAGE_PIXELS", "read_rgb"]


def read_rgb(path: str | os.PathLike[str]) -> Any:
    """The image at ``path`` as a PIL RGB image, fully decoded (the file is closed).

    Raises:
        CpeditError: Not a readable image (``reason="malformed"``: unknown format, truncated,
            corrupt) or larger than :data:`MAX_IMAGE_PIXELS` (``too_large``), checked from the
            header before the pixels are decoded.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise CpeditError(
                        f"{path}: the image is {width} x {height} pixels, more than the {MAX_IMAGE_PIXELS:,} "
                        "cpedit decodes (a decompression bomb, or not an image of a model)",
                        path=os.fspath(path),
                        reason="too_large",
                    )
                return image.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise CpeditError(f"{path}: not a readable image ({exc})", path=os.fspath(path), reason="malformed") from None
    except Image.DecompressionBombWarning as exc:
        raise CpeditError(f"{path}: {exc}", path=os.fspath(path), reason="too_large") from None
