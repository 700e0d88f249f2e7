"""Content-addressed images: PNG files under ``images/ab/<sha256>.png``, named by their bytes.

Crash safety: an image is written to a temporary file, fsynced and renamed into place before
its record is inserted. A process killed at any point leaves at worst an image file without a
record (harmless: the same bytes get the same name on the next attempt), never a record
without its image or a half-written file under its final name.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

from harness.store.db import StoreBase, StoreError
from harness.types import sha256_hex

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def to_png(data: bytes) -> bytes:
    """PNG bytes as they are; any other image format re-encoded to PNG (no metadata)."""
    if data.startswith(PNG_MAGIC):
        return data
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception as e:  # noqa: BLE001 - PIL raises many types for bad bytes
        raise StoreError(f"image bytes are not a readable image ({e})") from e
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) of PNG bytes."""
    # The IHDR chunk sits at a fixed offset in every PNG: no need to decode the image.
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


class Images(StoreBase):
    """The image files of a store."""

    def image_path(self, sha: str) -> Path:
        """Where the image with this hash lies (whether or not it exists)."""
        return self.images_dir / sha[:2] / f"{sha}.png"

    def put_image(self, data: bytes) -> str:
        """Store image bytes (re-encoded to PNG if needed) under their sha256; return the hash."""
        png = to_png(data)
        sha = sha256_hex(png)
        path = self.image_path(sha)
        if path.exists() and path.stat().st_size == len(png):
            return sha
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".png", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(png)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return sha

    def read_image(self, sha: str) -> bytes:
        """The PNG bytes stored under this hash."""
        return self.image_path(sha).read_bytes()
