"""Fréchet distance at d = 2048: the symmetric eigenvalue method vs scipy.linalg.sqrtm.

Covariances come from 5,000 x 2,048 correlated random "features" (a decaying spectrum, like real
CNN features). Prints each method's time and the relative difference of the distances; the
headline is harness's method time / sqrtm time (target <= 0.15).
Usage: python benchmarks/fid_speed.py [d] [n]
"""

from __future__ import annotations

import sys
import time

import numpy as np

from harness.metrics.fid import (
    feature_stats,
    frechet_distance,
    frechet_distance_sqrtm,
    trace_sqrt_product_eigvals,
)


def _features(rng: np.random.Generator, n: int, d: int, shift: float) -> np.ndarray:
    # Non-negative, correlated, with a power-law spectrum: post-ReLU pooled features look so.
    mix = rng.standard_normal((d, d)) * (np.arange(1, d + 1) ** -0.5)[:, None]
    return np.abs(rng.standard_normal((n, d)) @ mix + shift)


def _time(fn, repeat: int) -> tuple[float, float]:
    """Best of ``repeat`` runs (the least disturbed by other work on the machine) and the value."""
    times, value = [], 0.0
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return min(times), value


def main(d: int = 2048, n: int = 5000) -> int:
    rng = np.random.default_rng(0)
    mu1, s1 = feature_stats(_features(rng, n, d, 0.0))
    mu2, s2 = feature_stats(_features(rng, n, d, 0.1))
    print(f"d={d}, n={n} per set, float64")
    t_ours = t_ref = float("inf")
    v_ours = v_ref = 0.0
    for _ in range(2):  # interleaved, so both see the same machine load
        t, v_ours = _time(lambda: frechet_distance(mu1, s1, mu2, s2), 2)
        t_ours = min(t_ours, t)
        t, v_ref = _time(lambda: frechet_distance_sqrtm(mu1, s1, mu2, s2), 1)
        t_ref = min(t_ref, t)
    print(f"harness (Cholesky + eigvalsh of L^T S2 L): {t_ours:.3f} s  FD={v_ours:.10g}")
    print(f"scipy.linalg.sqrtm(S1 @ S2):               {t_ref:.3f} s  FD={v_ref:.10g}")
    diff = mu1 - mu2
    t_eig, tr = _time(lambda: trace_sqrt_product_eigvals(s1, s2), 1)
    v_eig = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr)
    print(f"general eigvals(S1 @ S2) (for reference):  {t_eig:.3f} s  FD={v_eig:.10g}")
    rel = abs(v_ours - v_ref) / abs(v_ref)
    print(f"relative difference vs sqrtm: harness {rel:.2e}, eigvals {abs(v_eig - v_ref) / abs(v_ref):.2e}")
    print(f"eigvals / sqrtm time: {t_eig / t_ref:.3f}")
    ratio = t_ours / t_ref
    ok = ratio <= 0.15 and rel <= 1e-6
    print(f"frechet_eig_time_ratio: {ratio:.3f} (target <= 0.15) {'ok' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(*(int(a) for a in sys.argv[1:3])))
