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


def normalize(text: str, *, casefold: bool = True, collapse_whitespace: bool = True,
              strip_punctuation: bool = True) -> str:
    """Normalise ``text`` for comparison (NFC first, always).

    Args:
        casefold: compare case-insensitively (``str.casefold``).
        collapse_whitespace: runs of whitespace (line breaks included) become one space; ends
            are stripped.
        strip_punctuation: drop Unicode punctuation and symbols (categories P* and S*).
    """
    t = unicodedata.normalize("NFC", text)
    if strip_punctuation:
        t = "".join(ch for ch in t if unicodedata.category(ch)[0] not in "PS")
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
