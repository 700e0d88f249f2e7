"""BFLImages (submit, poll polling_url, download the expiring sample) against the fake, with
the submit journal in a real store."""

import json
import logging
import socket

import pytest
from api_helpers import journaled, request_helpers

from harness.errors import ConfigError
from harness.generators.bfl import BFLImages
from harness.store.journal import StoreJournal
from harness.testing.fakes import Fault, prompt_png

KEY = "bfl-planted-key-0c4e8a2f6b19d3"
KEY_ENV = "BFL_API_KEY"
SUBMIT = "/v1/flux-pro-1.1"
PNG = b"\x89PNG\r\n\x1a\n"


def make(fake, model_id="flux-pro-1.1", extra=None, store=None, **options):
    opts = {"base_url": fake.url, "backoff_s": 0.01, "timeout_s": 5, "poll_interval_s": 0.01} | options
    return journaled(BFLImages(name="b", label="B", model_id=model_id,
                               params={"width": 1024, "height": 768, "extra": extra or {}},
                               options=opts, batch_size=4), store)


req, one = request_helpers(seed=99)


def test_submit_poll_pending_many_times_then_download(fake, store):
    fake.pending_polls = 6
    g = make(fake, store=store)
    res = one(g)
    assert res.status == "ok", res.error
    assert res.image == prompt_png("a red cube") and res.info["seed"] == 99
    assert res.cost_usd == pytest.approx(0.04) and res.info["polls"] == 7
    assert fake.calls["bfl.submit"] == 1 and fake.calls["bfl.poll"] == 7
    assert fake.calls["bfl.sample"] == 1
    assert fake.requests[0].json == {"prompt": "a red cube", "seed": 99, "output_format": "png",
                                     "width": 1024, "height": 768}
    job = next(iter(fake.jobs))
    assert res.provider_request_id == job
    entry = StoreJournal(store).find(req(g).key())
    assert entry.state == "done" and entry.job_id == job
    assert store.read_image(entry.image_sha256) == res.image


def test_sample_download_carries_no_key(fake):
    one(make(fake))
    sample = [r for r in fake.requests if r.route == "bfl.sample"][0]
    assert "x-key" not in sample.headers and KEY not in json.dumps(sample.headers)


def test_jpeg_sample_is_normalised_to_png(fake):
    res = one(make(fake, extra={"output_format": "jpeg"}))
    assert res.status == "ok" and res.image.startswith(PNG)


def test_ultra_takes_an_aspect_ratio(fake):
    res = one(make(fake, model_id="flux-pro-1.1-ultra"))
    assert res.status == "ok" and fake.requests[0].json["aspect_ratio"] == "4:3"
    assert "width" not in fake.requests[0].json and res.cost_usd == pytest.approx(0.06)


def test_size_must_be_a_multiple_of_32():
    with pytest.raises(ConfigError, match="multiples of 32"):
        BFLImages(name="b", label="B", model_id="flux-pro-1.1", params={"width": 1000, "height": 768})


@pytest.mark.parametrize("outcome, reason", [("moderated", "Request Moderated"),
                                             ("content_moderated", "Content Moderated")])
def test_moderation_is_a_refusal_submitted_once(fake, store, outcome, reason):
    fake.set_outcome("forbidden", outcome)
    g = make(fake, store=store)
    res = one(g, "forbidden")
    assert res.status == "refused" and res.refusal_reason == reason and res.image is None
    assert fake.calls["bfl.submit"] == 1
    assert StoreJournal(store).find(req(g, "forbidden").key()).state == "done"


def test_error_status_is_an_error_and_forgotten(fake, store):
    fake.set_outcome("boom", "failed")
    g = make(fake, store=store)
    res = one(g, "boom")
    assert res.status == "error" and "'Error'" in res.error
    assert StoreJournal(store).find(req(g, "boom").key()) is None  # a new run may try again


def test_error_status_reads_the_top_level_error_field(fake, store):
    # BFL's answer for a failed task can carry a top-level "error" (the issue observed it being
    # dropped); the poll answer here is scripted in that shape.
    fake.push("bfl.poll", Fault(200, {"id": "x", "status": "Error", "result": None,
                                      "progress": None, "details": None,
                                      "error": "Internal server error: CUDA out of memory"}))
    g = make(fake, store=store)
    res = one(g)
    assert res.status == "error" and "'Error'" in res.error
    assert "CUDA out of memory" in res.error and res.info["error"].startswith("Internal")
    assert StoreJournal(store).find(req(g).key()) is None


def test_expired_sample_url_is_fetched_again_with_a_fresh_url(fake, store):
    fake.set_outcome("late", "expired")
    g = make(fake, store=store)
    res = one(g, "late")
    assert res.status == "ok", res.error
    assert res.image == prompt_png("late") and res.info["sample_refreshes"] == 1
    assert fake.calls["bfl.submit"] == 1 and fake.calls["bfl.sample"] == 2
    assert StoreJournal(store).find(req(g, "late").key()).state == "done"


def test_a_sample_that_stays_expired_keeps_the_job_and_is_not_paid_twice(fake, store):
    fake.set_outcome("gone", "gone")
    g = make(fake, store=store)
    res = one(g, "gone")
    assert res.status == "error" and "HTTP 403" in res.error and "expire" in res.error
    assert "resubmit_expired" in res.error and res.info["sample_refreshes"] == 2
    assert "keep_job" not in res.info
    entry = StoreJournal(store).find(req(g, "gone").key())
    assert entry.state == "submitted"  # paid for: the next run asks again, never resubmits
    again = one(make(fake, store=store), "gone")
    assert again.status == "error" and again.info["resumed"] is True
    assert fake.calls["bfl.submit"] == 1
    # Asked to, the user pays for a new image: the job is forgotten and the next run submits.
    given_up = one(make(fake, store=store, resubmit_expired=True), "gone")
    assert given_up.status == "error" and "next run pays" in given_up.error
    assert StoreJournal(store).find(req(g, "gone").key()) is None
    fake.set_outcome("gone", None)
    fresh = one(make(fake, store=store), "gone")
    assert fresh.status == "ok" and fake.calls["bfl.submit"] == 2


def test_429_on_submit_is_retried_and_makes_one_job(fake):
    fake.push("bfl.submit", Fault.rate_limit(retry_after=0.1))
    res = one(make(fake))
    assert res.status == "ok" and fake.calls["bfl.submit"] == 2 and len(fake.jobs) == 1


def test_5xx_on_submit_is_an_error_not_resubmitted(fake, store):
    fake.push("bfl.submit", Fault.server_error(502))
    g = make(fake, store=store)
    res = one(g)
    assert res.status == "error" and fake.calls["bfl.submit"] == 1
    assert StoreJournal(store).find(req(g).key()) is None  # answered: no job was made


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_on_poll_is_retried(fake, status):
    fake.push("bfl.poll", Fault.server_error(status), Fault.rate_limit(retry_after=0))
    res = one(make(fake))
    assert res.status == "ok" and fake.calls["bfl.submit"] == 1


def test_deadline_keeps_the_job_and_the_next_run_polls_it(fake, store):
    fake.pending_polls = 10_000
    g = make(fake, store=store, deadline_s=0.2)
    first = one(g)
    assert first.status == "error" and "still Pending" in first.error
    assert StoreJournal(store).find(req(g).key()).state == "submitted"
    fake.pending_polls = 0
    for job in fake.jobs.values():
        job.pending_polls = 0
    second = one(make(fake, store=store))
    assert second.status == "ok" and second.info["resumed"] is True
    assert fake.calls["bfl.submit"] == 1  # never paid twice


def test_a_submit_lost_in_flight_is_not_sent_again_unless_asked(fake, store):
    fake.push("bfl.submit", Fault.hang(5))
    g = make(fake, store=store, timeout_s=0.3)
    assert one(g).status == "error"
    assert StoreJournal(store).find(req(g).key()).state == "sending"
    again = one(make(fake, store=store))
    assert again.status == "error" and "resubmit_unconfirmed" in again.error
    assert "bfl offers no API to find a job" in again.error
    assert fake.calls["bfl.submit"] == 1
    forced = one(make(fake, store=store, resubmit_unconfirmed=True))
    assert forced.status == "ok" and fake.calls["bfl.submit"] == 2


def test_connect_error_proves_nothing_was_sent(store):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    import os

    os.environ["BFL_API_KEY"] = KEY
    try:
        g = BFLImages(name="b", label="B", model_id="flux-pro-1.1",
                      params={"width": 1024, "height": 768},
                      options={"base_url": f"http://127.0.0.1:{port}", "max_retries": 1,
                               "backoff_s": 0.01})
        g.attach_journal(StoreJournal(store))
        res = one(g)
    finally:
        del os.environ["BFL_API_KEY"]
    assert res.status == "error" and "ConnectError" in res.error
    assert StoreJournal(store).find(req(g).key()) is None


def test_polling_url_on_a_foreign_host_gets_no_key(fake):
    fake.push("bfl.submit", Fault(200, {"id": "abc", "polling_url":
                                        "http://evil.example.invalid/v1/get_result?id=abc"}))
    res = one(make(fake))
    assert res.status == "error" and "untrusted_url" in res.error
    assert fake.calls["bfl.poll"] == 0


def test_task_not_found_is_an_error(fake, store):
    fake.push("bfl.submit", Fault(200, {"id": "gone", "polling_url": fake.url + "/v1/get_result?id=gone"}))
    res = one(make(fake, store=store))
    assert res.status == "error" and "Task not found" in res.error


def test_validation_error_is_readable_and_not_retried(fake):
    res = one(make(fake, extra={"output_format": "gif"}))
    assert res.status == "error" and "output_format" in res.error and fake.calls["bfl.submit"] == 1


def test_key_never_leaks(fake, store, caplog):
    caplog.set_level(logging.DEBUG)
    fake.set_outcome("forbidden", "moderated")
    fake.push("bfl.poll", Fault.server_error(503))
    g = make(fake, store=store)
    out = g.generate([req(g), req(g, "forbidden")])
    assert [r.status for r in out] == ["ok", "refused"]
    rows = json.dumps([dict(r) for r in store.db.execute("SELECT * FROM submits")])
    for hay in (rows, caplog.text, json.dumps(g.describe()), repr(vars(g)),
                json.dumps([{k: v for k, v in vars(r).items() if k != "image"} for r in out])):
        assert KEY not in hay


@pytest.mark.parametrize("model_id", ["flux-2-pro", "flux-2-max", "flux-2-klein-9b"])
def test_flux2_takes_pixels_and_no_steps_or_guidance(fake, model_id):
    res = one(make(fake, model_id=model_id), steps=30, guidance=4.0)
    assert res.status == "ok", res.error
    sent = fake.requests[0]
    assert sent.path == f"/v1/{model_id}" and (sent.json["width"], sent.json["height"]) == (1024, 768)
    assert "steps" not in sent.json and "guidance" not in sent.json


def test_flux2_flex_sends_steps_and_guidance(fake):
    res = one(make(fake, model_id="flux-2-flex"), steps=30, guidance=4.0)
    assert res.status == "ok", res.error
    assert fake.requests[0].json["steps"] == 30 and fake.requests[0].json["guidance"] == 4.0


@pytest.mark.parametrize("w, h", [(1000, 1008), (48, 1024), (2048, 2048)])
def test_flux2_sizes_outside_bfls_limits_are_config_errors(w, h):
    with pytest.raises(ConfigError, match="multiples of 16"):
        BFLImages(name="b", label="B", model_id="flux-2-pro", params={"width": w, "height": h},
                  options={"base_url": "http://127.0.0.1:9"})


def test_flux2_sizes_the_flux1_rule_refused_are_fine(fake):
    g = BFLImages(name="b", label="B", model_id="flux-2-pro",
                  params={"width": 1920, "height": 1088, "extra": {}},
                  options={"base_url": fake.url, "poll_interval_s": 0.01})
    assert one(g).status == "ok" and fake.requests[0].json["width"] == 1920


def test_the_fake_serves_every_flux2_model_the_adapter_knows():
    from harness.generators.bfl import FLUX2_MODELS
    from harness.testing.fakes.bfl import BFL_FLUX2_MODELS, BFL_MODELS

    assert set(FLUX2_MODELS) == set(BFL_FLUX2_MODELS) <= set(BFL_MODELS)
