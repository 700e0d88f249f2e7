"""A metric whose hub weights are missing offline (the VLM judges, the learned preference scorers)
stops 'harness score' and 'harness run' at once, with the model id or file and the setting that
points at a local copy, and leaves the store as it was: every SQLite row, every image file and the
run's manifest byte for byte."""

import hashlib
import sqlite3
import time

import pytest

from harness import cli
from harness.config import SuiteConfig
from harness.errors import UserError
from harness.suites import load_suite
from harness.testing.fakes import prompt_png

pytest.importorskip("huggingface_hub")

SMALL = ["suite=toy-shapes", "suite.limit=2", "samples=1", "progress=false", "models=[imported]"]
HUB_ID = "Qwen/Qwen2.5-VL-7B-Instruct"


def snapshot(root):
    """Every row of every table, and the sha256 of every file (the database file after a
    checkpoint) but the SQLite side files (-wal/-shm) and the run logs (a log records the
    attempt)."""
    db = sqlite3.connect(root / "harness.sqlite")
    try:
        # Fold the write-ahead log into the database file, so its bytes hold every row.
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        rows = list(db.iterdump())
    finally:
        db.close()
    files = {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(root.rglob("*")) if p.is_file()
             and not p.name.endswith(("-wal", "-shm", ".log"))}
    return rows, files


@pytest.fixture
def stored(workdir, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HOME", str(workdir / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    # Imported images: a stored run without building a model.
    suite = load_suite(SuiteConfig(name="toy-shapes", file="toy-shapes.yaml", limit=2))
    (workdir / "imports").mkdir()
    rows = ["prompt_id,sample,file"]
    for p in suite.prompts:
        (workdir / "imports" / f"{p.id}.png").write_bytes(prompt_png(p.text))
        rows.append(f"{p.id},0,{p.id}.png")
    (workdir / "imports" / "manifest.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    cli.dispatch(cli.compose(["command=run", "metrics=[colorfulness]", "run.name=s", *SMALL]))
    return workdir / "store"


@pytest.mark.parametrize(("metric", "needed"), [
    ("vqascore", HUB_ID), ("questions", HUB_ID),
    ("pickscore", "yuvalkirstain/PickScore_v1"),
    ("hpsv2", "xswu/HPSv2/HPS_v2.1_compressed.pt"),
    ("image_reward", "THUDM/ImageReward/ImageReward.pt"),
    ("hpsv3", "HPSv3.safetensors"),
])
def test_missing_weights_fail_fast_and_leave_the_store_untouched(stored, metric, needed):
    before = snapshot(stored)
    assert any(p.startswith("images/") for p in before[1]) and before[0]
    for command, run in (("score", "s"), ("run", "s"), ("run", "fresh")):
        cfg = cli.compose([f"command={command}", f"metrics=[{metric}]", f"run.name={run}", *SMALL])
        t = time.perf_counter()
        with pytest.raises(UserError) as e:
            cli.dispatch(cfg)
        took = time.perf_counter() - t
        msg = str(e.value)
        assert needed in msg and f"metrics.{metric}.settings.checkpoint=" in msg, (command, msg)
        assert took < 1.0, f"{command} run.name={run}: {took:.2f}s"
        assert snapshot(stored) == before, (command, run)
