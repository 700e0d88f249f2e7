"""Bradley-Terry fit plus a 1,000-resample bootstrap on 100,000 simulated votes among 10 models.

Times ``preference_table`` end to end (validation, aggregation, the full-data fit, 1,000 bootstrap
fits and the tallies), best of ``repeat`` runs after a warm-up, then checks what it timed against
an independent computation from the raw votes:

- ratings: Zermelo's minorise-maximise iteration (Hunter 2004) on a win matrix counted here from
  the vote rows (a tie or "both bad" vote is half a win each, the documented default; the prior
  as ``prior`` pseudo-wins and pseudo-losses against a virtual model at strength 1), turned into
  Elo points as 400 * log10(strength): every model's rating within 0.5 points;
- the scale: the odds a rating gap stands for, 10 ** (gap / 400), equal the odds of the fitted
  strengths, exp(difference), for the top and bottom model;
- the tally: every vote counted (the table's n_votes and each model's votes equal the rows);
- the fitted order equals the simulated order.

Headline: seconds (target <= 10 on a 2-core CPU), FAIL also when any check fails.
``--self-test`` runs a smaller case with injected faults (the Elo scale built on ln 2, "both bad"
votes dropped, half the resamples) and exits 0 only if every one prints FAIL.
Usage: python benchmarks/preference_speed.py [n_votes] [n_models] [n_boot] [repeat] [--self-test]
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd

from harness.leaderboard import preference
from harness.leaderboard.preference import preference_table

TARGET_S = 10.0
RATING_TOL = 0.5
"""Elo points the table may differ from the independent fit by."""


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


def reference_ratings(votes: pd.DataFrame, prior: float = 0.5, iters: int = 20000) -> pd.Series:
    """Elo ratings (mean 1000) by Zermelo's MM iteration on a win matrix counted from the rows."""
    names = sorted(set(votes["left"]) | set(votes["right"]))
    idx = {m: i for i, m in enumerate(names)}
    k = len(names)
    w = np.zeros((k + 1, k + 1))  # last row/column: the prior's virtual model, strength 1
    for left, right, choice in zip(votes["left"], votes["right"], votes["choice"], strict=True):
        i, j = idx[left], idx[right]
        if choice == "left":
            w[i, j] += 1
        elif choice == "right":
            w[j, i] += 1
        else:  # "tie" and "both_bad": half a win each
            w[i, j] += 0.5
            w[j, i] += 0.5
    w[:k, k] += prior
    w[k, :k] += prior
    games = w + w.T
    p = np.ones(k + 1)
    for _ in range(iters):
        new = w.sum(1) / (games / (p[:, None] + p[None, :])).sum(1)
        new[k] = 1.0  # the virtual model stays put
        if np.max(np.abs(np.log(new) - np.log(p))) < 1e-13:
            p = new
            break
        p = new
    theta = np.log(p[:k])
    return pd.Series(1000 + 400 / math.log(10) * (theta - theta.mean()), index=names)


def check(table: pd.DataFrame, votes: pd.DataFrame, theta: np.ndarray, n_boot: int) -> list[str]:
    """What is wrong with the timed table, judged from the raw votes (empty: nothing)."""
    problems = []
    t = table.set_index("model")
    ref = reference_ratings(votes)
    diff = (t["rating"] - ref.reindex(t.index)).abs().max()
    print(f"independent MM fit: largest rating difference {diff:.4f} Elo (tolerance {RATING_TOL})")
    if not diff <= RATING_TOL:
        problems.append(f"ratings differ from the independent fit by up to {diff:.2f} Elo")
    k = len(theta)
    order = [f"model_{i:02d}" for i in range(k)][::-1]
    # The convention itself: the odds a rating gap stands for (10 ** (gap / 400)) are the odds
    # of the fitted strengths (exp of their difference).
    gap = t.loc[order[0], "rating"] - t.loc[order[-1], "rating"]
    odds = 10 ** (gap / 400) / math.exp(t.loc[order[0], "strength"] - t.loc[order[-1], "strength"])
    print(f"odds of the top-bottom rating gap over the odds of their strengths: {odds:.6f} (1)")
    if not abs(odds - 1) <= 1e-6:
        problems.append(f"a {gap:.1f}-point gap is not the fitted odds (x{odds:.3f}): the Elo scale")
    counted = pd.concat([votes["left"], votes["right"]]).value_counts()
    if table.attrs.get("n_votes") != len(votes) or not (t["votes"] == counted.reindex(t.index)).all():
        problems.append(f"{table.attrs.get('n_votes')} of {len(votes)} votes counted in the fit")
    if list(t.index) != order:
        problems.append("fitted order differs from the simulated order")
    if table.attrs.get("n_boot") != n_boot or table.attrs.get("failed_resamples"):
        problems.append(f"bootstrap: {table.attrs.get('n_boot')} resamples of {n_boot} asked, "
                        f"{table.attrs.get('failed_resamples')} failed")
    return problems


def bench(n: int, k: int, n_boot: int, repeat: int, table_fn: Callable = preference_table) -> bool:
    """Time, check and print the headline; True when it is ok."""
    votes, theta = simulate(n, k)
    table_fn(votes.head(2000), n_boot=50)  # warm-up (imports, BLAS threads)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        table = table_fn(votes, n_boot=n_boot, seed=0)
        times.append(time.perf_counter() - t0)
    best = min(times)
    print(f"votes={n} models={k} resamples={n_boot} failed_resamples={table.attrs['failed_resamples']}")
    print(f"runs (s): {', '.join(f'{t:.3f}' for t in times)}")
    print(table[["model", "strength", "strength_lo", "strength_hi", "rating", "votes", "win_rate"]]
          .to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    problems = check(table, votes, theta, n_boot)
    for p in problems:
        print(f"check failed: {p}")
    ok = best <= TARGET_S and not problems
    print(f"preference_bootstrap_seconds: {best:.3f} (target <= {TARGET_S:g}) {'ok' if ok else 'FAIL'}")
    return ok


@contextlib.contextmanager
def _elo_on_ln2() -> Iterator[None]:
    saved = preference.ELO_SCALE
    preference.ELO_SCALE = 400.0 / math.log(2.0)
    try:
        yield
    finally:
        preference.ELO_SCALE = saved


FAULTS: dict[str, tuple[Callable[[], contextlib.AbstractContextManager], Callable]] = {
    "elo_scale_ln2": (_elo_on_ln2, preference_table),
    "both_bad_dropped": (contextlib.nullcontext,
                         lambda votes, **kw: preference_table(votes, both_bad="drop", **kw)),
    "half_the_resamples": (contextlib.nullcontext, lambda votes, n_boot=1000, **kw:
                           preference_table(votes, n_boot=n_boot // 2, **kw)),
}


def self_test(n: int = 20_000, k: int = 10, n_boot: int = 100) -> int:
    """Each fault must make the benchmark print FAIL; exit 0 only if all do."""
    print("== clean run (must print ok)")
    clean = bench(n, k, n_boot, 1)
    caught = []
    for name, (ctx, fn) in FAULTS.items():
        print(f"== fault {name}")
        with ctx():
            caught.append(not bench(n, k, n_boot, 1, fn))
        print(f"self-test {name}: {'FAIL (caught)' if caught[-1] else 'ok (NOT caught)'}")
    good = clean and all(caught)
    print(f"preference_speed self-test: {sum(caught)} of {len(caught)} faults caught, clean run "
          f"{'ok' if clean else 'FAIL'} {'ok' if good else 'FAIL'}")
    return 0 if good else 1


def main(argv: list[str]) -> int:
    if "--self-test" in argv:
        return self_test()
    args = [int(a) for a in argv]
    n, k, n_boot, repeat = (args + [100_000, 10, 1000, 3][len(args):])[:4]
    return 0 if bench(n, k, n_boot, repeat) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
