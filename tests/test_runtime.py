"""The allocator settings: freed memory is reused instead of faulted in again, and the user's
own choice (environment) is left alone."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harness import runtime

PROBE = """
import ctypes, resource, sys
import numpy as np
# No transparent huge pages, so a fault is one 4 KiB page and the counts are comparable.
ctypes.CDLL(None).prctl(41, 1, 0, 0, 0)  # PR_SET_THP_DISABLE
from harness.runtime import tune_allocator
print(tune_allocator())
def churn():
    for _ in range(6):
        a = np.ones(16 << 20, np.float32)  # 64 MiB, written: every page touched
        del a
churn()  # the first allocation may fault in its pages either way
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
churn()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _probe(**env: str) -> tuple[str, int]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("MALLOC_") and k not in ("GLIBC_TUNABLES", "HARNESS_MALLOC")}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env}, check=True,
                         capture_output=True, text=True).stdout.splitlines()
    return out[0], int(out[1])


@pytest.mark.skipif(runtime._glibc() is None, reason="glibc's allocator only")
def test_freed_blocks_are_reused_not_faulted_in_again():
    state, faults = _probe()
    assert state.startswith("tuned: glibc mmap threshold 256 MiB")
    system_state, system_faults = _probe(HARNESS_MALLOC="system")
    assert system_state == "left alone: HARNESS_MALLOC=system"
    # 6 x 64 MiB of fresh pages: ~98,000 faults with glibc's defaults, a handful when reused.
    assert system_faults > 50_000
    assert faults < system_faults / 50


@pytest.mark.parametrize(("env", "why"), [
    ({"MALLOC_TRIM_THRESHOLD_": "1000"}, "MALLOC_TRIM_THRESHOLD_ is set"),
    ({"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=4096"}, "GLIBC_TUNABLES sets glibc.malloc"),
])
def test_users_allocator_settings_are_left_alone(env, why):
    state, _ = _probe(**env)
    assert state == f"left alone: {why}"


def test_idempotent(monkeypatch):
    monkeypatch.setattr(runtime, "_state", None)
    monkeypatch.setenv("HARNESS_MALLOC", "system")
    assert runtime.tune_allocator() == "left alone: HARNESS_MALLOC=system"
    monkeypatch.delenv("HARNESS_MALLOC")
    assert runtime.tune_allocator() == "left alone: HARNESS_MALLOC=system"  # decided once
