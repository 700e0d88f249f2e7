"""The dated price table: every shipped row is usable, and the date rule (the row with the
latest ``as_of`` not after the run date) picks the price that was current on the run's day."""

import datetime as dt
from pathlib import Path

import pytest
import yaml

from harness.errors import ConfigError
from harness.prices import PRICES_FILE, load_prices, price_per_image, table_problems

TWO_DATES = Path(__file__).parent / "data" / "prices" / "two_dates.yaml"


def test_every_shipped_row_has_a_date_a_source_url_and_prices():
    table = yaml.safe_load(PRICES_FILE.read_text(encoding="utf-8"))
    assert table, "the shipped price table is empty"
    assert table_problems(table, str(PRICES_FILE)) == []
    for provider, models in table.items():
        for model, rows in models.items():
            days = [str(r["as_of"]) for r in rows]
            assert len(days) == len(set(days)), f"{provider}.{model}: two rows for one day"
    assert load_prices() is not None  # loads without complaint


def test_the_row_in_force_on_the_run_date_is_used():
    path = str(TWO_DATES)
    before = price_per_image("acme", "painter-1", "1024x1024", None, on=dt.date(2026, 2, 28),
                             path=path)
    assert before == (0.04, {"as_of": "2025-06-01", "source": "https://example.com/pricing"})
    on_day = price_per_image("acme", "painter-1", "1024x1024", None, on=dt.date(2026, 3, 1),
                             path=path)
    assert on_day == (0.03, {"as_of": "2026-03-01",
                             "source": "https://example.com/pricing?rev=2"})
    later = price_per_image("acme", "painter-1", "1024x1024", None, on=dt.date(2026, 12, 1),
                            path=path)
    assert later[0] == 0.03


def test_a_size_listed_only_in_the_older_row_is_not_carried_over():
    path = str(TWO_DATES)
    assert price_per_image("acme", "painter-1", "2048x2048", None, on=dt.date(2026, 1, 1),
                           path=path)[0] == 0.08
    # The newer row prices every size alike: the old size-specific price is gone with its row.
    assert price_per_image("acme", "painter-1", "2048x2048", None, on=dt.date(2026, 6, 1),
                           path=path)[0] == 0.03


def test_no_price_before_the_first_row_or_for_an_unlisted_quality():
    path = str(TWO_DATES)
    assert price_per_image("acme", "painter-1", "1024x1024", None, on=dt.date(2025, 5, 31),
                           path=path) is None
    assert price_per_image("acme", "painter-2", "1024x1024", "hd", on=dt.date(2026, 2, 1),
                           path=path) is None
    assert price_per_image("acme", "painter-2", "1024x1024", "standard",
                           on=dt.date(2026, 6, 1), path=path) is None
    assert price_per_image("acme", "painter-2", "1024x1024", "hd", on=dt.date(2026, 6, 1),
                           path=path)[0] == 0.12
    assert price_per_image("acme", "nope", "1024x1024", None, path=path) is None


def test_a_row_without_date_or_source_is_refused_with_where_and_how(tmp_path):
    bad = tmp_path / "prices.yaml"
    bad.write_text("acme:\n  painter-1:\n    - prices: {'*': {'*': 0.04}}\n"
                   "    - as_of: \"2026-13-01\"\n      source: pricing page\n"
                   "      prices: {'*': {'*': cheap}}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_prices(str(bad))
    msg = str(e.value)
    assert "acme.painter-1[0]: as_of None" in msg and "YYYY-MM-DD" in msg
    assert "acme.painter-1[0]: source None is not a URL" in msg
    assert "acme.painter-1[1]: as_of '2026-13-01'" in msg
    assert "acme.painter-1[1]: prices.* must map sizes to USD" in msg
