"""OCR on the editing suite's text edits: each is scored against the text the edit asks for
(its expected_text), not the text the source shows. A correct edit (the sign board repainted
with the new word, drawn here with PIL) reads as that word; the untouched source, which still
says CLOSED, scores nothing."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from harness.metrics.base import ScoreInput
from harness.metrics.ocr import OCRScore
from harness.suites import load_suite

pytestmark = pytest.mark.skipif(find_spec("rapidocr") is None, reason="rapidocr not installed")


def _sign_edits():
    suite = load_suite({"name": "editing", "file": "editing.yaml", "format": "harness"})
    return [p for p in suite.prompts if "edit:text" in p.tags and "image:sign" in p.tags]


def _repaint(prompt) -> Image.Image:
    """The sign with its board (the prompt's edit region) repainted and the new word on it."""
    src = prompt.controls[0].path
    region = Path(src).parent / prompt.meta["edit_region"]
    img = Image.open(src).convert("RGB")
    mask = np.asarray(Image.open(region).convert("L")) >= 128
    ys, xs = np.nonzero(mask)
    box = (int(xs.min()) + 2, int(ys.min()) + 2, int(xs.max()) - 2, int(ys.max()) - 2)
    d = ImageDraw.Draw(img)
    d.rectangle(box, fill=(255, 255, 255))
    word = prompt.expected_text
    size = 20
    font = ImageFont.load_default(size=size)
    while d.textlength(word, font=font) > box[2] - box[0] - 6 and size > 8:
        size -= 1
        font = ImageFont.load_default(size=size)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    d.text((cx, cy), word, fill=(180, 20, 20), font=font, anchor="mm")
    return img


def test_text_edits_are_read_against_the_new_text():
    prompts = _sign_edits()
    assert {p.expected_text for p in prompts} >= {"OPEN", "SALE"}
    prompts = [p for p in prompts if p.expected_text in ("OPEN", "SALE")]
    stored = [p.to_dict() for p in prompts]  # the prompt as the store hands it to metrics
    m = OCRScore(name="ocr")
    edits = [_repaint(p) for p in prompts]
    source = Image.open(prompts[0].controls[0].path).convert("RGB")
    items = [ScoreInput(f"e{i}", "m", im, s) for i, (im, s) in enumerate(zip(edits, stored, strict=True))]
    out = m.score_images([*items, ScoreInput("src", "m", source, stored[0]),
                          ScoreInput("swap", "m", edits[0], stored[1])])
    for (v, e), p in zip(out[:2], prompts, strict=True):
        assert v["exact"] == 1.0 and v["word_f1"] == 1.0 and v["cer"] == 0.0, (p.expected_text, e)
    src_v, src_e = out[2]
    assert src_v["exact"] == 0.0 and src_v["word_f1"] == 0.0, src_e  # reads CLOSED, asked OPEN
    swap_v, _ = out[3]
    assert swap_v["exact"] == 0.0  # the OPEN sign scored against the SALE edit
