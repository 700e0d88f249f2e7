"""Metric protocol and the colourfulness metric against a hand computation."""

import math

import numpy as np
import pytest
from PIL import Image

from harness.errors import ConfigError
from harness.leaderboard.stats import mean_ci
from harness.metrics.base import Metric, ScoreInput
from harness.metrics.colorfulness import Colorfulness, colorfulness


def test_colorfulness_matches_hand_computation():
    # Two pixels: pure red and pure blue.
    # rg = [255, 0], yb = [127.5, -255]; std (population): 127.5, 191.25; means 127.5, -63.75
    img = np.array([[[255, 0, 0], [0, 0, 255]]], dtype=np.uint8)
    expected = math.sqrt(127.5**2 + 191.25**2) + 0.3 * math.sqrt(127.5**2 + 63.75**2)
    assert colorfulness(img) == pytest.approx(expected, rel=1e-12)


def test_grey_images_score_zero_and_saturated_score_high():
    grey = np.full((16, 16, 3), 128, dtype=np.uint8)
    assert colorfulness(grey) == 0.0
    rng = np.random.default_rng(0)
    vivid = rng.choice([0, 255], size=(16, 16, 3)).astype(np.uint8)
    assert colorfulness(vivid) > 82  # "highly colourful" in the paper's scale


def test_metric_declares_settings_and_rejects_unknown_ones():
    m = Colorfulness(name="colorfulness")
    d = m.describe()
    assert d["metric"] == "colorfulness" and d["higher_is_better"] is True and d["resize"] is None
    assert Colorfulness(name="c", settings={"resize": 64}).settings_hash() != m.settings_hash()
    with pytest.raises(ConfigError, match="unknown setting 'resise'.*'resize'"):
        Colorfulness(name="c", settings={"resise": 64})


def test_score_images_resizes_when_asked():
    img = Image.new("RGB", (8, 8), (200, 30, 30))
    item = ScoreInput(key="k", model="m", image=img, prompt={"text": "red"})
    (v, extra), = Colorfulness(name="c", settings={"resize": 4}).score_images([item])
    assert v == pytest.approx(colorfulness(np.asarray(img)))


def test_mean_ci_bootstrap_brackets_the_mean():
    # The bootstrap itself is tested against theory and scipy in test_aggregate.py.
    vals = np.array([1.0, 2.0, 3.0, 4.0])
    m, lo, hi = mean_ci(vals, 0.95)
    assert m == 2.5 and 1.0 <= lo < 2.5 < hi <= 4.0
    assert math.isnan(mean_ci(np.array([]), 0.95)[0])
    assert math.isnan(mean_ci(np.array([1.0]), 0.95)[1])


def test_reading_notes_are_stored_in_describe_and_never_change_the_hash():
    from harness.metrics.base import NOTES_KEY, ReadingNotes, reading_notes, without_notes
    from harness.types import canonical_json, sha256_hex

    m = Colorfulness(name="colorfulness")
    d = m.describe()
    assert "82+ highly colourful" in reading_notes(d).line()
    assert without_notes(d) == m.identity()
    # the hash is the one stores written before metrics carried notes hold: nothing is re-scored
    assert m.settings_hash() == sha256_hex(canonical_json(m.identity()))[:16] == "5e01a8440ba513c5"

    class Reworded(Colorfulness):
        def how_to_read(self, identity):
            return ReadingNotes(lines={"": "other words"})

    r = Reworded(name="colorfulness")
    assert reading_notes(r.describe()).line() == "other words" and r.settings_hash() == m.settings_hash()
    # a metric with nothing to say stores no notes; stored settings without them read as none
    assert NOTES_KEY not in Metric(name="plain").describe()
    assert reading_notes({"metric": "x"}) == ReadingNotes()


def test_ocr_and_clip_score_notes_read_their_settings():
    from harness.metrics.base import reading_notes
    from harness.metrics.clip_score import ClipScore
    from harness.metrics.ocr import OCRScore

    notes = reading_notes(OCRScore(name="ocr", settings={"casefold": False}).describe())
    assert set(notes.lines) == set(OCRScore.outputs)
    cer = notes.line("cer")
    assert cer.startswith("character error rate") and "(0 = perfect; can exceed 1)" in cer
    assert ("upscaling to 512 px, normalised: collapse_whitespace, punctuation -> word breaks "
            "(keeping %$+#&@);") in notes.line("exact")
    line = reading_notes(ClipScore(name="clip", settings={"scale": 2.5}).describe()).line()
    # weights ids are cut to 23 characters (a sha256 id keeps its first 16 hex digits)
    assert line.startswith("2.5 x max(cos, 0) of image and prompt embeddings "
                           "(ViT-L-14, open_clip:ViT-L-14/open)")
