"""The ``api`` marker: closed-API runs end to end, every provider's adapter driving the fake
providers on 127.0.0.1 (real HTTP, no key of a real account, no network), as a user runs
``harness run``. Fast enough for the default run; ``pytest -m api`` runs only these."""

import hashlib

import pytest
from api_runs import PROVIDER_MODEL, harness_cmd, start

from harness.store import Store
from harness.testing.fakes import FakeProviders

pytestmark = pytest.mark.api

KEY = "api-marker-key-0b7c51e2d9a4f6"
MODELS = tuple(PROVIDER_MODEL.values())
PROVIDER = {m: p for p, m in PROVIDER_MODEL.items()}
UNITS = 2  # suite.limit x samples


def test_every_provider_end_to_end_images_counted_and_matched_at_the_server(tmp_path):
    log_path = tmp_path / "console.log"
    with FakeProviders(api_key=KEY) as fake, open(log_path, "ab") as log:
        fake.pending_polls = 0
        p = start(harness_cmd(fake, tmp_path, MODELS, limit=2, samples=1), KEY, tmp_path, log)
        assert p.wait(timeout=300) == 0, log_path.read_text()[-3000:]
        paid = fake.paid_stats()
        sent = {(prov, sha) for prov, _, sha in fake.sent_images}
        again = start(harness_cmd(fake, tmp_path, MODELS, limit=2, samples=1), KEY, tmp_path, log)
        assert again.wait(timeout=300) == 0
        assert fake.paid_stats() == paid  # the rerun found every image stored: nothing paid
    # Counted at the server: each provider processed one paid submit per unit, none twice.
    for m in MODELS:
        prov = PROVIDER[m]
        assert paid[prov]["paid"] == UNITS and paid[prov]["duplicates"] == 0, (prov, paid)
    store = Store(tmp_path / "store", create=False)
    counts = store.unit_counts("api")
    assert {m: counts[m].ok for m in MODELS} == dict.fromkeys(MODELS, UNITS), counts
    for rec in store.records("api"):
        data = store.read_image(rec.image_sha256)
        assert hashlib.sha256(data).hexdigest() == rec.image_sha256
        # The stored bytes are an image this provider's fake sent (PNG kept as it came).
        assert (PROVIDER[rec.model], rec.image_sha256) in sent, rec.model
        assert rec.provider_request_id
    store.close()
    assert KEY.encode() not in log_path.read_bytes()
    md = (tmp_path / "reports").rglob("leaderboard.md")
    text = next(md).read_text()
    assert all(f"`{m}`" in text for m in MODELS)
