"""The Streamlit leaderboard page, run headless with streamlit's AppTest on synthetic stores."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from harness.leaderboard.synthetic import RUN_ID, make_store  # noqa: E402


def _page(root: str, run_id: str, n_boot: int) -> None:
    from harness.app.leaderboard_page import show
    from harness.store import Store

    show(Store(root, create=False), run_id, baseline="beta", n_boot=n_boot)


def _run(root) -> AppTest:
    at = AppTest.from_function(_page, args=(str(root), RUN_ID, 200), default_timeout=60).run()
    assert not at.exception, at.exception
    return at


def test_page_draws_tables_plots_preference_and_gallery(tmp_path):
    make_store(tmp_path, models=("alpha", "beta", "gamma", "delta"), refuse_all=("delta",))
    at = _run(tmp_path)
    text = "\n".join(m.value for m in at.markdown)
    for heading in ("Leaderboard: synthetic-suite", "#### Human preference", "##### Win rates",
                    "#### Agreement", "#### Gallery", "rating 1000 = Beta"):
        assert heading in text, heading
    assert len(at.dataframe) >= 8  # main, by-tag, preference, win rates, pairs, tags, needed, metrics...
    # two trade-off charts, two CI plots and every ok model's image for 4 prompts
    assert len(at.get("image")) == 2 + 2 + 3 * 4
    assert any("every finished request was refused" in w.value for w in at.warning)
    assert any("refused: content filter" in m.value for m in at.markdown)
    for heading in ("#### Quality against price and speed", "##### Votes per pair, in detail"):
        assert heading in text, heading
    meta = "Run synthetic · suite synthetic-suite · run last updated 20"
    assert any(c.value.startswith(meta) for c in at.caption)
    assert sum(c.value.startswith("Chosen: ") for c in at.caption) == 4  # why each gallery prompt
    # the verdict first, as the Markdown's first line says it
    from harness.leaderboard.render import headline_blocks
    from harness.leaderboard.table import build_leaderboard
    from harness.store import Store

    lb = build_leaderboard(Store(tmp_path, create=False), RUN_ID, baseline="beta", n_boot=200)
    assert at.info[0].value == headline_blocks(lb)[0][1] and "Alpha" in at.info[0].value


def test_page_tables_read_as_text(tmp_path):
    """No Markdown marks, no "None", no code-style column names in any table; every "–" in the
    price column says why."""
    make_store(tmp_path, models=("alpha", "beta", "gamma", "delta"), refuse_all=("delta",),
               api_price={"beta": 0.04})
    at = _run(tmp_path)
    frames = [d.value for d in at.dataframe]
    frames = [f.data if hasattr(f, "data") else f for f in frames]  # heatmaps come styled
    for df in frames:
        for h in df.columns:
            assert "`" not in str(h) and "*" not in str(h) and str(h) != "None", h
            assert not re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)+", str(h)), f"code-style column name {h!r}"
        cells = df.astype(str).to_numpy().ravel()
        assert not [c for c in cells if "`" in c or "**" in c or c in ("None", "nan")], df
    price = next(f for f in frames if "USD / 1,000 images" in f.columns)
    assert dict(zip(price["model"], price["priced by"], strict=True)) == {
        "Alpha": "GPU time", "Beta": "API (paid or list price)", "Gamma": "GPU time", "Delta": "–"}
    assert price.loc[price["model"] == "Beta", "USD / 1,000 images"].item() == "40.00"
    assert price.loc[price["model"] == "Delta", "USD / 1,000 images"].item() == (
        "– (every request was refused: no image to price)")
    heat = [f for f in frames if "Alpha" in f.columns and "Alpha" in list(f.index)]
    assert len(heat) == 2  # win rates and votes per pair


def test_page_without_votes_says_so(tmp_path):
    make_store(tmp_path, votes_per_pair=0)
    at = _run(tmp_path)
    assert any("No votes for this run yet" in m.value for m in at.markdown)
    assert any("No human votes" in w.value for w in at.warning)
    assert len(at.get("image")) == 2 + 1 + 3 * 4  # no preference plot without votes


def _unknown(root: str) -> None:
    from harness.app.leaderboard_page import show
    from harness.store import Store

    show(Store(root, create=False), "no-such-run")


def test_unknown_run_is_an_error_on_the_page(tmp_path):
    make_store(tmp_path, votes_per_pair=0)
    at = AppTest.from_function(_unknown, args=(str(tmp_path),), default_timeout=60).run()
    assert not at.exception and "not in the store" in at.error[0].value
