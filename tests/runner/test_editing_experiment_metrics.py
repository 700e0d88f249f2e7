"""`experiment=editing` scores edits offline with every editing metric it selects: preservation,
the toy CLIP's similarity, the toy VLM's instruction following (per-question answers stored) and
OCR of text edits against their new text; the report ranks by edit_following_toy.overall."""

from __future__ import annotations

import pytest

from harness import cli
from harness.toyworld.paths import resolve_path


def test_editing_experiment_scores_with_every_editing_metric(workdir):
    if not (resolve_path("zoo:toy-vlm").is_dir() and resolve_path("zoo:toy-clip").is_dir()):
        pytest.skip("zoo toy models not present")
    over = ["command=run", "progress=false", "experiment=editing", "models=[toy_kontext]",
            "suite.tags=[edit:text]", "suite.limit=2", "samples=1", "run.name=edm",
            "models.toy_kontext.params.steps=2"]
    out = cli.dispatch(cli.compose(over))
    store = out["store"]
    recs = store.records("edm")
    assert len(recs) == 2 and all(r.status == "ok" for r in recs), [r.error for r in recs]
    scores = {(s.key, s.metric): s for s in store.scores("edm")}
    for r in recs:
        follow = scores[(r.key, "edit_following_toy.follow")]
        assert 0 <= follow.value <= 1
        roles = [q["role"] for q in follow.extra["questions"]]
        assert roles[:2] == ["change", "change"] and "keep" in roles
        assert -1 <= scores[(r.key, "edit_similarity_toy")].value <= 1
        assert scores[(r.key, "edit_preservation.psnr")].value is not None
        ocr = scores[(r.key, "ocr.exact")]  # the text edit read against its new text
        assert ocr.value is not None and ocr.extra["target"] in ("OPEN", "SALE"), ocr.extra
    report = (workdir / "reports" / "editing" / "edm" / "leaderboard.md").read_text()
    assert "edit_following_toy.overall" in report.splitlines()[0]
