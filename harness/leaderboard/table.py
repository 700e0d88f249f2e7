"""Build leaderboard tables from the store (reads only; deterministic for a given store)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from harness.store import Store


@dataclass
class Leaderboard:
    """Everything a renderer needs, as plain tables."""

    run: dict[str, Any]
    """Run row with its manifest."""
    models: pd.DataFrame
    """One row per model: counts, refusal rate, latency, cost, metric means with CIs."""
    by_tag: pd.DataFrame
    """Mean of each per-image metric by (metric, tag, model)."""
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per metric: settings, direction and kind (image or set)."""

    @property
    def suite(self) -> str:
        return self.run["suite"]

    @property
    def run_id(self) -> str:
        return self.run["run_id"]


def mean_ci(values: np.ndarray, level: float) -> tuple[float, float, float]:
    """Mean with a normal-approximation confidence interval (t-free; N is usually large)."""
    n = len(values)
    if n == 0:
        return (math.nan, math.nan, math.nan)
    m = float(values.mean())
    if n < 2:
        return (m, math.nan, math.nan)
    z = NormalDist().inv_cdf(0.5 + level / 2)
    half = z * float(values.std(ddof=1)) / math.sqrt(n)
    return (m, m - half, m + half)


def _direction(stored_name: str, settings: dict[str, Any]) -> bool:
    """Higher-is-better of a stored metric name (``name`` or ``name.output``)."""
    outputs = settings.get("outputs") or {}
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
    for s in set_scores:
        metric_info.setdefault(s["metric"], {}).update(
            settings=s["settings"], per="set", higher_is_better=_direction(s["metric"], s["settings"]))
        idx = table.index[table["model"] == s["model"]]
        if len(idx):
            table.loc[idx[0], [s["metric"], f"{s['metric']}_n"]] = [s["value"], s["n"]]

    by_tag = pd.DataFrame(tag_rows)
    if len(by_tag):
        by_tag = (by_tag.dropna(subset=["value"]).groupby(["metric", "tag", "model"], as_index=False)
                  ["value"].mean())
    sort_metric = next((m for m in metric_info if m in table.columns), None)
    if sort_metric is not None:
        asc = not metric_info[sort_metric].get("higher_is_better", True)
        table = table.sort_values([sort_metric, "model"], ascending=[asc, True], na_position="last")
    elif len(table):
        table = table.sort_values("model")
    return Leaderboard(run=run, models=table.reset_index(drop=True), by_tag=by_tag, metrics=metric_info)
