"""Build leaderboard tables from the store (reads only; deterministic for a given store)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harness.leaderboard.agreement import metric_agreement, rater_agreement
from harness.leaderboard.gallery import gallery_rows
from harness.leaderboard.headline import Headline
from harness.leaderboard.preference import PreferenceSummary, summarise
from harness.leaderboard.ranks import apply_headline, metric_replicates, tag_winners
from harness.leaderboard.shortfall import Shortfall, shortfall
from harness.leaderboard.stats import BOOTSTRAP_RESAMPLES, percentile_ci
from harness.leaderboard.stats import mean_ci as mean_ci  # the plain (unclustered) interval, re-exported
from harness.leaderboard.votes import excluded_vote_count, load_votes
from harness.metrics.base import NOTES_KEY, ReadingNotes, output_directions, reading_notes, without_notes
from harness.store import Store
from harness.store.rows import Run, SetScore, UnitCounts


@dataclass
class Leaderboard:
    """Everything a renderer needs, as plain tables."""

    run: Run
    """The run, with its manifest."""
    models: pd.DataFrame
    """One row per model: counts, refusal rate, latency, cost, metric means with CIs
    (``<metric>``, ``_lo``, ``_hi``; seeded percentile bootstrap) and ``<metric>_n``, the values
    that count (None values, e.g. OCR on a prompt without target text, are left out)."""
    by_tag: pd.DataFrame
    """Per-image metrics by (metric, tag, model): value (mean), lo, hi (bootstrap CI), n."""
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per metric: settings, direction and kind (image or set)."""
    reading: dict[str, ReadingNotes] = field(default_factory=dict)
    """Per metric: how to read it, in the metric's words as stored with its values (see
    :func:`metric_reading`); renderers show these and know no metric themselves."""
    preference: PreferenceSummary | None = None
    """Human preference (Bradley-Terry and the tables around it); its ``reason`` says when there
    are no votes. None only for a Leaderboard built without the store."""
    agreement: dict[str, Any] = field(default_factory=dict)
    """``raters``: Krippendorff's alpha dict; ``metrics``: per metric the share of decisive votes
    where it prefers the rater's image (:func:`harness.leaderboard.agreement.metric_agreement`)."""
    gallery: pd.DataFrame = field(default_factory=pd.DataFrame)
    """One row per (gallery prompt, model), the prompts chosen to show differences; columns and
    how they are chosen: :mod:`harness.leaderboard.gallery`."""
    excluded_votes: int = 0
    """Votes left out because their rater is marked excluded."""
    settings: dict[str, Any] = field(default_factory=dict)
    """The report settings the tables were built with."""
    notes: list[str] = field(default_factory=list)
    """What is missing or could not be computed, in words, for every renderer to show."""
    short: list[Shortfall] = field(default_factory=list)
    """Models with fewer images than planned (failed or pending units), in table order, with
    why; none when every model has all its images. Each one's :meth:`Shortfall.line` is also
    in :attr:`notes`."""
    headline: Headline = field(default_factory=lambda: Headline(kind="none", requested="auto",
                                                                label="nothing", why=""))
    """What ranks the models (``report.headline``), why, the winner and who it is tied with;
    ``models`` is sorted by it and carries its score and rank range (see
    :func:`harness.leaderboard.ranks.apply_headline`)."""
    tag_winners: pd.DataFrame = field(default_factory=pd.DataFrame)
    """Per prompt tag, the best model by the headline and the models tied with it, with a
    ready ``line`` (:func:`harness.leaderboard.ranks.tag_winners`)."""

    @property
    def suite(self) -> str:
        return self.run.suite

    @property
    def run_id(self) -> str:
        return self.run.run_id


MODEL_FACTS = ("provider", "open_weights", "licence", "release_date", "parameters")
"""Facts about each model from its config (None where unknown), shown beside the scores."""


def _direction(stored_name: str, settings: dict[str, Any]) -> bool:
    """Higher-is-better of a stored metric name (``name`` or ``name.output``)."""
    outputs = output_directions(settings)
    if "." in stored_name and stored_name.split(".", 1)[1] in outputs:
        return bool(outputs[stored_name.split(".", 1)[1]])
    return bool(settings.get("higher_is_better", True))


def build_leaderboard(store: Store, run_id: str, *, ci: float = 0.95, baseline: str | None = None,
                      n_boot: int = 1000, seed: int = 0, both_bad: str = "tie", gallery_prompts: int = 4,
                      include_excluded: bool = False, headline: str = "auto", min_votes: int = 30,
                      primary_metric: str | None = None, metric_ranks: bool = False,
                      preference_cluster: str = "prompt") -> Leaderboard:
    """Every table of a run's leaderboard, read from the store (deterministic for a given store).

    Args:
        ci: confidence level of every interval.
        baseline: model whose Elo-like rating is fixed at 1000 (None: the mean is 1000).
        n_boot, seed: bootstrap resamples and seed of the preference and agreement intervals.
        both_bad: ``"tie"`` (a "both bad" vote counts as a tie) or ``"drop"``.
        gallery_prompts: prompts shown in the gallery (every model's image side by side).
        include_excluded: also count votes of raters marked excluded (normally left out).
        headline: what ranks the models: ``auto``, ``preference``, ``composite`` or a stored
            metric name (:mod:`harness.leaderboard.headline`).
        min_votes: counted votes from which ``auto`` ranks by human preference.
        primary_metric: the suite's declared primary metric; None takes the one recorded in the
            run manifest (``suite.primary_metric`` of the run's config).
        metric_ranks: add rank ranges for every metric column as well.
        preference_cluster: what the preference bootstrap resamples: ``prompt`` (default),
            ``rater``, ``prompt+rater`` or ``vote``.
    """
    if n_boot < 0 or gallery_prompts < 0:
        raise ValueError(f"n_boot={n_boot} and gallery_prompts={gallery_prompts} must be >= 0")
    run = store.run(run_id)
    infos = store.run_models(run_id)
    counts = store.unit_counts(run_id)
    records = store.records(run_id)
    recs = pd.DataFrame(records)
    scores = pd.DataFrame(store.scores(run_id))
    set_scores = store.set_scores(run_id)
    prompts = store.run_prompts(run_id)
    metric_info: dict[str, dict[str, Any]] = {}
    reading: dict[str, ReadingNotes] = {}
    described = run.manifest.get("metrics") or {}

    rows = []
    for model, info in infos.items():
        c = counts.get(model) or UnitCounts()
        row: dict[str, Any] = {
            "model": model,
            "label": info.get("label", model),
            "family": info.get("family", ""),
            "kind": info.get("kind", ""),
            "untrained": bool(info.get("untrained")),
            **{k: info.get(k) for k in MODEL_FACTS},
            "planned": c.planned,
            "ok": c.ok,
            "refused": c.refused,
            "errors": c.error,
            "pending": c.pending,
        }
        done = row["ok"] + row["refused"]
        row["refusal_rate"] = row["refused"] / done if done else math.nan
        mine = recs[(recs["model"] == model) & (recs["status"] == "ok")] if len(recs) else recs
        lat = mine["latency_s"].dropna().to_numpy(dtype=float) if len(mine) else np.array([])
        row["latency_p50_s"] = float(np.percentile(lat, 50)) if len(lat) else math.nan
        row["latency_p95_s"] = float(np.percentile(lat, 95)) if len(lat) else math.nan
        paid = mine["cost_usd"].dropna().to_numpy(dtype=float) if len(mine) else np.array([])
        price = info.get("price_per_image")
        row["cost_per_image_usd"] = (float(paid.mean()) if len(paid)
                                     else (float(price) if price is not None else math.nan))
        row["cost_per_1000_usd"] = 1000.0 * row["cost_per_image_usd"]
        rows.append(row)
    table = pd.DataFrame(rows)
    if len(table):
        table = table.sort_values("model", kind="stable").reset_index(drop=True)
    names = list(table["model"]) if len(table) else []
    prompt_ids = sorted(prompts)
    replicates: dict[str, np.ndarray] = {}

    tag_rows = []
    if len(scores):
        # A metric re-scored with other settings keeps both sets of values; show the newest.
        newest = scores.sort_values("created_at").groupby("metric")["settings_hash"].last()
        scores = scores[scores["settings_hash"] == scores["metric"].map(newest)]
        for (metric,), grp in scores.groupby(["metric"], sort=True):
            settings = without_notes(grp["settings"].iloc[0])
            metric_info.setdefault(metric, {}).update(
                settings=settings, per="image", higher_is_better=_direction(metric, settings))
            reading[metric] = metric_reading(metric, grp["settings"], described)
            if names:
                # clustered by prompt: a prompt's images are not independent (samples > 1)
                point, n_vals, reps = metric_replicates(grp, names, prompt_ids, seed=seed)
                lo, hi = percentile_ci(reps, ci)
                few = n_vals < 2
                lo[few], hi[few] = np.nan, np.nan
                table[metric], table[f"{metric}_lo"], table[f"{metric}_hi"] = point, lo, hi
                table[f"{metric}_n"] = n_vals.astype(float)
                replicates[metric] = reps
            for _, r in grp.iterrows():
                for tag in prompts.get(r["prompt_id"], {}).get("tags", []):
                    tag_rows.append({"metric": metric, "tag": tag, "model": r["model"], "value": r["value"],
                                     "prompt_id": r["prompt_id"]})
    # As for per-image metrics: a set metric recomputed with other settings shows its newest value.
    newest_set: dict[str, SetScore] = {}
    for s in sorted(set_scores, key=lambda s: s.created_at):
        newest_set[s.metric] = s
    set_scores = [s for s in set_scores if s.settings_hash == newest_set[s.metric].settings_hash]
    for s in set_scores:
        settings = without_notes(s.settings)
        metric_info.setdefault(s.metric, {}).update(
            settings=settings, per="set", higher_is_better=_direction(s.metric, settings))
        idx = table.index[table["model"] == s.model]
        if len(idx):
            table.loc[idx[0], [s.metric, f"{s.metric}_n"]] = [s.value, s.n]
    for metric in sorted({s.metric for s in set_scores}):
        reading[metric] = metric_reading(metric, [s.settings for s in set_scores if s.metric == metric],
                                         described)

    by_tag = pd.DataFrame(tag_rows)
    if len(by_tag):
        cells = []
        for (metric, tag), g in by_tag.dropna(subset=["value"]).groupby(["metric", "tag"], sort=True):
            present = sorted(set(g["model"]))
            point, n_vals, reps = metric_replicates(g, present, sorted(set(g["prompt_id"])), seed=seed)
            lo, hi = percentile_ci(reps, ci)
            for j, model in enumerate(present):
                few = n_vals[j] < 2
                cells.append({"metric": metric, "tag": tag, "model": model, "value": float(point[j]),
                              "lo": math.nan if few else float(lo[j]),
                              "hi": math.nan if few else float(hi[j]), "n": int(n_vals[j])})
        by_tag = pd.DataFrame(cells, columns=["metric", "tag", "model", "value", "lo", "hi", "n"])
    votes = load_votes(store, run_id, include_excluded=include_excluded)
    pref = summarise(votes, models=names, baseline=baseline, n_boot=n_boot, seed=seed, ci=ci,
                     both_bad=both_bad, cluster=preference_cluster)
    if primary_metric is None:
        primary_metric = ((run.manifest.get("config") or {}).get("suite") or {}).get("primary_metric")
    head, table = apply_headline(table, metric_info, replicates, pref, requested=headline,
                                 min_votes=min_votes, primary=primary_metric, suite=run.suite, ci=ci,
                                 resamples=BOOTSTRAP_RESAMPLES, metric_ranks=metric_ranks)
    per_image = {k: bool(v["higher_is_better"]) for k, v in metric_info.items() if v.get("per") == "image"}
    key_scores = scores[["key", "metric", "value"]] if len(scores) else pd.DataFrame(
        columns=["key", "metric", "value"])
    agreement = {
        "raters": rater_agreement(votes, n_boot=n_boot, seed=seed, ci=ci, both_bad=both_bad),
        "metrics": metric_agreement(votes, key_scores, per_image, n_boot=n_boot, seed=seed, ci=ci),
    }
    excluded = 0 if include_excluded else excluded_vote_count(store, run_id)
    lb = Leaderboard(
        run=run, models=table, by_tag=by_tag, metrics=metric_info, reading=reading, preference=pref,
        agreement=agreement,
        gallery=gallery_rows(recs, key_scores, prompts, table, list(per_image), gallery_prompts, store,
                             headline=head, votes=votes),
        excluded_votes=excluded,
        settings=dict(ci=ci, baseline=baseline, n_boot=n_boot, seed=seed, both_bad=both_bad,
                      gallery_prompts=gallery_prompts, include_excluded=include_excluded, headline=headline,
                      min_votes=min_votes, primary_metric=primary_metric, metric_ranks=metric_ranks,
                      preference_cluster=preference_cluster),
        headline=head,
        tag_winners=tag_winners(head, table, scores, prompts, metric_info, votes, pref, ci=ci,
                                resamples=BOOTSTRAP_RESAMPLES, seed=seed, n_boot=n_boot, both_bad=both_bad),
    )
    failed: dict[str, list[Any]] = {}
    for rec in records:
        if rec.status == "error":
            failed.setdefault(rec.model, []).append(rec)
    for _, r in table.iterrows():
        s = shortfall(r["model"], r["label"], counts.get(r["model"]) or UnitCounts(),
                      failed.get(r["model"], []))
        if s is not None:
            lb.short.append(s)
    lb.notes = missing_notes(lb)
    return lb


def metric_reading(metric: str, stored: Iterable[Mapping[str, Any]],
                   described: Mapping[str, Mapping[str, Any]]) -> ReadingNotes:
    """How to read a stored metric (``name`` or ``name.output``): the notes stored with its values
    (``stored``: their settings). Values stored before metrics carried notes keep their settings
    hash, so a resumed run does not re-score them; their notes then come from the run manifest
    (``described``: metric name -> settings, rewritten by every run) when it describes the same
    settings. Neither: no notes (the report shows none rather than guessed ones)."""
    stored = list(stored)
    for settings in stored:
        if NOTES_KEY in settings:
            return reading_notes(settings)
    current = described.get(metric.split(".", 1)[0]) or {}
    if stored and NOTES_KEY in current and without_notes(current) == without_notes(stored[0]):
        return reading_notes(current)
    return ReadingNotes()


def missing_notes(lb: Leaderboard) -> list[str]:
    """What a reader should know is missing, in words (no votes, a model without images, ...)."""
    notes = []
    t = lb.models
    if not len(t):
        return ["The run has no models: nothing to rank."]
    if len(t) == 1:
        notes.append(f"Only one model ({t['label'].iloc[0]}): there is nothing to compare it with, so no "
                     "ranking and no human preference.")
    short = {s.model: s for s in lb.short}
    for _, r in t.iterrows():
        if r["ok"] == 0 and r["refused"] > 0:
            notes.append(f"{r['label']}: every finished request was refused ({int(r['refused'])}): no "
                         "images, so no metrics, no latency and no votes.")
        elif r["ok"] == 0 and r["model"] not in short:
            notes.append(f"{r['label']}: no images yet ({int(r['pending'])} pending, {int(r['errors'])} "
                         "errors).")
        if r["model"] in short:  # fewer images than planned: how many and why
            notes.append(short[r["model"]].line())
    pref = lb.preference
    if pref is not None and len(t) > 1:
        if pref.n_votes == 0:
            extra = (f" ({lb.excluded_votes} votes from excluded raters are left out)"
                     if lb.excluded_votes else "")
            notes.append("No human votes for this run yet" + extra + ": the preference and agreement "
                         "sections are empty. Invite raters with 'harness raters add NAME' and collect "
                         "votes with 'harness rate'.")
        else:
            for a, b in pref.never_compared():
                notes.append(f"{_label(t, a)} and {_label(t, b)} were never shown together: their "
                             "difference rests on comparisons with other models only.")
            unrated = pref.table.loc[pref.table["votes"] == 0, "model"]
            for m in unrated:
                notes.append(f"{_label(t, m)} has no votes: it has no human-preference rating.")
            alpha = lb.agreement.get("raters", {})
            if alpha.get("reason"):
                notes.append(f"Inter-rater agreement: {alpha['reason']}.")
    return notes


def _label(t: pd.DataFrame, model: str) -> str:
    hit = t.loc[t["model"] == model, "label"]
    return str(hit.iloc[0]) if len(hit) else model
