"""Head-to-head matrices of the human votes (win rate and votes per pair) and the colours their
heatmaps use, shared by the HTML report and the Streamlit page."""

from __future__ import annotations

import math

import pandas as pd

from harness.leaderboard.table import Leaderboard
from harness.leaderboard.text import model_labels

BLUE = (31, 95, 168)
RED = (200, 70, 50)
MISSING = "#f2f2f5"

WIN_RATE_NOTE = ("Share of votes in which the row model beat the column model (a tie counts half): blue, "
                 "the row model wins more often; red, it loses more often; grey –, the two were never "
                 "compared.")
VOTES_NOTE = "How many votes compared each pair (darker: more): a pale cell rests on few votes."


def pair_matrices(lb: Leaderboard) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(win rate, votes): square tables indexed and labelled by model label in rating order.
    Win rate: share of votes in which the row model beat the column model (ties half; NaN when
    never compared and on the diagonal). Votes: how many votes compared the pair (NaN on the
    diagonal). None without votes."""
    pref = lb.preference
    if pref is None or pref.n_votes == 0:
        return None
    labels = model_labels(lb)
    order = [m for m in pref.table["model"] if m in pref.win_rates.index]
    wr = pref.win_rates.loc[order, order].astype(float).copy()
    votes = pd.DataFrame(0.0, index=order, columns=order)
    for _, r in pref.pairs.iterrows():
        a, b = r["model_a"], r["model_b"]
        if a in votes.index and b in votes.index:
            votes.loc[a, b] += int(r["votes"])
            votes.loc[b, a] += int(r["votes"])
    for m in order:
        wr.loc[m, m] = math.nan
        votes.loc[m, m] = math.nan
    names = [labels.get(m, m) for m in order]
    wr.index = wr.columns = votes.index = votes.columns = names
    return wr, votes


def heat_colour(value: float, lo: float, hi: float, *, diverging: bool) -> tuple[str, str]:
    """(background, text colour) of a heatmap cell. Sequential: white at ``lo`` to blue at
    ``hi``; diverging: red at ``lo``, white in the middle, blue at ``hi``. Grey when missing."""
    if not math.isfinite(value) or hi <= lo:
        return MISSING, "#1d1d1f"
    x = min(1.0, max(0.0, (value - lo) / (hi - lo)))
    base = BLUE
    if diverging:
        x = 2 * x - 1
        base = BLUE if x >= 0 else RED
        x = abs(x)
    rgb = [round(255 + (c - 255) * 0.8 * x) for c in base]
    return "#{:02x}{:02x}{:02x}".format(*rgb), ("#ffffff" if x > 0.6 else "#1d1d1f")
