"""The declared headline, clustered intervals, rank ranges and per-tag winners: each checked
against an independent derivation (closed-form bootstrap variance, pandas ranks, simulated
coverage), and through the store and the report files."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from harness.errors import ConfigError
from harness.leaderboard import build_leaderboard
from harness.leaderboard import headline as hl
from harness.leaderboard.preference import preference_table
from harness.leaderboard.render import render_markdown
from harness.leaderboard.stats import (
    cluster_matrix,
    clustered_mean_ci,
    clustered_replicates,
    mean_ci,
    percentile_ci,
    rank_ranges,
    rank_text,
)
from harness.leaderboard.synthetic import RUN_ID, make_store
from harness.runner.pipeline import report

# ---------------------------------------------------------------------------------------------
# clustered bootstrap


def _simulate(rng: np.random.Generator, sims: int, prompts: int = 16, samples: int = 4, icc: float = 0.5):
    """``sims`` data sets of prompts x samples values with intra-prompt correlation ``icc`` and
    true mean 0 (prompt effect variance icc, image noise variance 1 - icc)."""
    b = rng.normal(0, np.sqrt(icc), (sims, prompts, 1))
    e = rng.normal(0, np.sqrt(1 - icc), (sims, prompts, samples))
    return b + e


def test_clustered_interval_covers_at_its_level_where_the_naive_one_does_not():
    """ICC 0.5, 16 prompts x 4 samples, 500 seeded simulations: the 95% clustered interval covers
    the true mean 92-98% of the time; treating the 64 images as independent covers far less."""
    rng = np.random.default_rng(20261201)
    data = _simulate(rng, 500)
    hits, naive = [], []
    # 25 data sets share one call (as 25 "models": prompts are drawn jointly, which does not
    # change each one's own interval); 20 calls with their own seeds
    for batch in range(20):
        chunk = data[batch * 25:(batch + 1) * 25]
        _, reps = clustered_replicates(chunk, np.full(chunk.shape[:2], chunk.shape[2]), seed=batch)
        lo, hi = percentile_ci(reps, 0.95)
        hits += list((lo <= 0) & (hi >= 0))
    for v in data[:200]:
        _, lo, hi = mean_ci(v.ravel(), 0.95)
        naive.append(lo <= 0 <= hi)
    coverage = float(np.mean(hits))
    assert 0.92 <= coverage <= 0.98, coverage
    assert np.mean(naive) < 0.88  # the old per-image interval: the reason for clustering


def test_clustered_mean_ci_is_the_same_engine_and_seeded():
    rng = np.random.default_rng(3)
    v = _simulate(rng, 1)[0]
    clusters = np.repeat(np.arange(16), 4)
    a = clustered_mean_ci(v.ravel(), clusters, 0.95)
    assert a == clustered_mean_ci(v.ravel(), clusters, 0.95)
    assert a != clustered_mean_ci(v.ravel(), clusters, 0.95, seed=1)
    assert a[0] == pytest.approx(v.mean())
    _, reps = clustered_replicates(v[None], np.full((1, 16), 4))
    lo, hi = percentile_ci(reps, 0.95)
    assert (a[1], a[2]) == pytest.approx((lo[0], hi[0]))


def test_bootstrap_variance_matches_the_two_stage_formula():
    """Independent re-derivation: for P prompts of K values each, the two-stage bootstrap mean
    has variance [ (1/P) sum (ybar_p - ybar)^2 + (1/(P K)) sum s_p^2 ] / P, s_p^2 the
    population variance within prompt p."""
    rng = np.random.default_rng(7)
    v = _simulate(rng, 1, prompts=10, samples=3)[0]
    P, K = v.shape
    pm = v.mean(axis=1)
    expected = (((pm - v.mean()) ** 2).mean() + v.var(axis=1).mean() / K) / P
    _, reps = clustered_replicates(v[None], np.full((1, P), K), resamples=40000, seed=1)
    assert reps[:, 0].var() == pytest.approx(expected, rel=0.05)


def test_unbalanced_and_missing_values():
    """Prompts with fewer values, and a prompt with none for one model: the point is the plain
    mean of the values there are, every replicate is a mean of drawn values."""
    long = pd.DataFrame({"model": ["a", "a", "a", "b", "b", "a"],
                         "prompt_id": ["p1", "p1", "p2", "p1", "p2", "p3"],
                         "value": [1.0, 3.0, 5.0, 2.0, np.nan, 7.0]})
    prompts, values, counts = cluster_matrix(long, ["a", "b"])
    assert prompts == ["p1", "p2", "p3"]
    assert counts.tolist() == [[2, 1, 1], [1, 0, 0]]
    point, reps = clustered_replicates(values, counts, resamples=500)
    assert point.tolist() == [4.0, 2.0]
    assert np.nanmin(reps[:, 0]) >= 1.0 and np.nanmax(reps[:, 0]) <= 7.0
    assert set(np.unique(reps[:, 1][np.isfinite(reps[:, 1])])) == {2.0}
    assert np.isnan(reps[:, 1]).any()  # resamples that drew no prompt with a value for b


# ---------------------------------------------------------------------------------------------
# rank ranges


def test_rank_ranges_tie_what_the_bootstrap_cannot_separate():
    rng = np.random.default_rng(0)
    reps = np.column_stack([rng.normal(1.0, 0.05, 2000), rng.normal(0.97, 0.05, 2000),
                            rng.normal(0.5, 0.05, 2000)])
    point = np.array([1.0, 0.97, 0.5, np.nan])
    reps = np.column_stack([reps, np.full(2000, np.nan)])
    rank, lo, hi, better = rank_ranges(point, reps, True, 0.95)
    assert [rank_text(a, b) for a, b in zip(lo, hi, strict=True)] == ["1–2", "1–2", "3", "–"]
    assert better[0, 2] and better[1, 2] and not better[0, 1]
    assert rank[:3].tolist() == [1, 2, 3]
    # lower is better: the order flips
    _, lo, hi, _ = rank_ranges(point, reps, False, 0.95)
    assert [rank_text(a, b) for a, b in zip(lo, hi, strict=True)] == ["2–3", "2–3", "1", "–"]
    # no replicates (a set metric): exact ranks
    _, lo, hi, _ = rank_ranges(np.array([40.0, 50.0, 60.0]), None, False, 0.95)
    assert lo.tolist() == hi.tolist() == [1, 2, 3]


def test_composite_is_the_mean_rank_each_metric_in_its_direction():
    sharp = np.array([0.9, 0.5, 0.7, np.nan])  # higher is better
    fid = np.array([50.0, 40.0, 60.0, np.nan])  # lower is better
    point, reps = hl.composite([sharp, fid], [None, None], [True, False], 10)
    want = (pd.Series(sharp).rank(ascending=False) + pd.Series(fid).rank(ascending=True)) / 2
    assert point[:3].tolist() == pytest.approx(want[:3].tolist())
    assert np.isnan(point[3]) and reps is None  # no value anywhere: not ranked


# ---------------------------------------------------------------------------------------------
# choosing the headline


def test_choose_follows_votes_then_primary_metric_then_composite():
    kw = dict(rated=3, min_votes=30, available=["attributes.all", "ocr.word_f1"], suite="toy-world")
    assert hl.choose("auto", n_votes=30, primary="attributes.all", **kw)[0] == "preference"
    kind, metric, why = hl.choose("auto", n_votes=29, primary="attributes.all", **kw)
    assert (kind, metric) == ("metric", "attributes.all")
    assert "29 human votes, fewer than report.min_votes=30" in why and "primary metric" in why
    kind, _, why = hl.choose("auto", n_votes=0, primary="clip_score", **kw)
    assert kind == "composite" and "did not score" in why
    assert hl.choose("auto", n_votes=0, primary=None, **kw)[0] == "composite"
    assert hl.choose("composite", n_votes=999, primary="attributes.all", **kw)[0] == "composite"
    assert hl.choose("ocr.word_f1", n_votes=999, primary=None, **kw)[:2] == ("metric", "ocr.word_f1")
    with pytest.raises(ConfigError, match="Did you mean 'ocr.word_f1'"):
        hl.choose("ocr.word_f2", n_votes=0, primary=None, **kw)


def test_primary_metric_is_checked_against_the_metrics_outputs():
    outputs = {"ocr": ["exact", "word_f1", "cer"], "clip_score": []}
    hl.check_primary_metric("ocr.word_f1", outputs, "suite text-rendering")
    hl.check_primary_metric("clip_score", outputs, "suite x")
    hl.check_primary_metric("attributes.all", outputs, "suite x")  # not selected: the report says so
    with pytest.raises(ConfigError, match=r"suite text-rendering: .*Did you mean 'ocr.word_f1'"):
        hl.check_primary_metric("ocr.wordf1", outputs, "suite text-rendering")


# ---------------------------------------------------------------------------------------------
# through the store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("hl") / "store", models=("alpha", "beta", "gamma", "delta"),
                      refuse_all=("delta",))


def test_preference_headline_sorts_the_table_and_leads_the_report(store):
    lb = build_leaderboard(store, RUN_ID, n_boot=200, gallery_prompts=0)
    h = lb.headline
    assert h.kind == "preference" and h.winner == "alpha"
    t = lb.models
    assert list(t["model"]) == ["alpha", "beta", "gamma", "delta"]
    pref = lb.preference.table.set_index("model")
    rated = ["alpha", "beta", "gamma"]
    assert t["headline"].iloc[:3].tolist() == pytest.approx(pref.loc[rated, "rating"].tolist())
    assert t["rank_text"].iloc[-1] == "–"  # every request refused: no rating, no rank
    md = render_markdown(lb)
    assert md.splitlines()[0] == f"{h.sentence} {h.why}"
    assert md.startswith("Winner by human preference")
    tied = "statistically tied with" in h.sentence
    assert tied == bool(h.tied_with)


def test_metric_and_composite_headlines_with_ties_and_tag_winners(store):
    lb = build_leaderboard(store, RUN_ID, n_boot=100, gallery_prompts=0, headline="sharpness")
    h, t = lb.headline, lb.models
    assert h.kind == "metric" and h.metric == "sharpness"
    assert t["sharpness"].iloc[:3].is_monotonic_decreasing
    assert h.winner == t["model"].iloc[0] and t["headline"].equals(t["sharpness"])
    # the tie is what the rank ranges say: every model whose range reaches rank 1
    assert set(h.tied_with) == set(t.loc[(t["rank_lo"] == 1) & (t["model"] != h.winner), "model"])
    assert "tied with" in h.sentence if h.tied_with else "ahead of every other model" in h.sentence
    tw = lb.tag_winners.set_index("tag")
    assert list(tw.index) == ["category:animals", "category:text"] and set(tw["by"]) == {"sharpness"}
    for tag, r in tw.iterrows():
        # independent check of the winner: the best tag mean in lb.by_tag
        cells = lb.by_tag[(lb.by_tag["metric"] == "sharpness") & (lb.by_tag["tag"] == tag)]
        assert r["winner"] == cells.sort_values("value", ascending=False)["model"].iloc[0]
        assert r["line"].startswith(f"best for {tag.split(':')[1]}: {r['winner'].capitalize()}")
    comp = build_leaderboard(store, RUN_ID, n_boot=100, gallery_prompts=0, headline="composite")
    assert comp.headline.kind == "composite" and not comp.headline.higher_is_better
    assert comp.headline.metrics == ["fid.fid", "noise", "sharpness"]
    c = comp.models.set_index("model")
    ranks = pd.DataFrame({"fid": c["fid.fid"].rank(), "noise": c["noise"].rank(),
                          "sharp": c["sharpness"].rank(ascending=False)}).drop(index="delta")
    assert c.loc[ranks.index, "headline"].tolist() == pytest.approx(ranks.mean(axis=1).tolist())
    with pytest.raises(ConfigError, match="Did you mean 'sharpness'"):
        build_leaderboard(store, RUN_ID, n_boot=10, gallery_prompts=0, headline="sharpnes")


def test_primary_metric_from_the_manifest_and_metric_ranks(tmp_path):
    st = make_store(tmp_path / "store", votes_per_pair=4)  # 24 counted votes: too few to rank by
    run = st.run(RUN_ID)
    manifest = dict(run.manifest, config={"suite": {"primary_metric": "noise"}})
    st.db.execute("UPDATE runs SET manifest=? WHERE run_id=?", (json.dumps(manifest), RUN_ID))
    st.db.commit()
    lb = build_leaderboard(st, RUN_ID, n_boot=50, gallery_prompts=0, metric_ranks=True)
    assert lb.headline.kind == "metric" and lb.headline.metric == "noise" and not lb.headline.higher_is_better
    assert "suite synthetic-suite declares noise its primary metric" in lb.headline.why
    assert "fewer than report.min_votes=30" in lb.headline.why
    assert lb.models["noise"].is_monotonic_increasing
    for k in ("sharpness", "noise", "fid.fid"):
        assert lb.models[f"{k}_rank_text"].str.fullmatch(r"\d(–\d)?").all()
    assert lb.models.sort_values("fid.fid")["fid.fid_rank_text"].tolist() == ["1", "2", "3"]
    md = render_markdown(lb)
    assert "40.000 (N=6) · #1 |" in md and "rank range on that metric alone" in md


def test_report_files_carry_the_headline_and_labels_follow_ci(store, tmp_path):
    out = report(store, RUN_ID, SimpleNamespace(dir=str(tmp_path / "r"), ci=0.9, bootstrap=100,
                                                gallery_prompts=0, html=False))
    md = (out / "leaderboard.md").read_text()
    assert "95%" not in md and "90% CI" in md
    doc = json.loads((out / "leaderboard.json").read_text())
    assert doc["headline"]["kind"] == "preference" and doc["headline"]["ci"] == 0.9
    assert md.splitlines()[0].startswith(doc["headline"]["sentence"])
    assert [r["tag"] for r in doc["tag_winners"]] == ["category:animals", "category:text"]
    assert all(r["line"] in md for r in doc["tag_winners"])
    csv = pd.read_csv(out / "leaderboard.csv")
    assert list(csv["model"]) == [m["model"] for m in doc["models"]]
    assert {"headline", "headline_lo", "headline_hi", "rank", "rank_lo", "rank_hi",
            "rank_text"} <= set(csv.columns)
    assert set(csv["headline_by"]) == {"human preference (Bradley–Terry rating)"}
    best = dict(zip(csv["model"], csv["best_for"].fillna(""), strict=True))
    for r in doc["tag_winners"]:  # every tag winner (and every model tied with it) says so in the csv
        assert r["tag_label"] in best[r["winner"]]
        assert all(f"{r['tag_label']} (tied)" in best[m] for m in r["tied_with"])
    # same store, same bytes
    again = report(store, RUN_ID, SimpleNamespace(dir=str(tmp_path / "r2"), ci=0.9, bootstrap=100,
                                                  gallery_prompts=0, html=False))
    for f in ("leaderboard.md", "leaderboard.csv", "leaderboard.json"):
        assert (again / f).read_bytes() == (out / f).read_bytes(), f


# ---------------------------------------------------------------------------------------------
# preference bootstrap clustered by prompt


def test_preference_bootstrap_clustered_by_prompt_is_wider_for_correlated_votes():
    """Every vote on a prompt goes the same way (the prompt decides, not the models): votes are
    not independent, and resampling prompts shows it where resampling votes does not."""
    rng = np.random.default_rng(5)
    rows = []
    for p in range(12):
        a_wins = rng.random() < 0.6
        for k in range(20):
            left = "a" if k % 2 else "b"
            right = "b" if left == "a" else "a"
            winner_left = (left == "a") == a_wins
            rows.append(dict(left=left, right=right, choice="left" if winner_left else "right",
                             rater=f"r{k % 4}", prompt_id=f"p{p}"))
    votes = pd.DataFrame(rows)
    width = {}
    for cluster in ("vote", "prompt", "rater", "prompt+rater"):
        t = preference_table(votes, n_boot=300, cluster=cluster).set_index("model")
        width[cluster] = t.loc["a", "strength_hi"] - t.loc["a", "strength_lo"]
    assert width["prompt"] > 2 * width["vote"]
    assert width["prompt+rater"] >= 0.8 * width["prompt"]
    with pytest.raises(ValueError, match="did you mean"):
        preference_table(votes, n_boot=10, cluster="prompts")


def test_large_cluster_tables_take_the_sparse_path_with_the_same_result(monkeypatch):
    from harness.leaderboard import preference

    rng = np.random.default_rng(2)
    votes = pd.DataFrame({"left": rng.choice(["a", "b", "c"], 300),
                          "choice": rng.choice(["left", "right"], 300),
                          "rater": rng.choice([f"r{i}" for i in range(7)], 300),
                          "prompt_id": rng.choice([f"p{i}" for i in range(25)], 300)})
    votes["right"] = np.where(votes["left"] == "a", "b", np.where(votes["left"] == "b", "c", "a"))
    dense = preference_table(votes, n_boot=60, cluster="prompt+rater")
    monkeypatch.setattr(preference, "DENSE_GROUP_CELLS", 0)
    sparse = preference_table(votes, n_boot=60, cluster="prompt+rater")
    pd.testing.assert_frame_equal(dense, sparse)
