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
    # "!" becomes a word break (separate), so one more space before the collapse
    assert normalize(t, collapse_whitespace=False) == "  dont\n  panic   "
    assert normalize(t, strip_punctuation=True, collapse_whitespace=False) == "  dont\n  panic  "


@pytest.mark.parametrize("a, b, equal", [
    ("C++ $5", "C $5", False),        # symbols that carry meaning are kept
    ("50%", "50", False),
    ("#1 R&D @home", "1 RD home", False),
    ("hello,world", "hello world", True),  # punctuation is a word break, not glue
    ("WET-PAINT!", "wet paint", True),
    ("Don't", "dont", True),           # an apostrophe inside a word is dropped
    ("$3.50 at 12:30", "$3.50 at 12:30", True),
    ("3.50", "3 50", False),           # a decimal point between digits stays
    ("«Bonjour» – ça va?", "bonjour ça va", True),
    ("ÉCOLE", "école", True),
])
def test_normalisation_keeps_meaningful_symbols_and_separates_punctuation(a, b, equal):
    assert (normalize(a) == normalize(b)) is equal, (normalize(a), normalize(b))


def test_the_issue_cases_score_as_they_read():
    assert text_scores(normalize("hello world"), normalize("hello,world"))["word_f1"] == 1.0
    assert text_scores(normalize("C $5"), normalize("C++ $5"))["exact"] == 0.0
    assert text_scores(normalize("50"), normalize("50%"))["cer"] == pytest.approx(1 / 3)
    # the former normalisation, on request: everything glued or dropped
    old = dict(punctuation="drop", keep_symbols="")
    assert normalize("C++ $5", **old) == normalize("C $5", **old) == "c 5"
    assert normalize("hello,world", **old) == "helloworld"
    assert normalize("a.b, c!", punctuation="keep") == "a.b, c!"
    assert normalize("a+b=c", keep_symbols="=") == "a b=c"
    with pytest.raises(ValueError, match="punctuation must be one of"):
        normalize("x", punctuation="strip")


@pytest.mark.slow  # importing torchmetrics takes ~20 s on 2 shared cores
def test_cer_and_edit_distance_match_torchmetrics():
    tm = pytest.importorskip("torchmetrics.functional.text")
    pairs = [("wet pant", "wet paint"), ("abcdefgh", "ab"), ("kitten", "sitting"), ("open", "opem 24"),
             ("c++ $5", "c $5")]
    for read, target in pairs:
        got = text_scores(read, target)
        assert got["cer"] == pytest.approx(float(tm.char_error_rate(read, target)), rel=1e-6)
        assert levenshtein(read, target) == int(tm.edit_distance([read], [target]))


# -- MARIO-Eval definitions -----------------------------------------------------------------------


def _mario_reference(pred_lines, gt_words):
    """MARIO-Eval's per-image step as its script does it: lower-case and strip, remove each
    predicted word from copies of both lists when found, divide by n + 1e-8, and compare the
    sorted words joined without separators."""
    pred = [p.strip().lower() for p in pred_lines]
    gt = [g.strip().lower() for g in gt_words]
    pred_left, gt_left = list(pred), list(gt)
    for p in pred:
        if p in gt_left:
            pred_left.remove(p)
            gt_left.remove(p)
    prec = (len(pred) - len(pred_left)) / (len(pred) + 1e-8)
    rec = (len(gt) - len(gt_left)) / (len(gt) + 1e-8)
    return prec, rec, int("".join(sorted(pred)) == "".join(sorted(gt)))


MARIO_CASES = [  # (words read, target words)
    (["paint", "wet"], ["wet", "paint"]),           # order-free: accuracy 1
    (["wet"], ["wet", "paint"]),
    (["the", "the", "cat"], ["the", "cat", "sat"]),
    ([], ["hello"]),
    (["open", "24", "hours", "now"], ["open", "24", "hours"]),
    (["ab", "c"], ["a", "bc"]),                       # joined without separators: MARIO counts it
]


def test_mario_per_image_and_corpus_match_the_reference_script():
    from harness.metrics.text import mario_corpus, mario_image_scores

    per = []
    for read, target in MARIO_CASES:
        got = mario_image_scores(" ".join(read), " ".join(target))
        p, r, acc = _mario_reference(read, target)
        assert got["precision"] == pytest.approx(p, abs=1e-7) and got["recall"] == pytest.approx(r, abs=1e-7)
        assert got["accuracy"] == acc
        per.append((p, r, acc))
    corpus = mario_corpus([mario_image_scores(" ".join(a), " ".join(b)) for a, b in MARIO_CASES])
    mp = sum(x[0] for x in per) / len(per)
    mr = sum(x[1] for x in per) / len(per)
    assert corpus["precision"] == pytest.approx(mp, abs=1e-7)
    assert corpus["recall"] == pytest.approx(mr, abs=1e-7)
    assert corpus["f1"] == pytest.approx(2 * mp * mr / (mp + mr + 1e-8), abs=1e-7)
    assert corpus["accuracy"] == pytest.approx(2 / 6)


def test_mario_hand_case_differs_from_per_image_means():
    from harness.metrics.text import mario_corpus, mario_image_scores

    # image 1 reads everything (P=R=1), image 2 reads one of four words and nothing else (P=1, R=1/4)
    a = mario_image_scores("wet paint", "wet paint")
    b = mario_image_scores("no", "no parking any time")
    assert (b["precision"], b["recall"], b["accuracy"]) == (1.0, 0.25, 0.0)
    c = mario_corpus([a, b])
    assert c == {"accuracy": 0.5, "precision": 1.0, "recall": 0.625, "f1": pytest.approx(2 * 0.625 / 1.625)}
    # today's per-image mean of F1: (1 + 0.4) / 2 = 0.7, not MARIO's 0.769...
    f1s = [word_prf("wet paint", "wet paint")[2], word_prf("no", "no parking any time")[2]]
    assert sum(f1s) / 2 == pytest.approx(0.7) and c["f1"] == pytest.approx(0.76923, abs=1e-5)
    # order: exact match fails, MARIO's accuracy does not
    assert text_scores("paint wet", "wet paint")["exact"] == 0.0
    assert mario_image_scores("paint wet", "wet paint")["accuracy"] == 1.0
    assert mario_corpus([]) == dict.fromkeys(["accuracy", "precision", "recall", "f1"])


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
    assert d["casefold"] is True and d["collapse_whitespace"] is True
    assert d["punctuation"] == "separate" and d["keep_symbols"] == "%$+#&@" and "strip_punctuation" not in d
    assert OCRScore(name="ocr", settings={"keep_symbols": "%"}).settings_hash() != m.settings_hash()
    with pytest.raises(ConfigError, match=r"punctuation: must be one of separate, drop, keep.*'drop'"):
        OCRScore(name="ocr", settings={"punctuation": "dropp"})
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


@needs_rapidocr
def test_mario_mode_end_to_end_with_rapidocr():
    from harness.metrics.ocr import MarioOCR
    from harness.metrics.text import mario_corpus, mario_image_scores

    m = MarioOCR(name="ocr_mario")
    m.engine = _metric().engine  # the same engine (loaded once for this module)
    d = m.describe()
    assert d["metric"] == "ocr_mario" and d["per"] == "set" and d["punctuation"] == "keep"
    items = [
        ScoreInput("a", "m", _render("WET PAINT", "default", 56, (512, 256)), {"text": 'a sign "paint wet"'}),
        ScoreInput("b", "m", _render("NO PARKING", "default", 48, (512, 256)),
                   {"text": "x", "expected_text": "NO PARKING AT ANY TIME"}),
        ScoreInput("c", "m", Image.new("RGB", (64, 64), "white"), {"text": "no target"}),
    ]
    value, extra = m.score_set(items)
    want = mario_corpus([mario_image_scores("wet paint", "paint wet"),
                         mario_image_scores("no parking", "no parking at any time")])
    assert value == pytest.approx(want) and value["accuracy"] == 0.5
    assert extra["n_scored"] == 2 and extra["skips"] == {"no target text": 1} and "skipped" not in extra
    notes = __import__("harness.metrics.base", fromlist=["reading_notes"]).reading_notes(d)
    assert "2PR / (P + R)" in notes.line("f1")
