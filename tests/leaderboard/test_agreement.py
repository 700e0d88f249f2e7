"""Agreement: Krippendorff's alpha against a published example, a hand computation and an
independent pairwise implementation; metric-rater agreement against hand counts."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from harness.leaderboard.agreement import krippendorff_alpha_nominal, metric_agreement, rater_agreement

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", nominal example: 4 observers,
# 12 units, missing values as None; the paper gives alpha = 0.743.
PUBLISHED = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]


def _counts(observers: list[list]) -> np.ndarray:
    values = sorted({v for row in observers for v in row if v is not None})
    c = np.zeros((len(observers[0]), len(values)))
    for row in observers:
        for u, v in enumerate(row):
            if v is not None:
                c[u, values.index(v)] += 1
    return c


def _alpha_pairwise(observers: list[list]) -> float:
    """Independent reference: alpha = 1 - D_o / D_e written as averages over pairs of values
    (within units for D_o, across all pairable values for D_e), with plain loops."""
    units = [[row[u] for row in observers if row[u] is not None] for u in range(len(observers[0]))]
    units = [u for u in units if len(u) >= 2]
    pooled = [v for u in units for v in u]
    n = len(pooled)
    d_o = sum(sum(a != b for a, b in itertools.permutations(u, 2)) / (len(u) - 1) for u in units) / n
    d_e = sum(a != b for a, b in itertools.permutations(pooled, 2)) / (n * (n - 1))
    return 1 - d_o / d_e


def test_alpha_matches_the_published_example_and_a_pairwise_reference():
    got = krippendorff_alpha_nominal(_counts(PUBLISHED))
    assert got == pytest.approx(0.743, abs=5e-4)
    assert got == pytest.approx(_alpha_pairwise(PUBLISHED), abs=1e-12)


def _vote(prompt, left, right, choice, rater):
    return dict(left=left, right=right, choice=choice, rater=rater, prompt_id=prompt,
                left_key=f"{left}-{prompt}", right_key=f"{right}-{prompt}")


def test_rater_alpha_from_votes_by_hand():
    # Four comparisons of x and y (x sorts first); outcome values per comparison:
    #   p1: (x, x)  p2: (x, y)  p3: (y, y)  p4: (x, x, y)
    # Coincidences: o_xx = 2 + 2/2 = 3, o_xy = o_yx = 1 + 2/2 = 2, o_yy = 2; n_x = 5, n_y = 4, n = 9.
    # alpha = 1 - (n - 1) * (o_xy + o_yx) / (2 n_x n_y) = 1 - 8 * 4 / 40 = 0.2.
    # Sides are swapped in some votes: what counts is which image won, not which side.
    votes = pd.DataFrame([
        _vote("p1", "x", "y", "left", "r1"), _vote("p1", "y", "x", "right", "r2"),
        _vote("p2", "x", "y", "left", "r1"), _vote("p2", "y", "x", "left", "r2"),
        _vote("p3", "y", "x", "left", "r1"), _vote("p3", "x", "y", "right", "r2"),
        _vote("p4", "x", "y", "left", "r1"), _vote("p4", "y", "x", "right", "r2"),
        _vote("p4", "x", "y", "right", "r3"),
        _vote("p4", "x", "y", "right", "r1"),  # r1 again on p4 (a repeat): not another value
        _vote("p5", "x", "y", "left", "r1"),  # rated once: not pairable
    ])
    a = rater_agreement(votes, n_boot=500, seed=1)
    assert a["alpha"] == pytest.approx(0.2, abs=1e-12)
    assert a["units"] == 4 and a["values"] == 9 and a["raters"] == 3 and a["reason"] == ""
    assert a["lo"] <= a["alpha"] <= a["hi"]
    assert rater_agreement(votes, n_boot=500, seed=1) == a  # seeded
    # without image keys, the unit is the prompt and the pair of models: same answer here
    no_keys = votes.drop(columns=["left_key", "right_key"])
    assert rater_agreement(no_keys, n_boot=0)["alpha"] == pytest.approx(0.2)


def test_rater_alpha_ties_and_both_bad():
    votes = pd.DataFrame([_vote("p1", "x", "y", "tie", "r1"), _vote("p1", "x", "y", "both_bad", "r2"),
                          _vote("p2", "x", "y", "left", "r1"), _vote("p2", "x", "y", "left", "r2")])
    # both_bad is a tie: perfect agreement on two different values -> alpha 1
    assert rater_agreement(votes, n_boot=0)["alpha"] == pytest.approx(1.0)
    dropped = rater_agreement(votes, n_boot=0, both_bad="drop")
    assert dropped["units"] == 1 and math.isnan(dropped["alpha"]) and "same value" in dropped["reason"]


def test_rater_alpha_edge_cases():
    assert rater_agreement(pd.DataFrame(columns=["left", "right", "choice", "rater", "prompt_id"]))[
        "reason"] == "no votes"
    single = pd.DataFrame([_vote("p1", "x", "y", "left", "r1"), _vote("p2", "x", "y", "right", "r2")])
    a = rater_agreement(single)
    assert math.isnan(a["alpha"]) and "two or more raters" in a["reason"]


def test_rater_alpha_bootstrap_ci_covers_chance_agreement():
    rng = np.random.default_rng(0)
    rows = []
    for p in range(150):
        for r in range(3):
            rows.append(_vote(f"p{p}", "x", "y", str(rng.choice(["left", "right", "tie"])), f"r{r}"))
    a = rater_agreement(pd.DataFrame(rows), n_boot=1000, seed=0)
    assert a["lo"] < 0 < a["hi"] and a["hi"] - a["lo"] < 0.3


def test_metric_agreement_by_hand():
    votes = pd.DataFrame([
        _vote("p1", "a", "b", "left", "r"),   # a chosen; score a=0.9 > b=0.1: agrees
        _vote("p2", "b", "a", "right", "r"),  # a chosen; a=0.8 > b=0.2: agrees
        _vote("p3", "a", "b", "right", "r"),  # b chosen; a=0.7 > b=0.3: disagrees
        _vote("p4", "a", "b", "left", "r"),   # equal scores: half
        _vote("p5", "a", "b", "left", "r"),   # b has no score: not counted
        _vote("p6", "a", "b", "tie", "r"),    # not decisive: not counted
    ])
    scores = pd.DataFrame([(f"{m}-p{i}", "s", v) for i, (va, vb) in enumerate(
        [(0.9, 0.1), (0.8, 0.2), (0.7, 0.3), (0.5, 0.5), (0.6, None), (0.9, 0.1)], start=1)
        for m, v in (("a", va), ("b", vb))], columns=["key", "metric", "value"])
    scores = pd.concat([scores, scores.assign(metric="err")])
    t = metric_agreement(votes, scores, {"s": True, "err": False}, n_boot=500).set_index("metric")
    assert t.loc["s", "agreement"] == pytest.approx(2.5 / 4) and t.loc["s", "n"] == 4
    assert t.loc["s", "metric_ties"] == 1
    assert t.loc["err", "agreement"] == pytest.approx(1.5 / 4)  # lower is better: the opposite choice
    assert t.loc["s", "lo"] <= t.loc["s", "agreement"] <= t.loc["s", "hi"]
    assert list(t.index) == ["s", "err"]  # best first
    none = metric_agreement(votes[votes["choice"] == "tie"], scores, {"s": True})
    assert none["reason"].iloc[0] == "no decisive (left/right) votes"
    assert math.isnan(none["agreement"].iloc[0])
    nokeys = metric_agreement(votes.drop(columns=["left_key", "right_key"]), scores, {"s": True})
    assert "no left_key" in nokeys["reason"].iloc[0]
