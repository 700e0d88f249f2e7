"""A run over three submit-and-poll APIs is SIGKILLed while each provider's jobs are pending;
resuming makes zero duplicate paid submits (by the fake's counters), and the planted key is
nowhere in the store, the logs or the reports."""

import signal
from pathlib import Path

from api_runs import harness_cmd, start, wait_pending

from harness.store import Store
from harness.testing.fakes import FakeProviders

KEY = "planted-api-key-6f1e9d3c7b5a2048"
MODELS = ("flux_pro", "replicate_flux_schnell", "fal_flux_dev")
SUBMIT = {"bfl": "bfl.submit", "replicate": "replicate.create", "fal": "fal.submit"}
UNITS = 3 * 2  # suite.limit x samples, per model


def _start(fake, tmp_path, log, command="generate"):
    return start(harness_cmd(fake, tmp_path, MODELS, command=command), KEY, tmp_path, log)


def test_kill_while_jobs_are_pending_then_resume_pays_nothing_twice(tmp_path):
    log_path = tmp_path / "console.log"
    with FakeProviders(api_key=KEY) as fake, open(log_path, "ab") as log:
        fake.pending_polls = 0
        fake.held = {"bfl", "replicate", "fal"}
        # Each phase: the next provider's first batch is submitted and pending; kill; release.
        first_batch = {"bfl": 6, "replicate": 4, "fal": 4}  # batch_size 8, 4, 4
        for provider in ("bfl", "replicate", "fal"):
            p = _start(fake, tmp_path, log)
            wait_pending(fake, provider, first_batch[provider], p)
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
