"""Metric-vs-rater agreement covers the alignment and preference metrics: a run with votes and
stored VQAScore, question (soft, hard, soft_gm), PickScore and HPSv2 values lists each of them,
in its stored direction, with the share of decisive votes re-derived here by hand from the
store's own rows (plain SQL and loops), and the markdown report shows them."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from harness.leaderboard import build_leaderboard
from harness.leaderboard.render import agreement_blocks
from harness.leaderboard.synthetic import RUN_ID, make_store
from harness.metrics.preference_scorers import HPSv2, PickScore
from harness.metrics.questions import QuestionScore
from harness.metrics.vqa import VQAScore

VLM = "Qwen/Qwen2.5-VL-7B-Instruct"


def _metrics():
    return [VQAScore(name="vqascore", settings={"model": VLM}),
            QuestionScore(name="questions", settings={"model": VLM}),
            PickScore(name="pickscore"), HPSv2(name="hpsv2")]


def _value(stored: str, model: str, prompt: int, rng) -> float:
    """Values with known tendencies: vqascore prefers alpha always, questions.soft_gm beta,
    questions.hard ties everywhere, the rest are noise with ties now and then."""
    if stored == "vqascore":
        return 0.9 if model == "alpha" else 0.2
    if stored == "questions.soft_gm":
        return 0.1 if model == "alpha" else 0.7
    if stored == "questions.hard":
        return 0.5
    return float(rng.integers(0, 4)) / 4


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    store = make_store(tmp_path_factory.mktemp("agree") / "store", models=("alpha", "beta"),
                       prompts=6, votes_per_pair=40, raters=2, excluded_rater=True)
    rng = np.random.default_rng(1)
    rows = []
    for m in _metrics():
        settings, h = m.describe(), m.settings_hash()
        for stored in m.stored_names():
            for model in ("alpha", "beta"):
                for p in range(6):
                    rows.append((f"{model}-p{p:02d}", stored, h, _value(stored, model, p, rng),
                                 settings, {}))
    store.put_scores(rows)
    return store


def _by_hand(store, metric: str, higher_is_better: bool = True) -> tuple[float, int, int]:
    """(agreement, votes counted, metric ties) from the store's rows."""
    db = sqlite3.connect(store.root / "harness.sqlite")
    try:
        values = dict(db.execute("SELECT key, value FROM scores WHERE metric=? AND value IS NOT NULL",
                                 (metric,)).fetchall())
        votes = db.execute("SELECT v.left_key, v.right_key, v.choice FROM votes v JOIN raters r "
                           "ON r.rater_id=v.rater_id WHERE v.run_id=? AND r.excluded=0",
                           (RUN_ID,)).fetchall()
    finally:
        db.close()
    total, n, ties = 0.0, 0, 0
    for left, right, choice in votes:
        if choice not in ("left", "right") or left not in values or right not in values:
            continue
        n += 1
        if values[left] == values[right]:
            total += 0.5
            ties += 1
            continue
        metric_left = (values[left] > values[right]) == higher_is_better
        total += 1.0 if metric_left == (choice == "left") else 0.0
    return total / n, n, ties


def test_every_alignment_metric_is_in_the_rater_agreement_table(run):
    lb = build_leaderboard(run, RUN_ID, n_boot=200)
    table = lb.agreement["metrics"].set_index("metric")
    wanted = ["vqascore", "questions.soft", "questions.hard", "questions.soft_gm", "pickscore", "hpsv2"]
    assert set(wanted) <= set(table.index)
    for metric in wanted:
        row = table.loc[metric]
        agreement, n, ties = _by_hand(run, metric)
        assert bool(row["higher_is_better"]) is True, metric
        assert row["agreement"] == pytest.approx(agreement, abs=1e-12), metric
        assert (row["n"], row["metric_ties"]) == (n, ties), metric
        assert row["lo"] <= row["agreement"] <= row["hi"] and row["reason"] == "", metric
    # The tendencies built in show: alpha is the stronger model in the synthetic votes.
    assert table.loc["vqascore", "agreement"] > 0.5 > table.loc["questions.soft_gm", "agreement"]
    assert table.loc["questions.hard", "agreement"] == 0.5
    assert table.loc["questions.hard", "metric_ties"] == table.loc["questions.hard", "n"] > 0
    # Best-agreeing first, so the report answers "which metric predicts the raters".
    assert list(lb.agreement["metrics"]["metric"])[0] == "vqascore"


def test_the_report_lists_them(run):
    lb = build_leaderboard(run, RUN_ID, n_boot=200)
    blocks = agreement_blocks(lb)
    assert ("h3", "Which metric predicts the raters") in blocks
    table = next(b for b in blocks if b[0] == "table" and "direction" in b[1])
    listed = [r[0].strip("`") for r in table[2]]
    for metric in ("vqascore", "questions.soft", "questions.hard", "questions.soft_gm", "pickscore",
                   "hpsv2"):
        assert metric in listed
