"""leaderboard.html's parts: quality against price and speed (prices, Pareto front), the heatmaps,
the gallery's choice of prompts, one self-contained deterministic file. Values are checked
against independent re-derivations (plain loops over the store, the cost formula by hand)."""

from __future__ import annotations

import base64
import itertools
import math
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from harness.leaderboard.cost import GpuPrice
from harness.leaderboard.gallery import choose_prompts, disagreement, vote_disagreement
from harness.leaderboard.heatmap import heat_colour, pair_matrices
from harness.leaderboard.html import render_html, tradeoff_html
from harness.leaderboard.plots import tradeoff_plot
from harness.leaderboard.synthetic import RUN_ID, make_store
from harness.leaderboard.table import build_leaderboard
from harness.leaderboard.tradeoff import NO_PRICE, headline_score, pareto_front, price_table, tradeoff_table
from harness.leaderboard.votes import load_votes

GPU = GpuPrice(usd_per_hour=3.6, utilisation=0.5, name="L4")


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    root = tmp_path_factory.mktemp("html")
    store = make_store(root / "store", models=("alpha", "beta", "gamma", "delta"), refuse_all=("delta",),
                       api_price={"beta": 0.04}, prompts=8)
    lb = build_leaderboard(store, RUN_ID, n_boot=100)
    yield store, lb
    store.close()


def test_prices_api_gpu_and_why(board):
    store, lb = board
    p = price_table(lb, GPU).set_index("model")
    ok = store.records(RUN_ID, status="ok")
    for m in ("alpha", "gamma"):  # self-hosted: median seconds x $/h / 3600 / utilisation, per 1,000
        secs = float(np.median([r.latency_s for r in ok if r.model == m]))
        assert p.loc[m, "price_per_1000_usd"] == pytest.approx(1000 * secs * 3.6 / 3600 / 0.5)
        assert p.loc[m, "basis"] == "gpu" and p.loc[m, "why"] == ""
    assert p.loc["beta", "price_per_1000_usd"] == pytest.approx(40.0) and p.loc["beta", "basis"] == "api"
    assert math.isnan(p.loc["delta", "price_per_1000_usd"]) and p.loc["delta", "why"] == NO_PRICE["refused"]
    unset = price_table(lb, None).set_index("model")
    assert unset.loc["alpha", "why"] == NO_PRICE["gpu_unset"]
    assert "cost.gpu_usd_per_hour" in NO_PRICE["gpu_unset"]
    assert unset.loc["beta", "price_per_1000_usd"] == pytest.approx(40.0)
    # an API model without a price: the fix is named
    api = lb.models.copy()
    api.loc[api["model"] == "gamma", "kind"] = "openai"
    why = price_table(SimpleNamespace(models=api), GPU).set_index("model").loc["gamma", "why"]
    assert why == "unknown price: set models.gamma.price_per_image"
    odd = lb.models.copy()
    odd.loc[odd["model"] == "alpha", "kind"] = "imported"
    odd.loc[odd["model"] == "gamma", "latency_p50_s"] = math.nan
    p = price_table(SimpleNamespace(models=odd), GPU).set_index("model")
    assert p.loc["alpha", "why"] == NO_PRICE["imported"] and p.loc["gamma", "why"] == NO_PRICE["no_latency"]
    assert p["price_per_1000_usd"].isna().sum() == 3  # alpha, gamma, delta; beta keeps its API price


def _dominated_reference(x, y, hib):
    """Pareto front by brute force over every pair (the definition, written out)."""
    out = []
    for i in range(len(x)):
        if not (math.isfinite(x[i]) and math.isfinite(y[i])):
            out.append(False)
            continue
        beaten = False
        for j in range(len(x)):
            if j == i or not (math.isfinite(x[j]) and math.isfinite(y[j])):
                continue
            better = y[j] >= y[i] if hib else y[j] <= y[i]
            strictly = (y[j] > y[i] if hib else y[j] < y[i]) or x[j] < x[i]
            if x[j] <= x[i] and better and strictly:
                beaten = True
        out.append(not beaten)
    return out


def test_pareto_front_matches_the_definition():
    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(1, 9))
        x = rng.integers(0, 5, n).astype(float)  # small integer grid: many ties
        y = rng.integers(0, 5, n).astype(float)
        x[rng.random(n) < 0.15] = math.nan
        for hib in (True, False):
            assert list(pareto_front(x, y, higher_is_better=hib)) == _dominated_reference(x, y, hib)


def test_tradeoff_table_and_charts(board):
    _, lb = board
    s = headline_score(lb)
    tab = tradeoff_table(lb, GPU).set_index("model")
    assert list(tab.index) == list(lb.models["model"])
    assert tab.loc["alpha", "score"] == pytest.approx(lb.models.set_index("model").loc["alpha", s.column])
    for col, x in (("front_price", "price_per_1000_usd"), ("front_speed", "latency_p50_s")):
        ref = _dominated_reference(tab[x].to_numpy(float), tab["score"].to_numpy(float), s.higher_is_better)
        assert list(tab[col]) == ref
    assert not tab.loc["delta", "front_price"]  # no price, no point
    svg = tradeoff_plot(tab.reset_index(), s.label, s.higher_is_better, "price", note="priced at L4")
    again = tradeoff_plot(tab.reset_index(), s.label, s.higher_is_better, "price", note="priced at L4")
    assert svg == again and svg.startswith(b"<?xml") and b"<dc:date>" not in svg
    text = svg.decode()
    for label in ("Alpha", "Beta", "Gamma"):
        assert f">{label}<" in text or label in text
    assert "Delta" not in text and "Pareto front" in text and "priced at L4" in text
    empty = tab.reset_index().assign(price_per_1000_usd=math.nan)
    assert tradeoff_plot(empty, s.label, True, "price") is None


def test_heatmaps_count_every_vote(board):
    _, lb = board
    wr, votes = pair_matrices(lb)
    labels = dict(zip(lb.models["model"], lb.models["label"], strict=True))
    pairs = lb.preference.pairs
    for a, b in itertools.permutations(["alpha", "beta", "gamma"], 2):
        n = int(pairs[((pairs["model_a"] == a) & (pairs["model_b"] == b))
                      | ((pairs["model_a"] == b) & (pairs["model_b"] == a))]["votes"].sum())
        assert votes.loc[labels[a], labels[b]] == n == votes.loc[labels[b], labels[a]] > 0
        assert wr.loc[labels[a], labels[b]] + wr.loc[labels[b], labels[a]] == pytest.approx(1.0)
    assert votes.loc["Delta", "Alpha"] == 0 and math.isnan(wr.loc["Delta", "Alpha"])
    assert math.isnan(votes.loc["Alpha", "Alpha"])
    assert heat_colour(0.5, 0, 1, diverging=True)[0] == "#ffffff"
    assert heat_colour(1.0, 0, 1, diverging=True)[0] != heat_colour(0.0, 0, 1, diverging=True)[0]
    assert heat_colour(math.nan, 0, 1, diverging=False)[0] == "#f2f2f5"


def _expected_gallery(ref: dict[str, float], n: int = 4) -> list[str]:
    """Half the places by tag (each category's most disagreed prompt), the rest by disagreement."""
    ranked = [p for p, _ in sorted(ref.items(), key=lambda kv: (-kv[1], kv[0]))]
    by_tag: dict[str, str] = {}
    for pid in ranked:
        by_tag.setdefault(["animals", "text"][int(pid[1:]) % 2], pid)
    rest = [p for p in ranked if p not in by_tag.values()]
    return sorted(by_tag.values()), rest[: n - len(by_tag)]


def test_gallery_metric_disagreement_matches_a_loop(board):
    store, lb = board
    recs = {r.key: r for r in store.records(RUN_ID)}
    scores = pd.DataFrame(store.scores(RUN_ID))
    ref: dict[str, list[float]] = {}
    for _, grp in scores.groupby("metric"):
        sd = float(np.std(grp["value"]))
        per: dict[str, dict[str, list[float]]] = {}
        for _, r in grp.iterrows():
            rec = recs[r["key"]]
            per.setdefault(rec.prompt_id, {}).setdefault(rec.model, []).append(r["value"])
        for pid, models in per.items():
            means = [sum(v) / len(v) for v in models.values()]
            ref.setdefault(pid, []).append((max(means) - min(means)) / sd)
    mean = {p: sum(v) / len(v) for p, v in ref.items()}
    got = disagreement(pd.DataFrame(store.records(RUN_ID)), scores, ["noise", "sharpness"])
    assert got.to_dict() == pytest.approx(mean)
    # a metric headline: the gallery follows that metric alone
    only = build_leaderboard(store, RUN_ID, n_boot=50, headline="sharpness")
    sharp = disagreement(pd.DataFrame(store.records(RUN_ID)), scores, ["sharpness"]).to_dict()
    tagged, rest = _expected_gallery(sharp)
    chosen = list(dict.fromkeys(only.gallery["prompt_id"]))
    assert sorted(chosen[:2]) == tagged and chosen[2:] == rest
    assert only.gallery["why"].iloc[0].endswith("standard deviations apart)")
    assert "sharpness: the models' means" in only.gallery["why"].iloc[0]


def test_gallery_follows_the_preference_headline(board):
    store, lb = board
    assert lb.headline.kind == "preference"
    # reference: per prompt, each model's share of its votes won (tie, both bad: half), max - min
    won: dict[str, dict[str, list[float]]] = {}
    for v in store.votes(RUN_ID):
        left = {"left": 1.0, "right": 0.0}.get(v.choice, 0.5)
        won.setdefault(v.prompt_id, {}).setdefault(v.left_model, []).append(left)
        won.setdefault(v.prompt_id, {}).setdefault(v.right_model, []).append(1 - left)
    ref = {p: max(sum(x) / len(x) for x in m.values()) - min(sum(x) / len(x) for x in m.values())
           for p, m in won.items() if len(m) > 1}
    assert vote_disagreement(load_votes(store, RUN_ID)).dropna().to_dict() == pytest.approx(ref)
    g = lb.gallery
    chosen = list(dict.fromkeys(g["prompt_id"]))
    assert len(chosen) == 4 and set(g["model"]) == {"alpha", "beta", "gamma", "delta"}
    tagged, rest = _expected_gallery(ref)
    assert sorted(chosen[:2]) == tagged and chosen[2:] == rest
    whys = g.drop_duplicates("prompt_id")["why"].tolist()
    assert whys[0].startswith("tag category:") and "win shares" in whys[0]
    assert whys[2].startswith("among the prompts where the models disagree most (human preference")


def test_choose_prompts_edge_cases():
    score = pd.Series({"a": 0.1, "b": 0.9, "c": math.nan, "d": 0.5})
    tags = {"a": ["t1"], "b": ["t1"], "c": ["t2"], "d": []}
    assert choose_prompts(list(score.index), tags, score, 0) == []
    got = choose_prompts(list(score.index), tags, score, 3)
    # 2 by tag (t1's best is b; t2's only prompt c has no score), then the best left (d)
    assert [p for p, _ in got] == ["b", "c", "d"]
    assert got[1][1] == "tag t2: its first prompt (no scores to compare)"
    assert [p for p, _ in choose_prompts(list("abcd"), {}, pd.Series(dtype=float), 2)] == ["a", "b"]
    assert len(choose_prompts(list("abcd"), tags, score, 10)) == 4


def _images(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/[a-z+]+;base64,([^"]+)"', html)]


def test_html_is_one_deterministic_offline_file(board):
    _, lb = board
    html = render_html(lb, gpu=GPU)
    assert html == render_html(lb, gpu=GPU)  # same store, same bytes (SVGs included)
    assert not re.search(r'(src|href)="(?!data:)', html) and "<link" not in html and "<script src" not in html
    assert re.search(r'<p class="meta">Run synthetic · suite synthetic-suite · run last updated '
                     r'\d{4}-\d\d-\d\d \d\d:\d\d UTC</p>', html)
    assert html.index('class="meta"') < html.index('id="headline-table"')
    assert '<table id="headline-table" class="sortable">' in html and 'data-table="headline-table"' in html
    assert html.count('<table class="heatmap">') == 2 and "<h3>Votes per pair, in detail</h3>" in html
    assert "<h2>Quality against price and speed</h2>" in html and "L4 at $3.6/h, 50% utilisation" in html
    assert "– (every request was refused: no image to price)" in html
    assert html.count('<p class="why">Chosen: ') == 4
    imgs = _images(html)
    assert len(imgs) == 2 + 1 + 1 + 3 * 4  # trade-off charts, metric and preference CIs, gallery
    for data in imgs:
        assert data.startswith(b"\x89PNG") or data.startswith(b"<?xml")
    unpriced = tradeoff_html(lb, None)
    assert NO_PRICE["gpu_unset"] in unpriced and "no price until cost.gpu_usd_per_hour is set" in unpriced


def test_gallery_images_are_embedded_large_enough_to_enlarge(tmp_path):
    import io

    from PIL import Image

    store = make_store(tmp_path / "store", models=("alpha", "beta"), votes_per_pair=0, prompts=2)
    lb = build_leaderboard(store, RUN_ID, n_boot=20, gallery_prompts=1)
    flat, photo = tmp_path / "flat.png", tmp_path / "photo.png"
    Image.new("RGB", (1024, 768), (10, 20, 30)).save(flat)
    noise = np.random.default_rng(0).integers(0, 256, (768, 1024, 3), dtype=np.uint8)
    Image.fromarray(noise).save(photo)  # photograph-like: JPEG is far smaller than PNG
    lb.gallery.loc[0, "image_path"] = str(flat)
    lb.gallery.loc[1, "image_path"] = str(photo)
    html = render_html(lb)
    pics = [d for d in _images(html) if not d.startswith(b"<?xml")]
    assert [Image.open(io.BytesIO(d)).size for d in pics] == [(512, 384)] * 2  # shrunk, never past 512
    assert pics[0].startswith(b"\x89PNG") and pics[1].startswith(b"\xff\xd8\xff")
    assert "data:image/jpeg;base64," in html
    png = io.BytesIO()
    Image.open(io.BytesIO(pics[1])).save(png, format="PNG")
    assert len(pics[1]) < len(png.getvalue()) / 2
    assert render_html(lb) == html  # JPEG encoding is deterministic too
    store.close()


def test_html_labels_follow_report_ci(tmp_path):
    store = make_store(tmp_path / "store", models=("alpha", "beta", "gamma"), prompts=4, votes_per_pair=10)
    lb = build_leaderboard(store, RUN_ID, ci=0.9, n_boot=50, gallery_prompts=1)
    html = render_html(lb)
    text = re.sub(r"base64,[^\"]+", "", html)
    assert "95%" not in text and "Bars: its 90% CI." in text
    svgs = [d.decode() for d in _images(html) if d.startswith(b"<?xml")]
    assert any("Mean per image with 90% CI" in s for s in svgs)
    assert any("bootstrap 90% CI" in s for s in svgs)
    store.close()


def test_api_kinds_are_every_api_adapter():
    """The price table tells API models (unknown price: a config fix) from self-hosted ones
    (priced by GPU time) by generator kind: every adapter that calls a provider is listed."""
    import importlib
    import inspect
    import pkgutil

    import harness.generators as gens
    from harness.generators.api import APIGenerator
    from harness.generators.base import Generator
    from harness.leaderboard.tradeoff import API_KINDS

    kinds = {}
    for info in pkgutil.iter_modules(gens.__path__):
        mod = importlib.import_module(f"harness.generators.{info.name}")
        for _, cls in inspect.getmembers(mod, inspect.isclass):
            if issubclass(cls, Generator) and cls.__module__ == mod.__name__:
                kinds[cls.kind] = issubclass(cls, APIGenerator)
    api = {k for k, is_api in kinds.items() if is_api}
    assert api and api <= API_KINDS
    assert not (API_KINDS & {k for k, is_api in kinds.items() if not is_api})
