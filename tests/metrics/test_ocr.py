"""OCR text-rendering metric: text measures against brute-force references, and rapidocr on
PIL-rendered text (several fonts, sizes, rotations, wrong text, multi-line).

rapidocr takes ~0.4 s per image on 2 shared cores: the rendered cases are kept few.
"""

from __future__ import annotations

import io
import itertools
import os
import re
import shutil
from collections import Counter
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from harness.errors import ConfigError
from harness.metrics.base import ScoreInput
from harness.metrics.ocr import OUTPUTS, OCRScore, as_rgb, target_text
from harness.metrics.text import levenshtein, normalize, quoted_spans, text_scores, word_prf

needs_rapidocr = pytest.mark.skipif(find_spec("rapidocr") is None, reason="rapidocr not installed")


# -- text measures against independent references -------------------------------------------

def _lev_brute(a: str, b: str) -> int:
    """Full-matrix Wagner-Fischer, written independently of the two-row version."""
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1,
                          d[i - 1][j - 1] + (0 if a[i - 1] == b[j - 1] else 1))
    return d[len(a)][len(b)]


@pytest.mark.parametrize("a, b, d", [("kitten", "sitting", 3), ("flaw", "lawn", 2),
                                     ("", "abc", 3), ("abc", "", 3), ("", "", 0),
                                     ("intention", "execution", 5), ("gumbo", "gambol", 2)])
def test_levenshtein_textbook_values(a, b, d):
    assert levenshtein(a, b) == d == _lev_brute(a, b)


def test_levenshtein_matches_brute_force_on_all_short_strings():
    words = ["".join(p) for n in range(4) for p in itertools.product("ab", repeat=n)]
    for a, b in itertools.product(words, repeat=2):
        assert levenshtein(a, b) == _lev_brute(a, b), (a, b)


def test_word_prf_uses_multisets():
    # read: "the the cat", target: "the cat sat" -> hits: the x1, cat x1 = 2
    p, r, f = word_prf("the the cat", "the cat sat")
    assert (p, r) == pytest.approx((2 / 3, 2 / 3)) and f == pytest.approx(2 / 3)
    assert word_prf("", "") == (1.0, 1.0, 1.0)
    assert word_prf("", "a") == (0.0, 0.0, 0.0)
    # against a hand-written count
    read, target = ["a", "a", "b", "c"], ["a", "b", "b", "d"]
    hits = sum(min(Counter(read)[w], Counter(target)[w]) for w in set(read))
    assert word_prf(" ".join(read), " ".join(target))[:2] == pytest.approx((hits / 4, hits / 4))


def test_text_scores_definitions():
    s = text_scores("wet paint", "wet paint")
    assert s == {"exact": 1.0, "word_precision": 1.0, "word_recall": 1.0, "word_f1": 1.0,
                 "ned": 1.0, "cer": 0.0}
    s = text_scores("wet pant", "wet paint")  # one deletion
    assert s["exact"] == 0.0 and s["cer"] == pytest.approx(1 / 9) and s["ned"] == pytest.approx(1 - 1 / 9)
    assert s["word_precision"] == 0.5 and s["word_recall"] == 0.5
    assert text_scores("abcdefgh", "ab")["cer"] == pytest.approx(3.0)  # CER can exceed 1
    assert set(s) == set(OUTPUTS)


def test_normalisation_flags():
    t = "  Don't\n  PANIC!  "
    assert normalize(t) == "dont panic"
    assert normalize(t, casefold=False) == "Dont PANIC"
    assert normalize(t, strip_punctuation=False) == "don't panic!"
    assert normalize(t, collapse_whitespace=False) == "  dont\n  panic  "


@pytest.mark.parametrize("prompt, spans", [
    ('A sign that says "WET PAINT"', ["WET PAINT"]),
    ("A mug reading “Best Dad” and “Ever”", ["Best Dad", "Ever"]),
    ("A poster that says 'Don't stop' in red", ["Don't stop"]),
    ("The dog's bowl, don't touch it, it's mine", []),
    ("Rock 'n' roll band's drum reading 'LIVE'", ["n", "LIVE"]),
    ('"Outer \'inner\' text"', ["Outer 'inner' text"]),
    ("no quotes at all", []),
])
def test_quoted_spans(prompt, spans):
    assert quoted_spans(prompt) == spans


def test_target_prefers_expected_text_then_quotes():
    assert target_text({"text": 'says "A"', "expected_text": "B"}) == ("B", "expected_text")
    assert target_text({"text": 'says "A" and "C"'}) == ("A\nC", "quotes")
    assert target_text({"text": "a cat", "expected_text": ""}) == (None, None)
    assert target_text({}) == (None, None)


# -- the metric: settings and bad input (no OCR engine call) ---------------------------------

def test_settings_are_recorded_with_engine_version():
    m = OCRScore(name="ocr")
    d = m.describe()
    assert d["engine"] == "rapidocr" and d["engine_version"].startswith("rapidocr ")
    assert d["min_side"] == 512 and d["upscale_filter"] == "bicubic"
    assert d["casefold"] is True and d["strip_punctuation"] is True and d["collapse_whitespace"] is True
    assert dict(d["outputs"])["cer"] is False and dict(d["outputs"])["word_f1"] is True
    assert "batch_size" not in d and "workers" not in d  # runtime only
    assert OCRScore(name="ocr", settings={"casefold": False}).settings_hash() != m.settings_hash()
    assert OCRScore(name="ocr", settings={"workers": 1}).settings_hash() == m.settings_hash()
    with pytest.raises(ConfigError, match="unknown OCR engine 'rapidocrr'.*'rapidocr'"):
        OCRScore(name="ocr", settings={"engine": "rapidocrr"})
    with pytest.raises(ConfigError, match="upscale_filter"):
        OCRScore(name="ocr", settings={"upscale_filter": "bicubik"})


def test_no_target_and_corrupt_image_are_recorded_skips():
    m = OCRScore(name="ocr")
    m.engine.read = lambda rgb: pytest.fail("OCR must not run for skipped items")  # type: ignore[method-assign]
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), "white").save(buf, format="PNG")
    corrupt = Image.open(io.BytesIO(buf.getvalue()[:60]))  # truncated PNG: fails on load
    items = [ScoreInput("k1", "m", Image.new("RGB", (8, 8)), {"text": "a cat on a mat"}),
             ScoreInput("k2", "m", Image.new("RGB", (8, 8)), {"text": ""}),
             ScoreInput("k3", "m", corrupt, {"text": 'says "HI"'}),
             ScoreInput("k4", "m", Image.new("RGB", (8, 8)), {"text": 'says "!!!"'})]
    out = m.score_images(items)
    assert [v for v, _ in out] == [dict.fromkeys(OUTPUTS)] * 4
    assert out[0][1] == {"skipped": "no target text"} and out[1][1] == {"skipped": "no target text"}
    assert out[2][1]["skipped"].startswith("unreadable image")
    assert "empty after normalisation" in out[3][1]["skipped"]


def test_as_rgb_accepts_grey_rgba_and_arrays():
    import numpy as np

    grey = Image.new("L", (4, 4), 200)
    assert as_rgb(grey).mode == "RGB" and as_rgb(grey).getpixel((0, 0)) == (200, 200, 200)
    clear = Image.new("RGBA", (4, 4), (0, 0, 0, 0))  # transparent: white, not black
    assert as_rgb(clear).getpixel((0, 0)) == (255, 255, 255)
    assert as_rgb(np.zeros((3, 5), dtype=np.uint8)).size == (5, 3)


def test_small_images_are_upscaled_bicubic_to_min_side():
    m = OCRScore(name="ocr", settings={"min_side": 256})
    assert m.prepare(Image.new("RGB", (64, 32))).size == (512, 256)
    assert m.prepare(Image.new("RGB", (600, 300))).size == (600, 300)
    assert OCRScore(name="ocr", settings={"min_side": 0}).prepare(Image.new("RGB", (8, 8))).size == (8, 8)


# -- rapidocr on rendered text ---------------------------------------------------------------

def _ttf(name: str) -> Path | None:
    for root in ("/usr/share/fonts", "/usr/local/share/fonts"):
        hits = sorted(Path(root).rglob(name)) if Path(root).exists() else []
        if hits:
            return hits[0]
    try:  # matplotlib ships DejaVu
        import matplotlib

        p = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name
        return p if p.exists() else None
    except ImportError:
        return None


def _font(kind: str, size: int):
    if kind == "default":
        return ImageFont.load_default(size=size)
    path = _ttf({"serif": "DejaVuSerif.ttf", "mono": "DejaVuSansMono-Bold.ttf"}[kind])
    if path is None:
        pytest.skip(f"no {kind} TTF font on this machine")
    return ImageFont.truetype(str(path), size)


def _render(text: str, font: str, size: int, canvas: tuple[int, int], rotate: float = 0,
            mode: str = "RGB") -> Image.Image:
    im = Image.new("RGB", canvas, (250, 248, 240))
    d = ImageDraw.Draw(im)
    f = _font(font, size)
    box = d.multiline_textbbox((0, 0), text, font=f, spacing=size // 3)
    xy = ((canvas[0] - box[2]) // 2, (canvas[1] - box[3]) // 2)
    d.multiline_text(xy, text, fill=(20, 20, 30), font=f, spacing=size // 3)
    if rotate:
        im = im.rotate(rotate, resample=Image.BICUBIC, fillcolor=(250, 248, 240))
    return im.convert(mode) if mode != "RGB" else im


@lru_cache(maxsize=1)
def _metric() -> OCRScore:
    return OCRScore(name="ocr")


CASES = [  # (target, prompt text, font, font size, canvas, rotation, image mode)
    ("WET PAINT", None, "default", 56, (512, 256), 0, "RGB"),
    ("Welcome Home", None, "serif", 28, (220, 96), 0, "L"),            # small: upscaled
    ("Open 24 Hours", None, "mono", 44, (512, 256), 7, "RGB"),         # rotated 7 degrees
    ("Fresh Bread\nDaily", None, "serif", 48, (512, 320), -5, "RGBA"),  # multi-line, rotated
    ("Don't Panic", 'A towel printed with "Don\'t Panic"', "default", 48, (512, 256), 0, "RGB"),
]


@needs_rapidocr
@pytest.mark.parametrize("target, text, font, size, canvas, rot, mode", CASES,
                         ids=[c[0].split()[0] for c in CASES])
def test_rapidocr_reads_rendered_text(target, text, font, size, canvas, rot, mode):
    img = _render(target, font, size, canvas, rot, mode)
    prompt = {"text": text} if text else {"text": "a sign", "expected_text": target}
    (v, extra), = _metric().score_images([ScoreInput("k", "m", img, prompt)])
    assert v["exact"] == 1.0, extra
    assert v["cer"] == 0.0 and v["ned"] == 1.0 and v["word_f1"] == 1.0
    assert extra["target_from"] == ("quotes" if text else "expected_text")
    assert min(extra["ocr_size"]) >= 512 or min(canvas) >= 512


@needs_rapidocr
def test_rapidocr_wrong_and_partial_text_score_low():
    m = _metric()
    wrong = _render("CLOSED", "default", 56, (512, 256))
    partial = _render("NO PARKING", "default", 48, (512, 256))
    blank = Image.new("RGB", (128, 128), "white")
    out = m.score_images([
        ScoreInput("a", "m", wrong, {"text": 'a sign saying "OPEN"'}),
        ScoreInput("b", "m", partial, {"text": "x", "expected_text": "NO PARKING AT ANY TIME"}),
        ScoreInput("c", "m", blank, {"text": "x", "expected_text": "HELLO"}),
    ])
    (w, wx), (p, _), (b, bx) = out
    assert w["exact"] == 0.0 and w["word_f1"] == 0.0 and w["cer"] >= 0.75, wx
    assert p["exact"] == 0.0 and p["word_precision"] == 1.0 and p["word_recall"] == pytest.approx(2 / 5)
    assert p["cer"] == pytest.approx(levenshtein("no parking", "no parking at any time") / 22)
    assert b == {"exact": 0.0, "word_precision": 0.0, "word_recall": 0.0, "word_f1": 0.0,
                 "ned": 0.0, "cer": 1.0} and bx["read"] == ""


# CI installs tesseract (make test, as root) and sets HARNESS_REQUIRE_TESSERACT=1: there these
# tests fail instead of skipping when the binary is missing.
_has_tesseract = find_spec("pytesseract") is not None and shutil.which("tesseract") is not None
needs_tesseract = pytest.mark.skipif(
    not _has_tesseract and not os.environ.get("HARNESS_REQUIRE_TESSERACT"),
    reason="pytesseract or the tesseract binary not installed (apt-get install tesseract-ocr)")


@lru_cache(maxsize=1)
def _tesseract() -> OCRScore:
    return OCRScore(name="ocr", settings={"engine": "tesseract"})


@needs_tesseract
def test_tesseract_engine_is_recorded_and_changes_the_settings_hash():
    m = _tesseract()
    d = m.describe()
    assert d["engine"] == "tesseract"
    assert re.match(r"tesseract \d+\.\d+.* \(pytesseract \d", d["engine_version"]), d["engine_version"]
    assert m.settings_hash() != OCRScore(name="ocr").settings_hash()


@needs_tesseract
@pytest.mark.parametrize("target, text, font, size, canvas, rot, mode", CASES,
                         ids=[c[0].split()[0] for c in CASES])
def test_tesseract_reads_rendered_text(target, text, font, size, canvas, rot, mode):
    img = _render(target, font, size, canvas, rot, mode)
    prompt = {"text": text} if text else {"text": "a sign", "expected_text": target}
    (v, extra), = _tesseract().score_images([ScoreInput("k", "m", img, prompt)])
    assert v["exact"] == 1.0, extra
    assert v["cer"] == 0.0 and v["word_f1"] == 1.0


@needs_tesseract
def test_tesseract_wrong_text_and_blank_score_low():
    out = _tesseract().score_images([
        ScoreInput("a", "m", _render("CLOSED", "default", 56, (512, 256)), {"text": 'a sign saying "OPEN"'}),
        ScoreInput("c", "m", Image.new("RGB", (128, 128), "white"), {"text": "x", "expected_text": "HELLO"}),
    ])
    (w, wx), (b, bx) = out
    assert w["exact"] == 0.0 and w["word_f1"] == 0.0 and w["cer"] >= 0.75, wx
    assert b["exact"] == 0.0 and b["cer"] == 1.0 and bx["read"] == ""
