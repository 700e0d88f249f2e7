"""Bradley-Terry fit plus a 1,000-resample bootstrap on 100,000 simulated votes among 10 models.

Times ``preference_table`` end to end (validation, aggregation, the full-data fit, 1,000 bootstrap
fits and the tallies), best of ``repeat`` runs after a warm-up, and checks the fitted order
against the simulated strengths. Headline: seconds (target <= 10 on a 2-core CPU).
Usage: python benchmarks/preference_speed.py [n_votes] [n_models] [n_boot] [repeat]
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd

from harness.leaderboard.preference import preference_table

TARGET_S = 10.0


def simulate(n: int, k: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    theta = np.linspace(-1.5, 1.5, k)
    names = np.array([f"model_{i:02d}" for i in range(k)])
    left = rng.integers(0, k, n)
    right = (left + rng.integers(1, k, n)) % k
    p_left = 1.0 / (1.0 + np.exp(-(theta[left] - theta[right])))
    u = rng.random(n)
    choice = np.where(u < 0.08, "tie", np.where(u < 0.10, "both_bad",
                      np.where(rng.random(n) < p_left, "left", "right")))
    votes = pd.DataFrame(dict(left=names[left], right=names[right], choice=choice,
                              rater=[f"rater_{i % 50}" for i in range(n)],
                              prompt_id=[f"p{i % 2000}" for i in range(n)]))
    return votes, theta


def main() -> int:
    args = [int(a) for a in sys.argv[1:]]
    n, k, n_boot, repeat = (args + [100_000, 10, 1000, 3][len(args):])[:4]
    votes, theta = simulate(n, k)
    preference_table(votes.head(2000), n_boot=50)  # warm-up (imports, BLAS threads)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        table = preference_table(votes, n_boot=n_boot, seed=0)
        times.append(time.perf_counter() - t0)
    best = min(times)
    order_ok = list(table["model"]) == [f"model_{i:02d}" for i in range(k)][::-1]
    print(f"votes={n} models={k} resamples={n_boot} failed_resamples={table.attrs['failed_resamples']}")
    print(f"runs (s): {', '.join(f'{t:.3f}' for t in times)}; order recovered: {order_ok}")
    print(table[["model", "strength", "strength_lo", "strength_hi", "rating", "votes", "win_rate"]]
          .to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    ok = best <= TARGET_S and order_ok
    print(f"preference_bootstrap_seconds: {best:.3f} (target <= {TARGET_S:g}) {'ok' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
