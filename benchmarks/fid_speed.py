"""Fréchet distance at d = 2048: the symmetric eigenvalue method vs scipy.linalg.sqrtm.

Covariances come from 5,000 x 2,048 correlated random "features" (a decaying spectrum, like real
CNN features). Prints each method's time and the relative difference of the distances; the
headline is harness's method time / sqrtm time (target <= 0.15), FAIL also when the timed distance
is more than 1e-6 (relative) from scipy's sqrtm route on the same statistics, or when it is not
symmetric in its two sets (the same check on the swapped pair).
``--self-test`` times a Fréchet distance with a known fault (diagonal covariances only: fast and
wrong) at d = 256 and exits 0 only if it prints FAIL while the real one's check passes.
Usage: python benchmarks/fid_speed.py [d] [n] [--self-test]
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


def bench(d: int = 2048, n: int = 5000, fd=frechet_distance) -> tuple[bool, list[str]]:
    """Time, check, print the headline; (ok, what the check found wrong)."""
    rng = np.random.default_rng(0)
    mu1, s1 = feature_stats(_features(rng, n, d, 0.0))
    mu2, s2 = feature_stats(_features(rng, n, d, 0.1))
    print(f"d={d}, n={n} per set, float64")
    t_ours = t_ref = float("inf")
    v_ours = v_ref = 0.0
    for _ in range(2):  # interleaved, so both see the same machine load
        t, v_ours = _time(lambda: fd(mu1, s1, mu2, s2), 2)
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
    problems = []
    if not rel <= 1e-6:
        problems.append(f"distance {v_ours:.10g} is {rel:.2e} (relative) from sqrtm's {v_ref:.10g}")
    swapped = fd(mu2, s2, mu1, s1)
    if not abs(swapped - v_ours) <= 1e-6 * abs(v_ref):
        problems.append(f"not symmetric: {v_ours:.10g} vs {swapped:.10g} with the sets swapped")
    for line in problems:
        print(f"check failed: {line}")
    ok = ratio <= 0.15 and not problems
    print(f"frechet_eig_time_ratio: {ratio:.3f} (target <= 0.15) {'ok' if ok else 'FAIL'}")
    return ok, problems


def diagonal_only(mu1, s1, mu2, s2) -> float:
    """The fault: the closed form for diagonal covariances, ignoring every correlation."""
    d1, d2 = np.clip(np.diag(s1), 0, None), np.clip(np.diag(s2), 0, None)
    return float(((mu1 - mu2) ** 2).sum() + d1.sum() + d2.sum() - 2 * np.sqrt(d1 * d2).sum())


def self_test(d: int = 256, n: int = 1000) -> int:
    """The real distance's check must pass (its time ratio at this small d is not judged) and
    the faulty one must print FAIL."""
    print("== clean run (the check must pass)")
    _, problems = bench(d, n)
    print("== fault diagonal_only")
    caught = not bench(d, n, diagonal_only)[0]
    print(f"self-test diagonal_only: {'FAIL (caught)' if caught else 'ok (NOT caught)'}")
    good = caught and not problems
    print(f"fid_speed self-test: {int(caught)} of 1 faults caught, clean check "
          f"{'ok' if not problems else 'FAIL'} {'ok' if good else 'FAIL'}")
    return 0 if good else 1


def main(argv: list[str]) -> int:
    if "--self-test" in argv:
        return self_test()
    return 0 if bench(*(int(a) for a in argv[:2]))[0] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
