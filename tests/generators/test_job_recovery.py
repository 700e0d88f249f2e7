"""Runs cut mid-answer, then resumed, for the three submit-and-poll providers (BFL, Replicate,
fal) against the fake: the submit journal is left at ``sending`` (the submit reached the
provider, its answer never did), at ``submitted`` (the job id is known, the run stopped while
it was pending) or with a result whose URL expired; the resumed run must store every image
requested while the fake counts exactly one paid submit per image.

Where a provider offers no way to find a job whose id never arrived (BFL), the lost submit is
reported and not resent: that image is short, and nothing is paid twice.
"""

import time

import pytest
from api_helpers import api_request

from harness.generators.bfl import BFLImages
from harness.generators.fal import FalImages
from harness.generators.replicate import ReplicateImages
from harness.store.journal import StoreJournal
from harness.testing.fakes import Fault, prompt_png

KEY = "jobs-planted-key-5b7d9f1a3c"

PROVIDERS = {
    "bfl": (BFLImages, "", "flux-pro-1.1", "BFL_API_KEY", "bfl.submit"),
    "replicate": (ReplicateImages, "/v1", "black-forest-labs/flux-schnell",
                  "REPLICATE_API_TOKEN", "replicate.create"),
    "fal": (FalImages, "/fal", "fal-ai/flux/dev", "FAL_KEY", "fal.submit"),
}
PROMPTS = ("a quiet harbour", "lost in flight", "still pending")


@pytest.fixture(autouse=True)
def keys(monkeypatch):
    for _, _, _, env, _ in PROVIDERS.values():
        monkeypatch.setenv(env, KEY)


def make(provider, fake, store, **options):
    cls, path, model_id, _, _ = PROVIDERS[provider]
    opts = {"base_url": fake.url + path, "backoff_s": 0.01, "timeout_s": 0.4,
            "poll_interval_s": 0.01, "max_retries": 1} | options
    g = cls(name=f"{provider}_m", label=provider, model_id=model_id,
            params={"width": 1024, "height": 768}, options=opts, batch_size=4)
    g.attach_journal(StoreJournal(store))
    return g


def run(g, prompts=PROMPTS):
    return dict(zip(prompts, g.generate([api_request(g, p, seed=7) for p in prompts]),
                    strict=True))


def wait_for_job(fake, provider, prompt, timeout=5.0):
    end = time.time() + timeout
    while time.time() < end:
        if any(j.provider == provider and j.prompt == prompt for j in list(fake.jobs.values())):
            return
        time.sleep(0.02)
    raise AssertionError(f"{provider}: no job for {prompt!r}")


def cut_mid_answer(provider, fake, store):
    """A first run whose 'lost in flight' submit reaches the provider but whose answer never
    comes back (the run stops waiting: as if killed), and whose 'still pending' job is still
    running when the run stops (its deadline stands in for the kill)."""
    fake.push_for_prompt("lost in flight", Fault.slow(1.0))  # the job is made, 1 s late
    fake.set_outcome("still pending", "pending:100000")
    first = run(make(provider, fake, store, deadline_s=0.3))
    journal = StoreJournal(store)
    g = make(provider, fake, store)
    states = {p: journal.find(api_request(g, p, seed=7).key()).state for p in PROMPTS}
    assert first["a quiet harbour"].status == "ok"
    assert states == {"a quiet harbour": "done", "lost in flight": "sending",
                      "still pending": "submitted"}
    wait_for_job(fake, provider, "lost in flight")
    for job in fake.jobs.values():
        job.pending_polls = 0  # the pending job finishes while nobody watches


@pytest.mark.parametrize("provider", ["replicate", "fal"])
def test_cut_mid_answer_then_resume_stores_every_image_paid_once(fake, store, provider):
    submit = PROVIDERS[provider][4]
    cut_mid_answer(provider, fake, store)
    out = run(make(provider, fake, store))
    assert {p: r.status for p, r in out.items()} == dict.fromkeys(PROMPTS, "ok"), \
        {p: r.error for p, r in out.items()}
    assert all(out[p].image == prompt_png(p) for p in PROMPTS)
    assert out["a quiet harbour"].info["from_journal"] is True
    assert out["lost in flight"].info["resumed"] and "found" in out["lost in flight"].info["recovery"]
    assert out["still pending"].info["resumed"]
    assert fake.calls[submit] == len(PROMPTS)  # images requested = paid submits, by the fake
    assert len([j for j in fake.jobs.values() if j.provider == provider]) == len(PROMPTS)
    pending = StoreJournal(store).pending()
    assert pending == [] and len(StoreJournal(store).entries()) == len(PROMPTS)
    # A third run pays for nothing and reads every image from the journal.
    again = run(make(provider, fake, store))
    assert all(r.status == "ok" and r.info["from_journal"] for r in again.values())
    assert fake.calls[submit] == len(PROMPTS)


def test_cut_mid_answer_on_bfl_reports_the_lost_submit_and_pays_nothing_twice(fake, store):
    cut_mid_answer("bfl", fake, store)
    out = run(make("bfl", fake, store))
    assert out["a quiet harbour"].status == "ok" and out["still pending"].status == "ok"
    lost = out["lost in flight"]
    assert lost.status == "error" and "bfl offers no API to find a job" in lost.error
    assert "resubmit_unconfirmed" in lost.error
    assert fake.calls["bfl.submit"] == len(PROMPTS)  # nothing paid twice; one image short
    # Only when the user says so is it sent again (the lost job, paid, is then paid twice).
    forced = run(make("bfl", fake, store, resubmit_unconfirmed=True), ["lost in flight"])
    assert forced["lost in flight"].status == "ok" and fake.calls["bfl.submit"] == 4


def test_bfl_resumed_after_its_sample_url_expired_fetches_a_fresh_one(fake, store):
    fake.set_outcome("late", "pending:100000")
    first = run(make("bfl", fake, store, deadline_s=0.2), ["late"])
    assert first["late"].status == "error"
    for job in fake.jobs.values():
        job.pending_polls = 0
    fake.set_outcome("late", None)
    job = next(iter(fake.jobs.values()))
    job.outcome = "expired"  # the sample signed when the job became ready has expired
    out = run(make("bfl", fake, store), ["late"])
    assert out["late"].status == "ok" and out["late"].image == prompt_png("late")
    assert out["late"].info["resumed"] and out["late"].info["sample_refreshes"] == 1
    assert fake.calls["bfl.submit"] == 1


def test_replicate_submit_that_never_left_is_found_absent_and_sent(fake, store):
    g = make("replicate", fake, store)
    key = api_request(g, "never sent", seed=7).key()
    StoreJournal(store).record_sending(key, "replicate", g.name)  # killed before the send
    out = run(g, ["never sent"])
    assert out["never sent"].status == "ok" and "no prediction" in out["never sent"].info["recovery"]
    assert fake.calls["replicate.list"] == 1 and fake.calls["replicate.create"] == 1
    assert "created_after" in [r for r in fake.requests if r.route == "replicate.list"][0].query


def test_replicate_cannot_tell_once_inputs_were_removed(fake, store):
    g = make("replicate", fake, store)
    key = api_request(g, "old", seed=7).key()
    StoreJournal(store).record_sending(key, "replicate", g.name)
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    fake.push("replicate.list", Fault(200, {"next": None, "previous": None, "results": [
        {"id": "gone1", "model": "black-forest-labs/flux-schnell", "version": "hidden",
         "input": None, "output": None, "data_removed": True, "status": "succeeded",
         "source": "api", "created_at": now, "urls": {}}]}))
    out = run(g, ["old"])
    assert out["old"].status == "error" and "input removed" in out["old"].error
    assert fake.calls["replicate.create"] == 0
    assert StoreJournal(store).find(key).state == "sending"


def test_replicate_list_is_followed_page_by_page(fake, store):
    from harness.testing.fakes import replicate as fake_replicate

    g = make("replicate", fake, store)
    others = [f"other {i}" for i in range(fake_replicate.PAGE + 5)]
    fake.push_for_prompt("mine", Fault.slow(0.6))
    lost = run(make("replicate", fake, store, timeout_s=0.2), ["mine"])
    assert lost["mine"].status == "error"
    wait_for_job(fake, "replicate", "mine")
    assert run(g, others)  # a page and more of newer predictions
    out = run(g, ["mine"])
    assert out["mine"].status == "ok" and out["mine"].info["resumed"]
    assert fake.calls["replicate.list"] == 2 and fake.calls["replicate.create"] == len(others) + 1


def test_fal_request_not_in_the_history_is_reported_not_resent(fake, store):
    g = make("fal", fake, store)
    key = api_request(g, "queued", seed=7).key()
    StoreJournal(store).record_sending(key, "fal", g.name)
    out = run(g, ["queued"])
    assert out["queued"].status == "error" and "request history" in out["queued"].error
    assert fake.calls["fal.history"] == 1 and fake.calls["fal.submit"] == 0
    history = [r for r in fake.requests if r.route == "fal.history"][0]
    assert history.query["endpoint_id"] == "fal-ai/flux/dev"
    assert history.query["expand"] == "payloads" and history.query["start"].endswith("Z")
    forced = run(make("fal", fake, store, resubmit_unconfirmed=True), ["queued"])
    assert forced["queued"].status == "ok" and fake.calls["fal.submit"] == 1


def test_a_failed_lookup_proves_nothing(fake, store):
    g = make("replicate", fake, store)
    key = api_request(g, "x", seed=7).key()
    StoreJournal(store).record_sending(key, "replicate", g.name)
    fake.push("replicate.list", Fault.server_error(503), Fault.server_error(503))
    out = run(g, ["x"])
    assert out["x"].status == "error" and "looking for the job failed" in out["x"].error
    assert fake.calls["replicate.create"] == 0
