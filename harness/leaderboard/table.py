"""Build leaderboard tables from the store (reads only; deterministic for a given store)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harness.metrics.base import output_directions
from harness.store import Store


@dataclass
class Leaderboard:
    """Everything a renderer needs, as plain tables."""

    run: dict[str, Any]
    """Run row with its manifest."""
    models: pd.DataFrame
    """One row per model: counts, refusal rate, latency, cost, metric means with CIs
    (``<metric>``, ``_lo``, ``_hi``; seeded percentile bootstrap) and ``<metric>_n``, the values
    that count (None values, e.g. OCR on a prompt without target text, are left out)."""
    by_tag: pd.DataFrame
    """Per-image metrics by (metric, tag, model): value (mean), lo, hi (bootstrap CI), n."""
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per metric: settings, direction and kind (image or set)."""

    @property
    def suite(self) -> str:
        return self.run["suite"]

    @property
    def run_id(self) -> str:
        return self.run["run_id"]


BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


def mean_ci(values: np.ndarray, level: float, *, resamples: int = BOOTSTRAP_RESAMPLES,
            seed: int = BOOTSTRAP_SEED) -> tuple[float, float, float]:
    """Mean with a seeded percentile-bootstrap confidence interval.

    Resamples the values with replacement ``resamples`` times (numpy, vectorised, in chunks so
    memory stays bounded) and takes the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles
    of the resampled means. Deterministic: the same values and seed give the same interval.
    NaN bounds below 2 values (no spread to resample); all NaN for none. Drop missing values
    before calling.
    """
    v = np.asarray(values, dtype=float)
    n = len(v)
    if n == 0:
        return (math.nan, math.nan, math.nan)
    m = float(v.mean())
    if n < 2:
        return (m, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    step = max(1, 4_000_000 // n)  # resamples per chunk: at most ~4M indices (32 MB) at once
    for start in range(0, resamples, step):
        k = min(step, resamples - start)
        means[start : start + k] = v[rng.integers(0, n, size=(k, n))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return (m, float(lo), float(hi))


def _direction(stored_name: str, settings: dict[str, Any]) -> bool:
    """Higher-is-better of a stored metric name (``name`` or ``name.output``)."""
    outputs = output_directions(settings)
    if "." in stored_name and stored_name.split(".", 1)[1] in outputs:
        return bool(outputs[stored_name.split(".", 1)[1]])
    return bool(settings.get("higher_is_better", True))


def build_leaderboard(store: Store, run_id: str, *, ci: float = 0.95) -> Leaderboard:
    run = store.run(run_id)
    infos = store.run_models(run_id)
    counts = store.unit_counts(run_id)
    recs = pd.DataFrame(store.records(run_id))
    scores = pd.DataFrame(store.scores(run_id))
    set_scores = store.set_scores(run_id)
    prompts = store.run_prompts(run_id)
    metric_info: dict[str, dict[str, Any]] = {}

    rows = []
    for model, info in infos.items():
        c = counts.get(model, {})
        row: dict[str, Any] = {
            "model": model,
            "label": info.get("label", model),
            "family": info.get("family", ""),
            "kind": info.get("kind", ""),
            "untrained": bool(info.get("untrained")),
            "planned": c.get("planned", 0),
            "ok": c.get("ok", 0),
            "refused": c.get("refused", 0),
            "errors": c.get("error", 0),
            "pending": c.get("pending", 0),
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
        rows.append(row)
    table = pd.DataFrame(rows)

    tag_rows = []
    if len(scores):
        # A metric re-scored with other settings keeps both sets of values; show the newest.
        newest = scores.sort_values("created_at").groupby("metric")["settings_hash"].last()
        scores = scores[scores["settings_hash"] == scores["metric"].map(newest)]
        for (metric,), grp in scores.groupby(["metric"], sort=True):
            settings = grp["settings"].iloc[0]
            metric_info.setdefault(metric, {}).update(
                settings=settings, per="image", higher_is_better=_direction(metric, settings))
            for model in table["model"] if len(table) else []:
                vals = grp.loc[grp["model"] == model, "value"].dropna().to_numpy(dtype=float)
                m, lo, hi = mean_ci(vals, ci)
                idx = table.index[table["model"] == model][0]
                cols = [metric, f"{metric}_lo", f"{metric}_hi", f"{metric}_n"]
                table.loc[idx, cols] = [m, lo, hi, len(vals)]
            for _, r in grp.iterrows():
                for tag in prompts.get(r["prompt_id"], {}).get("tags", []):
                    tag_rows.append({"metric": metric, "tag": tag, "model": r["model"], "value": r["value"]})
    # As for per-image metrics: a set metric recomputed with other settings shows its newest value.
    newest_set: dict[str, dict[str, Any]] = {}
    for s in sorted(set_scores, key=lambda s: s["created_at"]):
        newest_set[s["metric"]] = s
    set_scores = [s for s in set_scores if s["settings_hash"] == newest_set[s["metric"]]["settings_hash"]]
    for s in set_scores:
        metric_info.setdefault(s["metric"], {}).update(
            settings=s["settings"], per="set", higher_is_better=_direction(s["metric"], s["settings"]))
        idx = table.index[table["model"] == s["model"]]
        if len(idx):
            table.loc[idx[0], [s["metric"], f"{s['metric']}_n"]] = [s["value"], s["n"]]

    by_tag = pd.DataFrame(tag_rows)
    if len(by_tag):
        cells = []
        for (metric, tag, model), g in by_tag.dropna(subset=["value"]).groupby(
                ["metric", "tag", "model"], sort=True):
            vals = g["value"].to_numpy(dtype=float)
            m_, lo, hi = mean_ci(vals, ci)
            cells.append({"metric": metric, "tag": tag, "model": model, "value": m_, "lo": lo,
                          "hi": hi, "n": len(vals)})
        by_tag = pd.DataFrame(cells, columns=["metric", "tag", "model", "value", "lo", "hi", "n"])
    sort_metric = next((m for m in metric_info if m in table.columns), None)
    if sort_metric is not None:
        asc = not metric_info[sort_metric].get("higher_is_better", True)
        table = table.sort_values([sort_metric, "model"], ascending=[asc, True], na_position="last")
    elif len(table):
        table = table.sort_values("model")
    return Leaderboard(run=run, models=table.reset_index(drop=True), by_tag=by_tag, metrics=metric_info)
