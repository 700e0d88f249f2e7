"""Which stored metric names head the tables: multi-output metrics (OCR: exact, word F1, CER ...)
are stored as ``<metric>.<output>``, and the tables show their first (headline) output."""

from __future__ import annotations

from harness.leaderboard.table import Leaderboard
from harness.metrics.base import output_directions


def split_outputs(lb: Leaderboard, names: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Headline metric names (single-output metrics and each multi-output metric's first
    output) and, per multi-output metric, all its outputs in declared order."""
    head: list[str] = []
    groups: dict[str, list[str | None]] = {}
    for k in names:
        outputs = list(output_directions(lb.metrics[k].get("settings", {})))
        base, _, out = k.partition(".")
        if out in outputs:
            groups.setdefault(base, [None] * len(outputs))[outputs.index(out)] = k
        else:
            head.append(k)
    more = {}
    for base, ks in groups.items():
        present = [k for k in ks if k]
        head.append(present[0])
        if len(present) > 1:
            more[base] = present
    return head, more


def output_of(lb: Leaderboard, name: str) -> str:
    """The output a stored name stands for (``"word_f1"`` for ``ocr.word_f1``); ``""`` for a
    single-number metric."""
    outputs = output_directions(lb.metrics[name].get("settings", {})) if name in lb.metrics else {}
    base, _, out = name.partition(".")
    return out if out in outputs else ""
