"""Dated list prices of closed image APIs (``harness/data/prices.yaml``).

The table is provider -> model -> a list of rows; each row carries the date the price took
effect (``as_of``), the page it was read from (``source``, an http(s) URL) and the prices
(quality -> size -> USD per image, ``"*"`` matching any). A price change is a new row: a record
keeps the price of the row with the latest ``as_of`` not after its run date.
"""

from __future__ import annotations

import datetime as dt
import functools
from pathlib import Path
from typing import Any

PRICES_FILE = Path(__file__).resolve().parent / "data" / "prices.yaml"


def table_problems(table: Any, where: str = "prices.yaml") -> list[str]:
    """What is wrong with a price table, one line per problem (empty: none): every row needs an
    ``as_of`` date, a ``source`` URL and a ``prices`` mapping of numbers."""
    if not isinstance(table, dict):
        return [f"{where}: the top level must map provider names to models"]
    out: list[str] = []
    for provider, models in table.items():
        if not isinstance(models, dict):
            out.append(f"{where}: {provider}: must map model names to lists of dated rows")
            continue
        for model, rows in models.items():
            at = f"{where}: {provider}.{model}"
            if not isinstance(rows, list) or not rows:
                out.append(f"{at}: must be a list of rows (- as_of: ..., source: ..., prices: ...)")
                continue
            for i, row in enumerate(rows):
                out += [f"{at}[{i}]: {p}" for p in _row_problems(row)]
    return out


def _row_problems(row: Any) -> list[str]:
    if not isinstance(row, dict):
        return ["a row must be a mapping with as_of, source and prices"]
    out = []
    try:
        _as_date(row.get("as_of"))
    except (TypeError, ValueError):
        out.append(f"as_of {row.get('as_of')!r} is not a date; write the day the price took "
                   "effect as \"YYYY-MM-DD\"")
    src = row.get("source")
    if not isinstance(src, str) or not src.startswith(("https://", "http://")):
        out.append(f"source {src!r} is not a URL; give the page the price was read from")
    prices = row.get("prices")
    if not isinstance(prices, dict) or not prices:
        out.append("prices must map a quality (or \"*\") to sizes (or \"*\") and USD per image")
    else:
        for quality, sizes in prices.items():
            if not isinstance(sizes, dict) or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
                    for v in sizes.values()):
                out.append(f"prices.{quality} must map sizes to USD per image (numbers >= 0)")
            elif isinstance(sizes, dict):
                out += [f"prices.{quality}.{k}: an area tier is written \"<=WIDTHxHEIGHT\""
                        for k in sizes if str(k).startswith("<=") and _pixels(str(k)[2:]) is None]
    return out


def _pixels(size: str) -> int | None:
    w, sep, h = size.partition("x")
    return int(w) * int(h) if sep and w.isdigit() and h.isdigit() else None


def _by_area(by_size: dict[str, Any], size: str) -> float | None:
    """Price of the smallest ``"<=WxH"`` tier whose area holds ``size`` (providers that bill by
    output area, e.g. "up to 1536x1536"), or None: no tiers, or larger than the largest one."""
    want = _pixels(size)
    if want is None:
        return None
    tiers = sorted((_pixels(k[2:]), v) for k, v in by_size.items()
                   if k.startswith("<=") and _pixels(k[2:]) is not None)
    return next((float(v) for area, v in tiers if want <= area), None)


def _as_date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        return dt.date.fromisoformat(value)
    raise TypeError(type(value).__name__)


@functools.lru_cache(maxsize=4)
def load_prices(path: str | None = None) -> dict[str, Any]:
    """The price table at ``path`` (default: the shipped ``harness/data/prices.yaml``):
    provider -> model -> list of dated rows.

    Raises:
        ConfigError: a row without a date, a source URL or numeric prices (file, row, fix).
    """
    import yaml

    from harness.errors import ConfigError

    file = Path(path) if path else PRICES_FILE
    with open(file, encoding="utf-8") as f:
        table = yaml.safe_load(f) or {}
    problems = table_problems(table, str(file))
    if problems:
        raise ConfigError("the price table has rows the date rule cannot use:\n  "
                          + "\n  ".join(problems))
    return table


def price_per_image(provider: str, model: str, size: str, quality: str | None,
                    on: dt.date | None = None,
                    path: str | None = None) -> tuple[float, dict[str, str]] | None:
    """USD per image and where it comes from (``{"as_of", "source"}``), or None when the table
    has no price for this model, size and quality on that day.

    The row used is the one with the latest ``as_of`` not after ``on`` (default: today); a
    later row is a price that did not exist yet. A size is looked up exactly, then in the
    ``"<=WxH"`` area tiers (the smallest that holds it), then ``"*"``, which matches any
    (providers that price per image). ``path``: another table file (default: the shipped
    one)."""
    rows = load_prices(str(path) if path else None).get(provider, {}).get(model) or []
    day = on or dt.date.today()
    current = [r for r in rows if _as_date(r["as_of"]) <= day]
    if not current:
        return None
    row = max(current, key=lambda r: _as_date(r["as_of"]))
    table = row.get("prices") or {}
    by_quality = table.get(quality or "") or table.get("*") or {}
    value = by_quality.get(size)
    if value is None:
        value = _by_area(by_quality, size)
    if value is None:
        value = by_quality.get("*")
    if value is None:
        return None
    return float(value), {"as_of": _as_date(row["as_of"]).isoformat(),
                          "source": str(row["source"])}
