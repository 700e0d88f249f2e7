"""Overrides that select nothing or name an unselected entry: 'metrics=[]' means no metrics, and a
misspelt metric or model anywhere in a dotted override gets the did-you-mean, not Hydra's
"Key ... is not in struct"."""

import subprocess
import sys

import pytest

from harness import assemble, cli
from harness.errors import UserError

SMALL = ["experiment=untrained", "suite.limit=1", "samples=1", "run.name=t", "progress=false"]


def _harness(*args, cwd):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_empty_metrics_generates_scores_nothing_and_reports(workdir, capsys):
    res = cli.dispatch(cli.compose(["command=run", "metrics=[]", *SMALL]))
    assert res["stats"].calls > 0
    assert res["store"].scores("t") == []
    assert "no metrics selected" in capsys.readouterr().out
    assert (workdir / "reports/toy-shapes/t/leaderboard.md").exists()
    manifest = res["store"].run("t").manifest
    assert manifest["config"]["metrics"] == {}
    # The stages alone, as typed on the command line: no traceback, no omegaconf error.
    out = {}
    for command in ("score", "report"):
        p = _harness(command, "metrics=[]", *SMALL, cwd=workdir)
        assert p.returncode == 0, p.stderr
        assert "Traceback" not in p.stderr and "omegaconf" not in p.stderr
        out[command] = p.stdout
    assert "no metrics selected" in out["score"] and "leaderboard:" in out["report"]
    assert res["store"].scores("t") == []


def test_no_models_is_a_user_error_not_a_traceback(tmp_path):
    with pytest.raises(UserError, match="no models selected"):
        cli.dispatch(cli.compose(["command=generate", "models=[]", f"store.root={tmp_path}"]))


@pytest.mark.parametrize("override, message", [
    ("metrics.fid_tyo.settings.x=1",
     r"'fid_tyo' is not one of the selected metrics\. Did you mean 'fid_toy'"),
    ("metrics.ocr_.settings.engine=tesseract", r"Did you mean 'ocr'"),
    ("metrics.clip_score.settings.batch_size=4",
     r"'clip_score' is not one of the selected metrics \(attributes, clip_score_toy, fid_toy, ocr, "
     r"questions_toy, vqascore_toy\); select it with "
     r"'metrics=\[attributes,clip_score_toy,fid_toy,ocr,questions_toy,vqascore_toy,clip_score\]'"),
    ("models.zoo_unnet.options.device=cpu", r"not one of the selected models\. Did you mean 'zoo_unet'"),
])
def test_unselected_or_misspelt_entry_gets_did_you_mean(override, message):
    with pytest.raises(UserError, match=message):
        assemble.compose([override])


def test_selected_entries_pass_including_ones_selected_in_the_same_command():
    cfg = assemble.compose(["metrics=[fid_toy,colorfulness]", "metrics.colorfulness.settings.resize=32",
                            "metrics.fid_toy.settings.kid_seed=2"])
    assert cfg.metrics.fid_toy.settings.kid_seed == 2
    cfg = assemble.compose(["experiment=untrained", "models.toy_unet.batch_size=2"])
    assert cfg.models.toy_unet.batch_size == 2


def test_misspelt_entry_on_the_command_line_exits_2_with_the_hint(tmp_path):
    res = _harness("score", "metrics.fid_tyo.settings.x=1", f"store.root={tmp_path / 'store'}",
                   cwd=tmp_path)
    assert res.returncode == 2
    assert "Did you mean 'fid_toy'" in res.stderr and "not in struct" not in res.stderr
