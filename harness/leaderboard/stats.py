"""The seeded bootstrap interval every leaderboard table uses (metric means, agreement shares).

A module of its own so that the table builder and the agreement functions share it without
importing each other.
"""

from __future__ import annotations

import math

import numpy as np

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


def mean_ci(values: np.ndarray, level: float, *, resamples: int = BOOTSTRAP_RESAMPLES,
            seed: int = BOOTSTRAP_SEED) -> tuple[float, float, float]:
    """Mean with a seeded percentile-bootstrap confidence interval.

    Resamples the values with replacement ``resamples`` times (numpy, vectorised, in chunks so
    memory stays bounded) and takes the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles
    of the resampled means. Deterministic: the same values and seed give the same interval.
    NaN bounds below 2 values (no spread to resample); all NaN for none. Drop missing values
    before calling.
    """
    v = np.asarray(values, dtype=float)
    n = len(v)
    if n == 0:
        return (math.nan, math.nan, math.nan)
    m = float(v.mean())
    if n < 2:
        return (m, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    step = max(1, 4_000_000 // n)  # resamples per chunk: at most ~4M indices (32 MB) at once
    for start in range(0, resamples, step):
        k = min(step, resamples - start)
        means[start : start + k] = v[rng.integers(0, n, size=(k, n))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return (m, float(lo), float(hi))
