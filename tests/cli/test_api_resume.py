"""A run over three submit-and-poll APIs is SIGKILLed while each provider's jobs are pending;
resuming makes zero duplicate paid submits (by the fake's counters), and the planted key is
nowhere in the store, the logs or the reports."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness.store import Store
from harness.testing.fakes import FakeProviders

KEY = "planted-api-key-6f1e9d3c7b5a2048"
MODELS = ("flux_pro", "replicate_flux_schnell", "fal_flux_dev")
SUBMIT = {"bfl": "bfl.submit", "replicate": "replicate.create", "fal": "fal.submit"}
UNITS = 3 * 2  # suite.limit x samples, per model


def _cmd(fake, tmp_path, command="generate"):
    base = {"flux_pro": fake.url, "replicate_flux_schnell": fake.url + "/v1",
            "fal_flux_dev": fake.url + "/fal"}
    args = [command, f"models=[{','.join(MODELS)}]", "suite.limit=3", "samples=2",
            "run.name=api", "progress=false", "metrics=[colorfulness]",
            f"store.root={tmp_path / 'store'}", f"report.dir={tmp_path / 'reports'}"]
    for m in MODELS:
        args += [f"models.{m}.options.base_url={base[m]}", f"models.{m}.options.poll_interval_s=0.02",
                 f"models.{m}.options.backoff_s=0.01"]
    return [sys.executable, "-m", "harness.cli", *args]


def _start(fake, tmp_path, log, command="generate"):
    env = {**os.environ, "BFL_API_KEY": KEY, "REPLICATE_API_TOKEN": KEY, "FAL_KEY": KEY}
    env.pop("HARNESS_STORE", None)
    return subprocess.Popen(_cmd(fake, tmp_path, command), env=env, cwd=tmp_path,
                            stdout=log, stderr=subprocess.STDOUT)


def _wait_pending(fake, provider, n, proc, timeout=120):
    """Until ``n`` of the provider's jobs were submitted and each was polled (so its id is in
    the journal: the poll comes after the journal write)."""
    end = time.time() + timeout
    while time.time() < end:
        jobs = [j for j in list(fake.jobs.values()) if j.provider == provider]
        if len(jobs) >= n and all(j.polls >= 1 for j in jobs):
            return
        assert proc.poll() is None, f"run ended early ({proc.returncode})"
        time.sleep(0.05)
    raise AssertionError(f"{provider}: {len(jobs)} jobs after {timeout}s")


def test_kill_while_jobs_are_pending_then_resume_pays_nothing_twice(tmp_path):
    log_path = tmp_path / "console.log"
    with FakeProviders(api_key=KEY) as fake, open(log_path, "ab") as log:
        fake.pending_polls = 0
        fake.held = {"bfl", "replicate", "fal"}
        # Each phase: the next provider's first batch is submitted and pending; kill; release.
        first_batch = {"bfl": 6, "replicate": 4, "fal": 4}  # batch_size 8, 4, 4
        for provider in ("bfl", "replicate", "fal"):
            p = _start(fake, tmp_path, log)
            _wait_pending(fake, provider, first_batch[provider], p)
            p.send_signal(signal.SIGKILL)
            p.wait()
            fake.held.discard(provider)
        final = _start(fake, tmp_path, log, "run")
        assert final.wait(timeout=300) == 0, log_path.read_text()[-3000:]
        for provider, endpoint in SUBMIT.items():
            assert fake.calls[endpoint] == UNITS, (provider, dict(fake.calls))
            prompts = [j.prompt for j in fake.jobs.values() if j.provider == provider]
            assert len(prompts) == UNITS
        again = _start(fake, tmp_path, log)
        assert again.wait(timeout=300) == 0
        assert sum(fake.calls[e] for e in SUBMIT.values()) == 3 * UNITS  # nothing new

    store = Store(tmp_path / "store", create=False)
    counts = store.unit_counts("api")
    assert all(counts[m].ok == UNITS for m in MODELS), counts
    recs = store.records("api")
    assert all(r.provider_request_id and r.cost_usd is not None for r in recs)
    assert sum(bool(r.info.get("resumed")) for r in recs) == sum(first_batch.values())
    assert store.db.execute("SELECT COUNT(*) FROM submits WHERE state!='done'").fetchone()[0] == 0
    store.close()

    files = [p for d in ("store", "reports") for p in Path(tmp_path / d).rglob("*") if p.is_file()]
    assert any(p.name == "run.log" for p in files) and any(p.suffix == ".md" for p in files)
    for path in [*files, log_path]:
        assert KEY.encode() not in path.read_bytes(), path
