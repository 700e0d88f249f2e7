"""Fast decoding of stored images.

The store keeps generated images as 8-bit RGB PNG files. libspng (through the optional
``imagecodecs`` package, in the ``fid`` and ``clip`` extras) decodes those 1.5-2x as fast as PIL,
to the same pixels: PNG is lossless, and tests compare every pixel against PIL. It also lets go of
the GIL while it decodes, so decoding threads never stall a model's Python code. Every other case
goes through PIL as before: other PNG kinds (grey, palette, alpha, 16-bit, interlaced), other
formats, images already decoded or held in memory, imagecodecs not installed, or a file libspng
rejects (PIL then decodes it, or raises the error that names the file).

``HARNESS_PNG_DECODER=pil`` turns the fast path off (benchmarks compare the two).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_RGB = 2
"""PNG colour type of truecolour without alpha."""

_decode: Any = None


def _decoder() -> Any:
    """imagecodecs' libspng decoder (bytes -> array), or False when missing or turned off."""
    global _decode
    if _decode is None:
        _decode = False
        if os.environ.get("HARNESS_PNG_DECODER", "").lower() != "pil":
            try:
                import imagecodecs
            except ImportError:
                pass
            else:
                if imagecodecs.SPNG.available:
                    _decode = imagecodecs.spng_decode
    return _decode


def decoder_name() -> str:
    """Which decoder reads 8-bit RGB PNGs in this process (``libspng`` or ``PIL``)."""
    return "libspng" if _decoder() else "PIL"


def _file_of(source: Any) -> str | None:
    """The file behind a path or a PIL image opened from a file and not decoded yet."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    # A PIL image whose tile list is empty has been decoded already: use its pixels.
    if getattr(source, "format", None) == "PNG" and getattr(source, "tile", None):
        name = getattr(source, "filename", "")
        return name or None
    return None


def png_rgb8(source: Any) -> np.ndarray | None:
    """The pixels of an 8-bit RGB, non-interlaced PNG file (a path, or a PIL image lazily opened
    from one) as an ``(H, W, 3)`` uint8 array decoded by libspng; None where that does not apply,
    and the caller decodes with PIL."""
    decode = _decoder()
    if not decode:
        return None
    path = _file_of(source)
    if path is None:
        return None
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    # Signature, then IHDR: width, height, bit depth (24), colour type (25), ..., interlace (28).
    if (len(data) < 33 or data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR"
            or data[24] != 8 or data[25] != _RGB or data[28] != 0):
        return None
    try:
        arr = decode(data)
    except Exception:  # libspng rejects the file: PIL decodes it or names the error
        return None
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        return None
    return arr
