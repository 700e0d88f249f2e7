"""Metrics own how they are read: the notes stored with their values reach every renderer, and
the renderers know no metric by name."""

from __future__ import annotations

import ast
from pathlib import Path

from harness.leaderboard.html import render_html
from harness.leaderboard.render import render_markdown
from harness.leaderboard.synthetic import RUN_ID, make_store
from harness.leaderboard.table import build_leaderboard, metric_reading
from harness.metrics.base import NOTES_KEY, ReadingNotes

REPO = Path(__file__).resolve().parents[2]
RENDERERS = ["harness/leaderboard/render.py", "harness/leaderboard/html.py", "harness/leaderboard/plots.py",
             "harness/leaderboard/outputs.py", "harness/leaderboard/text.py", "harness/leaderboard/report.py",
             "harness/app/leaderboard_page.py"]

GLOSS = {"metric": "gloss", "per": "image", "higher_is_better": True, "version": "1"}
"""A metric no renderer has heard of."""
NOTES = ReadingNotes(lines={"": "0 matte, 1 mirror; a made-up scale."})


def _store_with_gloss(tmp_path, settings):
    store = make_store(tmp_path / "store", models=("alpha", "beta"), votes_per_pair=0)
    store.put_scores([(f"{m}-p{i:02d}", "gloss", "gl1", 0.1 * i, settings, {})
                      for m in ("alpha", "beta") for i in range(4)])
    return store


def test_notes_stored_with_the_values_reach_markdown_and_html(tmp_path):
    store = _store_with_gloss(tmp_path, {**GLOSS, NOTES_KEY: NOTES.to_json()})
    lb = build_leaderboard(store, RUN_ID, gallery_prompts=0)
    assert lb.reading["gloss"] == NOTES
    # notes explain the settings, they are not one of them
    assert NOTES_KEY not in lb.metrics["gloss"]["settings"]
    md = render_markdown(lb)
    assert "- **gloss** (image): higher_is_better=True, metric=gloss, per=image, version=1" in md
    assert "  - How to read: 0 matte, 1 mirror; a made-up scale." in md
    assert NOTES_KEY not in md
    assert "0 matte, 1 mirror; a made-up scale." in render_html(lb)


def test_values_stored_without_notes_show_none(tmp_path):
    lb = build_leaderboard(_store_with_gloss(tmp_path, GLOSS), RUN_ID, gallery_prompts=0)
    assert lb.reading["gloss"] == ReadingNotes()
    md = render_markdown(lb)
    assert "**gloss** (image)" in md and "How to read: 0 matte" not in md


def test_notes_of_older_values_come_from_a_manifest_describing_the_same_settings():
    described = {"gloss": {**GLOSS, NOTES_KEY: NOTES.to_json()}}
    assert metric_reading("gloss", [GLOSS], described) == NOTES
    # outputs of a multi-output metric are stored as <name>.<output>; the manifest names <name>
    assert metric_reading("gloss.sheen", [GLOSS], described) == NOTES
    # other settings (a newer version) than the stored values: not their notes
    newer = {"gloss": {**described["gloss"], "version": "2"}}
    assert metric_reading("gloss", [GLOSS], newer) == ReadingNotes()
    assert metric_reading("gloss", [GLOSS], {}) == ReadingNotes()
    # notes stored with the values win over the manifest's
    other = ReadingNotes(lines={"": "other words"})
    assert metric_reading("gloss", [{**GLOSS, NOTES_KEY: other.to_json()}], described) == other


def test_renderers_name_no_metric():
    """No `if kind == "ocr"` in a renderer: no string in them is a metric's kind."""
    kinds = set()
    for path in (REPO / "harness" / "metrics").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                for stmt in node.body:
                    if (isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant)
                            and any(getattr(t, "id", None) == "kind" for t in stmt.targets)):
                        kinds.add(stmt.value.value)
    assert {"clip_score", "ocr", "colorfulness", "fid"} <= kinds
    for rel in RENDERERS:
        strings = {n.value for n in ast.walk(ast.parse((REPO / rel).read_text(encoding="utf-8")))
                   if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        named = sorted(strings & kinds)
        assert not named, f"{rel} names metric(s) {named}: read their stored notes instead"
