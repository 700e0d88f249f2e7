"""Plots and thumbnails for the HTML report and the Streamlit page, as PNG or SVG bytes.

Every function returns the same bytes for the same inputs (no timestamps or software version in
the metadata, a fixed SVG id salt), so a report rebuilt from the same store is byte-identical.
SVG keeps its text as text: crisp at any zoom, on a phone too, and a fraction of the PNG's size.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from harness.leaderboard.outputs import split_outputs
from harness.leaderboard.preference import PreferenceSummary
from harness.leaderboard.table import Leaderboard
from harness.leaderboard.text import ci_label

THUMBNAIL_PX = 192
"""Longest side of a gallery thumbnail (images are only ever shrunk, never enlarged)."""


FORMATS = ("png", "svg")

_RC = {"svg.hashsalt": "harness-leaderboard", "svg.fonttype": "none", "font.size": 9}
"""Deterministic SVG ids, text kept as text (the browser's sans-serif draws it)."""


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _figure(*args, **kwargs):
    import matplotlib

    with matplotlib.rc_context(_RC):
        return _pyplot().subplots(*args, **kwargs)


def _save(fig, fmt: str = "png") -> bytes:
    """The figure as PNG or SVG bytes with no date or software version in them (closes it)."""
    if fmt not in FORMATS:
        raise ValueError(f"plot format {fmt!r}: use one of {FORMATS}")
    import matplotlib

    buf = io.BytesIO()
    with matplotlib.rc_context(_RC):
        if fmt == "png":
            fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
        else:
            fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    _pyplot().close(fig)
    return buf.getvalue()


def headline_image_metrics(lb: Leaderboard) -> list[str]:
    """Per-image metrics with a CI column, the headline output of multi-output metrics only."""
    names = [k for k, v in lb.metrics.items() if v.get("per") == "image" and f"{k}_lo" in lb.models.columns]
    return split_outputs(lb, names)[0]


def metric_ci_png(lb: Leaderboard, fmt: str = "png") -> bytes | None:
    """One panel per headline per-image metric: each model's mean with its CI (None if none)."""
    t = lb.models
    # a metric without a single value (e.g. OCR on a suite without target text) has nothing to draw
    metrics = [k for k in headline_image_metrics(lb) if np.isfinite(t[k].to_numpy(dtype=float)).any()]
    if not metrics or not len(t):
        return None
    # at most two panels a row: a row of many panels shrinks to nothing on a phone
    cols = min(2, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig, axes = _figure(rows, cols, figsize=(4.6 * cols, rows * (0.45 * len(t) + 1.3) + 0.4), squeeze=False)
    for ax in axes.ravel()[len(metrics):]:
        ax.set_visible(False)
    labels = list(t["label"])
    y = np.arange(len(t))[::-1]
    for ax, k in zip(axes.ravel(), metrics, strict=False):
        mean = t[k].to_numpy(dtype=float)
        lo, hi = t[f"{k}_lo"].to_numpy(dtype=float), t[f"{k}_hi"].to_numpy(dtype=float)
        err = np.vstack([np.where(np.isfinite(lo), mean - lo, 0), np.where(np.isfinite(hi), hi - mean, 0)])
        ax.errorbar(mean, y, xerr=err, fmt="o", color="#1f5fa8", ecolor="#7aa6d6", capsize=3)
        ax.set_yticks(y, labels)
        arrow = "↑" if lb.metrics[k].get("higher_is_better", True) else "↓"
        ax.set_title(f"{k} {arrow}", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
        ax.set_ylim(-0.6, len(t) - 0.4)
    fig.suptitle(f"Mean per image with {ci_label(lb.settings.get('ci', 0.95))}", fontsize=10)
    fig.tight_layout()
    return _save(fig, fmt)


def preference_ci_png(pref: PreferenceSummary | None, labels: dict[str, str],
                      fmt: str = "png") -> bytes | None:
    """Elo-like rating of each rated model with its bootstrap CI (None without ratings)."""
    if pref is None or pref.n_votes == 0:
        return None
    t = pref.table[np.isfinite(pref.table["rating"].to_numpy(dtype=float))]
    if not len(t):
        return None
    fig, ax = _figure(figsize=(6, 0.5 * len(t) + 1.4))
    y = np.arange(len(t))[::-1]
    r = t["rating"].to_numpy(dtype=float)
    lo, hi = t["rating_lo"].to_numpy(dtype=float), t["rating_hi"].to_numpy(dtype=float)
    err = np.vstack([np.where(np.isfinite(lo), r - lo, 0), np.where(np.isfinite(hi), hi - r, 0)])
    ax.errorbar(r, y, xerr=err, fmt="s", color="#a8431f", ecolor="#d69a7a", capsize=3)
    ax.axvline(1000, color="grey", lw=0.8, ls="--")
    ax.set_yticks(y, [labels.get(m, m) for m in t["model"]])
    base = pref.settings.get("baseline")
    ax.set_xlabel(f"Elo-like rating ({'1000 = ' + labels.get(base, base) if base else 'mean 1000'})")
    ax.set_title(f"Human preference, bootstrap {ci_label(pref.settings.get('ci', 0.95))}", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.set_ylim(-0.6, len(t) - 0.4)
    fig.tight_layout()
    return _save(fig, fmt)


AXES = {
    "price": ("price_per_1000_usd", "front_price", "USD per 1,000 images (lower is better)"),
    "speed": ("latency_p50_s", "front_speed", "median seconds per image (lower is better)"),
}
"""The trade-off charts: x column of :func:`harness.leaderboard.tradeoff.tradeoff_table`, its
Pareto-front column and the axis label."""


def tradeoff_plot(tab, score_label: str, higher_is_better: bool, against: str, *, note: str = "",
                  fmt: str = "svg") -> bytes | None:
    """Headline score against price or speed (``against``: ``"price"`` or ``"speed"``), one
    point per model with its CI, the Pareto front drawn as a line through its models (filled
    points; hollow: dominated). ``tab``: :func:`harness.leaderboard.tradeoff.tradeoff_table`.
    ``note`` goes under the axis (how prices were made). None when no model has both values."""
    xcol, front_col, xlabel = AXES[against]
    t = tab[np.isfinite(tab[xcol].to_numpy(dtype=float)) & np.isfinite(tab["score"].to_numpy(dtype=float))]
    if not len(t):
        return None
    x = t[xcol].to_numpy(dtype=float)
    y = t["score"].to_numpy(dtype=float)
    lo, hi = t["score_lo"].to_numpy(dtype=float), t["score_hi"].to_numpy(dtype=float)
    front = t[front_col].to_numpy(dtype=bool)
    fig, ax = _figure(figsize=(5.6, 4.0))
    err = np.vstack([np.where(np.isfinite(lo), y - lo, 0), np.where(np.isfinite(hi), hi - y, 0)])
    ax.errorbar(x, y, yerr=err, fmt="none", ecolor="#9bb7d9", capsize=3, lw=1)
    if (~front).any():
        ax.scatter(x[~front], y[~front], s=42, facecolors="white", edgecolors="#1f5fa8", zorder=3,
                   label="dominated (another model is better and cheaper)" if against == "price"
                   else "dominated (another model is better and faster)")
    ax.scatter(x[front], y[front], s=46, color="#1f5fa8", zorder=4, label="Pareto front")
    order = np.argsort(x[front], kind="stable")
    ax.plot(x[front][order], y[front][order], color="#1f5fa8", lw=1, ls="--", zorder=2)
    right = np.argsort(np.argsort(x, kind="stable"), kind="stable") >= (len(x) + 1) // 2
    for xi, yi, label, left in zip(x, y, t["label"], right, strict=True):
        # labels of the right half point left, so none runs off the plot
        ax.annotate(str(label), (xi, yi), textcoords="offset points", xytext=(-6 if left else 6, 5),
                    ha="right" if left else "left", fontsize=9)
    positive = x[x > 0]
    if len(positive) == len(x) and positive.max() / positive.min() > 20:
        from matplotlib.ticker import FuncFormatter

        ax.set_xscale("log")  # API prices and GPU seconds span orders of magnitude
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 0.1, 1, 10: not 10^-1
    if not higher_is_better:
        ax.invert_yaxis()  # better is always up
    ax.set_xlabel(xlabel + (f"\n{note}" if note else ""), fontsize=8 if note else 9)
    short = score_label.split(" (")[0] if len(score_label) > 40 else score_label  # the text says it in full
    ax.set_ylabel(short + (" ↑" if higher_is_better else " ↓ (better is up)"), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best", frameon=False)
    ax.margins(x=0.15, y=0.12)
    fig.tight_layout()
    return _save(fig, fmt)


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


PREVIEW_JPEG_QUALITY = 88


def preview_image(path: str | Path, px: int) -> bytes | None:
    """The image shrunk to at most ``px`` on its longest side, as PNG or, when it is smaller, as
    JPEG (photographs: a fraction of the PNG's size, so a gallery of them stays mailable; flat
    synthetic images stay PNG). Images with transparency stay PNG. None if unreadable. The same
    file gives the same bytes."""
    png = thumbnail_png(path, px)
    if png is None:
        return None
    from PIL import Image

    with Image.open(io.BytesIO(png)) as img:
        if img.mode != "RGB":
            return png
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=PREVIEW_JPEG_QUALITY, optimize=False, progressive=False)
    jpeg = buf.getvalue()
    return jpeg if len(jpeg) < len(png) else png


def text_or_none(v: object) -> str | None:
    """A table cell as text, or None when it is missing (None or NaN)."""
    return v if isinstance(v, str) and v else None
