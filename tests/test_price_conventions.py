"""The price table's lookup order, pinned on a table written here: the request's own quality before
the "*" quality, an exact size before "*", and the row in force on the run's date (a run dated
between two rows pays the earlier row's price)."""

import datetime as dt

from harness.prices import price_per_image

TABLE = """\
acme:
  painter-9:
    - as_of: "2026-01-01"
      source: https://example.com/pricing
      prices:
        "*":
          "*": 0.05
        hd:
          "*": 0.12
          1024x1024: 0.10
    - as_of: "2026-07-01"
      source: https://example.com/pricing?rev=2
      prices:
        "*":
          "*": 0.04
        hd:
          "*": 0.09
"""


def test_own_quality_then_star_quality_and_exact_size_then_star(tmp_path):
    path = tmp_path / "prices.yaml"
    path.write_text(TABLE, encoding="utf-8")
    on = dt.date(2026, 3, 1)
    assert price_per_image("acme", "painter-9", "1024x1024", "hd", on=on, path=str(path))[0] == 0.10
    assert price_per_image("acme", "painter-9", "512x512", "hd", on=on, path=str(path))[0] == 0.12
    assert price_per_image("acme", "painter-9", "512x512", "standard", on=on, path=str(path))[0] == 0.05
    assert price_per_image("acme", "painter-9", "512x512", None, on=on, path=str(path))[0] == 0.05


def test_a_run_dated_between_two_rows_pays_the_earlier_rows_price(tmp_path):
    path = tmp_path / "prices.yaml"
    path.write_text(TABLE, encoding="utf-8")
    between = price_per_image("acme", "painter-9", "512x512", "hd", on=dt.date(2026, 6, 30),
                              path=str(path))
    assert between == (0.12, {"as_of": "2026-01-01", "source": "https://example.com/pricing"})
    on_change = price_per_image("acme", "painter-9", "512x512", "hd", on=dt.date(2026, 7, 1),
                                path=str(path))
    assert on_change == (0.09, {"as_of": "2026-07-01", "source": "https://example.com/pricing?rev=2"})
    # The newer row has no 1024x1024 entry: its "*" applies, not the older row's exact size.
    assert price_per_image("acme", "painter-9", "1024x1024", "hd", on=dt.date(2026, 8, 1),
                           path=str(path))[0] == 0.09
