"""Pair scheduling: same prompt and sample, no refusals, balance, no repeats, QC, adaptive."""

import dataclasses
import random
from collections import Counter

import pytest

from harness.app import pairs
from harness.app.pairs import Candidate, Item, PairSettings
from harness.store.rows import GoldPair, Record, Vote


def rec(model, prompt, sample, status="ok"):
    return Record(key=f"{model}/{prompt}/{sample}", model=model, prompt_id=prompt, sample=sample, seed=0,
                  request={}, status=status, image_sha256="x" if status == "ok" else None, width=8, height=8,
                  refusal_reason=None, error=None, latency_s=None, cost_usd=None, provider_request_id=None,
                  device=None, dtype=None, info={}, attempts=1, created_at="")


def grid(models=("a", "b", "c"), prompts=("p", "q"), samples=(0, 1)):
    return [rec(m, p, s) for m in models for p in prompts for s in samples]


def vote_on(pick_or_cand, rater="r", choice="left", vote_id=None, **extra):
    left = getattr(pick_or_cand, "left", None) or pick_or_cand.a
    right = getattr(pick_or_cand, "right", None) or pick_or_cand.b
    return Vote(vote_id=vote_id or f"v{random.random()}", run_id="r", rater_id=rater,
                prompt_id=left.prompt_id, left_key=left.key, right_key=right.key, left_model=left.model,
                right_model=right.model, choice=choice, **extra)


def test_candidates_pair_same_prompt_and_sample_and_skip_refusals():
    records = grid() + [rec("d", "p", 0, "refused"), rec("d", "q", 0, "error"),
                        dataclasses.replace(rec("c", "q", 5), image_sha256=None)]
    items = pairs.usable_items(records)
    assert all(it.model != "d" for it in items) and all(it.sample != 5 for it in items)
    cands = pairs.candidate_pairs(items)
    # 3 model pairs x 2 prompts x 2 shared samples
    assert len(cands) == 12
    assert all(c.a.prompt_id == c.b.prompt_id == c.prompt_id for c in cands)
    assert all(c.a.sample == c.b.sample and c.a.model < c.b.model for c in cands)
    rates = pairs.refusal_rates(records)
    assert rates["d"]["refused"] == 1 and rates["d"]["error"] == 1 and rates["d"]["refusal_rate"] == 1.0
    assert rates["a"]["refusal_rate"] == 0.0
    assert rates["c"]["refused"] == 1  # "ok" without an image was filtered


def test_samples_paired_in_order_when_none_is_shared():
    items = pairs.usable_items([rec("a", "p", 0), rec("a", "p", 1), rec("b", "p", 2)])
    cands = pairs.candidate_pairs(items)
    assert [(c.a.sample, c.b.sample) for c in cands] == [(0, 2)]


def test_a_rater_never_sees_a_pair_twice_and_sides_are_random():
    cands = pairs.candidate_pairs(pairs.usable_items(grid()))
    rng = random.Random(0)
    mine, lefts = [], Counter()
    settings = PairSettings(repeat_every=0, gold_every=0)
    while (pick := pairs.next_pick(cands, mine, mine, rng, settings=settings)) is not None:
        mine.append(vote_on(pick))
        lefts[pick.left.model < pick.right.model] += 1
    assert len(mine) == len(cands)
    assert len({pairs.pair_key(v.left_key, v.right_key) for v in mine}) == len(cands)
    assert lefts[True] > 0 and lefts[False] > 0
    assert pairs.pairs_left(cands, mine) == 0


def test_balanced_over_model_pairs_and_prompts():
    cands = pairs.candidate_pairs(pairs.usable_items(grid(models="abcd", prompts="pqr", samples=(0,))))
    rng = random.Random(1)
    votes = []
    settings = PairSettings(repeat_every=0, gold_every=0)
    # 6 model pairs x 3 prompts = 18 pairs; 4 raters x 6 votes = 24 votes
    for i in range(24):
        rater = f"r{i % 4}"
        mine = [v for v in votes if v.rater_id == rater]
        votes.append(vote_on(pairs.next_pick(cands, votes, mine, rng, settings=settings), rater=rater))
    per_pair = Counter(tuple(sorted((v.left_model, v.right_model))) for v in votes)
    per_prompt = Counter(v.prompt_id for v in votes)
    assert len(per_pair) == 6 and max(per_pair.values()) - min(per_pair.values()) <= 1
    assert max(per_prompt.values()) - min(per_prompt.values()) <= 1


def test_repeat_is_due_with_sides_swapped_and_only_once():
    cands = pairs.candidate_pairs(pairs.usable_items(grid()))
    rng = random.Random(2)
    settings = PairSettings(repeat_every=3, repeat_gap=2, gold_every=0)
    mine, picks = [], []
    for i in range(12):
        pick = pairs.next_pick(cands, mine, mine, rng, settings=settings)
        picks.append(pick)
        extra = {"is_repeat": True, "repeat_of": pick.repeat_of} if pick.kind == "repeat" else {}
        mine.append(vote_on(pick, vote_id=f"v{i}", **extra))
    kinds = [p.kind for p in picks]
    assert kinds[:3] == ["pair"] * 3 and kinds[3] == "repeat"
    assert kinds.count("repeat") == 3
    by_id = {v.vote_id: v for v in mine}
    repeated = [p.repeat_of for p in picks if p.kind == "repeat"]
    assert len(set(repeated)) == 3
    for p in picks:
        if p.kind == "repeat":
            orig = by_id[p.repeat_of]
            assert (p.left.key, p.right.key) == (orig.right_key, orig.left_key)
            assert int(p.repeat_of[1:]) <= len(mine) - 2  # never right after the original


def test_gold_pairs_are_shown_once_each_when_due():
    items = pairs.usable_items(grid())
    cands = pairs.candidate_pairs(items)
    by_key = {it.key: it for it in items}
    gold = [GoldPair("r", "a/p/0", "b/p/0"), GoldPair("r", "c/q/1", "a/q/1")]
    settings = PairSettings(repeat_every=0, gold_every=2)
    rng = random.Random(3)
    mine = []
    for _ in range(10):
        pick = pairs.next_pick(cands, mine, mine, rng, settings=settings, gold=gold, items=by_key)
        mine.append(vote_on(pick, is_gold=int(pick.kind == "gold")))
    gold_votes = [v for v in mine if v.is_gold]
    assert len(gold_votes) == 2
    assert {pairs.pair_key(v.left_key, v.right_key) for v in gold_votes} == {
        pairs.pair_key(g.better_key, g.worse_key) for g in gold}
    # a gold pair is not shown again as a fresh pair
    assert len({pairs.pair_key(v.left_key, v.right_key) for v in mine}) == len(mine)


def test_adaptive_favours_the_pair_whose_order_is_uncertain():
    # a beats c and b beats c clearly; a vs b is split: the uncertain pair is (a, b).
    items = pairs.usable_items(grid(models="abc", prompts=[f"p{i}" for i in range(30)], samples=(0,)))
    cands = pairs.candidate_pairs(items)
    by = {(c.models, c.prompt_id): c for c in cands}
    votes = []
    for i in range(10):
        votes.append(vote_on(by[(("a", "c"), f"p{i}")], rater="x", choice="left"))
        votes.append(vote_on(by[(("b", "c"), f"p{i}")], rater="x", choice="left"))
        votes.append(vote_on(by[(("a", "b"), f"p{i}")], rater="x", choice="left" if i % 2 else "right"))
    z = pairs.order_uncertainty(votes, ["a", "b", "c"])
    assert z[("a", "b")] < z[("a", "c")] and z[("a", "b")] < z[("b", "c")]
    rng = random.Random(4)
    adaptive = [pairs.choose_fresh(cands, votes, set(), rng, mode="adaptive").models for _ in range(20)]
    assert set(adaptive) == {("a", "b")}
    # balanced mode ignores certainty: all three model pairs have 10 votes, so any may come
    balanced = Counter(pairs.choose_fresh(cands, votes, set(), rng, mode="balanced").models
                       for _ in range(60))
    assert len(balanced) == 3
    # a model pair never compared is the most uncertain of all
    assert pairs.order_uncertainty([], ["a", "b"]) == {("a", "b"): 0.0}


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="pair mode"):
        PairSettings(mode="random")
    with pytest.raises(ValueError, match="repeat_every"):
        PairSettings(repeat_every=-1)
    c = Candidate("p", Item("k1", "a", "p", 0), Item("k2", "b", "p", 0))
    assert c.pair == ("k1", "k2") and c.models == ("a", "b")
