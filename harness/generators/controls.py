"""Control inputs for local pipelines: finding an input's file by its hash, preparing images
(resize, mask, canny edges) and deciding which pipeline mode a request needs.

Requests carry a control input's hash, settings and the path it was planned from (the path is
left out of the cache key: it is no part of what an image depends on). The generator reads that
path; when it is gone (a store moved to another machine), the file is found by hash through
:func:`register_inputs` or among the image files under the built-in suites folder and the
folders in ``$HARNESS_CONTROL_DIRS``.

Only numpy and PIL here: importing this module does not import torch.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

CONTROL_PARAMS = {
    "init_image": {"strength"},
    "mask": {"overlay"},
    "control_image": {"type", "conditioning_scale", "low_threshold", "high_threshold"},
    "reference_image": {"scale"},
    "edit_image": {"image_guidance"},
}
"""Settings each control kind accepts (all of them go into the cache key)."""

CONTROL_TYPES = ("canny", "depth", "pose", "image")
"""control_image types: canny edges are computed here from the given photo; the others are
used as given (a depth or pose map made elsewhere)."""

CANNY_DEFAULTS = {"low_threshold": 100, "high_threshold": 200}
"""cv2.Canny's usual thresholds (as in diffusers' ControlNet examples)."""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")

_registry: dict[str, str] = {}
"""sha256 -> path of control input files seen in this process."""
_searched: set[str] = set()


def register_inputs(controls: Iterable[Any]) -> None:
    """Remember where control inputs live: objects with ``sha256`` and ``path`` (suite
    :class:`~harness.types.Control`), or (sha256, path) pairs."""
    for c in controls:
        sha, path = (c.sha256, c.path) if hasattr(c, "sha256") else c
        _registry[str(sha)] = str(path)


def search_dirs() -> list[Path]:
    """Folders searched for an input file not registered: the built-in suites, then
    ``$HARNESS_CONTROL_DIRS`` (``os.pathsep``-separated)."""
    dirs = [Path(__file__).resolve().parents[1] / "data" / "suites"]
    extra = os.environ.get("HARNESS_CONTROL_DIRS", "")
    dirs += [Path(p).expanduser() for p in extra.split(os.pathsep) if p]
    return dirs


def file_sha256(path: str | Path) -> str:
    """sha256 hex digest of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def find_input(sha256: str, planned: str | None = None) -> Path:
    """Path of the control input file with this content hash (``planned``: the path the request
    was planned from, used when it still holds those bytes).

    Raises:
        FileNotFoundError: with the folders searched and how to register more.
    """
    if planned and Path(planned).is_file() and (
            _registry.get(sha256) == planned or file_sha256(Path(planned)) == sha256):
        _registry[sha256] = planned
        return Path(planned)
    path = _registry.get(sha256)
    if path and Path(path).is_file():
        return Path(path)
    for d in search_dirs():
        key = str(d)
        if key in _searched or not d.is_dir():
            continue
        _searched.add(key)
        for p in sorted(d.rglob("*")):
            if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
                _registry.setdefault(file_sha256(p), str(p))
        if sha256 in _registry:
            return Path(_registry[sha256])
    raise FileNotFoundError(
        f"no control input file with sha256 {sha256[:16]}... is known to this process: it was "
        f"not registered (harness.generators.controls.register_inputs) and is not under "
        f"{', '.join(str(d) for d in search_dirs())}. Put the suite's input folder in "
        "$HARNESS_CONTROL_DIRS.")


def request_mode(controls: Iterable[Mapping[str, Any]]) -> tuple[str, bool, bool]:
    """(task, controlnet, ip_adapter) a request needs: task is text2img, img2img, inpaint or
    edit (an instruction edit of ``edit_image``, run by an editing pipeline)."""
    kinds = {c["kind"] for c in controls}
    if "edit_image" in kinds:
        if kinds - {"edit_image"}:
            raise ValueError("an edit_image (instruction edit) takes no other control input "
                             f"(got {', '.join(sorted(kinds - {'edit_image'}))})")
        return "edit", False, False
    if "mask" in kinds and "init_image" not in kinds:
        raise ValueError("a mask needs an init_image (the picture to inpaint)")
    task = "inpaint" if "mask" in kinds else "img2img" if "init_image" in kinds else "text2img"
    return task, "control_image" in kinds, "reference_image" in kinds


def check_params(kind: str, params: Mapping[str, Any]) -> list[str]:
    """Problems with one control's settings (empty when fine)."""
    problems = []
    for k in params:
        if k not in CONTROL_PARAMS.get(kind, ()):
            problems.append(f"{kind} takes no setting {k!r} (valid: "
                            f"{', '.join(sorted(CONTROL_PARAMS.get(kind, ()))) or 'none'})")
    for k in ("strength", "conditioning_scale", "scale", "image_guidance"):
        v = params.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            problems.append(f"{kind}.{k} must be a number, got {v!r}")
    s = params.get("strength")
    if isinstance(s, (int, float)) and not 0 < s <= 1:
        problems.append(f"{kind}.strength must be in (0, 1], got {s}")
    t = params.get("type")
    if t is not None and t not in CONTROL_TYPES:
        problems.append(f"{kind}.type {t!r} is not one of {', '.join(CONTROL_TYPES)}")
    return problems


def _load(path: str | Path, mode: str, width: int, height: int, resample: str) -> Any:
    """The file as a PIL image in ``mode``, resized to the request's size when it differs."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert(mode)
        if im.size != (width, height):
            im = im.resize((width, height), Image.Resampling[resample])
        return im


def load_rgb(path: str | Path, width: int, height: int) -> Any:
    """The file as an RGB PIL image of the request's size (bicubic resize when it differs)."""
    return _load(path, "RGB", width, height, "BICUBIC")


def load_mask(path: str | Path, width: int, height: int) -> Any:
    """A mask as a binary L image (white = repaint), nearest-neighbour resized."""
    return _load(path, "L", width, height, "NEAREST").point(lambda v: 255 if v >= 128 else 0)


def overlay(generated: Any, init: Any, mask: Any) -> Any:
    """Paste the init image's pixels back outside the mask (mask white = generated)."""
    from PIL import Image

    return Image.composite(generated.convert("RGB"), init, mask)


def canny(image: Any, low_threshold: float = 100, high_threshold: float = 200) -> Any:
    """Canny edges of a PIL image as a white-on-black RGB image, in numpy.

    Follows cv2.Canny's defaults (3x3 Sobel, L1 gradient magnitude, no pre-blur, thresholds on
    the 0-255 scale, 8-connected hysteresis), so thresholds carry over from diffusers'
    ControlNet examples; it is not bit-identical to OpenCV.
    """
    import numpy as np
    from PIL import Image

    g = np.asarray(image.convert("L"), dtype=np.float64)
    p = np.pad(g, 1, mode="edge")
    # Sobel (cross-correlation, as cv2): x to the right, y downwards.
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    mag = np.abs(gx) + np.abs(gy)
    # Non-maximum suppression along the gradient direction, quantised to 0/45/90/135 degrees.
    angle = (np.rad2deg(np.arctan2(gy, gx)) + 180.0) % 180.0
    m = np.pad(mag, 1)
    h, w = mag.shape

    def shifted(dy: int, dx: int) -> Any:
        return m[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]

    keep = np.zeros_like(mag, dtype=bool)
    for lo, hi, (dy, dx) in ((0, 22.5, (0, 1)), (157.5, 180.1, (0, 1)), (22.5, 67.5, (1, 1)),
                             (67.5, 112.5, (1, 0)), (112.5, 157.5, (1, -1))):
        sel = (angle >= lo) & (angle < hi)
        a, b = shifted(dy, dx), shifted(-dy, -dx)
        keep |= sel & (mag > a) & (mag >= b)
    nms = np.where(keep, mag, 0.0)
    strong = nms > high_threshold
    weak = nms > low_threshold
    # Hysteresis: grow strong edges through 8-connected weak pixels until nothing changes.
    edges = strong
    while True:
        e = np.pad(edges, 1)
        grown = np.zeros_like(edges)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                grown |= e[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
        grown &= weak
        grown |= edges
        if (grown == edges).all():
            break
        edges = grown
    out = (edges * 255).astype(np.uint8)
    return Image.fromarray(np.stack([out] * 3, axis=-1))


def control_image(path: str | Path, params: Mapping[str, Any], width: int, height: int) -> Any:
    """The image given to a ControlNet: canny edges of the source photo for ``type: canny``,
    the file as given (a depth or pose map) otherwise; resized to the request size first."""
    im = load_rgb(path, width, height)
    if params.get("type", "image") == "canny":
        return canny(im, float(params.get("low_threshold", CANNY_DEFAULTS["low_threshold"])),
                     float(params.get("high_threshold", CANNY_DEFAULTS["high_threshold"])))
    return im


def edit_source_png(control: Mapping[str, Any], width: int, height: int) -> bytes:
    """PNG bytes of an ``edit_image`` control's file at the request's size (what the closed
    APIs' edit inputs are sent)."""
    import io

    buf = io.BytesIO()
    load_rgb(find_input(str(control["sha256"]), control.get("path")), width, height).save(buf, "PNG")
    return buf.getvalue()


def edit_data_uri(control: Mapping[str, Any], width: int, height: int) -> str:
    """An ``edit_image`` source as a ``data:image/png;base64,...`` URI (fal, Replicate)."""
    import base64

    png = edit_source_png(control, width, height)
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def add_edit_input(inp: dict[str, Any], controls: Iterable[Mapping[str, Any]], field: str,
                   width: int, height: int) -> None:
    """Put an ``edit_image`` control into a provider input under ``field`` as a data URI;
    a field ending in ``[]`` (``image_urls[]``) takes a one-element list."""
    edit = next((c for c in controls if c.get("kind") == "edit_image"), None)
    if edit is not None:
        uri = edit_data_uri(edit, width, height)
        inp[field.removesuffix("[]")] = [uri] if field.endswith("[]") else uri

