"""Headline scores, rank ranges and per-tag winners for a leaderboard's models table.

Pure functions on the tables :func:`harness.leaderboard.table.build_leaderboard` reads from the
store: per-image scores (one row per image and metric), the models table, the preference
summary. Every interval here comes from a clustered bootstrap (prompts, then images within
them) so a prompt's several images count as what they are, correlated.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from harness.leaderboard import headline as hl
from harness.leaderboard.preference import (
    ELO_ANCHOR,
    ELO_SCALE,
    PreferenceSummary,
    strengths_with_replicates,
)
from harness.leaderboard.stats import (
    BOOTSTRAP_RESAMPLES,
    cluster_matrix,
    clustered_replicates,
    percentile_ci,
    rank_ranges,
    rank_text,
)
from harness.metrics.base import output_directions

PREFERENCE_LABEL = "human preference (Bradley–Terry rating)"


def metric_replicates(scores: pd.DataFrame, names: list[str], prompts: list[str], *,
                      resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(point means, value counts, replicates (resamples, models)) of one metric's per-image
    values (columns model, prompt_id, value) for ``names``, clustered by prompt."""
    _, values, counts = cluster_matrix(scores, names, prompts)
    point, reps = clustered_replicates(values, counts, resamples=resamples, seed=seed)
    return point, counts.sum(axis=1), reps


def head_metrics(metrics: dict[str, dict[str, Any]]) -> list[str]:
    """One stored name per metric: single-number metrics, and each multi-output metric's first
    (headline) output; in name order."""
    out = []
    for k in sorted(metrics):
        outputs = list(output_directions(metrics[k].get("settings", {})))
        base, _, o = k.partition(".")
        if o in outputs and outputs.index(o) != 0 and f"{base}.{outputs[0]}" in metrics:
            continue
        out.append(k)
    return out


def tag_label(tag: str) -> str:
    """``category:word`` -> ``word``; other tags as written."""
    return tag.split(":", 1)[1] if tag.startswith("category:") else tag


def _preference_scores(pref: PreferenceSummary, names: list[str]) -> tuple[np.ndarray, np.ndarray,
                                                                             np.ndarray, np.ndarray | None]:
    tab = pref.table.set_index("model")
    point = np.array([float(tab["rating"].get(m, math.nan)) for m in names])
    lo = np.array([float(tab["rating_lo"].get(m, math.nan)) for m in names])
    hi = np.array([float(tab["rating_hi"].get(m, math.nan)) for m in names])
    reps = pref.replicates
    if reps is None or len(reps) < 2:
        return point, lo, hi, None
    r = np.full((len(reps), len(names)), np.nan)
    for j, m in enumerate(names):
        if m in reps.columns and np.isfinite(point[j]):
            r[:, j] = ELO_ANCHOR + ELO_SCALE * reps[m].to_numpy()
    return point, lo, hi, r


def headline_scores(kind: str, metric: str | None, names: list[str], table: pd.DataFrame,
                    metrics: dict[str, dict[str, Any]], replicates: dict[str, np.ndarray],
                    pref: PreferenceSummary | None, ci: float, resamples: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, list[str], bool]:
    """(point, lo, hi, replicates or None, composite metrics, higher_is_better) of the headline
    for ``names`` (the models table's rows, in order)."""
    n = len(names)
    nan = np.full(n, np.nan)
    if not n:
        return nan, nan, nan, None, [], True
    by_model = table.set_index("model")
    if kind == "preference":
        if pref is None or pref.n_votes == 0:
            return nan, nan, nan, None, [], True
        return (*_preference_scores(pref, names), [], True)
    if kind == "metric" and metric is not None:
        point = by_model[metric].reindex(names).to_numpy(dtype=float)
        hib = bool(metrics[metric].get("higher_is_better", True))
        if metric in replicates:
            lo = by_model[f"{metric}_lo"].reindex(names).to_numpy(dtype=float)
            hi = by_model[f"{metric}_hi"].reindex(names).to_numpy(dtype=float)
            return point, lo, hi, replicates[metric], [], hib
        return point, nan, nan, None, [], hib
    if kind == "composite":
        used = [k for k in head_metrics(metrics) if k in by_model.columns
                and by_model[k].reindex(names).notna().sum() >= min(2, n)]
        if not used:
            return nan, nan, nan, None, [], False
        points = [by_model[k].reindex(names).to_numpy(dtype=float) for k in used]
        point, reps = hl.composite(points, [replicates.get(k) for k in used],
                                   [bool(metrics[k].get("higher_is_better", True)) for k in used], resamples)
        lo, hi = percentile_ci(reps, ci) if reps is not None else (nan, nan)
        return point, lo, hi, reps, used, False
    return nan, nan, nan, None, [], True


def apply_headline(table: pd.DataFrame, metrics: dict[str, dict[str, Any]], replicates: dict[str, np.ndarray],
                   pref: PreferenceSummary | None, *, requested: str, min_votes: int, primary: str | None,
                   suite: str, ci: float, resamples: int, metric_ranks: bool = False
                   ) -> tuple[hl.Headline, pd.DataFrame]:
    """The headline and the models table with its columns (headline, headline_lo/_hi, rank,
    rank_lo, rank_hi, rank_text), sorted best first (models without a score last, by name).

    ``replicates``: per-image metric name -> bootstrap replicates (resamples, models) in the
    order of ``table``'s rows. ``metric_ranks`` adds ``<metric>_rank_lo/_rank_hi/_rank_text``
    for every metric column (exact ranks for set metrics, which have no interval).
    """
    names = list(table["model"]) if len(table) else []
    n_votes = pref.n_votes if pref is not None else 0
    rated = int(pref.table["rating"].notna().sum()) if pref is not None and n_votes else 0
    kind, metric, why = hl.choose(requested, n_votes=n_votes, rated=rated, min_votes=min_votes,
                                  primary=primary, available=list(metrics), suite=suite)
    if not names:
        kind = "none"
    point, lo, hi, reps, used, hib = headline_scores(kind, metric, names, table, metrics, replicates, pref,
                                                     ci, resamples)
    if kind == "composite":
        label = (f"composite (mean rank over {len(used)} metric{'s' if len(used) != 1 else ''}: "
                 f"{', '.join(used)}; lower is better)" if used else "composite (no metric to rank by)")
    else:
        label = {"preference": PREFERENCE_LABEL, "metric": metric or "", "none": "nothing"}[kind]
    rank, rlo, rhi, better = rank_ranges(point, reps, hib, ci)
    winner, tied = hl.verdict(names, point, better, rank)
    h = hl.Headline(kind=kind, requested=requested, label=label, why=why, higher_is_better=hib, metric=metric,
                    metrics=used, winner=winner, tied_with=tied, ci=ci)
    t = table.copy()
    t["headline"], t["headline_lo"], t["headline_hi"] = point, lo, hi
    t["rank"], t["rank_lo"], t["rank_hi"] = rank, rlo, rhi
    t["rank_text"] = [rank_text(a, b) for a, b in zip(rlo, rhi, strict=True)]
    if metric_ranks:
        for k, info in metrics.items():
            if k not in t.columns:
                continue
            _, klo, khi, _ = rank_ranges(t[k].to_numpy(dtype=float), replicates.get(k),
                                         bool(info.get("higher_is_better", True)), ci)
            t[f"{k}_rank_lo"], t[f"{k}_rank_hi"] = klo, khi
            t[f"{k}_rank_text"] = [rank_text(a, b) for a, b in zip(klo, khi, strict=True)]
    if len(t):
        t = t.assign(_r=t["rank"].fillna(math.inf)).sort_values(["_r", "model"], kind="stable")
        t = t.drop(columns="_r").reset_index(drop=True)
    labels = dict(zip(t["model"], t["label"], strict=True)) if len(t) else {}
    h.sentence = hl.sentence(h, labels, len(t))
    return h, t


TAG_WINNER_COLUMNS = ["tag", "tag_label", "by", "winner", "tied_with", "n", "line"]


def tag_winners(h: hl.Headline, table: pd.DataFrame, scores: pd.DataFrame, prompts: dict[str, dict[str, Any]],
                metrics: dict[str, dict[str, Any]], votes: pd.DataFrame, pref: PreferenceSummary | None, *,
                ci: float, resamples: int, seed: int, n_boot: int, both_bad: str) -> pd.DataFrame:
    """Per prompt tag (the suite's ``category:`` tags when it has them, else every tag), the
    best model by the headline on that tag's prompts and the models it cannot be told apart
    from; ``by`` says what decided. Human preference: a Bradley-Terry fit on the tag's votes
    (bootstrap clustered as for the whole run). A per-image metric: its values on the tag's
    prompts; where it has none there (``attributes.all`` on counting prompts), the first output
    of the same metric that has, else the composite of the per-image metrics that have values
    there. A set metric (no per-image values) or the composite: the composite of the per-image
    headline metrics."""
    names = list(table["model"]) if len(table) else []
    tags = sorted({t for p in prompts.values() for t in p.get("tags", [])})
    cats = [t for t in tags if t.startswith("category:")]
    tags = cats or tags
    if not names or not tags or h.kind == "none":
        return pd.DataFrame(columns=TAG_WINNER_COLUMNS)
    labels = dict(zip(table["model"], table["label"], strict=True))
    per_image = {k: v for k, v in metrics.items() if v.get("per") == "image"}
    comp = [k for k in (h.metrics or head_metrics(metrics)) if k in per_image]
    rows = []
    for tag in tags:
        pids = sorted(p for p, d in prompts.items() if tag in d.get("tags", []))
        if h.kind == "preference":
            by = "preference"
            mine = votes[votes["prompt_id"].isin(pids)] if len(votes) else votes
            n = len(mine)
            point, reps, hib = np.full(len(names), np.nan), None, True
            if n:
                cluster = (pref.settings if pref is not None else {}).get("cluster", "vote")
                point, reps = strengths_with_replicates(mine, names, n_boot=n_boot, seed=seed,
                                                        both_bad=both_bad, cluster=cluster)
        else:
            sub = scores[scores["prompt_id"].isin(pids)] if len(scores) else scores
            have = set(sub.dropna(subset=["value"])["metric"]) if len(sub) else set()
            by, used = _tag_metrics(h, per_image, comp, have, tag_label(tag))
            pts, rps, dirs = [], [], []
            n = 0
            for k in used:
                p, cnt, r = metric_replicates(sub[sub["metric"] == k], names, pids, resamples=resamples,
                                              seed=seed)
                n = max(n, int(cnt.sum()))
                pts.append(p)
                rps.append(r)
                dirs.append(bool(metrics[k].get("higher_is_better", True)))
            if by == "composite":
                keep = [i for i, p in enumerate(pts) if np.isfinite(p).sum() >= min(2, len(names))]
                point, reps = hl.composite([pts[i] for i in keep], [rps[i] for i in keep],
                                           [dirs[i] for i in keep], resamples)
                point = point if keep else np.full(len(names), np.nan)
                by = f"composite of {', '.join(used[i] for i in keep)}" if keep else "composite"
                hib = False
            elif used:
                point, reps, hib = pts[0], rps[0], dirs[0]
            else:
                point, reps, hib = np.full(len(names), np.nan), None, True
        rank, _, _, better = rank_ranges(point, reps, hib, ci)
        winner, tied = hl.verdict(names, point, better, rank)
        text = f"best for {tag_label(tag)}: "
        if winner is None:
            text += "not ranked (no scores on these prompts)"
        else:
            text += labels[winner] + (f" (tied with {', '.join(labels[m] for m in tied)})" if tied else "")
            if by not in (_headline_by(h), f"composite of {', '.join(comp)}"):
                text += f", by {by}"  # the headline has no values on these prompts
        rows.append(dict(tag=tag, tag_label=tag_label(tag), by=by, winner=winner, tied_with=tied, n=n,
                         line=text))
    return pd.DataFrame(rows, columns=TAG_WINNER_COLUMNS)


def _headline_by(h: hl.Headline) -> str:
    """What ranks the tags when nothing forces another choice."""
    if h.kind == "preference":
        return "preference"
    if h.kind == "metric" and h.metric is not None and not h.metrics:
        return h.metric
    return "composite"


def _tag_metrics(h: hl.Headline, per_image: dict[str, dict[str, Any]], comp: list[str], have: set[str],
                 label: str) -> tuple[str, list[str]]:
    """(by, metrics) that rank one tag for a metric or composite headline; ``have``: metrics
    with values on the tag's prompts; ``label``: the tag's name (an output of that name, e.g.
    ``count`` on counting prompts, is preferred over the first one with values)."""
    if h.kind == "metric" and h.metric in per_image:
        if h.metric in have:
            return h.metric, [h.metric]
        base = h.metric.split(".", 1)[0]
        outs = [f"{base}.{o}" for o in output_directions(per_image[h.metric].get("settings", {}))]
        outs = [k for k in outs if k in per_image and k in have]
        named = [k for k in outs if k == f"{base}.{label}"]
        if named or outs:
            return (named or outs)[0], [(named or outs)[0]]
        comp = head_metrics(per_image)
    return "composite", [k for k in comp if k in have]
