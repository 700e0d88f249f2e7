"""PIL's bicubic resize, bit for bit, as two matrix products (for a GPU).

FID-style metrics resize with PIL's bicubic filter (the clean-fid convention; the filter is
stored with every value). On a CPU, PIL does it. On a GPU the model outruns the CPU cores that
decode and resize (a 512 px PNG: ~4 ms to decode, ~3 ms to resize), so this module moves the
resize next to the model, with exactly PIL's arithmetic:

- the same filter (a = -0.5), support scaled by the downscaling factor, window bounds rounded
  and clipped as ``precompute_coeffs`` in Pillow's ``Resample.c``, weights normalised to sum 1;
- weights turned into 22-bit fixed-point integers, rounded half away from zero as PIL does;
- a horizontal pass then a vertical pass, each adding ``1 << 21``, shifting right by 22 and
  clipping to 0..255 (so the intermediate image is uint8, as in PIL).

Each pass is one float64 matrix product whose entries are integers: every product (< 2^31) and
every sum is exact in float64, so the result equals PIL's integer arithmetic whatever order the
hardware sums in. Tests compare every pixel with PIL for down- and upscaling and odd sizes.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np

PRECISION_BITS = 32 - 8 - 2
_A = -0.5
_SUPPORT = 2.0


def _bicubic(x: float) -> float:
    if x < 0.0:
        x = -x
    if x < 1.0:
        return ((_A + 2.0) * x - (_A + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * _A
    return 0.0


@lru_cache(maxsize=64)
def pil_bicubic_matrix(in_size: int, out_size: int) -> np.ndarray:
    """``(in_size, out_size)`` float64 matrix of PIL's fixed-point bicubic weights (integers):
    output pixel ``j`` = sum_i input[i] * M[i, j], before rounding and the 22-bit shift."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = _SUPPORT * filterscale
    ss = 1.0 / filterscale
    m = np.zeros((in_size, out_size), np.float64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)  # int() truncates toward zero, like C
        xmax = min(int(center + support + 0.5), in_size) - xmin
        w = [_bicubic((x + xmin - center + 0.5) * ss) for x in range(xmax)]
        ww = 0.0
        for v in w:  # summed in order, as PIL does
            ww += v
        for x, v in enumerate(w):
            k = v / ww if ww != 0.0 else v
            fixed = int(-0.5 + k * (1 << PRECISION_BITS)) if k < 0 else int(0.5 + k * (1 << PRECISION_BITS))
            m[xmin + x, xx] = fixed
    return m


def _pass(x: Any, matrix: Any) -> Any:
    """One pass over the last axis: (..., n_in) float64 -> (..., n_out) float64 in 0..255."""
    import torch

    acc = torch.matmul(x, matrix) + float(1 << (PRECISION_BITS - 1))
    return torch.floor(acc / float(1 << PRECISION_BITS)).clamp_(0.0, 255.0)


def horizontal_first(h: int, w: int, size: int) -> bool:
    """Which pass PIL runs first. Pillow 13 runs the vertical one first when the height shrinks
    by more than twice as many pixels as the width (older releases always start horizontally:
    :func:`verify` catches a Pillow that does otherwise)."""
    return not ((h - size) > 0 and (h - size) > (w - size) * 2)


def resize_bicubic(images: Any, size: int) -> Any:
    """PIL ``Image.resize((size, size), BICUBIC)`` of a batch: ``(N, H, W, C)`` uint8 torch
    tensor (any device) -> ``(N, size, size, C)`` uint8 on the same device, equal to PIL's
    output pixel for pixel."""
    import torch

    n, h, w, c = images.shape
    if (h, w) == (size, size):
        return images
    dev = images.device
    x = images.to(torch.float64)

    def horizontal(x: Any) -> Any:
        if w == size:
            return x
        mw = torch.from_numpy(pil_bicubic_matrix(w, size)).to(dev)
        return _pass(x.permute(0, 1, 3, 2), mw).permute(0, 1, 3, 2)

    def vertical(x: Any) -> Any:
        if h == size:
            return x
        mh = torch.from_numpy(pil_bicubic_matrix(h, size)).to(dev)
        return _pass(x.permute(0, 2, 3, 1), mh).permute(0, 3, 1, 2)

    x = vertical(horizontal(x)) if horizontal_first(h, w, size) else horizontal(vertical(x))
    return x.to(torch.uint8)


def verify(image: np.ndarray, size: int) -> bool:
    """Whether :func:`resize_bicubic` equals the installed PIL on this ``(H, W, 3)`` uint8
    image (checked once per input shape before a shape is resized on a device)."""
    import torch
    from PIL import Image

    want = np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC))
    got = resize_bicubic(torch.tensor(np.asarray(image))[None], size)[0].numpy()
    return bool(np.array_equal(want, got))


def chunk_for(h: int, w: int, size: int, budget_bytes: int = 1 << 30) -> int:
    """Images per :func:`resize_bicubic` call that keep its float64 buffers under the budget."""
    per_image = 8 * 3 * (h * w + h * size + size * size) * 2
    return max(1, math.floor(budget_bytes / per_image))


# -- the legacy FID resizes (clean-fid's modes) -----------------------------------------------------
#
# Published FID numbers come from three pipelines that resize differently (Parmar et al., "On
# Aliased Resizing and Surprising Subtleties in GAN Evaluation", 2022, the clean-fid paper):
#
# - clean: PIL bicubic on the uint8 image (with its antialiasing support), then quantised back
#   to uint8: :func:`resize_bicubic` above, or PIL itself on the CPU.
# - legacy_pytorch: pytorch-fid feeds the full-size image, scaled to [0, 1] floats, to the
#   network, which resizes with ``F.interpolate(mode="bilinear", align_corners=False)``: half-pixel
#   centres, the two nearest source pixels only (no antialiasing when shrinking), no quantisation.
# - legacy_tensorflow: the original TF FID code resizes inside the TF graph with TF1's
#   ``resize_bilinear`` (align_corners=False, half_pixel_centers=False): source coordinate
#   ``j * in / out``, neighbours clamped at the last pixel, no antialiasing, no quantisation.
#
# Both legacy resizes return float32 pixels on the 0..255 scale (what the network sees, before
# its own normalisation).

RESIZE_MODES = ("clean", "legacy_pytorch", "legacy_tensorflow")
"""FID resize modes, named as clean-fid names them."""


def resize_legacy_pytorch(image: np.ndarray, size: int) -> np.ndarray:
    """pytorch-fid's resize: ``(H, W, C)`` uint8 -> ``(size, size, C)`` float32 on 0..255, by
    ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)`` in float32."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1)[None]
    y = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return y[0].permute(1, 2, 0).contiguous().numpy()


def _tf1_axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TF1 ``resize_bilinear`` sampling along one axis: (lower index, upper index, weight of the
    upper) for each output pixel; source coordinate ``j * n_in / n_out``."""
    src = np.arange(n_out, dtype=np.float64) * (n_in / n_out)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    return np.minimum(lo, n_in - 1), hi, (src - lo).astype(np.float32)


def resize_legacy_tensorflow(image: np.ndarray, size: int) -> np.ndarray:
    """TF1 ``tf.image.resize_bilinear(align_corners=False)``, the original TF FID code's resize:
    ``(H, W, C)`` uint8 -> ``(size, size, C)`` float32 on 0..255 (interpolated in float32)."""
    x = np.asarray(image, dtype=np.float32)
    h, w = x.shape[:2]
    y0, y1, wy = _tf1_axis(h, size)
    x0, x1, wx = _tf1_axis(w, size)
    top = x[y0] + (x[y1] - x[y0]) * wy[:, None, None]
    out = top[:, x0] + (top[:, x1] - top[:, x0]) * wx[None, :, None]
    return out.astype(np.float32, copy=False)


def resize_for_mode(image: np.ndarray, size: int, mode: str) -> np.ndarray:
    """Resize an ``(H, W, 3)`` uint8 image as FID mode ``mode`` does: uint8 for ``clean`` (PIL
    bicubic), float32 on 0..255 for the legacy modes."""
    if mode == "clean":
        from PIL import Image

        if image.shape[:2] == (size, size):
            return np.asarray(image, dtype=np.uint8)
        img = Image.fromarray(np.asarray(image, dtype=np.uint8))
        return np.asarray(img.resize((size, size), Image.BICUBIC))
    if mode == "legacy_pytorch":
        return resize_legacy_pytorch(image, size)
    if mode == "legacy_tensorflow":
        return resize_legacy_tensorflow(image, size)
    raise ValueError(f"unknown resize mode {mode!r}; known: {', '.join(RESIZE_MODES)}")
