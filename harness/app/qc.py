"""Quality control of raters: pure functions over votes (rows as ``Store.votes`` returns them).

A vote's *outcome* is stated in images, not sides: the key of the image that won, or ``"tie"``
for tie and both bad (neither image preferred). That makes a repeat with the sides swapped
comparable with the vote it repeats, and votes on the same pair comparable across raters.

Per rater (:func:`rater_report`):

- agreement: share of their fresh votes that match the majority outcome of the *other* raters
  on the same pair (pairs where the others have no strict majority are skipped);
- consistency: share of their quality-control repeats whose outcome equals the original's;
- gold accuracy: share of gold pairs where the known better image won;
- median seconds per vote;
- left bias: share of decisive votes that went to the left side, with a two-sided binomial
  p-value against 0.5.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from harness.app.pairs import pair_key
from harness.store.rows import GoldPair, Rater, Vote

COLUMNS = ["rater", "excluded", "votes", "agreement", "agreement_n", "consistency", "consistency_n",
           "gold_accuracy", "gold_n", "median_seconds", "left_share", "left_p_value", "flags"]


def outcome(vote: Vote) -> str:
    """The winning image's key, or ``"tie"`` when neither was preferred."""
    choice = vote.choice
    if choice == "left":
        return vote.left_key
    if choice == "right":
        return vote.right_key
    return "tie"


def _fresh(votes: Iterable[Vote]) -> list[Vote]:
    return [v for v in votes if not v.is_repeat and not v.is_gold]


def agreement(votes: Sequence[Vote]) -> dict[str, tuple[int, int]]:
    """Per rater: (votes agreeing with the others' strict majority, votes with such a majority)."""
    by_pair: dict[tuple[str, str], list[Vote]] = defaultdict(list)
    for v in _fresh(votes):
        by_pair[pair_key(v.left_key, v.right_key)].append(v)
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for group in by_pair.values():
        for v in group:
            others = Counter(outcome(o) for o in group if o.rater_id != v.rater_id)
            if not others:
                continue
            (top, k), *rest = others.most_common(2) + [(None, 0)]
            if rest[0][1] == k:
                continue  # no strict majority among the others
            out[v.rater_id][1] += 1
            out[v.rater_id][0] += int(outcome(v) == top)
    return {r: (a, n) for r, (a, n) in out.items()}


def consistency(votes: Sequence[Vote]) -> dict[str, tuple[int, int]]:
    """Per rater: (repeats with the same outcome as the original, repeats)."""
    by_id = {v.vote_id: v for v in votes}
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for v in votes:
        orig = by_id.get(v.repeat_of or "")
        if not v.is_repeat or orig is None:
            continue
        out[v.rater_id][1] += 1
        out[v.rater_id][0] += int(outcome(v) == outcome(orig))
    return {r: (a, n) for r, (a, n) in out.items()}


def gold_accuracy(votes: Sequence[Vote], gold: Sequence[GoldPair]
                  ) -> dict[str, tuple[int, int]]:
    """Per rater: (gold pairs answered with the known better image, gold pairs answered)."""
    better = {pair_key(g.better_key, g.worse_key): g.better_key for g in gold}
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for v in votes:
        want = better.get(pair_key(v.left_key, v.right_key))
        if not v.is_gold or want is None:
            continue
        out[v.rater_id][1] += 1
        out[v.rater_id][0] += int(outcome(v) == want)
    return {r: (a, n) for r, (a, n) in out.items()}


def binom_p_two_sided(k: int, n: int) -> float:
    """Exact two-sided binomial test of p = 0.5: total probability of outcomes no likelier than k."""
    if n == 0:
        return math.nan
    pmf = [math.comb(n, i) / 2.0**n for i in range(n + 1)]
    return min(1.0, sum(p for p in pmf if p <= pmf[k] * (1 + 1e-9)))


def rater_report(votes: Sequence[Vote], raters: Sequence[Rater], *,
                 gold: Sequence[GoldPair] = (), min_agreement: float = 0.5,
                 min_consistency: float = 0.6, max_left_p: float = 0.01, fast_seconds: float = 1.0
                 ) -> list[dict[str, Any]]:
    """One row per rater (columns :data:`COLUMNS`), with short flags for the admin to look at.

    Args:
        votes: all votes of the run, excluded raters included.
        raters: the store's raters.
        gold: gold pairs of the run.
        min_agreement, min_consistency: below these (with at least 5 votes behind the figure) a
            rater is flagged.
        max_left_p: a left-bias p-value below this is flagged.
        fast_seconds: a median time per vote below this is flagged.
    """
    agree, cons, gold_acc = agreement(votes), consistency(votes), gold_accuracy(votes, gold)
    mine: dict[str, list[Vote]] = defaultdict(list)
    for v in votes:
        mine[v.rater_id].append(v)
    rows = []
    for r in raters:
        rid = r.rater_id
        vs = mine.get(rid, [])
        a, an = agree.get(rid, (0, 0))
        c, cn = cons.get(rid, (0, 0))
        g, gn = gold_acc.get(rid, (0, 0))
        secs = [float(v.seconds) for v in vs if v.seconds is not None]
        left = sum(1 for v in vs if v.choice == "left")
        right = sum(1 for v in vs if v.choice == "right")
        row = {
            "rater": r.name, "excluded": bool(r.excluded), "votes": len(vs),
            "agreement": a / an if an else math.nan, "agreement_n": an,
            "consistency": c / cn if cn else math.nan, "consistency_n": cn,
            "gold_accuracy": g / gn if gn else math.nan, "gold_n": gn,
            "median_seconds": statistics.median(secs) if secs else math.nan,
            "left_share": left / (left + right) if left + right else math.nan,
            "left_p_value": binom_p_two_sided(left, left + right),
        }
        flags = []
        if an >= 5 and row["agreement"] < min_agreement:
            flags.append("low agreement")
        if cn >= 5 and row["consistency"] < min_consistency:
            flags.append("inconsistent")
        if gn >= 3 and row["gold_accuracy"] < 0.5:
            flags.append("misses gold")
        if secs and row["median_seconds"] < fast_seconds:
            flags.append("very fast")
        if left + right >= 10 and row["left_p_value"] < max_left_p:
            flags.append("side bias")
        row["flags"] = ", ".join(flags)
        rows.append(row)
    return rows
