"""The seeded bootstrap intervals every leaderboard table uses, and ranks with ties.

:func:`mean_ci` treats values as independent (agreement shares: one per vote).
:func:`clustered_replicates` resamples prompts, then values within them (metric means: the
images of one prompt are correlated when ``samples > 1``), with the same prompts drawn for
every model so that differences are paired; :func:`rank_ranges` turns such replicates into
rank ranges ("1–2"). A module of its own so that the table builder, the headline and the
agreement functions share it without importing each other.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

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


# ----------------------------------------------------------------------------------------------
# clustered bootstrap: images of one prompt are not independent


def cluster_matrix(long: pd.DataFrame, models: list[str], prompts: list[str] | None = None
                   ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Values of a long table (columns ``model``, ``prompt_id``, ``value``; NaN values dropped) as
    one padded matrix per model: (prompts, values (models, prompts, K) NaN-padded, counts
    (models, prompts)). ``prompts`` fixes the cluster list (default: the table's, sorted)."""
    df = long.dropna(subset=["value"])
    if prompts is None:
        prompts = sorted(set(df["prompt_id"]))
    pidx = {p: i for i, p in enumerate(prompts)}
    midx = {m: i for i, m in enumerate(models)}
    df = df[df["model"].isin(list(midx)) & df["prompt_id"].isin(list(pidx))]
    counts = np.zeros((len(models), len(prompts)), dtype=np.int64)
    mi = df["model"].map(midx).to_numpy(dtype=np.int64)
    pi = df["prompt_id"].map(pidx).to_numpy(dtype=np.int64)
    np.add.at(counts, (mi, pi), 1)
    k = int(counts.max()) if counts.size else 0
    values = np.full((len(models), len(prompts), max(k, 1)), np.nan)
    if len(df):
        # position of each value within its (model, prompt) cell, in table order
        order = np.lexsort((np.arange(len(mi)), pi, mi))
        cell = mi[order] * len(prompts) + pi[order]
        first = np.r_[0, np.flatnonzero(np.diff(cell)) + 1]
        pos = np.arange(len(cell)) - np.repeat(first, np.diff(np.r_[first, len(cell)]))
        values[mi[order], pi[order], pos] = df["value"].to_numpy(dtype=float)[order]
    return list(prompts), values, counts


def clustered_replicates(values: np.ndarray, counts: np.ndarray, *, resamples: int = BOOTSTRAP_RESAMPLES,
                         seed: int = BOOTSTRAP_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Two-stage (clustered) bootstrap of the mean of every model's values.

    ``values`` (models, prompts, K) and ``counts`` (models, prompts) as from :func:`cluster_matrix`.
    Each resample draws the prompts with replacement (the same prompts for every model, so
    differences between models are paired), then, within each drawn prompt, that model's values
    with replacement; its mean is the sum over the drawn values divided by their number (prompts
    without a value for a model add nothing to it). Resampling prompts is what makes the
    interval honest when one prompt's images are correlated (``samples > 1``): treating every
    image as independent under-covers; the second stage adds the within-prompt spread.

    Returns ``(point, replicates)``: the plain mean over every value per model (models,) and
    the resampled means (resamples, models); NaN for a model without values. Deterministic for
    given input and seed.
    """
    n_models, n_prompts, k = values.shape
    total = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        point = np.where(total > 0, np.nansum(values, axis=(1, 2)) / np.maximum(total, 1), np.nan)
    reps = np.full((resamples, n_models), np.nan)
    if n_prompts == 0 or resamples == 0:
        return point, reps
    rng = np.random.default_rng(seed)
    # float32 halves the memory traffic of the gathers; sums are taken in float64
    flat = np.nan_to_num(values).astype(np.float32).reshape(-1)
    balanced = bool((counts == k).all())  # every prompt has k values: no slot is ever unused
    step = max(1, 2_000_000 // max(1, n_models * n_prompts * k))  # bounded temporaries
    slot = np.arange(k)
    # int32 indices where they fit: less memory traffic in the gathers
    itype = np.int32 if flat.size < 2**31 else np.int64
    base = (np.arange(n_models, dtype=itype) * (n_prompts * k))[None, :, None, None]
    for start in range(0, resamples, step):
        b = min(step, resamples - start)
        pick = rng.integers(0, n_prompts, size=(b, n_prompts)).astype(itype)
        u = rng.random((b, n_models, n_prompts, k), dtype=np.float32)
        kk = counts[:, pick].transpose(1, 0, 2)  # (b, models, prompts): values of each drawn prompt
        inner = np.minimum((u * kk[..., None]).astype(itype), max(k - 1, 0))
        drawn = flat.take(base + (pick * k)[:, None, :, None] + inner)
        if not balanced:
            drawn = np.where(slot < kk[..., None], drawn, np.float32(0.0))
        s = drawn.sum(axis=(2, 3), dtype=np.float64)
        n = kk.sum(axis=2)
        with np.errstate(invalid="ignore", divide="ignore"):
            reps[start : start + b] = np.where(n > 0, s / np.maximum(n, 1), np.nan)
    return point, reps


def percentile_ci(replicates: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Per column, the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the finite
    replicates; NaN where fewer than two are finite."""
    reps = np.atleast_2d(replicates)
    lo = np.full(reps.shape[1], np.nan)
    hi = np.full(reps.shape[1], np.nan)
    for j in range(reps.shape[1]):
        col = reps[:, j][np.isfinite(reps[:, j])]
        if len(col) >= 2:
            lo[j], hi[j] = np.quantile(col, [(1 - level) / 2, (1 + level) / 2])
    return lo, hi


def clustered_mean_ci(values: np.ndarray, clusters: np.ndarray, level: float, *,
                      resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
                      ) -> tuple[float, float, float]:
    """Mean with a clustered (prompts, then values within them) percentile-bootstrap interval.

    ``clusters`` labels each value (a prompt id). NaN values are left out. NaN bounds below two
    clusters with values or two values (no spread to resample).
    """
    v = np.asarray(values, dtype=float)
    long = pd.DataFrame({"model": "m", "prompt_id": np.asarray(clusters), "value": v})
    _, mat, counts = cluster_matrix(long, ["m"])
    point, reps = clustered_replicates(mat, counts, resamples=resamples, seed=seed)
    m = float(point[0]) if len(point) else math.nan
    if int(counts.sum()) < 2:
        return (m, math.nan, math.nan)
    lo, hi = percentile_ci(reps, level)
    return (m, float(lo[0]), float(hi[0]))


def rank_ranges(point: np.ndarray, replicates: np.ndarray | None, higher_is_better: bool, level: float
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Ranks with statistical ties, from paired bootstrap replicates.

    Model i is *separated* from (better than) j when the ``level`` percentile interval of the
    replicated difference i - j (in the metric's direction) lies above 0. Then
    ``rank_lo = 1 + #models better than i`` and ``rank_hi = n - #models i is better than``
    (n: models with a score), so models that cannot be told apart share a range ("1–2"), as in
    LMArena's rank spread. Without replicates (a set metric with no interval) ranks are exact,
    equal scores sharing one.

    Returns ``(rank, rank_lo, rank_hi, better)``: point rank (1 = best, by score, ties by
    order), the range bounds (NaN for a model without a score) and the boolean matrix
    ``better[i, j]``.
    """
    p = np.asarray(point, dtype=float)
    n_all = len(p)
    sign = 1.0 if higher_is_better else -1.0
    ok = np.isfinite(p)
    n = int(ok.sum())
    better = np.zeros((n_all, n_all), dtype=bool)
    if replicates is not None and len(replicates) >= 2:
        r = sign * np.asarray(replicates, dtype=float)
        for i in np.flatnonzero(ok):
            for j in np.flatnonzero(ok):
                if i == j:
                    continue
                d = r[:, i] - r[:, j]
                d = d[np.isfinite(d)]
                if len(d) >= 2:
                    better[i, j] = bool(np.quantile(d, (1 - level) / 2) > 0)
    else:
        sp = sign * p
        better = ok[:, None] & ok[None, :] & (sp[:, None] > sp[None, :])
    order = sorted(np.flatnonzero(ok), key=lambda i: -sign * p[i])  # stable: ties keep order
    rank = np.full(n_all, np.nan)
    rank[order] = np.arange(1, n + 1)
    # a range always holds the point rank (a bootstrap median can sit off the point estimate)
    rank_lo = np.where(ok, np.fmin(1 + better.sum(axis=0), rank), np.nan)
    rank_hi = np.where(ok, np.fmax(n - better.sum(axis=1), rank), np.nan)
    return rank, rank_lo, rank_hi, better


def rank_text(lo: float, hi: float) -> str:
    """A rank range as shown: "1", "1–2", "–" for none."""
    if lo != lo or hi != hi:
        return "–"
    return f"{int(lo)}" if int(lo) == int(hi) else f"{int(lo)}–{int(hi)}"
