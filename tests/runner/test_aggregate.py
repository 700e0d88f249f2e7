"""Aggregation: seeded percentile bootstrap of the mean, None values left out and counted,
per-tag CIs, and the Markdown report's N and how-to-read lines."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.leaderboard.render import render_markdown
from harness.leaderboard.table import build_leaderboard, mean_ci
from harness.metrics.base import Metric, as_rgb
from harness.runner.score import score_run
from harness.store import Store
from harness.types import GenRequest, GenResult, Prompt


def test_bootstrap_ci_close_to_normal_theory_for_a_normal_sample():
    x = np.random.default_rng(1).normal(10.0, 2.0, size=500)
    m, lo, hi = mean_ci(x, 0.95)
    half = 1.959964 * x.std(ddof=1) / math.sqrt(len(x))
    assert m == pytest.approx(x.mean())
    assert lo == pytest.approx(m - half, abs=0.1 * half)
    assert hi == pytest.approx(m + half, abs=0.1 * half)
    m90 = mean_ci(x, 0.90)
    assert m90[1] > lo and m90[2] < hi  # a lower level gives a narrower interval


def test_bootstrap_agrees_with_scipy_percentile_bootstrap():
    scipy_stats = pytest.importorskip("scipy.stats")
    x = np.random.default_rng(2).exponential(1.0, size=60)  # skewed: percentile CI is asymmetric
    _, lo, hi = mean_ci(x, 0.95, resamples=20000)
    ref = scipy_stats.bootstrap((x,), np.mean, confidence_level=0.95, n_resamples=20000,
                                method="percentile", random_state=np.random.default_rng(7))
    width = hi - lo
    assert lo == pytest.approx(ref.confidence_interval.low, abs=0.03 * width)
    assert hi == pytest.approx(ref.confidence_interval.high, abs=0.03 * width)
    assert (hi - x.mean()) > (x.mean() - lo)  # right-skewed data: longer upper arm


def test_bootstrap_is_deterministic_and_seeded():
    x = np.random.default_rng(3).uniform(size=40)
    assert mean_ci(x, 0.95) == mean_ci(x.copy(), 0.95)
    assert mean_ci(x, 0.95, seed=1) != mean_ci(x, 0.95)


def test_bootstrap_small_and_constant_samples():
    assert all(math.isnan(v) for v in mean_ci(np.array([]), 0.95))
    m, lo, hi = mean_ci(np.array([3.0]), 0.95)
    assert m == 3.0 and math.isnan(lo) and math.isnan(hi)
    assert mean_ci(np.full(10, 2.0), 0.95) == (2.0, 2.0, 2.0)
    big = np.random.default_rng(4).normal(size=20000)  # chunked resampling path
    _, lo, hi = mean_ci(big, 0.95, resamples=1000)
    assert lo < 0.02 and hi > -0.02 and hi - lo == pytest.approx(2 * 1.96 / math.sqrt(20000), rel=0.1)


# -- through the store, the score stage and the report ----------------------------------------

class _Fake(Metric):
    """Two outputs; None for prompts without expected text (as OCR does)."""

    kind = "fake_ocr"
    outputs = {"hit": True, "err": False}
    defaults = {"offset": 0.0}

    def score_images(self, items):
        out = []
        for it in items:
            if not it.prompt.get("expected_text"):
                out.append(({"hit": None, "err": None}, {"skipped": "no target text"}))
            else:
                v = float(it.image.getpixel((0, 0))[0]) / 255
                out.append(({"hit": v, "err": 1 - v}, {}))
        return out


def _png(v: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (v, 0, 0)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path)
    prompts = [Prompt(id=f"p{i}", text=f"prompt {i}", tags=(f"category:{'a' if i < 4 else 'b'}",),
                      expected_text=None if i in (2, 5) else f"T{i}") for i in range(6)]
    units = [(f"{m}-{p.id}", m, p.id, 0) for m in ("m1", "m2") for p in prompts]
    s.save_run("r1", "toy", {"suite": {"version": "1", "prompts": 6}, "samples": 1, "seed": 0},
               prompts, "h", {"m1": {"label": "M1"}, "m2": {"label": "M2"}}, units)
    rng = np.random.default_rng(0)
    for key, model, pid, _ in units:
        req = GenRequest(model=model, generator="fake", model_id="x", revision=None, weights=None,
                         prompt_id=pid, prompt="p", negative_prompt=None, sample=0, seed=0,
                         width=4, height=4)
        base = 200 if model == "m1" else 60
        s.put_result(req, key, GenResult(status="ok", image=_png(int(base + rng.integers(0, 40)))))
    score_run(s, "r1", {"fake": _Fake(name="fake")}, progress=False)
    return s


def test_none_values_are_excluded_and_counted(store):
    lb = build_leaderboard(store, "r1")
    t = lb.models.set_index("model")
    assert t.loc["m1", "fake.hit_n"] == 4 and t.loc["m2", "fake.err_n"] == 4  # 6 images, 2 skipped
    vals = [s.value for s in store.scores("r1") if s.model == "m1" and s.metric == "fake.hit"]
    assert vals.count(None) == 2
    assert t.loc["m1", "fake.hit"] == pytest.approx(np.mean([v for v in vals if v is not None]))
    assert t.loc["m1", "fake.hit_lo"] <= t.loc["m1", "fake.hit"] <= t.loc["m1", "fake.hit_hi"]
    assert list(lb.models["model"]) == ["m1", "m2"]  # sorted by the first metric's direction
    tags = lb.by_tag.set_index(["metric", "tag", "model"])
    assert tags.loc[("fake.hit", "category:a", "m1"), "n"] == 3  # p0, p1, p3
    assert tags.loc[("fake.hit", "category:b", "m1"), "n"] == 1  # p4
    row = tags.loc[("fake.hit", "category:a", "m1")]
    assert row["lo"] <= row["value"] <= row["hi"]


def test_same_store_same_numbers_and_report(store):
    a, b = build_leaderboard(store, "r1"), build_leaderboard(store, "r1")
    assert a.models.equals(b.models) and a.by_tag.equals(b.by_tag)
    md = render_markdown(a)
    assert md == render_markdown(b)
    assert "(N=4)" in md and "percentile bootstrap" in md
    assert "## fake.hit by tag" in md and "(3)" in md


class _OpenFiles(Metric):
    """A set metric that counts this process's open files while it scores (Linux /proc)."""

    kind = "open_files"
    per = "set"
    seen: list[tuple[int, float]] = []

    def score_set(self, items):
        import os

        n_open = len(os.listdir("/proc/self/fd"))
        red = float(np.mean([np.asarray(as_rgb(it.image))[..., 0].mean() for it in items]))
        type(self).seen.append((n_open, red))
        return red, {}


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_set_metrics_get_paths_not_open_files(store):
    # Opened images would hold 6 files per model open; a set of 10,000 would exceed the
    # common 1,024 open-file limit.
    import os

    base = len(os.listdir("/proc/self/fd"))
    _OpenFiles.seen = []
    score_run(store, "r1", {"files": _OpenFiles(name="files")}, progress=False)
    assert len(_OpenFiles.seen) == 2
    for n_open, _ in _OpenFiles.seen:
        assert n_open - base < 3
    reds = dict(zip(["m1", "m2"], [r for _, r in _OpenFiles.seen], strict=True))
    assert reds["m1"] > 200 > 100 > reds["m2"]  # decoded from the paths: m1 ~220, m2 ~80
