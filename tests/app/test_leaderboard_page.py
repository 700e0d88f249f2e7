"""The Streamlit leaderboard page, run headless with streamlit's AppTest on synthetic stores."""

from __future__ import annotations

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
    assert len(at.get("image")) == 2 + 3 * 4  # two CI plots and every ok model's image for 4 prompts
    assert any("every finished request was refused" in w.value for w in at.warning)
    assert any("refused: content filter" in m.value for m in at.markdown)


def test_page_without_votes_says_so(tmp_path):
    make_store(tmp_path, votes_per_pair=0)
    at = _run(tmp_path)
    assert any("No votes for this run yet" in m.value for m in at.markdown)
    assert any("No human votes" in w.value for w in at.warning)
    assert len(at.get("image")) == 1 + 3 * 4


def _unknown(root: str) -> None:
    from harness.app.leaderboard_page import show
    from harness.store import Store

    show(Store(root, create=False), "no-such-run")


def test_unknown_run_is_an_error_on_the_page(tmp_path):
    make_store(tmp_path, votes_per_pair=0)
    at = AppTest.from_function(_unknown, args=(str(tmp_path),), default_timeout=60).run()
    assert not at.exception and "not in the store" in at.error[0].value
