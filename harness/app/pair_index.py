"""Vote counts and per-rater state for pair picks, kept up to date one vote at a time.

:func:`harness.app.pairs.next_pick` reads every vote of a run for every pick, which grows with
the votes stored. :class:`PairIndex` gives the same picks from counters built once from the
stored votes and then updated with each new vote, so a pick costs about the same at 1,000 and
at 100,000 votes:

- per model pair, prompt, (model pair, prompt) and image pair: how many fresh votes (of raters
  not excluded) it has, exactly the counts :func:`~harness.app.pairs.choose_fresh` ranks by;
- per model pair, its prompts in a sorted list keyed by those counts (a vote moves one prompt
  in each model pair's list: O(models^2) bisections), so the least-voted prompt a rater has
  not seen is found from the front of the list rather than by scanning every candidate;
- per rater: the pairs they have seen, their fresh / repeat / gold vote counts and the fresh
  votes not repeated yet (for quality-control repeats and gold pairs).

Ties are broken at random among at most :data:`TIE_SPREAD` equally needed (model pair, prompt)
cells (tied model pairs in random order, prompts by a random salt in each sort key that changes
whenever the prompt's count does), so concurrent raters are spread over equally needed pairs.
In adaptive mode the order-uncertainty scores come from :meth:`PairIndex.refit`, which fits
Bradley-Terry on the aggregated counts (O(models^2) data, not the votes) and is called on a
timer, never per pick.

The index is not thread-safe by itself: :class:`harness.app.service.RatingService` holds a short
lock around each update and pick (memory only; no database access under it).
"""

from __future__ import annotations

import bisect
import math
import random
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from harness.app.pairs import Candidate, Item, PairSettings, Pick, orient, pair_key
from harness.store.rows import GoldPair

TIE_SPREAD = 16
"""Equally needed (model pair, prompt) cells that a pick chooses among at random."""

ModelPair = tuple[str, str]


class VoteRow(NamedTuple):
    """The columns of a vote the index needs, in the order ``Store.vote_rows_after`` gives them
    (a tuple: building 100,000 of them at start costs milliseconds, not seconds)."""

    vote_id: str
    rater_id: str
    prompt_id: str
    left_key: str
    right_key: str
    left_model: str
    right_model: str
    choice: str
    is_repeat: bool = False
    is_gold: bool = False
    repeat_of: str | None = None

    @property
    def fresh(self) -> bool:
        return not self.is_repeat and not self.is_gold

    @property
    def models(self) -> ModelPair:
        a, b = self.left_model, self.right_model
        return (a, b) if a <= b else (b, a)


@dataclass
class RaterState:
    """What the index knows of one rater: enough for the next pick and the progress line."""

    n_votes: int = 0
    n_fresh: int = 0
    n_repeat: int = 0
    n_gold: int = 0
    seen: set[tuple[str, str]] = field(default_factory=set)
    """Pair keys the rater has voted on (any kind)."""
    seen_candidates: int = 0
    """Distinct candidate pairs among ``seen``."""
    seen_by_models: Counter = field(default_factory=Counter)
    seen_by_both: Counter = field(default_factory=Counter)
    unrepeated_pos: list[int] = field(default_factory=list)
    """Positions (in the rater's vote order) of fresh votes not repeated yet, ascending."""
    unrepeated: dict[int, tuple[str, str, str, str]] = field(default_factory=dict)
    """Position -> (vote_id, prompt_id, left_key, right_key) for those votes."""
    position: dict[str, int] = field(default_factory=dict)
    """vote_id -> position, for fresh votes not repeated yet."""


class PairIndex:
    """Counts over a run's votes for picking pairs; feed it every vote once with :meth:`add`."""

    def __init__(self, candidates: Sequence[Candidate], items: Mapping[str, Item]) -> None:
        self.candidates = list(candidates)
        self.items = dict(items)
        self.by_pair: dict[tuple[str, str], Candidate] = {c.pair: c for c in self.candidates}
        self.cands: dict[tuple[ModelPair, str], list[Candidate]] = defaultdict(list)
        for c in self.candidates:
            self.cands[(c.models, c.prompt_id)].append(c)
        self.n_by_models: Counter = Counter(c.models for c in self.candidates)
        self.n_by_both: Counter = Counter((c.models, c.prompt_id) for c in self.candidates)
        self.prompts_of: dict[ModelPair, list[str]] = defaultdict(list)
        self.models_of: dict[str, list[ModelPair]] = defaultdict(list)
        for mp, p in sorted(self.n_by_both):
            self.prompts_of[mp].append(p)
            self.models_of[p].append(mp)
        self.model_names = sorted({m for c in self.candidates for m in c.models})
        self._salt = random.Random(0x5eed)
        self._bulk = False
        self.reset()

    def reset(self) -> None:
        """Forget every vote (before feeding them again, e.g. after an exclusion changed)."""
        self.votes_by_models: Counter = Counter()
        self.votes_by_prompt: Counter = Counter()
        self.votes_by_both: Counter = Counter()
        self.votes_by_pair: Counter = Counter()
        self.cells: Counter = Counter()
        """(left_model, right_model, choice) -> fresh counted votes, for the adaptive fit."""
        self.n_counted = 0
        self.raters: dict[str, RaterState] = defaultdict(RaterState)
        self.z: dict[ModelPair, float] = {}
        self.z_votes = -1
        self._key: dict[tuple[ModelPair, str], tuple] = {}
        self.order: dict[ModelPair, list[tuple]] = {}
        for mp, prompts in self.prompts_of.items():
            keys = []
            for p in prompts:
                k = (0, 0, self._salt.random(), p)
                self._key[(mp, p)] = k
                keys.append(k)
            self.order[mp] = sorted(keys)

    # -- updates -----------------------------------------------------------------------------

    def add_many(self, votes: Iterable[tuple[VoteRow, bool]]) -> None:
        """:meth:`add` for many (vote, counted) at once, sorting each model pair's prompts once
        at the end instead of after every vote (how the index is built at start)."""
        self._bulk = True
        try:
            for v, counted in votes:
                self.add(v, counted=counted)
        finally:
            self._bulk = False
        for mp, prompts in self.prompts_of.items():
            keys = []
            for p in prompts:
                k = (self.votes_by_prompt[p], self.votes_by_both[(mp, p)], self._salt.random(), p)
                self._key[(mp, p)] = k
                keys.append(k)
            self.order[mp] = sorted(keys)

    def add(self, v: VoteRow, *, counted: bool = True) -> None:
        """Take one new vote into account. ``counted``: False for a rater excluded from the
        leaderboard (their votes still shape their own picks, not the balance)."""
        r = self.raters[v.rater_id]
        pk = pair_key(sys.intern(v.left_key), sys.intern(v.right_key))
        pos = r.n_votes
        r.n_votes += 1
        if v.is_repeat:
            r.n_repeat += 1
            p = r.position.pop(v.repeat_of or "", None)
            if p is not None:
                del r.unrepeated[p]
                i = bisect.bisect_left(r.unrepeated_pos, p)
                if i < len(r.unrepeated_pos) and r.unrepeated_pos[i] == p:
                    del r.unrepeated_pos[i]
        elif v.is_gold:
            r.n_gold += 1
        else:
            r.n_fresh += 1
            r.unrepeated_pos.append(pos)  # positions only grow: the list stays sorted
            # Interned: 100,000 votes share a few thousand key strings instead of copying them.
            r.unrepeated[pos] = (v.vote_id, sys.intern(v.prompt_id), sys.intern(v.left_key),
                                 sys.intern(v.right_key))
            r.position[v.vote_id] = pos
        if pk not in r.seen:
            r.seen.add(pk)
            c = self.by_pair.get(pk)
            if c is not None:
                mp = c.models
                r.seen_candidates += 1
                r.seen_by_models[mp] += 1
                r.seen_by_both[(mp, c.prompt_id)] += 1
        if counted and v.fresh:
            self._count(v, pk)

    def _count(self, v: VoteRow, pk: tuple[str, str]) -> None:
        mp, p = v.models, v.prompt_id
        self.n_counted += 1
        self.votes_by_models[mp] += 1
        self.votes_by_prompt[p] += 1
        self.votes_by_both[(mp, p)] += 1
        self.votes_by_pair[pk] += 1
        self.cells[(v.left_model, v.right_model, v.choice)] += 1
        if self._bulk:
            return  # add_many sorts once at the end
        # The prompt's count moved in every model pair that has it; (mp, p)'s own count too.
        for other in self.models_of.get(p, ()):
            self._rekey(other, p)

    def _rekey(self, mp: ModelPair, p: str) -> None:
        old = self._key[(mp, p)]
        new = (self.votes_by_prompt[p], self.votes_by_both[(mp, p)], self._salt.random(), p)
        # A plain sorted list per model pair: a few hundred to a few thousand prompts, where
        # bisect plus a memmove beats any tree (a vote moves one prompt in each model pair).
        lst = self.order[mp]
        del lst[bisect.bisect_left(lst, old)]
        bisect.insort(lst, new)
        self._key[(mp, p)] = new

    # -- adaptive ----------------------------------------------------------------------------

    def refit(self) -> bool:
        """Refit the order-uncertainty scores from the aggregated counts if votes came in since
        the last fit; True when it refitted. Same score as :func:`pairs.order_uncertainty`."""
        if self.z_votes == self.n_counted:
            return False
        cells, n, models = dict(self.cells), self.n_counted, self.model_names
        self.z = uncertainty_from_cells(cells, models)
        self.z_votes = n
        return True

    # -- picks -------------------------------------------------------------------------------

    def pick(self, rater_id: str, rng: random.Random, settings: PairSettings, *,
             gold: Callable[[], Sequence[GoldPair]] | Sequence[GoldPair] = ()) -> Pick | None:
        """What the rater sees next (same rules as :func:`pairs.next_pick`), or None when done.

        ``gold`` may be a function: it is called only when a gold pair is due."""
        r = self.raters.get(rater_id) or RaterState()
        g = self._due_gold(r, settings, gold, rng)
        if g is not None:
            left, right = orient(g[0], g[1], rng)
            return Pick(left.prompt_id, left, right, kind="gold")
        rep = self._due_repeat(r, settings, rng)
        if rep is not None:
            vote_id, prompt_id, lk, rk = rep
            if lk in self.items and rk in self.items:
                # Sides swapped: answering by position rather than content shows as inconsistent.
                return Pick(prompt_id, self.items[rk], self.items[lk], kind="repeat", repeat_of=vote_id)
        c = self.choose_fresh(r, rng, mode=settings.mode)
        if c is None:
            return None
        left, right = orient(c.a, c.b, rng)
        return Pick(c.prompt_id, left, right)

    def gold_due(self, rater_id: str, settings: PairSettings) -> bool:
        """Whether the rater's next pick is a gold pair, if the run has one left for them."""
        r = self.raters.get(rater_id) or RaterState()
        return settings.gold_every > 0 and r.n_votes - r.n_gold >= (r.n_gold + 1) * settings.gold_every

    def _due_gold(self, r: RaterState, settings: PairSettings, gold, rng) -> tuple[Item, Item] | None:
        if settings.gold_every <= 0:
            return None
        if r.n_votes - r.n_gold < (r.n_gold + 1) * settings.gold_every:
            return None
        pairs_ = gold() if callable(gold) else gold
        left = [x for x in pairs_ if pair_key(x.better_key, x.worse_key) not in r.seen
                and x.better_key in self.items and x.worse_key in self.items]
        if not left:
            return None
        x = rng.choice(left)
        return self.items[x.better_key], self.items[x.worse_key]

    def _due_repeat(self, r: RaterState, settings: PairSettings, rng) -> tuple[str, str, str, str] | None:
        if settings.repeat_every <= 0 or r.n_fresh < (r.n_repeat + 1) * settings.repeat_every:
            return None
        cutoff = r.n_votes - settings.repeat_gap
        n = bisect.bisect_left(r.unrepeated_pos, cutoff)
        if n == 0:
            return None
        return r.unrepeated[r.unrepeated_pos[rng.randrange(n)]]

    def rank(self, c: Candidate, mode: str = "balanced") -> tuple:
        """The key a fresh candidate is ranked by (lower first), as :func:`pairs.choose_fresh`."""
        z = round(self.z.get(c.models, 0.0), 9) if mode == "adaptive" else 0.0
        return (z, self.votes_by_models[c.models], self.votes_by_prompt[c.prompt_id],
                self.votes_by_both[(c.models, c.prompt_id)], self.votes_by_pair[c.pair])

    def choose_fresh(self, r: RaterState, rng: random.Random, *, mode: str = "balanced"
                     ) -> Candidate | None:
        """The least-voted open pair for the rater (see :func:`pairs.choose_fresh`)."""
        adaptive = mode == "adaptive"
        best_mp: tuple | None = None
        tied: list[ModelPair] = []
        for mp, n in self.n_by_models.items():  # one entry per model pair: 45 for 10 models
            if r.seen_by_models[mp] >= n:
                continue
            k = (round(self.z.get(mp, 0.0), 9) if adaptive else 0.0, self.votes_by_models[mp])
            if best_mp is None or k < best_mp:
                best_mp, tied = k, [mp]
            elif k == best_mp:
                tied.append(mp)
        if not tied:
            return None
        best: tuple | None = None
        group: list[tuple[ModelPair, str]] = []
        rng.shuffle(tied)  # which tied model pairs fill the group is random too
        for mp in tied:
            first: tuple | None = None
            for bp, bb, _salt, p in self.order[mp]:
                if r.seen_by_both[(mp, p)] >= self.n_by_both[(mp, p)]:
                    continue  # the rater has seen every pair of this prompt and model pair
                if first is None:
                    first = (bp, bb)
                    if best is not None and first > best:
                        break  # this model pair's least-voted open prompt is not among the least
                    if best is None or first < best:
                        best, group = first, []
                elif (bp, bb) != first:
                    break
                if len(group) >= TIE_SPREAD:
                    break
                group.append((mp, p))
        open_ = [c for mp, p in group for c in self.cands[(mp, p)] if c.pair not in r.seen]
        least = min(self.votes_by_pair[c.pair] for c in open_)
        return rng.choice([c for c in open_ if self.votes_by_pair[c.pair] == least])

    def progress(self, rater_id: str) -> tuple[int, int, int]:
        """(pairs rated, pairs left, quality checks answered) for the rater.

        Rated + left = every pair of the run; repeats and gold pairs are the checks."""
        r = self.raters.get(rater_id) or RaterState()
        return r.seen_candidates, len(self.candidates) - r.seen_candidates, r.n_repeat + r.n_gold


def uncertainty_from_cells(cells: Mapping[tuple[str, str, str], int], models: Sequence[str]
                           ) -> dict[ModelPair, float]:
    """:func:`pairs.order_uncertainty` from aggregated (left, right, choice) vote counts."""
    import numpy as np
    import pandas as pd

    from harness.leaderboard.preference import bradley_terry

    models = sorted(models)
    keep = {k: n for k, n in cells.items() if k[0] in models and k[1] in models and n > 0}
    theta = None
    if keep:
        keys = list(keep)
        idx = np.repeat(np.arange(len(keys)), [keep[k] for k in keys])
        # One row per vote, as bradley_terry takes them, but categorical (left and right over the
        # same categories, so they compare): its set and map operations then touch the few
        # distinct values, not 100,000 strings.
        active = sorted({k[0] for k in keys} | {k[1] for k in keys})  # only models with votes
        choices = sorted({k[2] for k in keys})
        codes = {"left": [active.index(k[0]) for k in keys], "right": [active.index(k[1]) for k in keys],
                 "choice": [choices.index(k[2]) for k in keys]}
        table = pd.DataFrame({
            col: pd.Categorical.from_codes(np.asarray(codes[col])[idx],
                                           categories=choices if col == "choice" else active)
            for col in ("left", "right", "choice")})
        theta = bradley_terry(table, models=models)
    n: Counter = Counter()
    for (lm, rm, _), k in keep.items():
        n[(lm, rm) if lm <= rm else (rm, lm)] += k
    out = {}
    for i, a in enumerate(models):
        for b in models[i + 1:]:
            ta = float(theta[a]) if theta is not None else math.nan
            tb = float(theta[b]) if theta is not None else math.nan
            d = abs(ta - tb) if math.isfinite(ta) and math.isfinite(tb) else 0.0
            p = 1.0 / (1.0 + math.exp(-d))
            out[(a, b)] = d * math.sqrt(n[(a, b)] * p * (1.0 - p))
    return out


def build(candidates: Sequence[Candidate], items: Mapping[str, Item], votes: Iterable[VoteRow],
          *, excluded: Iterable[str] = ()) -> PairIndex:
    """An index fed with ``votes`` (oldest first); votes of ``excluded`` raters are not counted."""
    idx = PairIndex(candidates, items)
    out = set(excluded)
    idx.add_many((v, v.rater_id not in out) for v in votes)
    return idx

