"""Dated list prices of closed image APIs (``harness/data/prices.yaml``)."""

from __future__ import annotations

import datetime as dt
import functools
from pathlib import Path
from typing import Any

PRICES_FILE = Path(__file__).resolve().parent / "data" / "prices.yaml"


@functools.lru_cache(maxsize=4)
def load_prices(path: str | None = None) -> dict[str, Any]:
    """The price table: provider -> model -> list of dated entries."""
    import yaml

    with open(path or PRICES_FILE, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def price_per_image(provider: str, model: str, size: str, quality: str | None,
                    on: dt.date | None = None) -> tuple[float, dict[str, str]] | None:
    """USD per image and where it comes from (``{"as_of", "source"}``), or None when the table
    has no price for this model, size and quality.

    The entry used is the latest whose ``as_of`` is not after ``on`` (default: today). A
    ``"*"`` quality or size in the table matches any (providers that price per image)."""
    entries = load_prices().get(provider, {}).get(model) or []
    day = (on or dt.date.today()).isoformat()
    current = [e for e in entries if str(e.get("as_of", "")) <= day]
    if not current:
        return None
    entry = max(current, key=lambda e: str(e["as_of"]))
    table = entry.get("prices") or {}
    by_quality = table.get(quality or "") or table.get("*") or {}
    value = by_quality.get(size, by_quality.get("*"))
    if value is None:
        return None
    return float(value), {"as_of": str(entry["as_of"]), "source": str(entry.get("source", ""))}
