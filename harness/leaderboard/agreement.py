"""Agreement: between raters (Krippendorff's alpha) and between raters and automatic metrics.

Both read the votes table of :mod:`harness.leaderboard.preference` (plus ``left_key`` and
``right_key``, the record keys of the two images, where available). Pure functions: no store, no
files, deterministic for given inputs and seed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from harness.leaderboard.preference import NO_VOTES, check_options, check_votes
from harness.leaderboard.stats import mean_ci

ALPHA_VALUES = ("first", "second", "tie", "both_bad")
"""Nominal categories of a pairwise outcome, oriented to the pair's sorted order (so a vote for
the same image reads the same whichever side it was shown on)."""


# ----------------------------------------------------------------------------------------------
# Krippendorff's alpha, nominal


def alpha_counts(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit coincidence contributions for nominal alpha.

    ``counts`` is (units, categories): how many coders gave each value to each unit. Returns
    (``within``, ``totals``): for each unit the pairable disagreement sum_{c != k} n_uc n_uk /
    (m_u - 1) and the pairable values per category n_uc (both zero for units with fewer than two
    values, which alpha does not use).
    """
    c = np.asarray(counts, dtype=float)
    m = c.sum(axis=1)
    pairable = m >= 2
    within = np.zeros(len(c))
    off = m**2 - (c**2).sum(axis=1)  # sum over c != k of n_uc n_uk
    within[pairable] = off[pairable] / (m[pairable] - 1)
    totals = np.where(pairable[:, None], c, 0.0)
    return within, totals


def _alpha_from(within: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """alpha = 1 - (n - 1) * D_o / sum_{c != k} n_c n_k for one or a batch of summed contributions."""
    n = totals.sum(-1)
    expected = n**2 - (totals**2).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(expected > 0, 1.0 - (n - 1) * within / np.where(expected > 0, expected, 1), np.nan)


def krippendorff_alpha_nominal(counts: np.ndarray) -> float:
    """Krippendorff's alpha for nominal data from a (units, categories) table of value counts.

    NaN when fewer than two values are pairable or every pairable value is the same (no
    expected disagreement: alpha is undefined, not 1).
    """
    within, totals = alpha_counts(counts)
    return float(_alpha_from(within.sum(), totals.sum(0)))


def _units(votes: pd.DataFrame, both_bad: str) -> tuple[np.ndarray, list[str]]:
    """(units x categories) counts of oriented outcomes, one value per (unit, rater).

    A unit is one comparison: the unordered pair of image keys (or, without keys, the prompt and
    the unordered pair of models). A rater's later votes on the same unit (quality-control
    repeats) are not further values: alpha measures agreement between raters.
    """
    v = votes if both_bad == "tie" else votes[votes["choice"] != "both_bad"]
    if not len(v):
        return np.zeros((0, len(ALPHA_VALUES))), []
    if {"left_key", "right_key"} <= set(v.columns) and v["left_key"].notna().all():
        a, b = v["left_key"].astype(str), v["right_key"].astype(str)
        unit = ["\x1f".join(sorted((x, y))) for x, y in zip(a, b, strict=True)]
    else:
        a, b = v["left"].astype(str), v["right"].astype(str)
        unit = ["\x1f".join((str(p), *sorted((x, y)))) for p, x, y in zip(v["prompt_id"], a, b, strict=True)]
    first_left = (a <= b).to_numpy()
    choice = v["choice"].to_numpy()
    if both_bad == "tie":
        choice = np.where(choice == "both_bad", "tie", choice)
    oriented = np.where(choice == "left", np.where(first_left, "first", "second"),
                        np.where(choice == "right", np.where(first_left, "second", "first"), choice))
    frame = pd.DataFrame({"unit": unit, "rater": v["rater"].astype(str).to_numpy(), "value": oriented})
    frame = frame.drop_duplicates(["unit", "rater"], keep="first")
    table = (frame.groupby(["unit", "value"]).size().unstack(fill_value=0)
             .reindex(columns=list(ALPHA_VALUES), fill_value=0))
    return table.to_numpy(dtype=float), list(table.index)


def rater_agreement(votes: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0, ci: float = 0.95,
                    both_bad: str = "tie") -> dict[str, Any]:
    """Inter-rater Krippendorff's alpha (nominal) on the pairwise outcomes, with a bootstrap CI.

    Values are "first image better", "second better" and "tie"; "both bad" is a tie with
    ``both_bad="tie"`` and left out with ``"drop"``, as in the Bradley-Terry fit. The CI is a
    seeded percentile bootstrap over comparisons (units resampled with replacement, ``n_boot``
    times).

    Returns:
        dict: alpha, lo, hi, units (comparisons rated by two or more raters), values (pairable
        ratings), raters, n_boot, seed, ci and reason (why alpha is NaN; empty otherwise).
    """
    check_votes(votes)
    check_options("half", both_bad)
    out: dict[str, Any] = dict(alpha=math.nan, lo=math.nan, hi=math.nan, units=0, values=0,
                               raters=int(votes["rater"].nunique()) if len(votes) else 0,
                               n_boot=n_boot, seed=seed, ci=ci, both_bad=both_bad, reason="")
    if not len(votes):
        out["reason"] = NO_VOTES
        return out
    counts, _ = _units(votes, both_bad)
    within, totals = alpha_counts(counts)
    used = totals.sum(1) > 0
    out.update(units=int(used.sum()), values=int(totals.sum()))
    if not used.any():
        out["reason"] = "no comparison was rated by two or more raters"
        return out
    within, totals = within[used], totals[used]
    alpha = float(_alpha_from(within.sum(), totals.sum(0)))
    out["alpha"] = alpha
    if math.isnan(alpha):
        out["reason"] = "every rating has the same value: alpha is undefined"
        return out
    if n_boot > 0 and len(within) >= 2:
        rng = np.random.default_rng(seed)
        w = rng.multinomial(len(within), np.full(len(within), 1 / len(within)), size=n_boot).astype(float)
        boot = _alpha_from(w @ within, w @ totals)
        boot = boot[np.isfinite(boot)]
        if len(boot) >= 2:
            out["lo"], out["hi"] = (float(x) for x in np.quantile(boot, [(1 - ci) / 2, (1 + ci) / 2]))
    return out


# ----------------------------------------------------------------------------------------------
# which metric predicts the raters


def metric_agreement(votes: pd.DataFrame, scores: pd.DataFrame, directions: dict[str, bool], *,
                     n_boot: int = 1000, seed: int = 0, ci: float = 0.95) -> pd.DataFrame:
    """Per metric, the share of decisive votes where the metric prefers the image the rater chose.

    Args:
        votes: votes table with ``left_key`` and ``right_key`` (record keys of the two images).
        scores: per-image scores, columns ``key``, ``metric``, ``value`` (one value per pair).
        directions: metric -> higher is better (from the metric's stored settings).
        n_boot, seed, ci: seeded percentile bootstrap over the counted votes.

    Only left/right votes count (ties and "both bad" say nothing about which image is better),
    and only those where both images have a value. A metric tie counts half (a coin flip).
    Returns one row per metric, best-agreeing first: metric, higher_is_better, agreement, lo,
    hi, n, metric_ties, reason.
    """
    check_votes(votes)
    cols = ["metric", "higher_is_better", "agreement", "lo", "hi", "n", "metric_ties", "reason"]
    decisive = votes[votes["choice"].isin(["left", "right"])] if len(votes) else votes
    rows = []
    has_keys = {"left_key", "right_key"} <= set(votes.columns)
    for metric in sorted(directions):
        hib = bool(directions[metric])
        row: dict[str, Any] = dict(metric=metric, higher_is_better=hib, agreement=math.nan, lo=math.nan,
                                   hi=math.nan, n=0, metric_ties=0, reason="")
        if not len(votes):
            row["reason"] = NO_VOTES
        elif not len(decisive):
            row["reason"] = "no decisive (left/right) votes"
        elif not has_keys:
            row["reason"] = "votes do not name the images (no left_key/right_key)"
        else:
            vals = scores[scores["metric"] == metric].dropna(subset=["value"]).set_index("key")["value"]
            lv = decisive["left_key"].map(vals).to_numpy(dtype=float)
            rv = decisive["right_key"].map(vals).to_numpy(dtype=float)
            ok = np.isfinite(lv) & np.isfinite(rv)
            if not ok.any():
                row["reason"] = "no decisive vote has this metric on both images"
            else:
                diff = (lv - rv)[ok] * (1 if hib else -1)  # > 0: the metric prefers the left image
                chose_left = (decisive["choice"].to_numpy() == "left")[ok]
                agree = np.where(diff == 0, 0.5, ((diff > 0) == chose_left).astype(float))
                m, lo, hi = mean_ci(agree, ci, resamples=n_boot, seed=seed)
                row.update(agreement=m, lo=lo, hi=hi, n=int(ok.sum()), metric_ties=int((diff == 0).sum()))
        rows.append(row)
    out = pd.DataFrame(rows, columns=cols)
    out = out.sort_values(["agreement", "metric"], ascending=[False, True], na_position="last",
                          kind="stable").reset_index(drop=True)
    out.attrs.update(n_boot=n_boot, seed=seed, ci=ci)
    return out
