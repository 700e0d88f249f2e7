"""SIGKILL a run several times at random points; resuming must give the store an
uninterrupted run gives: same keys, same image hashes, no corrupt files."""

import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

from harness.store import Store

ARGS = ["run", "experiment=untrained", "suite.limit=6", "samples=2", "run.name=k", "progress=false"]


def _popen(store, cache, reports):
    env = {**os.environ, "HARNESS_STORE": str(store), "HARNESS_MODEL_CACHE": str(cache)}
    return subprocess.Popen([sys.executable, "-m", "harness.cli", *ARGS, f"report.dir={reports}"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _state(root):
    s = Store(root, create=False)
    records = sorted(s.iter_keys_and_hashes())
    scores = sorted(tuple(r) for r in s.db.execute("SELECT key, metric, settings_hash, value FROM scores"))
    for _, sha, status in records:
        if status == "ok":  # every referenced image exists and is what its name says
            assert hashlib.sha256(s.image_path(sha).read_bytes()).hexdigest() == sha
    assert s.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    s.close()
    return records, scores


def test_sigkill_at_random_points_then_resume_equals_uninterrupted(tmp_path, model_cache):
    ref = _popen(tmp_path / "ref", model_cache, tmp_path / "ref-reports")
    assert ref.wait(timeout=600) == 0, ref.stderr.read().decode()

    # A fresh model cache, so kills can also land while the tiny models are being built.
    cache = tmp_path / "cache"
    rng = random.Random(20261125)
    kills = 0
    for _ in range(6):
        p = _popen(tmp_path / "killed", cache, tmp_path / "reports")
        time.sleep(rng.uniform(0.5, 6.0))
        if p.poll() is not None:
            assert p.returncode == 0, p.stderr.read().decode()
            break
        p.send_signal(signal.SIGKILL)
        p.wait()
        kills += 1
    final = _popen(tmp_path / "killed", cache, tmp_path / "reports")
    assert final.wait(timeout=600) == 0, final.stderr.read().decode()
    assert kills >= 3

    ref_records, ref_scores = _state(tmp_path / "ref")
    records, scores = _state(tmp_path / "killed")
    assert len(ref_records) == 2 * 6 * 2
    assert records == ref_records
    assert scores == ref_scores
    db = sqlite3.connect(tmp_path / "killed" / "harness.sqlite")
    assert db.execute("SELECT COUNT(*) FROM run_units WHERE run_id='k'").fetchone()[0] == 24
    assert (tmp_path / "reports/toy-shapes/k/leaderboard.md").exists()
