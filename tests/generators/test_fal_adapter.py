"""FalImages (queue: submit, status_url, response_url) against the fake."""

import json
import logging

import pytest
from api_helpers import journaled, request_helpers

from harness.errors import ConfigError
from harness.generators.fal import FalImages
from harness.store.journal import StoreJournal
from harness.testing.fakes import Fault, prompt_png

KEY = "fal-planted-key:3c5e7a9b1d2f4e6a"
KEY_ENV = "FAL_KEY"
APP = "fal-ai/flux/dev"


def make(fake, model_id=APP, extra=None, store=None, **options):
    opts = {"base_url": fake.url + "/fal", "backoff_s": 0.01, "timeout_s": 5,
            "poll_interval_s": 0.01} | options
    return journaled(FalImages(name="f", label="F", model_id=model_id,
                               params={"width": 1024, "height": 1024, "steps": 28, "guidance": 3.5,
                                       "extra": extra or {}}, options=opts, batch_size=4), store)


req, one = request_helpers(seed=5)


def test_queue_submit_status_result_download(fake, store):
    fake.pending_polls = 4
    g = make(fake, store=store)
    res = one(g)
    assert res.status == "ok", res.error
    assert res.image == prompt_png("a red cube") and res.info["seed"] == 5
    assert res.cost_usd == pytest.approx(0.025) and res.info["polls"] == 5
    assert fake.calls[f"/fal/{APP}"] == 1 and fake.calls["fal.status"] == 5
    assert fake.calls["fal.result"] == 1 and fake.calls["fal.file"] == 1
    assert fake.requests[0].json == {
        "prompt": "a red cube", "seed": 5, "num_images": 1,
        "image_size": {"width": 1024, "height": 1024}, "output_format": "png",
        "enable_safety_checker": True, "num_inference_steps": 28, "guidance_scale": 3.5}
    e = StoreJournal(store).find(req(g).key())
    assert e.state == "done" and e.poll_url.endswith("/status") and e.result_url
    file_req = [r for r in fake.requests if r.route == "fal.file"][0]
    assert "authorization" not in file_req.headers


def test_sync_mode_data_uri_and_jpeg(fake):
    res = one(make(fake, extra={"sync_mode": True, "output_format": "jpeg"}))
    assert res.status == "ok" and res.image.startswith(b"\x89PNG")
    assert fake.calls["fal.file"] == 0


def test_bad_app_id_is_a_config_error():
    with pytest.raises(ConfigError, match="app id"):
        FalImages(name="f", label="F", model_id="flux")


def test_nsfw_is_a_refusal(fake):
    fake.set_outcome("forbidden", "moderated")
    res = one(make(fake), "forbidden")
    assert res.status == "refused" and res.refusal_reason == "nsfw_concepts" and res.image is None
    assert fake.calls["fal.submit"] == 1


def test_failed_request_is_an_error_and_forgotten(fake, store):
    fake.set_outcome("boom", "failed")
    g = make(fake, store=store)
    res = one(g, "boom")
    assert res.status == "error" and "Generation failed" in res.error
    assert StoreJournal(store).find(req(g, "boom").key()) is None


def test_expired_image_url_keeps_the_request_in_the_journal(fake, store):
    fake.set_outcome("late", "expired")
    g = make(fake, store=store)
    res = one(g, "late")
    assert res.status == "error" and "HTTP 403" in res.error and "resubmit_expired" in res.error
    assert StoreJournal(store).find(req(g, "late").key()).state == "submitted"
    again = one(make(fake, store=store), "late")
    assert again.status == "error" and again.info["resumed"] and fake.calls["fal.submit"] == 1


@pytest.mark.parametrize("outcome, status, kind", [
    ("runner_error", "error", "runner_server_error"),
    ("policy", "refused", "content_policy_violation")])
def test_completed_status_carrying_an_error(fake, store, outcome, status, kind):
    fake.set_outcome("x", outcome)
    g = make(fake, store=store)
    res = one(g, "x")
    assert res.status == status and res.info["error_type"] == kind and res.image is None
    if status == "refused":
        assert res.refusal_reason == kind and "flagged" in res.info["refusal_message"]
        assert StoreJournal(store).find(req(g, "x").key()).state == "done"
    else:
        assert kind in res.error and "internal server error" in res.error
        assert StoreJournal(store).find(req(g, "x").key()) is None
    assert fake.calls["fal.result"] == 0 and fake.calls["fal.submit"] == 1


def test_unknown_app_is_a_404_error(fake):
    res = one(make(fake, model_id="fal-ai/nope"))
    assert res.status == "error" and "not found" in res.error and fake.calls["fal.submit"] == 1


def test_faults_on_status_and_result_are_retried(fake):
    fake.push("fal.submit", Fault.rate_limit(retry_after_ms=100))
    fake.push("fal.status", Fault.server_error(503), Fault.slow(0.2))
    fake.push("fal.result", Fault.server_error(500))
    res = one(make(fake))
    assert res.status == "ok" and fake.calls["fal.submit"] == 2 and len(fake.jobs) == 1


def test_5xx_on_submit_is_sent_again_as_fal_does_not_bill_it(fake):
    # https://fal.ai/docs/model-apis/model-endpoints/reliability: "Failed requests that return
    # 5xx status codes are not billed."
    fake.push("fal.submit", Fault.server_error(500), Fault.server_error(503))
    res = one(make(fake))
    assert res.status == "ok" and fake.calls["fal.submit"] == 3 and len(fake.jobs) == 1


def test_a_read_timeout_on_submit_is_still_not_resent(fake):
    fake.push("fal.submit", Fault.hang(1.0))
    res = one(make(fake, timeout_s=0.2))
    assert res.status == "error" and fake.calls["fal.submit"] == 1


def test_content_policy_422_from_the_result_is_a_refusal(fake, store):
    fake.set_outcome("x", "policy_result")
    g = make(fake, store=store)
    res = one(g, "x")
    assert res.status == "refused" and res.refusal_reason == "content_policy_violation"
    assert "flagged" in res.info["refusal_message"] and fake.calls["fal.result"] == 1
    assert StoreJournal(store).find(req(g, "x").key()).state == "done"


def test_content_policy_422_on_submit_is_a_refusal_not_retried(fake):
    body = {"detail": [{"loc": ["body", "prompt"], "msg": "The content was flagged by a "
                        "content checker.", "type": "content_policy_violation",
                        "url": "https://docs.fal.ai/errors#content_policy_violation",
                        "input": "x"}]}
    fake.push("fal.submit", Fault(422, body, {"X-Fal-Retryable": "false"}))
    res = one(make(fake), "x")
    assert res.status == "refused" and res.refusal_reason == "content_policy_violation"
    assert fake.calls["fal.submit"] == 1


def test_fal_error_reads_the_typed_detail_list():
    from harness.generators.fal import fal_error

    info = fal_error(422, {"detail": [{"loc": ["body", "image_size"], "msg": "bad",
                                       "type": "value_error"},
                                      {"loc": ["body", "prompt"], "msg": "flagged",
                                       "type": "content_policy_violation"}]}, "")
    assert info.code == "content_policy_violation" and info.final == "policy"
    assert fal_error(422, {"detail": [{"loc": ["body", "x"], "msg": "m", "type": "value_error"}]},
                     "").code == "value_error"
    assert fal_error(500, {"detail": "boom", "error_type": "runner_server_error"},
                     "").code == "runner_server_error"


def test_x_fal_retryable_false_stops_retries(fake):
    fake.push("fal.status", Fault(503, {"detail": "no"}, {"X-Fal-Retryable": "false"}))
    res = one(make(fake))
    assert res.status == "error" and fake.calls["fal.status"] == 1


def test_deadline_then_resume(fake, store):
    fake.pending_polls = 10_000
    first = one(make(fake, store=store, deadline_s=0.15))
    assert first.status == "error" and "IN_" in first.error
    for job in fake.jobs.values():
        job.pending_polls = 0
    res = one(make(fake, store=store))
    assert res.status == "ok" and res.info["resumed"] and fake.calls["fal.submit"] == 1


def test_key_never_leaks(fake, store, caplog):
    caplog.set_level(logging.DEBUG)
    fake.push("fal.status", Fault.server_error(502))
    g = make(fake, store=store)
    out = g.generate([req(g)])
    assert out[0].status == "ok"
    rows = json.dumps([dict(r) for r in store.db.execute("SELECT * FROM submits")])
    for hay in (rows, caplog.text, json.dumps(g.describe()), repr(vars(g))):
        assert KEY not in hay and "3c5e7a9b" not in hay
