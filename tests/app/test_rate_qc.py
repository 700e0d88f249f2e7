"""Quality control figures checked against hand counts."""

import math
import statistics

import pytest

from harness.app import qc
from harness.store.rows import GoldPair, Rater, Vote


def v(vid, rater, left, right, choice, seconds=2.0, **extra):
    return Vote(vote_id=vid, run_id="r", rater_id=rater, prompt_id="p", left_key=left, right_key=right,
                left_model="m" + left, right_model="m" + right, choice=choice, seconds=seconds, **extra)


RATERS = [Rater(rater_id=r, name=r.upper(), token_sha256="", created_at="", excluded=r == "c", is_admin=False)
          for r in ("a", "b", "c", "d")]


def test_outcome_is_stated_in_images_not_sides():
    assert qc.outcome(v("1", "a", "x", "y", "left")) == "x"
    assert qc.outcome(v("1", "a", "y", "x", "right")) == "x"
    assert qc.outcome(v("1", "a", "x", "y", "both_bad")) == "tie"


def test_agreement_with_the_majority_of_the_others():
    votes = [
        # pair (x, y): a, b say x (one of them with sides swapped), c says y
        v("1", "a", "x", "y", "left"), v("2", "b", "y", "x", "right"), v("3", "c", "x", "y", "right"),
        # pair (x, z): a says tie, b says z: others of a = {z}, of b = {tie}; c alone has no others
        v("4", "a", "x", "z", "tie"), v("5", "b", "z", "x", "left"),
    ]
    got = qc.agreement(votes)
    # a: pair xy others {x, y} -> no strict majority (skipped); pair xz others {z}: disagrees
    assert got["a"] == (0, 1)
    # b: xy others {x, y}: skipped; xz others {tie}: disagrees
    assert got["b"] == (0, 1)
    # c: xy others {x, x} -> majority x, c said y
    assert got["c"] == (0, 1)
    votes.append(v("6", "d", "x", "y", "left"))
    got = qc.agreement(votes)
    # now the others on (x, y) have a majority for x: a and b agree there, d agrees, c does not
    assert got["a"] == (1, 2) and got["b"] == (1, 2) and got["d"] == (1, 1) and got["c"] == (0, 1)


def test_consistency_compares_a_swapped_repeat_with_its_original():
    votes = [v("1", "a", "x", "y", "left"), v("2", "a", "y", "x", "right", is_repeat=True, repeat_of="1"),
             v("3", "b", "x", "y", "left"), v("4", "b", "y", "x", "left", is_repeat=True, repeat_of="3"),
             v("5", "b", "x", "z", "tie"), v("6", "b", "z", "x", "both_bad", is_repeat=True, repeat_of="5")]
    assert qc.consistency(votes) == {"a": (1, 1), "b": (1, 2)}


def test_rater_report_figures_and_flags():
    gold = [GoldPair("r", "x", "y")]
    votes = []
    # a: 12 votes always 'left' quickly (side bias, very fast), alternating sides of the same pair
    for i in range(12):
        left, right = ("x", "y") if i % 2 else ("y", "x")
        votes.append(v(f"a{i}", "a", left, right, "left", seconds=0.5))
    votes.append(v("g1", "b", "y", "x", "right", seconds=3.0, is_gold=True))
    votes.append(v("g2", "b", "x", "y", "right", seconds=5.0, is_gold=True))
    votes.append(v("b3", "b", "x", "y", "left", seconds=10.0))
    rows = {r["rater"]: r for r in qc.rater_report(votes, RATERS, gold=gold)}
    a = rows["A"]
    assert a["votes"] == 12 and a["left_share"] == 1.0 and a["median_seconds"] == 0.5
    assert a["left_p_value"] == pytest.approx(2 * 0.5**12)
    assert "side bias" in a["flags"] and "very fast" in a["flags"]
    b = rows["B"]
    assert b["gold_n"] == 2 and b["gold_accuracy"] == 0.5
    assert b["median_seconds"] == statistics.median([3.0, 5.0, 10.0])
    assert b["left_share"] == pytest.approx(1 / 3)
    assert rows["C"]["excluded"] is True and rows["C"]["votes"] == 0
    assert math.isnan(rows["D"]["agreement"]) and rows["D"]["flags"] == ""
    assert list(rows["A"]) == qc.COLUMNS


def test_binomial_p_value_matches_a_hand_sum():
    # k=2 of n=10: P(X<=2) + P(X>=8) = 2 * (1 + 10 + 45) / 1024
    assert qc.binom_p_two_sided(2, 10) == pytest.approx(2 * 56 / 1024)
    assert qc.binom_p_two_sided(5, 10) == pytest.approx(1.0)
    assert math.isnan(qc.binom_p_two_sided(0, 0))
