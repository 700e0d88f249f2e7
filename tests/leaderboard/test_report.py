"""The report through the store: every file, preference and agreement wired in, excluded raters
left out, the same store giving the same bytes, and the edge cases saying what is missing."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
import pytest

from harness.leaderboard import build_leaderboard
from harness.leaderboard.synthetic import RUN_ID, SUITE, make_store
from harness.runner.pipeline import report

FILES = ("leaderboard.md", "leaderboard.csv", "leaderboard.json", "leaderboard.html", "leaderboard.parquet")


def _strict_json(path):
    def no_constants(name):
        raise ValueError(f"{name} in {path}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=no_constants)


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """Four models: delta refuses everything, alpha and gamma are never compared, beta is an API."""
    root = tmp_path_factory.mktemp("full")
    store = make_store(root / "store", models=("alpha", "beta", "gamma", "delta"), refuse_all=("delta",),
                       never_compared=[("alpha", "gamma")], api_price={"beta": 0.04})
    out = report(store, RUN_ID, SimpleNamespace(dir=str(root / "reports"), baseline="beta"))
    return store, out


def test_every_file_with_preference_agreement_and_cost(full):
    store, out = full
    assert out.name == RUN_ID and out.parent.name == SUITE
    assert all((out / f).exists() for f in FILES)
    assert (out.parent / "latest").resolve() == out.resolve()
    md = (out / "leaderboard.md").read_text()
    for text in ("## Human preference", "rating 1000 = Beta", "1000 resamples", "### Win rates",
                 "### Votes per pair", "### Position bias", "### By prompt tag", "### Votes still needed",
                 "## Agreement", "Krippendorff's α", "### Which metric predicts the raters",
                 "cost / 1,000 images (USD)", "| 40.00 |", "features `toy-features-v1`", "(N=6)"):
        assert text in md, text
    csv = pd.read_csv(out / "leaderboard.csv").set_index("model")
    assert csv.loc["beta", "cost_per_1000_usd"] == pytest.approx(40.0)
    assert csv.loc["beta", "pref_rating"] == 1000 and csv.loc["alpha", "pref_rating"] > 1000
    assert csv.loc["delta", "refusal_rate"] == 1.0 and pd.isna(csv.loc["delta", "pref_rating"])
    assert list(pd.read_parquet(out / "leaderboard.parquet")["model"]) == list(csv.index)
    doc = _strict_json(out / "leaderboard.json")  # NaN and infinity written as null
    pref = doc["preference"]
    assert pref["n_votes"] == 160 and pref["settings"]["n_boot"] == 1000
    assert pref["never_compared"] == [["alpha", "gamma"]]
    assert pref["win_rates"]["alpha"]["gamma"] is None
    assert {r["model"] for r in pref["table"]} == {"alpha", "beta", "gamma", "delta"}
    assert doc["agreement"]["raters"]["raters"] == 3 and doc["agreement"]["raters"]["alpha"] is not None
    assert {m["metric"] for m in doc["agreement"]["metrics"]} == {"sharpness", "noise"}
    assert doc["excluded_votes"] == 40 and doc["report_settings"]["baseline"] == "beta"
    delta = [g for g in doc["gallery"] if g["model"] == "delta"]
    assert len(delta) == 4 and {g["status"] for g in delta} == {"refused"}
    html = (out / "leaderboard.html").read_text()
    assert html.count("data:image/png;base64,") == 3 * 4  # the gallery: 3 models x 4 prompts
    assert html.count("data:image/svg+xml;base64,") == 2 + 2  # two trade-off charts, two CI plots
    assert "refused: content filter" in html and "<h2>Human preference</h2>" in html


def test_same_store_same_bytes(full, tmp_path):
    store, out = full
    before = {f: (out / f).read_bytes() for f in FILES}
    again = report(store, RUN_ID, SimpleNamespace(dir=str(out.parents[1]), baseline="beta"))
    assert {f: (again / f).read_bytes() for f in FILES} == before
    # and from a fresh store built the same way, into another folder
    other = make_store(tmp_path / "store", models=("alpha", "beta", "gamma", "delta"), refuse_all=("delta",),
                       never_compared=[("alpha", "gamma")], api_price={"beta": 0.04})
    third = report(other, RUN_ID, SimpleNamespace(dir=str(tmp_path / "reports"), baseline="beta"))
    for f in ("leaderboard.md", "leaderboard.csv", "leaderboard.html"):
        assert (third / f).read_bytes() == before[f], f


def test_edge_cases_are_named_not_fatal(full):
    _, out = full
    md = (out / "leaderboard.md").read_text()
    assert "## What is missing" in md
    assert "Delta: every finished request was refused (6)" in md
    assert "Alpha and Gamma were never shown together" in md
    assert "Delta has no votes" in md
    assert "40 vote(s) from raters marked excluded are left out" in md


def test_excluded_raters_are_left_out_unless_asked(full):
    store, _ = full
    kept = build_leaderboard(store, RUN_ID, n_boot=50, gallery_prompts=0)
    everyone = build_leaderboard(store, RUN_ID, n_boot=50, gallery_prompts=0, include_excluded=True)
    assert kept.preference.n_votes == 160 and everyone.preference.n_votes == 200
    assert kept.excluded_votes == 40 and everyone.excluded_votes == 0
    assert kept.agreement["raters"]["raters"] == 3 and everyone.agreement["raters"]["raters"] == 4
    # the excluded rater always clicked left: counting them shows up as position bias
    assert everyone.preference.position["share_left"] > kept.preference.position["share_left"]


def test_no_votes_yet(tmp_path):
    store = make_store(tmp_path / "store", votes_per_pair=0)
    out = report(store, RUN_ID, SimpleNamespace(dir=str(tmp_path / "reports"), bootstrap=100))
    md = (out / "leaderboard.md").read_text()
    assert "No votes for this run yet." in md and "harness rate" in md and "## Agreement" not in md
    doc = _strict_json(out / "leaderboard.json")
    assert doc["preference"]["n_votes"] == 0 and doc["preference"]["reason"] == "no votes"
    assert "pref_rating" not in pd.read_csv(out / "leaderboard.csv").columns
    html = (out / "leaderboard.html").read_text()
    assert "No votes for this run yet." in html and html.count("data:image/png") == 3 * 4
    assert html.count("data:image/svg+xml") == 2 + 1  # trade-off charts, the metric CI plot


def test_one_model(tmp_path):
    store = make_store(tmp_path / "store", models=("alpha",), votes_per_pair=0)
    out = report(store, RUN_ID, SimpleNamespace(dir=str(tmp_path / "reports"), bootstrap=100,
                                                gallery_prompts=2))
    md = (out / "leaderboard.md").read_text()
    assert "Only one model (Alpha)" in md and "| 1 | Alpha |" in md
    assert (out / "leaderboard.html").read_text().count('class="cell"') == 2


def test_settings_gallery_off_no_html_and_unknown_baseline(tmp_path):
    store = make_store(tmp_path / "store", votes_per_pair=10, excluded_rater=False)
    out = report(store, RUN_ID, SimpleNamespace(dir=str(tmp_path / "a"), gallery_prompts=0, bootstrap=100))
    assert "No gallery: turned off" in (out / "leaderboard.html").read_text()
    out = report(store, RUN_ID, SimpleNamespace(dir=str(tmp_path / "b"), html=False, bootstrap=100))
    assert not (out / "leaderboard.html").exists() and (out / "leaderboard.md").exists()
    with pytest.raises(ValueError, match="did you mean"):
        report(store, RUN_ID, SimpleNamespace(dir=str(tmp_path / "c"), baseline="alpah"))


def test_run_without_models(tmp_path):
    from harness.leaderboard import write_report
    from harness.store import Store
    from harness.types import Prompt

    store = Store(tmp_path / "store")
    store.save_run("empty", "toy", {"suite": {"version": "1", "prompts": 1}, "samples": 1, "seed": 0},
                   [Prompt(id="p", text="t")], "h", {}, [])
    out = write_report(build_leaderboard(store, "empty"), tmp_path / "reports")
    assert "The run has no models: nothing to rank." in (out / "leaderboard.md").read_text()
    assert "No gallery" in (out / "leaderboard.html").read_text()


def test_report_settings_come_from_the_report_config_section(tmp_path, monkeypatch):
    from harness import cli

    monkeypatch.chdir(tmp_path)
    cfg = cli.compose(["command=report", "report.baseline=gamma", "report.gallery_prompts=1",
                       "report.bootstrap=150", "report.both_bad=drop", f"report.dir={tmp_path / 'r'}"])
    out = report(make_store(tmp_path / "store"), RUN_ID, cfg.report)
    doc = _strict_json(out / "leaderboard.json")
    assert doc["report_settings"] == dict(ci=0.95, baseline="gamma", n_boot=150, seed=0, both_bad="drop",
                                          gallery_prompts=1, include_excluded=False, headline="auto",
                                          min_votes=30, primary_metric=None, metric_ranks=False,
                                          preference_cluster="prompt")
    assert len({g["prompt_id"] for g in doc["gallery"]}) == 1
    assert "rating 1000 = Gamma" in (out / "leaderboard.md").read_text()
    with pytest.raises(cli.UserError, match="Did you mean 'gallery_prompts'"):
        cli.compose(["report.gallery_prompt=1"])
