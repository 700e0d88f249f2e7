"""FID / KID: the numbers against independent computations, reference sets and their cache,
bad input, and the report note. Feature extraction here is a cheap fake (colour statistics);
the real extractors are tested in test_features.py."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from harness.errors import ConfigError
from harness.leaderboard.render import set_metric_notes
from harness.leaderboard.table import Leaderboard
from harness.metrics.base import ScoreInput, reading_notes
from harness.metrics.features import FeatureError, FeatureExtractor
from harness.metrics.fid import (
    FID,
    feature_stats,
    frechet_distance,
    frechet_distance_sqrtm,
    kid,
    trace_sqrt_product,
    trace_sqrt_product_eigvals,
)
from harness.store.rows import Run

scipy_linalg = pytest.importorskip("scipy.linalg")


# -- Fréchet distance -------------------------------------------------------------------------


def _stats(rng, n, d, scale=1.0, shift=0.0):
    x = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) * scale / np.sqrt(d) + shift
    return feature_stats(x)


@pytest.mark.parametrize("d", [8, 64, 256])
def test_frechet_matches_scipy_sqrtm(d):
    rng = np.random.default_rng(d)
    mu1, s1 = _stats(rng, 4 * d, d)
    mu2, s2 = _stats(rng, 4 * d, d, scale=1.3, shift=0.2)
    ref = frechet_distance_sqrtm(mu1, s1, mu2, s2)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-6)
    ts = np.trace(scipy_linalg.sqrtm(s1 @ s2)).real
    assert trace_sqrt_product(s1, s2) == pytest.approx(ts, rel=1e-9)
    assert trace_sqrt_product_eigvals(s1, s2) == pytest.approx(ts, rel=1e-9)


def test_frechet_singular_covariances_match_sqrtm():
    # Fewer samples than dimensions: every route (S1 singular -> Cholesky of S2; both singular ->
    # eigh square root; the samples themselves -> n x n matrix) against sqrtm.
    rng = np.random.default_rng(1)
    x = rng.standard_normal((20, 40)) @ rng.standard_normal((40, 40)) / 6
    mu1, s1 = feature_stats(x)
    mu2, s2 = _stats(rng, 200, 40, shift=0.5)
    mu3, s3 = _stats(rng, 30, 40, shift=0.2)
    for m2, c2 in ((mu2, s2), (mu3, s3)):
        ref = frechet_distance_sqrtm(mu1, s1, m2, c2)
        assert frechet_distance(mu1, s1, m2, c2) == pytest.approx(ref, rel=1e-6)
        assert frechet_distance(m2, c2, mu1, s1) == pytest.approx(ref, rel=1e-6)
        assert frechet_distance(mu1, s1, m2, c2, feats1=x) == pytest.approx(ref, rel=1e-6)


def test_frechet_of_identical_stats_is_zero():
    rng = np.random.default_rng(2)
    mu, s = _stats(rng, 500, 128)
    assert frechet_distance(mu, s, mu, s) == pytest.approx(0.0, abs=1e-6 * np.trace(s))


def test_frechet_closed_form_for_diagonal_covariances():
    rng = np.random.default_rng(3)
    a, b = rng.uniform(0.1, 3, 50), rng.uniform(0.1, 3, 50)
    mu1, mu2 = rng.standard_normal(50), rng.standard_normal(50)
    expected = float(((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum())
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)


def test_frechet_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="don't match"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


# -- KID --------------------------------------------------------------------------------------


def _mmd_explicit(x, y):
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, written out with loops."""
    m, n, d = len(x), len(y), x.shape[1]

    def k(a, b):
        return (sum(a[i] * b[i] for i in range(d)) / d + 1) ** 3

    kxx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    kyy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return kxx + kyy - 2 * kxy


def test_kid_matches_explicit_formula_on_whole_sets():
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((9, 5)), rng.standard_normal((9, 5)) + 0.3
    # One subset as big as the sets: a permutation of each, and MMD^2 ignores order.
    mean, std, m = kid(x, y, subsets=1, subset_size=100)
    assert m == 9 and std == 0.0
    assert mean == pytest.approx(_mmd_explicit(x, y), rel=1e-12)


def test_kid_subsets_match_explicit_formula():
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((12, 4)), 1.5 * rng.standard_normal((15, 4))
    mean, std, m = kid(x, y, subsets=5, subset_size=6, seed=7)
    draw = np.random.default_rng(7)  # the documented draw: per subset, m from x then m from y
    vals = []
    for _ in range(5):
        ix, iy = draw.choice(12, 6, replace=False), draw.choice(15, 6, replace=False)
        vals.append(_mmd_explicit(x[ix], y[iy]))
    assert m == 6
    assert mean == pytest.approx(np.mean(vals), rel=1e-12)
    assert std == pytest.approx(np.std(vals), rel=1e-9)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_another():
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((400, 16)), rng.standard_normal((400, 16))
    same, std, _ = kid(x, y, subsets=20, subset_size=200)
    other, _, _ = kid(x, y + 1.0, subsets=20, subset_size=200)
    assert abs(same) < 3 * std + 1e-3
    assert other > 10 * abs(same)


# -- the metric, with a cheap fake extractor --------------------------------------------------


class ColourStats(FeatureExtractor):
    """Per-channel means, stds and a few quantiles of a 16 px thumbnail: 12-d, no model."""

    name = "colour_stats"
    label = "test features"
    input_size = 16
    dim = 12

    def __init__(self):
        super().__init__(weights=None)
        self._weights_id = "test"
        self.images_seen = 0

    def _load(self):
        return object()

    def _forward(self, batch):
        self.images_seen += len(batch)
        x = batch.reshape(len(batch), -1, 3).astype(np.float64) / 255
        return np.concatenate([x.mean(1), x.std(1), np.quantile(x, 0.25, axis=1),
                               np.quantile(x, 0.75, axis=1)], axis=1)


def _image(rng, mode="RGB", size=24, offset=0.0):
    a = np.clip(rng.uniform(0, 1, (size, size, 3)) * 200 + offset, 0, 255).astype(np.uint8)
    return Image.fromarray(a).convert(mode) if mode != "RGB" else Image.fromarray(a)


def _folder(tmp_path, n, seed=0, name="ref", offset=0.0):
    rng = np.random.default_rng(seed)
    d = tmp_path / name
    d.mkdir()
    for i in range(n):
        _image(rng, offset=offset).save(d / f"{i:03d}.png")
    return d


def _items(images, prompt=None):
    return [ScoreInput(key=f"k{i}", model="m", image=im, prompt=prompt or {"id": f"p{i}", "text": "t"})
            for i, im in enumerate(images)]


def _metric(tmp_path, **settings):
    m = FID(name="fid", settings={"kid_subsets": 10, **settings})
    m.extractor = ColourStats()
    m.cache_dir = tmp_path / "cache"
    return m


def test_no_reference_records_a_skip_that_says_how_to_set_one(tmp_path):
    value, extra = _metric(tmp_path).score_set(_items([_image(np.random.default_rng(0))] * 3))
    assert value == {"fid": None, "kid": None}
    assert "metrics.fid.settings.reference=/path/to/folder" in extra["skipped"]
    assert ".npz" in extra["skipped"]


def test_too_few_images_records_a_skip(tmp_path):
    m = _metric(tmp_path, reference=str(_folder(tmp_path, 4)))
    value, extra = m.score_set(_items([_image(np.random.default_rng(0))]))
    assert value == {"fid": None, "kid": None} and "at least 2" in extra["skipped"]


def test_same_images_give_zero_and_shifted_images_give_more(tmp_path):
    ref = _folder(tmp_path, 30)
    m = _metric(tmp_path, reference=str(ref))
    same = [Image.open(p).convert("RGB") for p in sorted(ref.glob("*.png"))]
    value, extra = m.score_set(_items(same))
    assert value["fid"] == pytest.approx(0.0, abs=1e-9)
    # Unbiased MMD^2 of a set with itself is slightly negative (the diagonal is left out), not 0.
    assert abs(value["kid"]) < 1e-3
    assert extra["n"] == 30 and extra["n_reference"] == 30 and extra["kid_subset_size"] == 30
    assert "kid_std" in extra and extra["label"] == "test features"
    assert any("< 2000" in w for w in extra["warnings"])
    assert any("shrunk from 1000 to 30" in n for n in extra["notes"])
    rng = np.random.default_rng(9)
    shifted = [_image(rng, offset=40) for _ in range(30)]
    v2, _ = m.score_set(_items(shifted))
    assert v2["fid"] > 0.01 and v2["kid"] > 100 * abs(value["kid"])


def test_reference_cache_hit_and_invalidation(tmp_path):
    ref = _folder(tmp_path, 10)
    gen = _items([_image(np.random.default_rng(1)) for _ in range(5)])
    first = _metric(tmp_path, reference=str(ref))
    v1, e1 = first.score_set(gen)
    assert first.extractor.images_seen == 15 and not e1["reference_cached"]
    second = _metric(tmp_path, reference=str(ref))  # a new run: same cache folder
    v2, e2 = second.score_set(gen)
    assert second.extractor.images_seen == 5 and e2["reference_cached"]  # only the generated set
    assert v2 == v1
    h1, settings1 = second.describe()["reference_sha256"], second.settings_hash()
    # Same name and size, other content: the folder hash (sha256 of content) changes.
    _image(np.random.default_rng(99)).save(ref / "003.png")
    third = _metric(tmp_path, reference=str(ref))
    v3, e3 = third.score_set(gen)
    assert third.extractor.images_seen == 15 and not e3["reference_cached"]
    assert v3["fid"] != v1["fid"]
    assert third.describe()["reference_sha256"] != h1  # the settings hash changes: rescored
    assert third.settings_hash() != settings1


def test_npz_reference(tmp_path):
    ref = _folder(tmp_path, 12)
    gen = _items([_image(np.random.default_rng(1)) for _ in range(6)])
    v_folder, _ = _metric(tmp_path, reference=str(ref)).score_set(gen)
    feats = ColourStats().extract_all(sorted(ref.glob("*.png")))
    mu, sigma = feature_stats(feats)
    np.savez(tmp_path / "stats.npz", mu=mu, sigma=sigma)
    v, extra = _metric(tmp_path, reference=str(tmp_path / "stats.npz")).score_set(gen)
    assert v["fid"] == pytest.approx(v_folder["fid"], rel=1e-12)
    assert v["kid"] is None and "KID needs reference features" in extra["kid_skipped"]
    np.savez(tmp_path / "full.npz", mu=mu, sigma=sigma, features=feats)
    v, _ = _metric(tmp_path, reference=str(tmp_path / "full.npz")).score_set(gen)
    assert v["kid"] == pytest.approx(v_folder["kid"], rel=1e-12)


def test_suite_reference_images(tmp_path):
    ref = _folder(tmp_path, 4)
    files = sorted(ref.glob("*.png"))
    gen = [ScoreInput(key=f"k{i}", model="m", image=_image(np.random.default_rng(i)),
                      prompt={"id": f"p{i}", "text": "t", "controls": [
                          {"kind": "reference_image", "path": str(f), "sha256": f"sha{i}", "params": {}}]})
           for i, f in enumerate(files)]
    v, extra = _metric(tmp_path, reference="suite").score_set(gen)
    assert v["fid"] > 0 and extra["n_reference"] == 4 and extra["reference"] == "suite"
    with pytest.raises(FeatureError, match="no reference_image controls"):
        _metric(tmp_path, reference="suite").score_set(_items([_image(np.random.default_rng(0))] * 2))


@pytest.mark.parametrize("case, message", [
    ("missing", "reference folder .*nowhere not found"),
    ("empty", "reference folder .*empty has no images"),
    ("one", "has 1 image.*at least 2"),
    ("file", "neither a folder of images nor an .npz"),
    ("npz_keys", "must hold arrays 'mu' and 'sigma'"),
    ("npz_dim", "don't match the feature extractor's dimension 12"),
    ("npz_missing", "reference statistics .*gone.npz not found"),
])
def test_bad_reference_gives_errors_that_name_it(tmp_path, case, message):
    ref = {"missing": tmp_path / "nowhere", "empty": tmp_path / "empty", "file": tmp_path / "x.txt",
           "one": tmp_path / "one", "npz_keys": tmp_path / "k.npz", "npz_dim": tmp_path / "d.npz",
           "npz_missing": tmp_path / "gone.npz"}[case]
    if case == "empty":
        ref.mkdir()
        (ref / "notes.txt").write_text("not an image")
    elif case == "one":
        ref.mkdir()
        _image(np.random.default_rng(0)).save(ref / "a.png")
    elif case == "file":
        ref.write_text("x")
    elif case == "npz_keys":
        np.savez(ref, mean=np.zeros(12))
    elif case == "npz_dim":
        np.savez(ref, mu=np.zeros(5), sigma=np.eye(5))
    m = _metric(tmp_path, reference=str(ref))
    m.describe()  # describing (run manifest) never fails on a bad reference
    with pytest.raises(FeatureError, match=message):
        m.score_set(_items([_image(np.random.default_rng(0))] * 3))


def test_corrupt_reference_image_is_named(tmp_path):
    ref = _folder(tmp_path, 5)
    (ref / "002.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    with pytest.raises(FeatureError, match=r"image .*002\.png can't be decoded"):
        _metric(tmp_path, reference=str(ref)).score_set(_items([_image(np.random.default_rng(0))] * 3))


def test_corrupt_generated_image_records_a_skip_naming_it(tmp_path):
    ref = _folder(tmp_path, 4)
    gen = _folder(tmp_path, 3, seed=5, name="gen")
    data = (gen / "001.png").read_bytes()
    (gen / "001.png").write_bytes(data[: len(data) // 2])  # the header opens, the pixels don't
    items = [ScoreInput(key=f"k{i}", model="m", image=Image.open(p), prompt={})  # opened lazily
             for i, p in enumerate(sorted(gen.glob("*.png")))]
    value, extra = _metric(tmp_path, reference=str(ref)).score_set(items)
    assert value == {"fid": None, "kid": None}
    assert "image k1 (model m) can't be decoded" in extra["skipped"]


def test_grayscale_and_rgba_reference_images_are_converted_with_a_note(tmp_path):
    ref = _folder(tmp_path, 4)
    rng = np.random.default_rng(3)
    _image(rng, "L").save(ref / "gray.png")
    _image(rng, "RGBA").save(ref / "alpha.png")
    gen = [_image(rng, "L"), _image(rng, "RGBA"), _image(rng)]  # generated sets are converted too
    v, extra = _metric(tmp_path, reference=str(ref)).score_set(_items(gen))
    assert extra["n_reference"] == 6 and v["fid"] is not None
    note = next(n for n in extra["notes"] if "converted to RGB" in n)
    assert "2 reference image(s)" in note and "alpha.png (RGBA)" in note and "gray.png (L)" in note


def test_describe_stores_what_changes_the_number(tmp_path):
    d = FID(name="fid", settings={"reference": str(_folder(tmp_path, 2))}).describe()
    assert d["features"] == "efficientnet_lite0" and d["resize"] == "bicubic" and d["image_size"] == 224
    assert "not comparable to published FID" in d["label"]
    assert len(d["extractor"]["weights_id"]) == 64 and len(d["reference_sha256"]) == 64
    assert d["outputs"] == [["fid", False], ["kid", False]]
    assert {"kid_subsets", "kid_subset_size", "kid_seed"} <= set(d)


def test_runtime_settings_reach_the_extractor_and_not_the_hash(tmp_path):
    ref = str(_folder(tmp_path, 2))
    base = FID(name="fid", settings={"reference": ref})
    tuned = FID(name="fid", settings={"reference": ref, "device": "cpu", "batch_size": 8,
                                      "cpu_streams": 3})
    assert tuned.settings_hash() == base.settings_hash()
    assert not {"device", "batch_size", "cpu_streams"} & set(tuned.describe())
    assert tuned.extractor.batch_size == 8 and tuned.extractor.cpu_streams() == 3
    assert tuned.extractor._device() == "cpu"
    for key, bad in [("batch_size", 0), ("cpu_streams", "two"), ("batch_size", True)]:
        with pytest.raises(ConfigError, match=f"metrics.fid.settings.{key}: must be an integer >= 1"):
            FID(name="fid", settings={key: bad})


def test_score_stage_paths_and_corrupt_files_among_them(tmp_path):
    # The score stage hands set metrics file paths; a corrupt one is named by its record key.
    ref = _folder(tmp_path, 4)
    gen = _folder(tmp_path, 5, seed=5, name="gen")
    data = (gen / "003.png").read_bytes()
    (gen / "003.png").write_bytes(data[:70])
    paths = sorted(gen.glob("*.png"))
    items = [ScoreInput(key=f"k{i}", model="m", image=p, prompt={}) for i, p in enumerate(paths)]
    m = _metric(tmp_path, reference=str(ref))
    m.extractor.batch_size = 2  # three batches, so several streams on the CPU
    value, extra = m.score_set(items)
    assert value == {"fid": None, "kid": None}
    assert "image k3 (model m) can't be decoded" in extra["skipped"]
    (gen / "003.png").write_bytes(data)
    v_paths, _ = m.score_set(items)
    opened = [ScoreInput(key=it.key, model="m", image=Image.open(it.image), prompt={}) for it in items]
    assert v_paths == m.score_set(opened)[0] and v_paths["fid"] > 0


def test_report_note_warns_on_small_n_and_shows_kid():
    settings = FID(name="fid").describe()
    lb = Leaderboard(
        run=Run(run_id="r", suite="s", created_at="", updated_at="", status="scored", manifest={}),
        models=pd.DataFrame([{"model": "a", "label": "A", "fid.fid": 12.5, "fid.fid_n": 48,
                              "fid.kid": 0.0123, "fid.kid_n": 48},
                             {"model": "b", "label": "B", "fid.fid": float("nan"), "fid.fid_n": 48,
                              "fid.kid": float("nan"), "fid.kid_n": 48}]),
        by_tag=pd.DataFrame(),
        metrics={"fid.fid": {"settings": settings, "per": "set"},
                 "fid.kid": {"settings": settings, "per": "set"}},
        reading=dict.fromkeys(["fid.fid", "fid.kid"], reading_notes(settings)))  # the metric's own notes
    text = str(set_metric_notes(lb, ["fid.fid", "fid.kid"]))  # blocks: (kind, text or [(level, text)])
    assert "not comparable to published FID" in text
    assert "A: FID rests on N=48 images (< 2,000)" in text and "KID = 0.0123" in text
    assert "B: no value (skipped" in text


def _stored_items(folder, model="m"):
    """Items as the score stage makes them: paths plus the image's content hash."""
    import hashlib

    return [ScoreInput(key=f"{model}-{p.stem}", model=model, image=p, prompt={},
                       image_sha256=hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(folder.glob("*.png"))]


def test_generated_features_are_cached_per_image(tmp_path):
    ref = _folder(tmp_path, 6)
    gen = _folder(tmp_path, 5, seed=5, name="gen")
    m = _metric(tmp_path, reference=str(ref))
    v1, e1 = m.score_set(_stored_items(gen))
    assert e1["features_cached"] == 0 and m.extractor.images_seen == 6 + 5
    # Same images again: nothing extracted, the same numbers.
    v2, e2 = m.score_set(_stored_items(gen))
    assert e2["features_cached"] == 5 and m.extractor.images_seen == 11 and v2 == v1
    # Another reference: only the reference's images are new work.
    other = _metric(tmp_path, reference=str(_folder(tmp_path, 4, seed=9, name="ref2")))
    _, e3 = other.score_set(_stored_items(gen))
    assert e3["features_cached"] == 5 and other.extractor.images_seen == 4
    # The run grew by one image: one extraction.
    _image(np.random.default_rng(11)).save(gen / "zzz.png")
    v4, e4 = m.score_set(_stored_items(gen))
    assert e4["features_cached"] == 5 and m.extractor.images_seen == 12 and e4["n"] == 6
    fresh = _metric(tmp_path / "nocache", reference=str(ref))
    fresh.cache_dir = None
    assert fresh.score_set(_stored_items(gen))[0]["fid"] == pytest.approx(v4["fid"], rel=1e-6)


def test_feature_cache_ignores_rows_of_the_wrong_length(tmp_path):
    from harness.metrics.fid import FeatureCache

    ex = ColourStats()
    cache = FeatureCache(tmp_path, ex)
    cache.put([("a" * 64, np.arange(12, dtype=np.float32)), ("b" * 64, np.arange(12, dtype=np.float32))])
    import sqlite3

    with sqlite3.connect(cache.path) as con:
        con.execute("UPDATE features SET vec = ? WHERE sha256 = ?", (b"\0" * 8, "b" * 64))
    got = cache.get(["a" * 64, "b" * 64, "c" * 64])
    assert list(got) == ["a" * 64] and np.array_equal(got["a" * 64], np.arange(12))
    # Another extractor identity (weights) gets another file.
    other = ColourStats()
    other._weights_id = "other"
    assert FeatureCache(tmp_path, other).path != cache.path
