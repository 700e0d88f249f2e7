"""Text rendering by OCR: does the image show the text the prompt asks for?

The target is the prompt's ``expected_text``, else the quoted spans of the prompt ("...",
“...”, '...'; apostrophes inside words don't count), joined by newlines. Prompts without one are
skipped (every output None, ``extra.skipped``), so they never count in means. The image is
upscaled (bicubic) to a minimum side first: OCR detectors miss the small text of 64-256 px
images. Read text and target are normalised the same recorded way, then compared:

- exact (↑): 1 if the normalised strings are equal, else 0
- word_precision / word_recall / word_f1 (↑): over word multisets (Counter intersection)
- ned (↑): 1 - Levenshtein / max(len(read), len(target))
- cer (↓): Levenshtein / len(target), the character error rate (can exceed 1)

Engines: ``rapidocr`` (default; the PP-OCR ONNX models ship inside the package, so it runs
offline) and ``tesseract`` (pytesseract + the tesseract binary). Engine name and version are
stored with every value: the same image reads differently in another engine.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from importlib.util import find_spec
from typing import Any

from harness.errors import ConfigError, did_you_mean
from harness.metrics.base import Metric, ReadingNotes, ScoreInput, as_rgb
from harness.metrics.text import (
    PUNCTUATION_MODES,
    mario_corpus,
    mario_image_scores,
    normalize,
    quoted_spans,
    text_scores,
)

log = logging.getLogger(__name__)

OUTPUTS = {"exact": True, "word_precision": True, "word_recall": True, "word_f1": True,
           "ned": True, "cer": False}
OUTPUT_MEANINGS = {
    "exact": "share of images whose normalised text equals the target exactly (0-1)",
    "word_precision": "share of the words read that are in the target (multiset, 0-1)",
    "word_recall": "share of the target's words that were read (multiset, 0-1)",
    "word_f1": "harmonic mean of word precision and recall (0-1)",
    "ned": "1 - edit distance / longer length, character level (0-1, 1 = identical)",
    "cer": "character error rate, edit distance / target length (0 = perfect; can exceed 1)",
}
"""What each output measures, for the report's reading notes."""


def target_text(prompt: dict[str, Any]) -> tuple[str | None, str | None]:
    """(target, where it came from: "expected_text" | "quotes") or (None, None)."""
    exp = prompt.get("expected_text")
    if exp is not None and str(exp).strip():
        return str(exp), "expected_text"
    spans = quoted_spans(str(prompt.get("text") or ""))
    if spans:
        return "\n".join(spans), "quotes"
    return None, None


# -- engines -------------------------------------------------------------------------------

class _RapidOCR:
    name = "rapidocr"

    def __init__(self) -> None:
        if find_spec("rapidocr") is None or find_spec("onnxruntime") is None:
            missing = "rapidocr" if find_spec("rapidocr") is None else "onnxruntime"
            raise ModuleNotFoundError(f"No module named {missing!r}", name=missing)
        self._engine = None

    def version(self) -> str:
        return f"rapidocr {metadata.version('rapidocr')} (onnxruntime {metadata.version('onnxruntime')})"

    @staticmethod
    def to_input(rgb):
        """What :meth:`read` takes: a BGR array (made on the decoding thread, not the engine's)."""
        import numpy as np

        return np.ascontiguousarray(np.asarray(rgb)[..., ::-1])

    def read(self, bgr) -> list[tuple[str, float]]:
        if self._engine is None:
            from rapidocr import RapidOCR

            self._engine = RapidOCR(params={"Global.log_level": "critical"})
        r = self._engine(bgr)
        if not r.txts:
            return []
        return [(str(t), float(c)) for t, c in zip(r.txts, r.scores, strict=True)]


class _Tesseract:
    name = "tesseract"

    def __init__(self) -> None:
        if find_spec("pytesseract") is None:
            raise ModuleNotFoundError("No module named 'pytesseract'", name="pytesseract")
        if shutil.which("tesseract") is None:
            raise ConfigError("OCR engine 'tesseract' needs the tesseract binary: "
                              "apt-get install tesseract-ocr (or use engine=rapidocr).")

    @staticmethod
    def to_input(rgb):
        return rgb

    def version(self) -> str:
        import pytesseract

        return (f"tesseract {pytesseract.get_tesseract_version()} "
                f"(pytesseract {metadata.version('pytesseract')})")

    def read(self, rgb) -> list[tuple[str, float]]:
        import pytesseract

        d = pytesseract.image_to_data(rgb, output_type=pytesseract.Output.DICT)
        lines: dict[tuple[int, int, int], list[tuple[str, float]]] = {}
        for i, word in enumerate(d["text"]):
            if word.strip():
                key = (d["block_num"][i], d["par_num"][i], d["line_num"][i])
                lines.setdefault(key, []).append((word, float(d["conf"][i]) / 100.0))
        return [(" ".join(w for w, _ in ws), min(c for _, c in ws)) for _, ws in sorted(lines.items())]


ENGINES = {"rapidocr": _RapidOCR, "tesseract": _Tesseract}


# -- the metric ----------------------------------------------------------------------------


def normalisation_words(identity: Mapping[str, Any]) -> str:
    """The stored normalisation in words, for reading notes."""
    parts = [k for k in ("casefold", "collapse_whitespace") if identity.get(k)]
    if "punctuation" in identity:
        mode = identity["punctuation"]
        kept = identity.get("keep_symbols") or ""
        if mode == "separate":
            parts.append("punctuation -> word breaks" + (f" (keeping {kept})" if kept else ""))
        elif mode == "drop":
            parts.append("punctuation dropped" + (f" (keeping {kept})" if kept else ""))
    elif identity.get("strip_punctuation"):  # values stored before the punctuation setting
        parts.append("strip_punctuation")
    return ", ".join(parts)


class OCRScore(Metric):
    kind = "ocr"
    higher_is_better = True
    per = "image"
    version = "2"
    outputs = OUTPUTS
    defaults = {
        "engine": "rapidocr",
        "min_side": 512,
        "upscale_filter": "bicubic",
        "min_confidence": 0.5,
        "casefold": True,
        "collapse_whitespace": True,
        "punctuation": "separate",
        "keep_symbols": "%$+#&@",
        # Runtime only: they don't change the number, so describe() leaves them out.
        "batch_size": 16,
        "workers": 2,
    }
    """engine: rapidocr | tesseract. min_side: images whose shorter side is smaller are
    upscaled to it first (0: never). upscale_filter: PIL filter name. min_confidence: detected
    lines below this engine confidence are dropped. casefold, collapse_whitespace, punctuation
    (separate | drop | keep) and keep_symbols: the normalisation applied to both strings before
    comparing (:func:`harness.metrics.text.normalize`). batch_size (images per call) and workers
    (decoding threads) don't change the number."""
    runtime = ("batch_size", "workers")

    def __init__(self, *, name: str, settings: dict[str, Any] | None = None) -> None:
        super().__init__(name=name, settings=settings)
        s = self.settings
        if s["engine"] not in ENGINES:
            raise ConfigError(f"metrics.{name}.settings.engine: unknown OCR engine {s['engine']!r}."
                              + did_you_mean(str(s["engine"]), list(ENGINES)))
        from PIL import Image

        if str(s["upscale_filter"]).upper() not in Image.Resampling.__members__:
            raise ConfigError(f"metrics.{name}.settings.upscale_filter: unknown filter "
                              f"{s['upscale_filter']!r}."
                              + did_you_mean(str(s["upscale_filter"]).lower(),
                                             [m.lower() for m in Image.Resampling.__members__]))
        if not isinstance(s["min_side"], int) or s["min_side"] < 0:
            raise ConfigError(f"metrics.{name}.settings.min_side: must be an integer >= 0, got "
                              f"{s['min_side']!r}.")
        for k in ("casefold", "collapse_whitespace"):
            if not isinstance(s[k], bool):
                raise ConfigError(f"metrics.{name}.settings.{k}: must be true or false, got {s[k]!r}.")
        if s["punctuation"] not in PUNCTUATION_MODES:
            raise ConfigError(f"metrics.{name}.settings.punctuation: must be one of "
                              f"{', '.join(PUNCTUATION_MODES)}, got {s['punctuation']!r}."
                              + did_you_mean(str(s["punctuation"]), list(PUNCTUATION_MODES)))
        if not isinstance(s["keep_symbols"], str):
            raise ConfigError(f"metrics.{name}.settings.keep_symbols: must be a string of characters "
                              f"(e.g. \"%$+#&@\"), got {s['keep_symbols']!r}.")
        self.engine = ENGINES[s["engine"]]()
        self.batch_size = int(s["batch_size"])
        self.workers = max(1, int(s["workers"]))
        self._version: str | None = None

    def identity(self) -> dict[str, Any]:
        d = super().identity()
        if self._version is None:
            self._version = self.engine.version()
        d["engine_version"] = self._version
        return d

    def how_to_read(self, identity: Mapping[str, Any]) -> ReadingNotes:
        """Per output: what it measures, then which engine read the text and how it was normalised."""
        norm = normalisation_words(identity)
        how = (f"read by {identity.get('engine_version') or identity.get('engine')} after upscaling "
               f"to {identity.get('min_side')} px, normalised: {norm or 'none'}; prompts without "
               "target text don't count.")
        return ReadingNotes(lines={o: f"{OUTPUT_MEANINGS.get(o, '')}; {how}" for o in self.outputs})

    def normalize(self, text: str) -> str:
        s = self.settings
        return normalize(text, casefold=s["casefold"], collapse_whitespace=s["collapse_whitespace"],
                         punctuation=s["punctuation"], keep_symbols=s["keep_symbols"])

    def prepare(self, image: Any):
        """RGB, upscaled so that its shorter side is at least ``min_side``."""
        from PIL import Image

        rgb = as_rgb(image)
        side = self.settings["min_side"]
        w, h = rgb.size
        if side and min(w, h) < side:
            f = side / min(w, h)
            rgb = rgb.resize((round(w * f), round(h * f)),
                             Image.Resampling[str(self.settings["upscale_filter"]).upper()])
        return rgb

    def read(self, rgb) -> str:
        """The text the engine reads in an RGB image (lines in its reading order, joined by
        newlines)."""
        return self._read(self.engine.to_input(rgb))

    def _read(self, engine_input) -> str:
        lines = self.engine.read(engine_input)
        return "\n".join(t for t, c in lines if c >= self.settings["min_confidence"])

    def score_images(self, items: Sequence[ScoreInput]) -> list[tuple[dict | None, dict[str, Any]]]:
        none = dict.fromkeys(OUTPUTS)
        out: list[tuple[dict, dict[str, Any]]] = []
        targets = [target_text(dict(it.prompt or {})) for it in items]

        def prep(i: int):
            if targets[i][0] is None:
                return None
            try:
                rgb = self.prepare(items[i].image)
                return rgb.size, self.engine.to_input(rgb)
            except Exception as e:  # corrupt or truncated file: recorded, the others still count
                return e

        # Decoding and upscaling the next images (thread pool) overlaps the engine's work.
        with ThreadPoolExecutor(self.workers, thread_name_prefix="ocr-prep") as pool:
            for i, ready in enumerate(pool.map(prep, range(len(items)))):
                target, source = targets[i]
                if target is None:
                    out.append((dict(none), {"skipped": "no target text"}))
                    continue
                if isinstance(ready, Exception):
                    reason = f"unreadable image: {type(ready).__name__}: {ready}"
                    out.append((dict(none), {"skipped": reason}))
                    continue
                size, engine_input = ready
                norm_target = self.normalize(target)
                if not norm_target:
                    out.append((dict(none), {"skipped": "target text empty after normalisation",
                                             "target": target}))
                    continue
                read = self._read(engine_input)
                values = text_scores(self.normalize(read), norm_target)
                out.append((values, {"read": read, "target": target, "target_from": source,
                                     "ocr_size": list(size)}))
        return out


MARIO_OUTPUTS = {"accuracy": True, "precision": True, "recall": True, "f1": True}
MARIO_MEANINGS = {
    "accuracy": "share of images whose words read equal the target's in any order (MARIO-Eval, 0-1)",
    "precision": "mean over images of the share of words read that are target words (0-1)",
    "recall": "mean over images of the share of target words that were read (0-1)",
    "f1": "2PR / (P + R) of the mean precision and recall: corpus level, as MARIO-Eval (0-1)",
}


class MarioOCR(OCRScore):
    """OCR scored with MARIO-Eval's definitions (TextDiffuser, Chen et al. 2023), one value per
    model: order-free accuracy, mean word precision and recall, and F1 of those means
    (:func:`harness.metrics.text.mario_corpus`). The text is read as by :class:`OCRScore` (same
    engine, upscale and confidence settings); words are the whitespace-split words of the
    normalised text (MARIO's detector returns one word per line; rapidocr returns lines, split
    here into words). MARIO normalises by lower-casing only: the defaults keep punctuation."""

    kind = "ocr_mario"
    per = "set"
    version = "1"
    outputs = MARIO_OUTPUTS
    defaults = {**OCRScore.defaults, "punctuation": "keep"}

    def how_to_read(self, identity: Mapping[str, Any]) -> ReadingNotes:
        """Per output: MARIO-Eval's definition, the engine and the normalisation."""
        how = (f"read by {identity.get('engine_version') or identity.get('engine')} after upscaling "
               f"to {identity.get('min_side')} px, normalised: {normalisation_words(identity) or 'none'}; "
               "prompts without target text don't count.")
        return ReadingNotes(table_title="OCR, MARIO-Eval definitions",
                            lines={o: f"{MARIO_MEANINGS[o]}; {how}" for o in self.outputs})

    def score_set(self, items: Sequence[ScoreInput]) -> tuple[dict[str, float | None], dict[str, Any]]:
        per_image: list[dict[str, float]] = []
        skipped: dict[str, int] = {}
        misses: list[dict[str, str]] = []
        for i in range(0, len(items), self.batch_size):
            for _value, extra in OCRScore.score_images(self, items[i : i + self.batch_size]):
                if "read" not in extra:
                    reason = str(extra.get("skipped", "not scored")).split(":")[0]
                    skipped[reason] = skipped.get(reason, 0) + 1
                    continue
                scores = mario_image_scores(self.normalize(extra["read"]), self.normalize(extra["target"]))
                per_image.append(scores)
                if not scores["accuracy"] and len(misses) < 5:
                    misses.append({"read": extra["read"], "target": extra["target"]})
        out = mario_corpus(per_image)
        extra_out: dict[str, Any] = {"n": len(items), "n_scored": len(per_image), "skips": skipped,
                                     "examples_wrong": misses}
        if not per_image:
            extra_out["skipped"] = "no image had target text and a readable file"
        return out, extra_out
