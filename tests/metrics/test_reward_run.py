"""ImageReward and HPSv3 in a real run (tiny untrained generators, the tiny reward checkpoints of
test_image_reward.py and test_vlm_reward.py): every stored value carries the weights' sha256,
equals the metric recomputed on the stored image, and the report shows each one's reading notes."""

from __future__ import annotations

import pytest

from harness import cli
from harness.metrics.base import ScoreInput

pytest.importorskip("torch")

from tests.metrics.test_image_reward import V_HEADS  # noqa: E402
from tests.metrics.test_image_reward import files as ir_files  # noqa: E402, F401
from tests.metrics.test_vlm_reward import TOKENS  # noqa: E402
from tests.metrics.test_vlm_reward import files as hps_files  # noqa: E402, F401


@pytest.mark.slow  # a whole run (generate, score, report): ~1 min on 2 shared cores
def test_a_run_stores_both_rewards_with_weights_and_notes(workdir, ir_files, hps_files,  # noqa: F811
                                                           monkeypatch, tmp_path):
    from harness.metrics.clip_score import weights_sha256
    from harness.metrics.image_reward import ImageReward
    from harness.metrics.vlm_reward import HPSv3

    ir = {"checkpoint": str(ir_files["pt"]), "med_config": str(ir_files["med"]),
          "tokenizer": str(ir_files["tok"]), "vision_heads": V_HEADS, "device": "cpu"}
    hps = {"checkpoint": str(hps_files["ckpt"]), "base": str(hps_files["base"]), "image_tokens": TOKENS,
           "device": "cpu"}
    over = [f"metrics.image_reward.settings.{k}={v}" for k, v in ir.items()]
    over += [f"metrics.hpsv3.settings.{k}={v}" for k, v in hps.items()]
    res = cli.dispatch(cli.compose(["command=run", "run.name=r", "experiment=untrained", "suite.limit=2",
                                    "progress=false", "metrics=[image_reward,hpsv3]", *over]))
    store = res["store"]
    rows = store.scores("r")
    recs = {r.key: r for r in store.records("r", status="ok")}
    metrics = {"image_reward": (ImageReward(name="image_reward", settings=ir), ir_files["pt"]),
               "hpsv3": (HPSv3(name="hpsv3", settings=hps), hps_files["ckpt"])}
    for name, (metric, weights) in metrics.items():
        got = [r for r in rows if r.metric == name]
        assert len(got) == len(recs) >= 4 and all(r.value is not None for r in got)
        assert all(r.extra["weights_sha256"] == weights_sha256(weights) for r in got)
        assert got[0].settings["weights"] == "sha256:" + weights_sha256(weights)
        items = [ScoreInput(r.key, r.model, store.image_path(recs[r.key].image_sha256),
                            {"text": recs[r.key].request["prompt"]}) for r in got]
        again = [v for v, _ in metric.score_images(items)]
        assert [r.value for r in got] == pytest.approx(again, abs=1e-5)
    md = next((workdir / "reports").rglob("r/leaderboard.md")).read_text()
    assert "ImageReward: a BLIP reward head z-scored" in md and "HPSv3: mu, the mean" in md

    # Offline with the default hub weights: scoring stops with the file and the setting to point
    # at, and the store keeps exactly what it had.
    import huggingface_hub.constants

    from harness.errors import ConfigError, UserError

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    fix = r"ImageReward/ImageReward.pt.*metrics.image_reward.settings.checkpoint=/path/to/ImageReward.pt"
    with pytest.raises((ConfigError, UserError), match=fix):
        cli.dispatch(cli.compose(["command=score", "run.name=r", "experiment=untrained", "suite.limit=2",
                                  "progress=false", "metrics=[image_reward]"]))
    assert res["store"].scores("r") == rows
