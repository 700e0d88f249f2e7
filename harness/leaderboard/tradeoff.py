"""Quality against price and speed: each model's headline score, price per 1,000 images and
median latency, and which models are on the Pareto front (no other model is both better and
cheaper, or better and faster).

Prices: an API model's paid or listed price; a self-hosted model's GPU time at the ``harness
cost`` GPU price (``cost.gpu_usd_per_hour``, its utilisation), so open and closed models sit on one
chart. Where a model has no price the table says why (:data:`NO_PRICE`), never a bare "–".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from harness.leaderboard.cost import GpuPrice, self_hosted_per_image
from harness.leaderboard.outputs import split_outputs
from harness.leaderboard.table import Leaderboard
from harness.leaderboard.text import ci_label, fmt

NO_PRICE = {
    "refused": "every request was refused: no image to price",
    "gpu_unset": "self-hosted: no price until cost.gpu_usd_per_hour is set",
    "no_latency": "self-hosted, but no image yet, so no seconds per image to price",
    "unknown": "unknown price: set models.{model}.price_per_image",
    "imported": "imported images: their generation was neither timed nor paid here",
}
"""Why a model has no price per 1,000 images (shown wherever the "–" is)."""


@dataclass(frozen=True)
class Score:
    """What the charts put on the y axis."""

    column: str
    """Column of ``lb.models`` with the score."""
    lo: str | None
    """Columns of its CI bounds (None when there are none)."""
    hi: str | None
    label: str
    """The score's name as the reader sees it."""
    higher_is_better: bool
    declared: bool
    """True for the report's declared headline; False for the stand-in (the first metric)."""


def headline_score(lb: Leaderboard) -> Score | None:
    """The report's declared headline (``lb.headline``) when it has one, else the first per-image
    metric of the main table (said so in its label); None when nothing has a score."""
    t = lb.models
    h = getattr(lb, "headline", None)
    if h is not None and getattr(h, "kind", "none") != "none" and h.column in t.columns:
        lo, hi = f"{h.column}_lo", f"{h.column}_hi"
        return Score(h.column, lo if lo in t.columns else None, hi if hi in t.columns else None,
                     str(h.label), bool(h.higher_is_better), True)
    names = [k for k, v in lb.metrics.items() if v.get("per") == "image" and k in t.columns]
    names = split_outputs(lb, names)[0] + [k for k, v in lb.metrics.items()
                                           if v.get("per") == "set" and k in t.columns]
    for k in names:
        if np.isfinite(t[k].to_numpy(dtype=float)).any():
            lo, hi = f"{k}_lo", f"{k}_hi"
            return Score(k, lo if lo in t.columns else None, hi if hi in t.columns else None,
                         k,
                         bool(lb.metrics[k].get("higher_is_better", True)), False)
    return None


def gpu_price(cost: Any) -> GpuPrice | None:
    """The ``cost`` config section (anything with its attributes) as a GpuPrice; None when
    ``gpu_usd_per_hour`` is unset (null or missing)."""
    if cost is None or getattr(cost, "gpu_usd_per_hour", None) is None:
        return None
    return GpuPrice(float(cost.gpu_usd_per_hour), float(getattr(cost, "utilisation", 0.6)),
                    int(getattr(cost, "min_gpus", 1)), str(getattr(cost, "gpu_name", "GPU")))


def gpu_line(gpu: GpuPrice | None) -> str:
    """How self-hosted models are priced, in words."""
    if gpu is None:
        return ("Self-hosted models have no price until cost.gpu_usd_per_hour is set "
                "(harness report cost.gpu_usd_per_hour=2.5).")
    return (f"Self-hosted models: median seconds per image × {gpu.name} at ${gpu.usd_per_hour:g}/h, "
            f"{gpu.utilisation:.0%} utilisation (cost.* settings, as in harness cost); seconds were "
            "measured on the machine that ran this run, so they price that machine's speed.")


def price_table(lb: Leaderboard, gpu: GpuPrice | None) -> pd.DataFrame:
    """One row per model: ``price_per_1000_usd`` (NaN when unknown), ``basis`` (how it was
    priced: ``api`` or ``gpu``, empty when unknown) and ``why`` (the reason when unknown)."""
    rows = []
    for _, r in lb.models.iterrows():
        api = float(r.get("cost_per_1000_usd", math.nan))
        lat = float(r.get("latency_p50_s", math.nan))
        price, basis, why = math.nan, "", ""
        if r["ok"] == 0 and r["refused"] > 0:
            why = NO_PRICE["refused"]
        elif math.isfinite(api):
            price, basis = api, "api"
        elif r.get("kind") == "imported":
            why = NO_PRICE["imported"]
        elif _is_api(r):
            why = NO_PRICE["unknown"].format(model=r["model"])
        elif gpu is None:
            why = NO_PRICE["gpu_unset"]
        elif not math.isfinite(lat) or lat <= 0:
            why = NO_PRICE["no_latency"]
        else:
            price, basis = 1000 * self_hosted_per_image(lat, gpu), "gpu"
        rows.append({"model": r["model"], "label": r["label"], "price_per_1000_usd": price, "basis": basis,
                     "why": why})
    return pd.DataFrame(rows, columns=["model", "label", "price_per_1000_usd", "basis", "why"])


API_KINDS = frozenset({"bfl", "fal", "google", "openai", "replicate", "stability", "api"})
"""Generator kinds that call a provider's API (billed per image); every other kind but
``imported`` runs on our own hardware and is priced by GPU time. The leaderboard never imports
the generators, so the list lives here; a test checks it against every API adapter."""


def _is_api(row: pd.Series) -> bool:
    return str(row.get("kind") or "") in API_KINDS


def pareto_front(x: np.ndarray, y: np.ndarray, *, higher_is_better: bool) -> np.ndarray:
    """Boolean mask of the points no other point dominates: lower or equal x (cheaper, faster)
    and a score at least as good, one of them strictly. Points with a NaN are never on it."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float) * (1 if higher_is_better else -1)
    ok = np.isfinite(x) & np.isfinite(y)
    front = ok.copy()
    for i in np.flatnonzero(ok):
        others = ok & (x <= x[i]) & (y >= y[i]) & ((x < x[i]) | (y > y[i]))
        front[i] = not others.any()
    return front


def tradeoff_table(lb: Leaderboard, gpu: GpuPrice | None) -> pd.DataFrame:
    """Per model: label, score (with lo/hi), price per 1,000 images with its basis and why,
    latency p50, and ``front_price`` / ``front_speed`` (on the Pareto front). Empty without a
    score."""
    s = headline_score(lb)
    cols = ["model", "label", "score", "score_lo", "score_hi", "price_per_1000_usd", "basis", "why",
            "latency_p50_s", "front_price", "front_speed"]
    t = lb.models
    if s is None or not len(t):
        return pd.DataFrame(columns=cols)
    p = price_table(lb, gpu)
    out = pd.DataFrame({
        "model": t["model"].to_numpy(), "label": t["label"].to_numpy(),
        "score": t[s.column].to_numpy(dtype=float),
        "score_lo": t[s.lo].to_numpy(dtype=float) if s.lo else np.full(len(t), math.nan),
        "score_hi": t[s.hi].to_numpy(dtype=float) if s.hi else np.full(len(t), math.nan),
        "price_per_1000_usd": p["price_per_1000_usd"].to_numpy(dtype=float),
        "basis": p["basis"].to_numpy(), "why": p["why"].to_numpy(),
        "latency_p50_s": t["latency_p50_s"].to_numpy(dtype=float),
    })
    out["front_price"] = pareto_front(out["price_per_1000_usd"], out["score"],
                                      higher_is_better=s.higher_is_better)
    out["front_speed"] = pareto_front(out["latency_p50_s"], out["score"], higher_is_better=s.higher_is_better)
    return out[cols]


def latency_why(row: pd.Series) -> str:
    """Why a model has no median latency (empty when it has one)."""
    if math.isfinite(float(row.get("latency_p50_s", math.nan))):
        return ""
    if row.get("ok", 0) == 0 and row.get("refused", 0) > 0:
        return NO_PRICE["refused"].replace("price", "time")
    if row.get("kind") == "imported":
        return "imported images: their generation was not timed here"
    return "no image yet"


def intro(score: Score, gpu: GpuPrice | None, ci: float = 0.95) -> str:
    """The sentence above the charts: what the y axis is, what the front is, how prices were made."""
    what = ("the report's headline" if score.declared else
            "the first metric of the table: the report declares no headline score")
    bars = f" Bars: its {ci_label(ci)}." if score.lo else ""
    return (f"Y: {score.label} ({what}; {'higher' if score.higher_is_better else 'lower'} is better, "
            f"drawn up).{bars} Filled points and the dashed line: the Pareto front, the models no other "
            f"model beats on both axes. {gpu_line(gpu)}")


TABLE_HEADERS = ["model", "{score}", "USD / 1,000 images", "priced by", "latency p50 (s)",
                 "on the Pareto front"]
"""Headers of :func:`tradeoff_rows` (``{score}``: the score's label)."""


def tradeoff_rows(lb: Leaderboard, tab: pd.DataFrame) -> list[list[str]]:
    """The table under the charts, as text: a price or "– (why)", how it was priced, the median
    latency or "– (why)", and the fronts each model is on."""
    models = lb.models.set_index("model")
    rows = []
    for _, r in tab.iterrows():
        price = fmt(r["price_per_1000_usd"], 2) if r["basis"] else f"– ({r['why']})"
        how = {"api": "API (paid or list price)", "gpu": "GPU time"}.get(r["basis"], "–")
        lat = fmt(r["latency_p50_s"])
        if lat == "–":
            lat = f"– ({latency_why(models.loc[r['model']])})"
        front = ", ".join(k for k, c in (("price", "front_price"), ("speed", "front_speed")) if r[c]) or "no"
        score = fmt(r["score"])
        if math.isfinite(float(r["score_lo"])):
            score += f" [{fmt(r['score_lo'])}, {fmt(r['score_hi'])}]"
        rows.append([str(r["label"]), score, price, how, lat, front])
    return rows
