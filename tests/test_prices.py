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


def test_area_tiers_price_by_output_area_and_refuse_sizes_beyond_the_largest():
    # fal bills Seedream 5.0 Pro by area: up to 1536x1536, then up to 2048x2048.
    model = "bytedance/seedream/v5/pro/us/text-to-image"
    day = dt.date(2026, 12, 1)

    def price(size):
        got = price_per_image("fal", model, size, None, on=day)
        return None if got is None else got[0]

    assert price("1024x1024") == 0.0675
    assert price("1536x1536") == 0.0675          # the tier's own size is inside it
    assert price("1024x2304") == 0.0675          # 2,359,296 px = 1536x1536 exactly
    assert price("1536x1600") == 0.135           # one row over the first tier
    assert price("2048x2048") == 0.135
    assert price("2048x2304") is None            # larger than any tier: no price, not a guess


def test_an_area_tier_that_is_not_a_size_is_refused_with_the_form_to_use():
    bad = {"acme": {"m": [{"as_of": "2026-01-01", "source": "https://example.com",
                           "prices": {"*": {"<=big": 0.1}}}]}}
    problems = table_problems(bad)
    assert problems and "<=WIDTHxHEIGHT" in problems[0]


def test_flux2_pro_is_priced_only_within_its_first_megapixel():
    # BFL: 3 credits for the first megapixel (10^6 px; 1024x1024 is 1.05 MP by BFL's table),
    # part megapixels beyond it are not defined, so only outputs within 1 MP have a price.
    day = dt.date(2026, 12, 1)
    assert price_per_image("bfl", "flux-2-pro", "1024x960", None, on=day)[0] == 0.03
    assert price_per_image("bfl", "flux-2-pro", "1000x1000", None, on=day)[0] == 0.03
    assert price_per_image("bfl", "flux-2-pro", "1024x1024", None, on=day) is None
