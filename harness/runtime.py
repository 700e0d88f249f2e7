"""Process-wide settings that make model code on the CPU faster.

glibc's allocator hands every block over its mmap threshold (128 KiB at first, rising to at most
32 MiB as such blocks are freed) straight to the kernel and back, and gives freed memory at the
top of its heaps back as soon as 128 KiB of it are free. A convolutional network's activations
are tens to hundreds of MiB per batch, so every batch then maps fresh pages and the kernel zeroes
each on first touch: EfficientNet-Lite0 features at batch 32 on a 2-core CPU took ~10,000 page
faults per image and 40% of their CPU time in the kernel (48 images/s; 96-102 with the settings
below, no faults). :func:`tune_allocator` raises both thresholds, so freed blocks stay in the
process and are reused by the next batch. The process keeps up to its peak working set (plus
up to 512 MiB of free heap) instead of returning it between batches.

The ``harness`` command, Ray workers and the benchmarks call it at start.
``HARNESS_MALLOC=system`` leaves the allocator alone, and so do explicit ``MALLOC_*_``
environment variables or glibc malloc tunables (they are the user's choice); other C libraries
(musl, macOS) are left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 256 << 20
"""Blocks above 256 MiB are still mapped on their own (and returned when freed)."""
TRIM_THRESHOLD = 512 << 20
"""Free memory at the top of a heap is returned to the kernel once it exceeds 512 MiB."""

_state: str | None = None


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - present in glibc only
        return libc
    except (OSError, AttributeError):
        return None


def _user_choice() -> str | None:
    """Why the allocator is left alone because of the environment, or None."""
    if os.environ.get("HARNESS_MALLOC", "").lower() == "system":
        return "HARNESS_MALLOC=system"
    for key in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_"):
        if key in os.environ:
            return f"{key} is set"
    if "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return "GLIBC_TUNABLES sets glibc.malloc"
    return None


def tune_allocator() -> str:
    """Keep freed memory in the process for reuse (see the module docs); idempotent. Returns what
    was done, for logs: ``"tuned: ..."`` or ``"left alone: <why>"``."""
    global _state
    if _state is not None:
        return _state
    why = _user_choice()
    libc = None if why else _glibc()
    if why is None and libc is None:
        why = "not glibc"
    if why is None:
        mallopt = libc.mallopt
        mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        # The order matters: setting either turns glibc's dynamic threshold off.
        if mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD):
            _state = (f"tuned: glibc mmap threshold {MMAP_THRESHOLD >> 20} MiB, "
                      f"trim threshold {TRIM_THRESHOLD >> 20} MiB")
        else:
            _state = "left alone: glibc refused mallopt"
    else:
        _state = f"left alone: {why}"
    log.debug("allocator %s", _state)
    return _state
