"""Preference statistics on pairwise votes, checked against independent references and simulations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from harness.leaderboard.preference import (
    ELO_SCALE,
    bradley_terry,
    by_tag,
    position_bias,
    preference_table,
    summarise,
    votes_needed,
    votes_per_pair,
    win_rate_matrix,
)

COLS = ["left", "right", "choice", "rater", "prompt_id", "tags"]


def _votes(rows: list[tuple]) -> pd.DataFrame:
    """rows of (left, right, choice[, tags])."""
    out = []
    for i, r in enumerate(rows):
        tags = list(r[3]) if len(r) > 3 else []
        out.append(dict(left=r[0], right=r[1], choice=r[2], rater=f"r{i % 3}", prompt_id=f"p{i}", tags=tags))
    return pd.DataFrame(out, columns=COLS)


def _simulate(rng, theta, n, *, tie_rate=0.0, left_bias=0.0) -> pd.DataFrame:
    """Votes among models m0..m{k-1} with true log-strengths theta; left_bias adds to the left logit."""
    k = len(theta)
    names = np.array([f"m{i}" for i in range(k)])
    left = rng.integers(0, k, n)
    right = (left + rng.integers(1, k, n)) % k
    p_left = 1.0 / (1.0 + np.exp(-(theta[left] - theta[right] + left_bias)))
    choice = np.where(rng.random(n) < p_left, "left", "right")
    choice = np.where(rng.random(n) < tie_rate, "tie", choice)
    return pd.DataFrame(dict(left=names[left], right=names[right], choice=choice, rater="r",
                             prompt_id=[f"p{i}" for i in range(n)]))


def _reference_bt(votes: pd.DataFrame, models: list[str], prior: float) -> np.ndarray:
    """Independent fit: direct maximisation of the pairwise log-likelihood with scipy (BFGS)."""
    minimize = pytest.importorskip("scipy.optimize").minimize
    idx = {m: i for i, m in enumerate(models)}
    k = len(models)
    wins = np.zeros((k, k))
    for left, right, choice in votes[["left", "right", "choice"]].itertuples(index=False):
        i, j = idx[left], idx[right]
        if choice == "left":
            wins[i, j] += 1
        elif choice == "right":
            wins[j, i] += 1
        else:
            wins[i, j] += 0.5
            wins[j, i] += 0.5

    def nll(free):
        # prior > 0: all k free, virtual model at 0; prior == 0: last model pinned at 0.
        th = free if prior > 0 else np.append(free, 0.0)
        total = 0.0
        for i in range(k):
            for j in range(k):
                if wins[i, j]:
                    total += wins[i, j] * math.log1p(math.exp(-(th[i] - th[j])))
            total += prior * (math.log1p(math.exp(-th[i])) + math.log1p(math.exp(th[i])))
        return total

    x0 = np.zeros(k if prior > 0 else k - 1)
    res = minimize(nll, x0, method="BFGS", options={"gtol": 1e-9})
    th = res.x if prior > 0 else np.append(res.x, 0.0)
    return th - th.mean()


# -- Bradley-Terry --------------------------------------------------------------------------


@pytest.mark.parametrize("prior", [0.5, 0.0])
def test_bt_matches_direct_likelihood_maximisation(prior):
    rng = np.random.default_rng(3)
    votes = _simulate(rng, np.array([0.8, 0.2, 0.0, -0.4, -1.0]), 600, tie_rate=0.15)
    got = bradley_terry(votes, prior=prior)
    ref = _reference_bt(votes, list(got.index), prior)
    np.testing.assert_allclose(got.to_numpy(), ref, atol=1e-3)
    assert abs(got.sum()) < 1e-9


def _zermelo(votes: pd.DataFrame, models: list[str], prior: float, iters: int = 20000) -> np.ndarray:
    """Independent fit by Zermelo's / Hunter's MM iterations (no Newton, no scipy).

    p_i <- (W_i + prior) / (sum_j N_ij / (p_i + p_j) + 2 prior / (p_i + 1)): the prior is ``prior``
    wins and ``prior`` losses against a virtual model of strength 1 (log-strength 0).
    """
    idx = {m: i for i, m in enumerate(models)}
    k = len(models)
    w = np.zeros((k, k))
    for left, right, choice in votes[["left", "right", "choice"]].itertuples(index=False):
        i, j = idx[left], idx[right]
        credit = {"left": (1.0, 0.0), "right": (0.0, 1.0)}.get(choice, (0.5, 0.5))
        w[i, j] += credit[0]
        w[j, i] += credit[1]
    n = w + w.T
    p = np.ones(k)
    for _ in range(iters):
        new = (w.sum(1) + prior) / ((n / (p[:, None] + p[None, :])).sum(1) + 2 * prior / (p + 1))
        new = new / np.exp(np.log(new).mean()) if prior == 0 else new
        if np.abs(new - p).max() < 1e-13:
            p = new
            break
        p = new
    th = np.log(p)
    return th - th.mean()


@pytest.mark.parametrize("prior", [0.5, 0.0])
def test_bt_matches_zermelo_mm_iterations(prior):
    rng = np.random.default_rng(21)
    votes = _simulate(rng, np.array([1.0, 0.3, 0.1, -0.2, -0.6, -0.9]), 900, tie_rate=0.1)
    got = bradley_terry(votes, prior=prior)
    np.testing.assert_allclose(got.to_numpy(), _zermelo(votes, list(got.index), prior), atol=1e-3)


def test_summarise_bundles_every_table_with_one_set_of_settings():
    votes = _votes([("a", "b", "left", ["x"])] * 5 + [("b", "a", "left", ["y"])] * 2
                   + [("b", "c", "both_bad", ["x"])] * 3 + [("c", "b", "left", ["y"])] * 2)
    s = summarise(votes, models=["a", "b", "c", "refuser"], baseline="b", n_boot=200, seed=3)
    assert list(s.table["model"])[-1] == "refuser" and s.table.set_index("model").loc["b", "rating"] == 1000
    assert s.n_votes == 12 and s.reason == "" and s.settings["baseline"] == "b"
    assert s.never_compared() == [("a", "c")]  # refuser has no votes at all: not a missing pair
    assert s.win_rates.shape == (4, 4) and len(s.pairs) == 6 and s.position["n"] == 9
    assert set(s.tags["tag"]) == {"x", "y"} and len(s.needed) == 2
    dropped = summarise(votes, both_bad="drop", n_boot=0)
    assert dropped.table.set_index("model").loc["c", "both_bad"] == 3  # counted in the tally...
    assert dropped.win_rates.loc["b", "c"] == 0.0  # ...but not in the fit or the win rates
    empty = summarise(pd.DataFrame(columns=COLS), models=["a", "b"])
    assert empty.reason == "no votes" and empty.never_compared() == []


def test_bt_recovers_order_from_simulated_votes():
    rng = np.random.default_rng(7)
    theta = np.array([1.2, 0.6, 0.0, -0.5, -1.3])
    for tie_rate in (0.0, 0.2):
        got = bradley_terry(_simulate(rng, theta, 5000, tie_rate=tie_rate))
        assert list(got.sort_values(ascending=False).index) == ["m0", "m1", "m2", "m3", "m4"]
    # without ties the values come back too (random ties pull strengths together, as they should)
    got = bradley_terry(_simulate(rng, theta, 5000))
    np.testing.assert_allclose(got.to_numpy(), theta - theta.mean(), atol=0.1)


def test_ties_count_half():
    # a beats b once and ties once: 1.5 wins to 0.5, so odds 3 and win rate 0.75.
    votes = _votes([("a", "b", "left"), ("b", "a", "tie")])
    assert win_rate_matrix(votes).loc["a", "b"] == 0.75
    bt = bradley_terry(votes, prior=0.0)
    assert bt["a"] - bt["b"] == pytest.approx(math.log(3), abs=1e-8)
    t = preference_table(votes, n_boot=0).set_index("model")
    assert t.loc["a", "win_rate"] == 0.75 and t.loc["a", "ties"] == 1 and t.loc["a", "wins"] == 1
    # both_bad counts as a tie by default, and can be dropped
    bb = _votes([("a", "b", "left"), ("b", "a", "both_bad")])
    assert win_rate_matrix(bb).loc["a", "b"] == 0.75
    assert win_rate_matrix(bb, both_bad="drop").loc["a", "b"] == 1.0
    assert win_rate_matrix(votes, ties="drop").loc["a", "b"] == 1.0


# -- leaderboard table and bootstrap -----------------------------------------------------------


def test_bootstrap_ci_coverage_over_repeated_simulations():
    theta = np.array([0.9, 0.4, 0.0, -0.3, -1.0])
    truth = theta - theta.mean()
    rng = np.random.default_rng(11)
    hits = total = 0
    for sim in range(100):
        t = preference_table(_simulate(rng, theta, 2000), n_boot=200, seed=sim).set_index("model")
        t = t.loc[[f"m{i}" for i in range(5)]]
        hits += int(((t["strength_lo"] <= truth) & (truth <= t["strength_hi"])).sum())
        total += 5
    assert 0.88 <= hits / total <= 0.99, hits / total


def test_table_is_deterministic_with_seed_and_anchors_baseline():
    votes = _simulate(np.random.default_rng(5), np.array([0.5, 0.0, -0.5]), 800, tie_rate=0.1)
    a = preference_table(votes, n_boot=300, seed=42)
    b = preference_table(votes, n_boot=300, seed=42)
    c = preference_table(votes, n_boot=300, seed=43)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["strength_lo"], c["strength_lo"])
    # mean anchor: ratings average 1000; ELO scale 400/ln10
    assert a["rating"].mean() == pytest.approx(1000.0)
    s = a.set_index("model")
    assert s.loc["m0", "rating"] - s.loc["m2", "rating"] == pytest.approx(
        ELO_SCALE * (s.loc["m0", "strength"] - s.loc["m2", "strength"]))
    based = preference_table(votes, baseline="m1", n_boot=300).set_index("model")
    assert based.loc["m1", ["rating", "rating_lo", "rating_hi"]].tolist() == [1000.0] * 3
    assert based.loc["m0", "rating_lo"] < based.loc["m0", "rating"] < based.loc["m0", "rating_hi"]
    assert list(a["model"]) == ["m0", "m1", "m2"]  # sorted best first
    assert a.attrs["seed"] == 42 and a.attrs["n_boot"] == 300 and a.attrs["failed_resamples"] == 0


def test_unknown_baseline_suggests_names():
    votes = _votes([("alpha", "beta", "left")])
    with pytest.raises(ValueError, match="did you mean"):
        preference_table(votes, baseline="alpah", n_boot=0)


@pytest.mark.parametrize("rows,match", [
    ([("a", "b", "win")], "not one of"),
    ([("a", "a", "left")], "compared with itself"),
])
def test_bad_votes_raise(rows, match):
    with pytest.raises(ValueError, match=match):
        bradley_terry(_votes(rows))


def test_missing_column_raises():
    with pytest.raises(ValueError, match="lacks column"):
        bradley_terry(pd.DataFrame({"left": ["a"], "right": ["b"]}))


# -- descriptive tables -----------------------------------------------------------------------


def test_position_bias_recovered_from_simulated_left_bias():
    rng = np.random.default_rng(2)
    votes = _simulate(rng, np.zeros(4), 20000, left_bias=0.4)
    pb = position_bias(votes)
    expected = 1 / (1 + math.exp(-0.4))
    assert pb["lo"] <= expected <= pb["hi"]
    assert pb["share_left"] == pytest.approx(expected, abs=0.015)
    assert pb["p_value"] < 1e-6
    fair = position_bias(_simulate(rng, np.zeros(4), 4000))
    assert fair["lo"] <= 0.5 <= fair["hi"]


def test_position_bias_wilson_against_hand_computation():
    votes = _votes([("a", "b", "left")] * 8 + [("a", "b", "right")] * 2)
    pb = position_bias(votes)
    z = 1.959963984540054
    p, n = 0.8, 10
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert (pb["lo"], pb["hi"]) == pytest.approx((centre - half, centre + half))


def test_votes_per_pair_and_never_compared_pair():
    votes = _votes([("a", "b", "left"), ("b", "a", "left"), ("c", "b", "tie"), ("b", "c", "both_bad")])
    vp = votes_per_pair(votes).set_index(["model_a", "model_b"])
    assert vp.loc[("a", "b")].to_dict() == dict(votes=2, a_wins=1, b_wins=1, ties=0, both_bad=0, a_left=1)
    assert vp.loc[("b", "c"), "ties"] == 1 and vp.loc[("b", "c"), "both_bad"] == 1
    assert vp.loc[("a", "c"), "votes"] == 0
    wr = win_rate_matrix(votes)
    assert np.isnan(wr.loc["a", "c"]) and np.isnan(wr.loc["a", "a"])
    bt = bradley_terry(votes)
    assert np.isfinite(bt).all()  # a and c are linked through b


def test_by_tag_strength_and_win_rate():
    votes = _votes([("a", "b", "left", ["text"])] * 6 + [("a", "b", "right", ["faces"])] * 6
                   + [("b", "a", "tie", ["text", "faces"])] * 2)
    wr = by_tag(votes, stat="win_rate").set_index(["tag", "model"])
    assert wr.loc[("text", "a"), "value"] == pytest.approx(7 / 8)
    assert wr.loc[("faces", "a"), "value"] == pytest.approx(1 / 8)
    st = by_tag(votes).set_index(["tag", "model"])
    assert st.loc[("text", "a"), "value"] > 0 > st.loc[("faces", "a"), "value"]
    few = by_tag(votes, min_votes=100)
    assert few["value"].isna().all() and few["reason"].str.contains("fewer").all()
    assert by_tag(votes.drop(columns="tags")).attrs["reason"] == "votes have no tags column"


def test_votes_needed_follows_the_documented_approximation():
    rng = np.random.default_rng(9)
    votes = _simulate(rng, np.array([0.3, 0.25, -0.6]), 600)
    vn = votes_needed(votes, n_boot=400)
    assert list(vn["upper"]) == list(bradley_terry(votes).sort_values(ascending=False).index[:-1])
    for r in vn.itertuples():
        if r.separated:
            assert r.more_votes == 0
        else:
            assert r.votes_needed == pytest.approx(max(600, 600 * (r.half_width / r.gap) ** 2))
    assert (vn["more_votes"] >= 0).all()
    assert not vn.iloc[0]["separated"] and vn.iloc[0]["more_votes"] > 0  # 0.05 apart: not yet


# -- edge cases -------------------------------------------------------------------------------


def test_no_votes():
    empty = pd.DataFrame(columns=COLS)
    bt = bradley_terry(empty)
    assert bt.empty and bt.attrs["reason"] == "no votes"
    t = preference_table(empty, models=["a", "b"])
    assert t["strength"].isna().all() and (t["reason"] == "no votes").all()
    assert t["win_rate"].isna().all() and (t["votes"] == 0).all()
    assert win_rate_matrix(empty).attrs["reason"] == "no votes"
    assert position_bias(empty)["reason"] == "no votes"
    assert votes_per_pair(empty).empty
    assert by_tag(empty).empty
    assert votes_needed(empty).empty and votes_needed(empty).attrs["reason"] == "no votes"


def test_one_model():
    empty = pd.DataFrame(columns=COLS)
    t = preference_table(empty, models=["solo"])
    assert len(t) == 1 and np.isnan(t["strength"].iloc[0]) and t["reason"].iloc[0] == "no votes"
    assert votes_per_pair(empty, models=["solo"]).attrs["reason"] == "no votes"
    assert win_rate_matrix(empty, models=["solo"]).shape == (1, 1)


def test_model_only_in_refused_comparisons_is_nan_with_reason():
    votes = _votes([("a", "b", "left"), ("b", "a", "right"), ("a", "b", "right")])
    t = preference_table(votes, models=["a", "b", "refuser"], n_boot=100).set_index("model")
    assert np.isnan(t.loc["refuser", "strength"]) and t.loc["refuser", "reason"] == "no votes"
    assert t.loc["a", "strength"] == pytest.approx(-t.loc["b", "strength"])  # centred over models with votes
    assert np.isfinite(t.loc[["a", "b"], ["strength_lo", "strength_hi", "rating"]].to_numpy()).all()
    with pytest.raises(ValueError, match="not in models"):
        bradley_terry(votes, models=["a"])


def test_all_ties():
    votes = _votes([("a", "b", "tie"), ("b", "c", "tie"), ("c", "a", "both_bad")] * 5)
    t = preference_table(votes, n_boot=200)
    np.testing.assert_allclose(t["strength"], 0.0, atol=1e-9)
    assert (t["win_rate"] == 0.5).all() and (t["rating"] == 1000).all()
    assert position_bias(votes)["reason"] == "no decisive votes"
    vn = votes_needed(votes, n_boot=200)
    assert np.isinf(vn["more_votes"]).all() and not vn["separated"].any()
    # only-tie votes dropped: nothing left to fit
    assert preference_table(votes, ties="drop", n_boot=10)["reason"].eq("no votes").all()


def test_model_that_never_wins_and_disconnected_groups():
    votes = _votes([("a", "b", "left")] * 5 + [("c", "d", "left")] * 3 + [("d", "c", "left")])
    bt = bradley_terry(votes)  # prior keeps b (never won) finite
    assert np.isfinite(bt).all() and bt["a"] > bt["b"]
    mle = bradley_terry(votes, prior=0.0)
    assert mle.isna().all() and "strongly connected" in mle.attrs["reason"]
    t = preference_table(votes, n_boot=50).set_index("model")
    assert t.loc[["c", "d"], "reason"].str.contains("prior only").all()


def test_plain_mle_bootstrap_reports_failed_resamples_instead_of_raising():
    # a-b-c chain with few votes: many resamples lose a link, so the MLE (prior=0) does not exist.
    votes = _votes([("a", "b", "left"), ("b", "a", "left"), ("b", "c", "left"), ("c", "b", "left")])
    t = preference_table(votes, prior=0.0, n_boot=200)
    assert np.isfinite(t["strength"]).all()
    assert 0 < t.attrs["failed_resamples"] < 200


@pytest.mark.parametrize("k,n", [(8, 10), (5, 10), (0, 3), (5030, 10000), (13, 40)])
def test_position_bias_p_value_matches_scipy(k, n):
    binomtest = pytest.importorskip("scipy.stats").binomtest
    votes = _votes([("a", "b", "left")] * k + [("a", "b", "right")] * (n - k))
    assert position_bias(votes)["p_value"] == pytest.approx(binomtest(k, n, 0.5).pvalue, rel=1e-6)


def test_components_of_the_win_graph():
    from harness.leaderboard.preference import connected_components

    w = np.zeros((5, 5))
    w[0, 1] = w[1, 2] = w[2, 0] = 1  # a 3-cycle: strongly connected
    w[3, 4] = 1  # 3 beats 4 only, and no link to the cycle
    k, labels = connected_components(w, strong=False)
    assert k == 2 and len(set(labels[:3])) == 1 and labels[3] == labels[4] != labels[0]
    k, labels = connected_components(w, strong=True)
    assert k == 3 and labels[3] != labels[4]
