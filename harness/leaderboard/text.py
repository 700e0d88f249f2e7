"""Numbers and names as report text, shared by every renderer (Markdown, HTML, Streamlit)."""

from __future__ import annotations

import math
from typing import Any

from harness.leaderboard.table import Leaderboard


def fmt(v: Any, digits: int = 3) -> str:
    """A table cell: ``digits`` decimals (significant digits for very large or small numbers),
    "–" for a missing value (None or NaN), anything else as ``str``."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 10 ** -digits):
            return f"{v:.{digits}g}"
        return f"{v:.{digits}f}"
    return str(v)


def pct(v: float) -> str:
    """A share as a percentage with one decimal ("–" for NaN)."""
    return "–" if v != v else f"{100 * v:.1f}%"


def model_labels(lb: Leaderboard) -> dict[str, str]:
    """Model config name -> the label the report shows for it."""
    t = lb.models
    return dict(zip(t["model"], t["label"], strict=True)) if len(t) else {}
