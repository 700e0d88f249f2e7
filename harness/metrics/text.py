"""Text comparison for OCR metrics: normalisation, Levenshtein distance, word P/R/F1.

Plain Python on purpose: the strings are short (a sign, a label), the numbers must not depend
on which optional package is installed, and the tests check them against an independent
brute-force reference.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence

_WS = re.compile(r"\s+")

# Quoted spans: "...", “...”, «...», '...', ‘...’. A single quote only opens a span when it is not
# preceded by a letter/digit and only closes one when not followed by one; inside a span, a
# quote between two letters is an apostrophe. So "don't", "the dog's" and 'Don't stop' work.
_QUOTES = [
    re.compile(r'"([^"\n]+)"'),
    re.compile(r"“([^”\n]+)”"),
    re.compile(r"«([^»\n]+)»"),
    re.compile(r"(?<!\w)'(?!\s)((?:[^'\n]|(?<=\w)'(?=\w))*?[^\s'])'(?!\w)"),
    re.compile(r"(?<!\w)‘(?!\s)((?:[^’\n]|(?<=\w)’(?=\w))*?[^\s’])’(?!\w)"),
]


PUNCTUATION_MODES = ("separate", "drop", "keep")
"""What :func:`normalize` does with punctuation and symbols: ``separate`` turns each into a word
break, ``drop`` deletes it (the old behaviour: "hello,world" became one word), ``keep`` leaves it."""
KEEP_SYMBOLS = "%$+#&@"
"""Symbols that carry meaning on signs and labels ("50%", "$5", "C++", "#1", "R&D", "@home"):
kept by default whatever the punctuation mode."""
_APOSTROPHES = "'\u2019\u02bc"
_NUMBER_JOINERS = ".,:"


def normalize(text: str, *, casefold: bool = True, collapse_whitespace: bool = True,
              punctuation: str = "separate", keep_symbols: str = KEEP_SYMBOLS,
              strip_punctuation: bool | None = None) -> str:
    """Normalise ``text`` for comparison (NFC first, always).

    Args:
        casefold: compare case-insensitively (``str.casefold``).
        collapse_whitespace: runs of whitespace (line breaks included) become one space; ends
            are stripped.
        punctuation: what happens to Unicode punctuation and symbols (categories P* and S*) that
            are not in ``keep_symbols``: ``separate`` (default) makes each a word break, so
            "hello,world" reads as "hello world"; an apostrophe inside a word is dropped
            ("don't" -> "dont") and ``.``, ``,``, ``:`` between two digits stay ("3.50", "12:30",
            "1,000"). ``drop`` deletes them; ``keep`` leaves them.
        keep_symbols: characters never touched (default ``%$+#&@``: "C++ $5" stays distinct
            from "C $5", "50%" from "50"). Letters, digits and marks are always kept.
        strip_punctuation: the former flag, for callers that still pass it: True = ``drop`` with
            nothing kept (the old normalisation), False = ``keep``.
    """
    if strip_punctuation is not None:
        punctuation, keep_symbols = ("drop", "") if strip_punctuation else ("keep", keep_symbols)
    if punctuation not in PUNCTUATION_MODES:
        raise ValueError(f"punctuation must be one of {', '.join(PUNCTUATION_MODES)}, got {punctuation!r}")
    t = unicodedata.normalize("NFC", text)
    if punctuation != "keep":
        out = []
        for i, ch in enumerate(t):
            if ch in keep_symbols or unicodedata.category(ch)[0] not in "PS":
                out.append(ch)
                continue
            if punctuation == "drop":
                continue
            before = t[i - 1] if i else ""
            after = t[i + 1] if i + 1 < len(t) else ""
            if ch in _APOSTROPHES and before.isalnum() and after.isalnum():
                continue  # don't -> dont
            if ch in _NUMBER_JOINERS and before.isdigit() and after.isdigit():
                out.append(ch)  # 3.50, 12:30, 1,000
                continue
            out.append(" ")
        t = "".join(out)
    if casefold:
        t = t.casefold()
    if collapse_whitespace:
        t = _WS.sub(" ", t).strip()
    return t


def levenshtein(a: Sequence, b: Sequence) -> int:
    """Edit distance (insertions, deletions, substitutions, each cost 1); two-row DP."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def word_prf(pred: str, target: str) -> tuple[float, float, float]:
    """Word precision, recall and F1 over multisets (whitespace-split words, Counter
    intersection). Both empty: (1, 1, 1); one empty: zeros."""
    p, t = Counter(pred.split()), Counter(target.split())
    np_, nt = sum(p.values()), sum(t.values())
    if np_ == 0 and nt == 0:
        return 1.0, 1.0, 1.0
    hit = sum((p & t).values())
    prec = hit / np_ if np_ else 0.0
    rec = hit / nt if nt else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return prec, rec, f1


def text_scores(pred: str, target: str) -> dict[str, float | None]:
    """All OCR outputs for already normalised strings.

    exact: 1.0 if equal else 0.0; word_precision / word_recall / word_f1: see :func:`word_prf`;
    ned: 1 - Levenshtein / max(len) (1 for two empty strings); cer: Levenshtein / len(target)
    (None when the target is empty: undefined).
    """
    d = levenshtein(pred, target)
    prec, rec, f1 = word_prf(pred, target)
    longest = max(len(pred), len(target))
    return {
        "exact": float(pred == target),
        "word_precision": prec,
        "word_recall": rec,
        "word_f1": f1,
        "ned": 1.0 - d / longest if longest else 1.0,
        "cer": d / len(target) if target else None,
    }


def quoted_spans(prompt: str) -> list[str]:
    """Quoted spans of a prompt in order of appearance ("..", “..”, «..», '..', ‘..’)."""
    found: list[tuple[int, str]] = []
    taken: list[tuple[int, int]] = []
    for rx in _QUOTES:
        for m in rx.finditer(prompt):
            if any(m.start() < e and s < m.end() for s, e in taken):
                continue  # inside a span found by an earlier (double-quote) pattern
            taken.append((m.start(), m.end()))
            found.append((m.start(), m.group(1).strip()))
    return [s for _, s in sorted(found) if s]


def mario_image_scores(pred: str, target: str) -> dict[str, float]:
    """MARIO-Eval's per-image numbers (TextDiffuser, Chen et al. 2023) for normalised strings,
    over whitespace-split words: precision = matched / words read, recall = matched / target
    words (multiset matching, each target word used once; 0 when a side is empty) and accuracy =
    1 when the sorted words, concatenated, are equal (order-free: "paint wet" reads as "wet
    paint"). MARIO divides by ``n + 1e-8``; exact division here differs by under 1e-8."""
    p, t = Counter(pred.split()), Counter(target.split())
    n_p, n_t = sum(p.values()), sum(t.values())
    hit = sum((p & t).values())
    return {
        "precision": hit / n_p if n_p else 0.0,
        "recall": hit / n_t if n_t else 0.0,
        "accuracy": float("".join(sorted(pred.split())) == "".join(sorted(target.split()))),
    }


def mario_corpus(per_image: Sequence[dict[str, float]]) -> dict[str, float | None]:
    """MARIO-Eval's corpus-level numbers: the mean precision P, recall R and accuracy over the
    images, and F1 = 2PR / (P + R) of those means (not the mean of per-image F1s)."""
    if not per_image:
        return {"accuracy": None, "precision": None, "recall": None, "f1": None}
    n = len(per_image)
    prec = sum(d["precision"] for d in per_image) / n
    rec = sum(d["recall"] for d in per_image) / n
    return {"accuracy": sum(d["accuracy"] for d in per_image) / n, "precision": prec, "recall": rec,
            "f1": 2 * prec * rec / (prec + rec) if prec + rec else 0.0}
