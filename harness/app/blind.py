"""Images as raters see them: re-encoded PNG on one canvas, nothing else carried over.

Whatever a generator wrote into its file (EXIF, PNG text chunks with the prompt or the model
name, C2PA manifests, ICC profiles) and whatever its size or aspect says about it, the bytes
sent to the browser are a fresh PNG of the pixels alone, letterboxed onto a canvas that is the
same for every image of a run.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

from harness.store.rows import Record

BACKGROUND = (24, 24, 24)
"""Letterbox colour (dark grey: neither image's own background)."""


def canvas_size(records: Iterable[Record], *, lo: int = 256, hi: int = 768) -> tuple[int, int]:
    """One square canvas per run: the largest image side, clamped to [lo, hi]."""
    sides = [max(int(r.width or 0), int(r.height or 0)) for r in records]
    side = max(sides, default=lo)
    return (min(hi, max(lo, side)),) * 2


def blind_png(data: bytes, canvas: tuple[int, int] = (512, 512), *,
              background: tuple[int, int, int] = BACKGROUND) -> bytes:
    """The image scaled to fit ``canvas`` (aspect kept), centred on it, as metadata-free PNG.

    Transparency is flattened onto the background; the result is always 8-bit RGB of exactly
    ``canvas`` pixels, so size, mode and aspect say nothing about the source."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as src:
        src.load()
        img = src.convert("RGBA")
    cw, ch = canvas
    scale = min(cw / img.width, ch / img.height)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    resample = Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BICUBIC
    img = img.resize(size, resample)
    # A new image has no info dict, so nothing (ICC, EXIF, text, dpi) can ride along into save().
    out = Image.new("RGB", canvas, background)
    out.paste(img, ((cw - size[0]) // 2, (ch - size[1]) // 2), img)
    buf = io.BytesIO()
    out.save(buf, format="PNG")
    return buf.getvalue()


def png_chunks(png: bytes) -> list[str]:
    """Chunk types of a PNG in file order (for checking what a file carries)."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    out, i = [], 8
    while i + 8 <= len(png):
        n = int.from_bytes(png[i:i + 4], "big")
        out.append(png[i + 4:i + 8].decode("latin-1"))
        i += 12 + n
    return out
