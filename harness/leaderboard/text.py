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


def ci_label(level: float) -> str:
    """The label of an interval at ``level`` (``report.ci``): "95% CI", "90% CI"."""
    return f"{100 * level:g}% CI"


def level_of(lb: Leaderboard) -> float:
    """The confidence level the leaderboard's intervals were computed at."""
    return float(lb.settings.get("ci", 0.95))


FACT_HEADERS = {"provider": "provider", "open_weights": "open weights", "licence": "licence",
                "release_date": "released", "parameters": "parameters"}
"""Model-fact columns of the models table and their human names."""


def fact(v: object) -> str:
    """A model fact as shown: yes/no for a flag, "unknown" when the config does not say."""
    if hasattr(v, "item"):  # numpy scalars from a table column
        v = v.item()
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "unknown"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)

