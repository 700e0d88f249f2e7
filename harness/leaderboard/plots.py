"""Plots and thumbnails for the HTML report and the Streamlit page, as PNG bytes.

Every function returns the same bytes for the same inputs (no timestamps or software version in
the PNG metadata), so a report rebuilt from the same store is byte-identical.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from harness.leaderboard.outputs import split_outputs
from harness.leaderboard.preference import PreferenceSummary
from harness.leaderboard.table import Leaderboard

THUMBNAIL_PX = 192
"""Longest side of a gallery thumbnail (images are only ever shrunk, never enlarged)."""


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    _pyplot().close(fig)
    return buf.getvalue()


def headline_image_metrics(lb: Leaderboard) -> list[str]:
    """Per-image metrics with a CI column, the headline output of multi-output metrics only."""
    names = [k for k, v in lb.metrics.items() if v.get("per") == "image" and f"{k}_lo" in lb.models.columns]
    return split_outputs(lb, names)[0]


def metric_ci_png(lb: Leaderboard) -> bytes | None:
    """One panel per headline per-image metric: each model's mean with its CI (None if none)."""
    t = lb.models
    # a metric without a single value (e.g. OCR on a suite without target text) has nothing to draw
    metrics = [k for k in headline_image_metrics(lb) if np.isfinite(t[k].to_numpy(dtype=float)).any()]
    if not metrics or not len(t):
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 0.5 * len(t) + 1.4),
                             squeeze=False)
    labels = list(t["label"])
    y = np.arange(len(t))[::-1]
    for ax, k in zip(axes[0], metrics, strict=True):
        mean = t[k].to_numpy(dtype=float)
        lo, hi = t[f"{k}_lo"].to_numpy(dtype=float), t[f"{k}_hi"].to_numpy(dtype=float)
        err = np.vstack([np.where(np.isfinite(lo), mean - lo, 0), np.where(np.isfinite(hi), hi - mean, 0)])
        ax.errorbar(mean, y, xerr=err, fmt="o", color="#1f5fa8", ecolor="#7aa6d6", capsize=3)
        ax.set_yticks(y, labels)
        arrow = "↑" if lb.metrics[k].get("higher_is_better", True) else "↓"
        ax.set_title(f"{k} {arrow}", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
        ax.set_ylim(-0.6, len(t) - 0.4)
    fig.suptitle(f"Mean per image with {100 * lb.settings.get('ci', 0.95):g}% CI", fontsize=10)
    fig.tight_layout()
    return _png(fig)


def preference_ci_png(pref: PreferenceSummary | None, labels: dict[str, str]) -> bytes | None:
    """Elo-like rating of each rated model with its bootstrap CI (None without ratings)."""
    if pref is None or pref.n_votes == 0:
        return None
    t = pref.table[np.isfinite(pref.table["rating"].to_numpy(dtype=float))]
    if not len(t):
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(t) + 1.4))
    y = np.arange(len(t))[::-1]
    r = t["rating"].to_numpy(dtype=float)
    lo, hi = t["rating_lo"].to_numpy(dtype=float), t["rating_hi"].to_numpy(dtype=float)
    err = np.vstack([np.where(np.isfinite(lo), r - lo, 0), np.where(np.isfinite(hi), hi - r, 0)])
    ax.errorbar(r, y, xerr=err, fmt="s", color="#a8431f", ecolor="#d69a7a", capsize=3)
    ax.axvline(1000, color="grey", lw=0.8, ls="--")
    ax.set_yticks(y, [labels.get(m, m) for m in t["model"]])
    base = pref.settings.get("baseline")
    ax.set_xlabel(f"Elo-like rating ({'1000 = ' + labels.get(base, base) if base else 'mean 1000'})")
    ax.set_title(f"Human preference, {100 * pref.settings.get('ci', 0.95):g}% bootstrap CI", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.set_ylim(-0.6, len(t) - 0.4)
    fig.tight_layout()
    return _png(fig)


def thumbnail_png(path: str | Path, px: int = THUMBNAIL_PX) -> bytes | None:
    """The image shrunk to at most ``px`` on its longest side, as PNG (None if unreadable)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            img = img.convert("RGBA" if img.mode in ("RGBA", "LA", "P") else "RGB")
    except (OSError, ValueError):
        return None
    if max(img.size) > px:
        scale = px / max(img.size)
        img = img.resize((max(1, math.floor(img.width * scale)), max(1, math.floor(img.height * scale))),
                         Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def text_or_none(v: object) -> str | None:
    """A table cell as text, or None when it is missing (None or NaN)."""
    return v if isinstance(v, str) and v else None
