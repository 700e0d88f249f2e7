"""Which prompts the gallery shows: a few chosen to show how the models differ.

Half the places go to the prompt tags (round robin: each tag's prompt where the models differ
most, tags whose best prompt differs most first), the rest to the prompts where the models
disagree most on the headline metric(s), whatever their tag. Per prompt, every model shows its
first ok image (else its first record, e.g. a refusal) with that image's per-image scores.

Disagreement on a prompt follows the headline. A metric headline (or a composite of metrics):
per metric, the spread (largest minus smallest) of the models' mean values on that prompt,
divided by the standard deviation of that metric over every image of the run (so metrics on
different scales weigh alike), averaged over the metrics. Human preference: the spread of the
models' win shares in that prompt's votes (a tie or "both bad" counts half a win each). Without
a headline, every per-image metric. Deterministic: ties go to the lower prompt id.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from harness.store import Store

GALLERY_COLUMNS = ["prompt_id", "prompt", "tags", "why", "disagreement", "model", "label", "sample", "key",
                   "status", "image_sha256", "image_path", "refusal_reason", "scores"]
"""One row per (gallery prompt, model); ``why`` says why the prompt was chosen (with the number behind
the choice), ``disagreement`` is that number (NaN when no metric has values from two models on it)."""


def disagreement(recs: pd.DataFrame, scores: pd.DataFrame, metrics: Sequence[str]) -> pd.Series:
    """Prompt id -> how much the models disagree on it over ``metrics`` (see the module doc);
    NaN for a prompt where no metric has values from two models."""
    if not len(recs) or not len(scores) or not metrics:
        return pd.Series(dtype=float)
    where = recs[["key", "model", "prompt_id"]].drop_duplicates("key")
    s = (scores.loc[scores["metric"].isin(list(metrics)), ["key", "metric", "value"]]
         .dropna(subset=["value"]).merge(where, on="key"))
    if not len(s):
        return pd.Series(dtype=float)
    parts = []
    for _, g in s.groupby("metric", sort=True):
        sd = float(np.std(g["value"].to_numpy(dtype=float)))
        per = g.groupby(["prompt_id", "model"], sort=True)["value"].mean().groupby(level=0)
        spread = per.max() - per.min()
        spread[per.count() < 2] = math.nan
        parts.append(spread / sd if sd > 0 else spread * 0.0)
    return pd.concat(parts, axis=1).mean(axis=1, skipna=True).sort_index()


def vote_disagreement(votes: pd.DataFrame) -> pd.Series:
    """Prompt id -> spread (largest minus smallest) of the models' win shares in that prompt's
    votes (ties and "both bad" half a win each); NaN where fewer than two models have votes."""
    if votes is None or not len(votes):
        return pd.Series(dtype=float)
    left = votes["choice"].map({"left": 1.0, "right": 0.0}).fillna(0.5).to_numpy(dtype=float)
    long = pd.DataFrame({
        "prompt_id": np.concatenate([votes["prompt_id"].to_numpy(), votes["prompt_id"].to_numpy()]),
        "model": np.concatenate([votes["left"].to_numpy(), votes["right"].to_numpy()]),
        "won": np.concatenate([left, 1.0 - left]),
    })
    share = long.groupby(["prompt_id", "model"], sort=True)["won"].mean().groupby(level=0)
    spread = share.max() - share.min()
    spread[share.count() < 2] = math.nan
    return spread.sort_index()


def headline_metrics(headline: Any, metrics: Sequence[str]) -> list[str] | None:
    """The per-image metrics the headline rests on: a metric headline's metric, a composite's
    metrics (those among ``metrics``); None for a preference headline or none at all.
    ``headline``: a :class:`harness.leaderboard.headline.Headline`-like object or a list of names."""
    if headline is None:
        return None
    if isinstance(headline, (list, tuple)):
        return [m for m in headline if m in metrics] or None
    kind = getattr(headline, "kind", "none")
    if kind == "metric":
        return [m for m in [getattr(headline, "metric", None)] if m in metrics] or None
    if kind == "composite":
        return [m for m in getattr(headline, "metrics", []) if m in metrics] or None
    return None


def choose_prompts(prompt_ids: Sequence[str], tags: dict[str, list[str]], score: pd.Series,
                   n: int) -> list[tuple[str, str]]:
    """Up to ``n`` (prompt id, why) pairs: ``n - n // 2`` stratified over tags, the rest by
    disagreement (see the module doc). ``tags``: prompt id -> its tags (``category:`` tags
    only when any prompt has one)."""
    ids = sorted(set(prompt_ids))
    if n <= 0 or not ids:
        return []
    value = {p: float(score.get(p, math.nan)) for p in ids}

    def rank(p: str) -> tuple[float, str]:  # most disagreement first, unknown last, then by id
        v = value[p]
        return (-v if v == v else math.inf, p)

    by_rank = sorted(ids, key=rank)
    chosen: dict[str, str] = {}
    strata: dict[str, list[str]] = {}
    for p in by_rank:
        for t in tags.get(p, []):
            strata.setdefault(t, []).append(p)
    order = sorted(strata, key=lambda t: (rank(strata[t][0]), t))
    n_strata = n - n // 2 if strata else 0
    while len(chosen) < n_strata and any(strata.values()):
        for t in order:
            if len(chosen) >= n_strata:
                break
            left = [p for p in strata[t] if p not in chosen]
            strata[t] = left
            if left:
                chosen[left[0]] = f"tag {t}: " + (
                    "the prompt where the models differ most" if value[left[0]] == value[left[0]]
                    else "its first prompt (no scores to compare)")
    for p in by_rank:
        if len(chosen) >= n:
            break
        if p not in chosen:
            chosen[p] = ("among the prompts where the models disagree most" if value[p] == value[p]
                         else "next by id (no scores to compare)")
    return list(chosen.items())


def gallery_rows(recs: pd.DataFrame, scores: pd.DataFrame, prompts: dict[str, dict[str, Any]],
                 table: pd.DataFrame, metrics: list[str], n_prompts: int, store: Store, *,
                 headline: Any = None, votes: pd.DataFrame | None = None) -> pd.DataFrame:
    """The gallery table (:data:`GALLERY_COLUMNS`).

    Args:
        recs: the run's records (key, model, prompt_id, sample, status, image_sha256, ...).
        scores: per-image scores (key, metric, value).
        prompts: prompt id -> {"text", "tags"}.
        table: the models table (model, label), in the order the gallery shows them.
        metrics: per-image metrics whose values each image shows.
        n_prompts: how many prompts (0: no gallery).
        headline: what ranks the models (a Headline, or metric names): disagreement is measured
            on it (see the module doc); None: on every metric of ``metrics``.
        votes: the run's votes (:func:`harness.leaderboard.votes.load_votes`), for a preference
            headline.
    """
    if not len(recs) or not len(table) or n_prompts == 0:
        return pd.DataFrame(columns=GALLERY_COLUMNS)
    on_votes = getattr(headline, "kind", None) == "preference" and votes is not None and len(votes) > 0
    used = headline_metrics(headline, metrics) or list(metrics)
    score = vote_disagreement(votes) if on_votes else disagreement(recs, scores, used)

    def measure(v: float) -> str:  # the number behind the choice, in its own unit
        if v != v:
            return ""
        if on_votes:
            return f" (human preference: the models' win shares {v:.2f} apart)"
        return f" ({', '.join(used)}: the models' means {v:.2f} standard deviations apart)"

    all_tags = {p: list(prompts.get(p, {}).get("tags", [])) for p in set(recs["prompt_id"])}
    if any(t.startswith("category:") for ts in all_tags.values() for t in ts):
        all_tags = {p: [t for t in ts if t.startswith("category:")] for p, ts in all_tags.items()}
    chosen = choose_prompts(list(all_tags), all_tags, score, n_prompts)
    values = (scores[scores["metric"].isin(metrics)].dropna(subset=["value"])
              .groupby("key")[["metric", "value"]].apply(lambda g: dict(zip(g["metric"], g["value"],
                                                                            strict=True)))
              if len(scores) else pd.Series(dtype=object))
    rows = []
    for pid, why in chosen:
        head = dict(prompt_id=pid, prompt=prompts.get(pid, {}).get("text", ""),
                    tags=list(prompts.get(pid, {}).get("tags", [])),
                    why=why + measure(float(score.get(pid, math.nan))),
                    disagreement=float(score.get(pid, math.nan)))
        for _, m in table.iterrows():
            mine = recs[(recs["prompt_id"] == pid) & (recs["model"] == m["model"])]
            if not len(mine):
                rows.append(dict(head, model=m["model"], label=m["label"], sample=None, key=None,
                                 status="pending", image_sha256=None, image_path=None, refusal_reason=None,
                                 scores={}))
                continue
            mine = mine.assign(_bad=mine["status"] != "ok").sort_values(["_bad", "sample"], kind="stable")
            r = mine.iloc[0]
            sha = r["image_sha256"] if isinstance(r["image_sha256"], str) else None
            rows.append(dict(head, model=m["model"], label=m["label"], sample=int(r["sample"]), key=r["key"],
                             status=r["status"], image_sha256=sha,
                             image_path=str(store.image_path(sha)) if sha else None,
                             refusal_reason=r["refusal_reason"] if isinstance(r["refusal_reason"], str)
                             else None,
                             scores=dict(sorted(values.get(r["key"], {}).items()))))
    return pd.DataFrame(rows, columns=GALLERY_COLUMNS)
