"""The documented conventions, pinned by hand-computed cases: the Elo scale (a 400-point gap is
10:1 odds) and how "both bad" votes count (a tie, or left out with both_bad="drop")."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from harness.leaderboard.preference import bradley_terry, preference_table, win_rate_matrix


def _votes(counts: dict[tuple[str, str, str], int]) -> pd.DataFrame:
    rows = [dict(left=a, right=b, choice=c, rater=f"r{i % 3}", prompt_id=f"p{i}")
            for (a, b, c), k in counts.items() for i in range(k)]
    return pd.DataFrame(rows)


def test_ten_to_one_odds_is_400_elo_points():
    # The plain MLE of two models with 100 wins to 10 is P(a beats b) = 10/11: odds 10:1.
    votes = _votes({("a", "b", "left"): 100, ("b", "a", "left"): 10})
    table = preference_table(votes, prior=0.0, n_boot=0).set_index("model")
    assert table.loc["a", "rating"] - table.loc["b", "rating"] == pytest.approx(400.0, abs=1e-6)
    assert table.loc["a", "strength"] - table.loc["b", "strength"] == pytest.approx(math.log(10), abs=1e-9)
    # Mean anchored at 1000 without a baseline; the baseline sits at 1000 with one.
    assert table.loc["a", "rating"] == pytest.approx(1200.0, abs=1e-6)
    based = preference_table(votes, prior=0.0, n_boot=0, baseline="b").set_index("model")
    assert based.loc["b", "rating"] == 1000.0
    assert based.loc["a", "rating"] == pytest.approx(1400.0, abs=1e-6)


def test_odds_compose_along_a_chain_and_100_to_1_is_800_points():
    # a:b at 10:1 and b:c at 10:1 with no a-c games: the MLE puts a 100:1 over c, 800 points.
    votes = _votes({("a", "b", "left"): 50, ("b", "a", "left"): 5,
                    ("b", "c", "left"): 50, ("c", "b", "left"): 5})
    r = preference_table(votes, prior=0.0, n_boot=0).set_index("model")["rating"]
    assert r["a"] - r["b"] == pytest.approx(400.0, abs=1e-6)
    assert r["a"] - r["c"] == pytest.approx(800.0, abs=1e-6)
    # 3:1 odds is 400 * log10(3) = 190.85 points
    three = preference_table(_votes({("a", "b", "left"): 30, ("b", "a", "left"): 10}), prior=0.0,
                             n_boot=0).set_index("model")["rating"]
    assert three["a"] - three["b"] == pytest.approx(400 * math.log10(3), abs=1e-6)


BOTH_BAD = {("a", "b", "left"): 2, ("b", "a", "left"): 1, ("a", "b", "both_bad"): 2}


def test_both_bad_counts_as_a_tie_by_default():
    # As a tie: half a win each, so a has 2 + 1 = 3 wins and b 1 + 1 = 2: odds 3:2.
    votes = _votes(BOTH_BAD)
    t = preference_table(votes, prior=0.0, n_boot=0).set_index("model")
    assert t.loc["a", "rating"] - t.loc["b", "rating"] == pytest.approx(400 * math.log10(1.5), abs=1e-6)
    assert t.loc["a", ["wins", "losses", "ties", "both_bad", "votes"]].tolist() == [2, 1, 0, 2, 5]
    assert t.loc["a", "win_rate"] == pytest.approx((2 + 0.5 * 2) / 5)
    assert win_rate_matrix(votes).loc["a", "b"] == pytest.approx(3 / 5)
    assert t.attrs["both_bad"] == "tie" and t.attrs["n_votes"] == 5


def test_both_bad_drop_leaves_them_out_of_the_fit_but_in_the_tally():
    votes = _votes(BOTH_BAD)
    t = preference_table(votes, prior=0.0, n_boot=0, both_bad="drop").set_index("model")
    assert t.loc["a", "rating"] - t.loc["b", "rating"] == pytest.approx(400 * math.log10(2), abs=1e-6)
    assert t.loc["a", "both_bad"] == 2 and t.loc["a", "votes"] == 5  # shown, not counted
    assert t.loc["a", "win_rate"] == pytest.approx(2 / 3)
    assert win_rate_matrix(votes, both_bad="drop").loc["a", "b"] == pytest.approx(2 / 3)
    assert t.attrs["n_votes"] == 3


def test_dropping_ties_drops_both_bad_too():
    # both_bad="tie" means "counted as a tie": with ties dropped, so are both-bad votes.
    votes = _votes({**BOTH_BAD, ("b", "a", "tie"): 4})
    s = bradley_terry(votes, prior=0.0, ties="drop")
    assert s["a"] - s["b"] == pytest.approx(math.log(2), abs=1e-9)
    assert s.attrs["n_votes"] == 3
    kept = bradley_terry(votes, prior=0.0)  # ties half: a 2 + 1 + 2 = 5, b 1 + 1 + 2 = 4
    assert kept["a"] - kept["b"] == pytest.approx(math.log(5 / 4), abs=1e-9)


def test_rating_interval_is_the_95_percent_percentile_bootstrap():
    # Two models, 1,200 wins to 800: a resample's strength gap is logit(K / n) with K binomial
    # (n = 2,000, p = 0.6), so the 95% percentile interval is the logit of the binomial's 2.5% and
    # 97.5% quantiles (a 90% interval would be 16% narrower).
    binom = pytest.importorskip("scipy.stats").binom
    n, p = 2000, 0.6
    votes = _votes({("a", "b", "left"): 1200, ("b", "a", "left"): 800})
    t = preference_table(votes, prior=0.0, n_boot=4000, seed=1, baseline="b").set_index("model")
    scale = 400 / math.log(10)

    def logit(x):
        return math.log(x / (1 - x))

    lo, hi = (1000 + scale * logit(binom.ppf(q, n, p) / n) for q in (0.025, 0.975))
    width = hi - lo
    assert t.loc["a", "rating"] == pytest.approx(1000 + scale * logit(p), abs=1e-6)
    assert t.loc["a", "rating_lo"] == pytest.approx(lo, abs=0.06 * width)
    assert t.loc["a", "rating_hi"] == pytest.approx(hi, abs=0.06 * width)
    assert (t.loc["a", "rating_hi"] - t.loc["a", "rating_lo"]) == pytest.approx(width, rel=0.06)
