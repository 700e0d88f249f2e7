"""Which two images a rater sees next: pure functions over records and votes.

A candidate pair is two images of the same prompt from two different models, with the same
sample index whenever both models have that sample (otherwise their samples are paired in
order). Only records with an image take part: refused, filtered and failed outputs never
appear as a side and are counted by :func:`refusal_rates` instead.

The next pick for a rater is, in this order: a gold pair when one is due, a quality-control
repeat of one of their earlier votes (sides swapped) when one is due, otherwise a fresh pair
they have not seen. Fresh pairs are balanced (least-voted model pair first, then the
least-voted prompt, then the least-voted pair) or, in adaptive mode, taken from the model pair
whose order is least certain under a Bradley-Terry fit of the votes so far. Sides are
randomised per pick. Records, votes and gold pairs are the store's typed rows
(:mod:`harness.store.rows`).

These functions read every vote they are given, per pick. The rating service picks with
:mod:`harness.app.pair_index`, which applies the same rules from counters kept up to date one
vote at a time; the tests check it against these functions.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.store.rows import GoldPair, Record, Vote

MODES = ("balanced", "adaptive")


@dataclass(frozen=True)
class Item:
    """One image that may be shown."""

    key: str
    """Record key (cache key of the request)."""
    model: str
    """Model name in the run (never shown to raters)."""
    prompt_id: str
    """Prompt the image answers."""
    sample: int
    """Sample index within (model, prompt)."""


@dataclass(frozen=True)
class Candidate:
    """An unordered pair of images of one prompt from two models (``a.model < b.model``)."""

    prompt_id: str
    """Prompt both images answer."""
    a: Item
    """The image of the model whose name sorts first."""
    b: Item
    """The image of the other model."""

    @property
    def models(self) -> tuple[str, str]:
        return (self.a.model, self.b.model)

    @property
    def pair(self) -> tuple[str, str]:
        return pair_key(self.a.key, self.b.key)


@dataclass(frozen=True)
class Pick:
    """What to show next: the two sides and why."""

    prompt_id: str
    """Prompt both images answer."""
    left: Item
    """Image on the left."""
    right: Item
    """Image on the right."""
    kind: str = "pair"
    """``pair`` (fresh), ``repeat`` (a quality-control repeat, sides swapped) or ``gold``."""
    repeat_of: str | None = None
    """For a repeat: the vote_id it repeats."""


@dataclass(frozen=True)
class PairSettings:
    """How picks are made (``harness rate`` options)."""

    mode: str = "balanced"
    """``balanced`` or ``adaptive`` (favour model pairs whose order is least certain)."""
    repeat_every: int = 8
    """One quality-control repeat after every this many fresh votes of a rater; 0: none."""
    repeat_gap: int = 3
    """A vote is repeated only after at least this many later votes (so it is not remembered)."""
    gold_every: int = 10
    """One gold pair (if the run has any left for the rater) after every this many votes; 0: none."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"pair mode {self.mode!r}: use one of {', '.join(MODES)}")
        for name in ("repeat_every", "repeat_gap", "gold_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


def pair_key(k1: str, k2: str) -> tuple[str, str]:
    """The same pair whatever the sides."""
    return (k1, k2) if k1 <= k2 else (k2, k1)


def usable_items(records: Iterable[Record]) -> list[Item]:
    """Records that can be shown: status ok with a stored image."""
    return [Item(r.key, r.model, r.prompt_id, int(r.sample)) for r in records
            if r.status == "ok" and r.image_sha256]


def refusal_rates(records: Iterable[Record]) -> dict[str, dict[str, Any]]:
    """Per model: images, refusals, errors and the refusal rate (refused / (ok + refused))."""
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        c = out.setdefault(r.model, {"ok": 0, "refused": 0, "error": 0})
        st = r.status
        if st == "ok" and not r.image_sha256:
            st = "refused"  # an "ok" without an image was filtered: it cannot be rated either
        c[st if st in c else "error"] += 1
    for c in out.values():
        done = c["ok"] + c["refused"]
        c["refusal_rate"] = c["refused"] / done if done else math.nan
    return dict(sorted(out.items()))


def candidate_pairs(items: Iterable[Item]) -> list[Candidate]:
    """Every pair of images of one prompt from two models, same sample index where possible."""
    by: dict[str, dict[str, list[Item]]] = defaultdict(lambda: defaultdict(list))
    for it in items:
        by[it.prompt_id][it.model].append(it)
    out: list[Candidate] = []
    for prompt_id in sorted(by):
        models = sorted(by[prompt_id])
        for i, ma in enumerate(models):
            for mb in models[i + 1:]:
                xs = sorted(by[prompt_id][ma], key=lambda it: (it.sample, it.key))
                ys = sorted(by[prompt_id][mb], key=lambda it: (it.sample, it.key))
                ys_by_sample = {y.sample: y for y in ys}
                common = [x for x in xs if x.sample in ys_by_sample]
                if common:
                    out.extend(Candidate(prompt_id, x, ys_by_sample[x.sample]) for x in common)
                else:  # no shared sample index: pair the samples in order
                    out.extend(Candidate(prompt_id, x, y) for x, y in zip(xs, ys, strict=False))
    return out


def _fresh(votes: Sequence[Vote]) -> list[Vote]:
    return [v for v in votes if not v.is_repeat and not v.is_gold]


def order_uncertainty(votes: Sequence[Vote], models: Sequence[str]
                      ) -> dict[tuple[str, str], float]:
    """How sure the votes are about each model pair's order: a z-like score, 0 = no idea.

    From a Bradley-Terry fit (with its default prior) of the fresh votes: for models a, b with
    log-strength gap d and n votes between them, ``z = |d| * sqrt(n * p * (1 - p))`` with
    ``p = sigmoid(d)``, the gap over its standard error had those n votes been the only ones.
    A pair never compared scores 0 (most uncertain) whatever the rest says.
    """
    import pandas as pd

    from harness.leaderboard.preference import bradley_terry

    models = sorted(models)
    fresh = _fresh(votes)
    table = pd.DataFrame({"left": [v.left_model for v in fresh],
                          "right": [v.right_model for v in fresh],
                          "choice": [v.choice for v in fresh]}, columns=["left", "right", "choice"])
    table = table[table["left"].isin(models) & table["right"].isin(models)]
    theta = bradley_terry(table, models=models) if len(table) else None
    n = Counter(tuple(sorted((v.left_model, v.right_model))) for v in fresh)
    out = {}
    for i, a in enumerate(models):
        for b in models[i + 1:]:
            ta = float(theta[a]) if theta is not None else math.nan
            tb = float(theta[b]) if theta is not None else math.nan
            d = abs(ta - tb) if math.isfinite(ta) and math.isfinite(tb) else 0.0
            p = 1.0 / (1.0 + math.exp(-d))
            out[(a, b)] = d * math.sqrt(n[(a, b)] * p * (1.0 - p))
    return out


def choose_fresh(candidates: Sequence[Candidate], votes: Sequence[Vote],
                 seen: set[tuple[str, str]], rng: random.Random, *, mode: str = "balanced"
                 ) -> Candidate | None:
    """The next fresh pair for a rater who has seen ``seen`` (pair keys), or None when none is left.

    Balanced: fewest votes for the model pair, then for the prompt, then for the prompt within
    the model pair, then for the pair itself; random among equals. Adaptive: the model pair
    with the least certain order (:func:`order_uncertainty`) comes first, balanced after that.
    """
    if mode not in MODES:
        raise ValueError(f"pair mode {mode!r}: use one of {', '.join(MODES)}")
    open_ = [c for c in candidates if c.pair not in seen]
    if not open_:
        return None
    fresh = _fresh(votes)
    by_models = Counter(tuple(sorted((v.left_model, v.right_model))) for v in fresh)
    by_prompt = Counter(v.prompt_id for v in fresh)
    by_both = Counter((tuple(sorted((v.left_model, v.right_model))), v.prompt_id) for v in fresh)
    by_pair = Counter(pair_key(v.left_key, v.right_key) for v in fresh)
    z: dict[tuple[str, str], float] = {}
    if mode == "adaptive":
        z = order_uncertainty(votes, sorted({m for c in candidates for m in c.models}))
    keyed = [((round(z.get(c.models, 0.0), 9), by_models[c.models], by_prompt[c.prompt_id],
               by_both[(c.models, c.prompt_id)], by_pair[c.pair], rng.random()), c) for c in open_]
    return min(keyed, key=lambda kc: kc[0])[1]


def orient(a: Item, b: Item, rng: random.Random) -> tuple[Item, Item]:
    """Random sides: (left, right)."""
    return (a, b) if rng.random() < 0.5 else (b, a)


def due_repeat(rater_votes: Sequence[Vote], settings: PairSettings,
               rng: random.Random) -> Vote | None:
    """The earlier vote to repeat now (sides swapped), or None when no repeat is due.

    One repeat is due after every ``repeat_every`` fresh votes; the vote repeated is a fresh one
    at least ``repeat_gap`` votes back that was not repeated yet, chosen at random."""
    if settings.repeat_every <= 0:
        return None
    fresh = _fresh(rater_votes)
    repeated = {v.repeat_of for v in rater_votes if v.is_repeat}
    n_repeats = sum(1 for v in rater_votes if v.is_repeat)
    if len(fresh) < (n_repeats + 1) * settings.repeat_every:
        return None
    cutoff = len(rater_votes) - settings.repeat_gap
    position = {v.vote_id: i for i, v in enumerate(rater_votes)}
    eligible = [v for v in fresh if v.vote_id not in repeated and position[v.vote_id] < cutoff]
    return rng.choice(eligible) if eligible else None


def due_gold(rater_votes: Sequence[Vote], gold: Sequence[GoldPair],
             items: Mapping[str, Item], settings: PairSettings, rng: random.Random
             ) -> tuple[Item, Item] | None:
    """A gold pair (better, worse) the rater has not seen, when one is due, else None."""
    if settings.gold_every <= 0 or not gold:
        return None
    n_gold = sum(1 for v in rater_votes if v.is_gold)
    if len(rater_votes) - n_gold < (n_gold + 1) * settings.gold_every:
        return None
    seen = {pair_key(v.left_key, v.right_key) for v in rater_votes}
    left = [g for g in gold if pair_key(g.better_key, g.worse_key) not in seen
            and g.better_key in items and g.worse_key in items]
    if not left:
        return None
    g = rng.choice(left)
    return items[g.better_key], items[g.worse_key]


def next_pick(candidates: Sequence[Candidate], votes: Sequence[Vote],
              rater_votes: Sequence[Vote], rng: random.Random, *,
              settings: PairSettings = PairSettings(), gold: Sequence[GoldPair] = (),
              items: Mapping[str, Item] | None = None) -> Pick | None:
    """What a rater sees next, or None when they have rated every pair.

    Args:
        candidates: :func:`candidate_pairs` of the run's usable images.
        votes: the run's votes so far (for balance and the adaptive fit).
        rater_votes: this rater's votes, oldest first.
        rng: randomness for sides and ties (seed it for reproducible picks).
        settings: modes and quality-control rates.
        gold: gold pairs of the run.
        items: usable images by key (needed for gold pairs; built from candidates if omitted).
    """
    if items is None:
        items = {it.key: it for c in candidates for it in (c.a, c.b)}
    g = due_gold(rater_votes, gold, items, settings, rng)
    if g is not None:
        left, right = orient(g[0], g[1], rng)
        return Pick(left.prompt_id, left, right, kind="gold")
    rep = due_repeat(rater_votes, settings, rng)
    if rep is not None and rep.left_key in items and rep.right_key in items:
        # Sides swapped: a rater who answers by position rather than content shows up as inconsistent.
        return Pick(rep.prompt_id, items[rep.right_key], items[rep.left_key], kind="repeat",
                    repeat_of=rep.vote_id)
    seen = {pair_key(v.left_key, v.right_key) for v in rater_votes}
    c = choose_fresh(candidates, votes, seen, rng, mode=settings.mode)
    if c is None:
        return None
    left, right = orient(c.a, c.b, rng)
    return Pick(c.prompt_id, left, right)


def pairs_left(candidates: Sequence[Candidate], rater_votes: Sequence[Vote]) -> int:
    """Fresh pairs the rater has not seen yet."""
    seen = {pair_key(v.left_key, v.right_key) for v in rater_votes}
    return sum(1 for c in candidates if c.pair not in seen)
