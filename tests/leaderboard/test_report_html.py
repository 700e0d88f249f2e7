"""leaderboard.html in a real Chromium: it opens from disk alone and no image is broken."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from harness.leaderboard.cost import GpuPrice, plot_cost
from harness.leaderboard.synthetic import RUN_ID, make_store
from harness.runner.pipeline import report

pytestmark = pytest.mark.browser


def _open(chromium, path):
    page = chromium.new_page()
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page


@pytest.mark.parametrize("votes", [40, 0])
def test_html_report_has_no_broken_images(chromium, tmp_path, votes):
    store = make_store(tmp_path / "store", models=("alpha", "beta", "gamma", "delta"), refuse_all=("delta",),
                       votes_per_pair=votes)
    out = report(store, RUN_ID, SimpleNamespace(dir=str(tmp_path / "reports"), bootstrap=200))
    # what 'harness cost' leaves next to the report: embedded on the next report
    plot_cost({"Alpha": 1.5}, {"Beta": 0.04}, GpuPrice(2.5), out / "cost.png")
    out = report(store, RUN_ID, SimpleNamespace(dir=str(tmp_path / "reports"), bootstrap=200))
    store.close()
    # the report must stand alone: move it away from the store and the report folder
    alone = tmp_path / "elsewhere" / "leaderboard.html"
    alone.parent.mkdir()
    alone.write_bytes((out / "leaderboard.html").read_bytes())
    page = _open(chromium, alone)
    widths = page.evaluate("Array.from(document.images).map(i => i.complete ? i.naturalWidth : -1)")
    expected = 2 + (2 if votes else 1) + 1 + 3 * 4  # trade-off, CI plots, the cost plot, 3 models x 4 prompts
    assert len(widths) == expected and all(w > 0 for w in widths), widths
    headings = page.evaluate("Array.from(document.querySelectorAll('h2')).map(h => h.textContent)")
    assert {"Human preference", "Gallery", "Cost against daily volume", "Models"} <= set(headings)
    kinds = page.evaluate("Array.from(document.images).map(i => i.src.split(';')[0])")
    assert set(kinds) == {"data:image/png", "data:image/svg+xml"}
    page.close()
