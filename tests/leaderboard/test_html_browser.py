"""leaderboard.html in Debian's Chromium at a desktop width (1280 px) and a phone width (390 px):
no horizontal page scroll on the phone, the headline table sorts by click and filters, every
image loads and enlarges on click. Screenshots of both widths go to /tmp/report-<width>.png
(or $HARNESS_SCREENSHOTS/report-<width>.png) for a person to look at."""

from __future__ import annotations

import os
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.leaderboard.synthetic import RUN_ID, make_store
from harness.runner.pipeline import report

pytestmark = pytest.mark.browser

WIDTHS = (1280, 390)


@pytest.fixture(scope="module")
def report_file(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    store = make_store(root / "store", models=("alpha", "beta", "gamma", "delta"), refuse_all=("delta",),
                       api_price={"beta": 0.04}, prompts=8)
    out = report(store, RUN_ID, SimpleNamespace(dir=str(root / "reports"), bootstrap=100))
    store.close()
    alone = root / "alone" / "leaderboard.html"  # away from the store: the file must stand alone
    alone.parent.mkdir()
    alone.write_bytes((out / "leaderboard.html").read_bytes())
    return alone


def _column(page, header: str) -> list[str]:
    return page.evaluate(
        """h => { const t = document.getElementById('headline-table');
                  const i = Array.from(t.tHead.rows[0].cells).findIndex(c => c.textContent.startsWith(h));
                  return Array.from(t.tBodies[0].rows).filter(r => r.style.display !== 'none')
                              .map(r => r.cells[i].textContent); }""", header)


def _number(text: str) -> float:
    m = re.match(r"[^0-9+\-.]*([+-]?\d*\.?\d+)", text.replace(",", ""))
    return float(m.group(1)) if m else float("inf")


@pytest.mark.parametrize("width", WIDTHS)
def test_report_reads_at_desktop_and_phone_width(chromium, report_file, width):
    page = chromium.new_page(viewport={"width": width, "height": 900})
    page.goto(report_file.as_uri())
    page.wait_for_load_state("load")
    shots = Path(os.environ.get("HARNESS_SCREENSHOTS", "/tmp"))
    page.screenshot(path=str(shots / f"report-{width}.png"), full_page=True)

    # no horizontal page scroll: wide tables scroll inside their own box
    scroll, client = page.evaluate("[document.documentElement.scrollWidth, "
                                   "document.documentElement.clientWidth]")
    assert scroll <= client == width, (scroll, client)
    outside = page.evaluate("""Array.from(document.querySelectorAll('main *')).filter(e =>
        e.getBoundingClientRect().right > document.documentElement.clientWidth + 0.5 && !e.closest('.scroll'))
        .map(e => e.tagName + '.' + e.className)""")
    assert outside == []

    # every image has loaded (a decoded image has a natural width)
    widths = page.evaluate("Array.from(document.images).map(i => i.complete ? i.naturalWidth : -1)")
    assert len(widths) == 2 + 2 + 3 * 4 and all(w > 0 for w in widths), widths

    # sorting by click: latency ascending, then descending; missing values stay last
    header = page.locator("#headline-table th", has_text="latency p50")
    header.click()
    up = _column(page, "latency p50")
    assert header.get_attribute("aria-sort") == "ascending"
    known = [_number(v) for v in up if v.strip() != "–"]
    assert known == sorted(known) and len(known) == 3 and up[-1].strip() == "–"
    header.click()
    down = _column(page, "latency p50")
    assert [_number(v) for v in down if v.strip() != "–"] == sorted(known, reverse=True)
    assert down[-1].strip() == "–" and header.get_attribute("aria-sort") == "descending"
    page.locator("#headline-table th", has_text="model").first.click()
    names = _column(page, "model")
    assert [n.strip(" †") for n in names] == sorted(n.strip(" †") for n in names)

    # filtering: type a name, only its row is left
    page.fill("input.filter", "gam")
    assert [n.strip(" †") for n in _column(page, "model")] == ["Gamma"]
    page.fill("input.filter", "")
    assert len(_column(page, "model")) == 4

    # click to enlarge: the overlay shows the same image, bigger; Escape closes it
    thumb = page.locator("img.thumb").first
    thumb.scroll_into_view_if_needed()
    small = thumb.bounding_box()["width"]
    thumb.click()
    big = page.locator("#zoom.open img")
    assert big.count() == 1 and big.get_attribute("src") == thumb.get_attribute("src")
    assert big.bounding_box()["width"] > small
    page.keyboard.press("Escape")
    assert page.locator("#zoom.open").count() == 0
    page.close()
