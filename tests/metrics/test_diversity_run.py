"""Diversity in a real run: the toy-diversity preset selects it with samples >= 2, and a run of
the tiny models (two samples per prompt) stores and reports it per model, equal to the numbers
recomputed from the stored images. (With one sample a value records why it is missing:
test_distribution.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from harness import assemble, cli
from harness.metrics.diversity import mean_cosine_distance, vendi_score
from harness.metrics.features import build_extractor

SMALL = ["experiment=untrained", "suite.limit=2", "progress=false", "metrics=[diversity_toy]"]


def test_the_preset_selects_diversity_with_several_samples():
    cfg = assemble.compose(["experiment=toy-diversity"])
    assert cfg.samples >= 2 and "diversity_toy" in cfg.metrics and cfg.suite.name == "toy-world"
    m = assemble.build_metrics(cfg)["diversity_toy"]
    assert m.describe()["weights"] == "zoo:toy-clip"


@pytest.mark.slow  # a whole run (generate, score, report): ~1-2 min on 2 shared cores
def test_a_run_with_two_samples_stores_and_reports_diversity_per_model(workdir):
    res = cli.dispatch(cli.compose(["command=run", "samples=2", "run.name=d", *SMALL]))
    store = res["store"]
    rows = {(s.model, s.metric): s for s in store.set_scores("d")}
    models = sorted({m for m, _ in rows})
    assert len(models) == 2
    ex = build_extractor("clip_hf", weights="zoo:toy-clip", device="cpu")
    for model in models:
        vendi, dist = rows[(model, "diversity_toy.vendi")], rows[(model, "diversity_toy.cosine_distance")]
        assert vendi.extra["n_prompts"] == 2 and vendi.extra["samples_per_prompt"] == [2]
        # recomputed from the stored images, prompt by prompt
        recs = [r for r in store.records("d", status="ok") if r.model == model]
        by_prompt: dict[str, list] = {}
        for r in recs:
            by_prompt.setdefault(r.prompt_id, []).append(store.image_path(r.image_sha256))
        feats = [ex.extract([str(p) for p in paths]) for paths in by_prompt.values()]
        assert vendi.value == pytest.approx(np.mean([vendi_score(f) for f in feats]), rel=1e-4)
        assert dist.value == pytest.approx(np.mean([mean_cosine_distance(f) for f in feats]), rel=1e-4,
                                           abs=1e-6)
        assert 1.0 <= vendi.value <= 2.0
    md = (workdir / "reports/toy-shapes/d/leaderboard.md").read_text()
    assert "diversity_toy.vendi" in md and "Vendi score: effective number of distinct samples" in md
