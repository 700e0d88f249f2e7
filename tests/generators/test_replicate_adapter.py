"""ReplicateImages (predictions: submit, poll urls.get, download) against the fake."""

import json
import logging

import pytest
from api_helpers import journaled, request_helpers

from harness.errors import ConfigError
from harness.generators.replicate import ReplicateImages
from harness.store.journal import StoreJournal
from harness.testing.fakes import Fault, prompt_png

KEY = "r8_PlantedReplicateToken7d2e4f6a8b"
KEY_ENV = "REPLICATE_API_TOKEN"
MODEL = "black-forest-labs/flux-schnell"
VERSION = "5f24084160c9089501c1b3545d9be3c27883ae2239b6f412990e82d4a6210f8f"


def make(fake, model_id=MODEL, revision=None, extra=None, store=None, **options):
    opts = {"base_url": fake.url + "/v1", "backoff_s": 0.01, "timeout_s": 5,
            "poll_interval_s": 0.01} | options
    return journaled(ReplicateImages(name="r", label="R", model_id=model_id, revision=revision,
                                     params={"width": 1024, "height": 576, "extra": extra or {}},
                                     options=opts, batch_size=4), store)


req, one = request_helpers(seed=31)


def test_official_model_submit_poll_download(fake, store):
    fake.pending_polls = 3
    g = make(fake, store=store, extra={"num_inference_steps": 4})
    res = one(g)
    assert res.status == "ok", res.error
    assert res.image == prompt_png("a red cube") and res.info["seed"] == 31
    assert res.cost_usd == pytest.approx(0.003) and res.info["metrics"]["predict_time"]
    assert fake.calls[f"/v1/models/{MODEL}/predictions"] == 1 and fake.calls["replicate.get"] == 4
    assert fake.requests[0].json == {"input": {"prompt": "a red cube", "seed": 31,
                                               "output_format": "png", "aspect_ratio": "16:9",
                                               "num_inference_steps": 4}}
    assert "prefer" not in fake.requests[0].headers
    assert StoreJournal(store).find(req(g).key()).state == "done"
    file_req = [r for r in fake.requests if r.route == "replicate.file"][0]
    assert "authorization" not in file_req.headers


def test_pinned_version_uses_the_predictions_endpoint(fake):
    res = one(make(fake, revision=VERSION))
    assert res.status == "ok" and res.info["version"] == VERSION
    assert fake.calls["/v1/predictions"] == 1 and fake.requests[0].json["version"] == VERSION


def test_bad_model_id_and_version_are_config_errors():
    with pytest.raises(ConfigError, match="owner/name"):
        ReplicateImages(name="r", label="R", model_id="flux-schnell")
    with pytest.raises(ConfigError, match="64 hex"):
        ReplicateImages(name="r", label="R", model_id=MODEL, revision="v1")


def test_prefer_wait_gets_the_output_in_the_submit_answer(fake):
    res = one(make(fake, prefer_wait=10))
    assert res.status == "ok" and fake.calls["replicate.get"] == 0
    assert fake.requests[0].headers["prefer"] == "wait=10"


def test_webp_output_is_normalised_to_png(fake):
    res = one(make(fake, extra={"output_format": "webp"}))
    assert res.status == "ok" and res.image.startswith(b"\x89PNG")


def test_nsfw_failure_is_a_refusal(fake):
    fake.set_outcome("forbidden", "moderated")
    res = one(make(fake), "forbidden")
    assert res.status == "refused" and res.refusal_reason == "NSFW"
    assert fake.calls["replicate.create"] == 1


@pytest.mark.parametrize("outcome, word", [("failed", "CUDA"), ("canceled", "canceled")])
def test_failed_and_canceled_are_errors(fake, store, outcome, word):
    fake.set_outcome("x", outcome)
    g = make(fake, store=store)
    res = one(g, "x")
    assert res.status == "error" and word in res.error
    assert StoreJournal(store).find(req(g, "x").key()) is None


def test_expired_output_url_keeps_the_prediction_in_the_journal(fake, store):
    fake.set_outcome("late", "expired")
    g = make(fake, store=store)
    res = one(g, "late")
    assert res.status == "error" and "HTTP 403" in res.error and "resubmit_expired" in res.error
    assert StoreJournal(store).find(req(g, "late").key()).state == "submitted"
    again = one(make(fake, store=store), "late")
    assert again.status == "error" and again.info["resumed"]
    assert fake.calls["replicate.create"] == 1


def test_429_throttle_then_ok_and_5xx_on_poll_retried(fake):
    fake.push("replicate.create", Fault.rate_limit(retry_after=0.1))
    fake.push("replicate.get", Fault.server_error(503), Fault.hang(2))
    res = one(make(fake, timeout_s=0.5))
    assert res.status == "ok" and fake.calls["replicate.create"] == 2 and len(fake.jobs) == 1


def test_422_invalid_input_is_not_retried(fake):
    fake.push("replicate.create", Fault(422, {"title": "Input validation failed", "status": 422,
                                              "detail": "- input.aspect_ratio: must be one of"}))
    res = one(make(fake))
    assert res.status == "error" and "aspect_ratio" in res.error
    assert fake.calls["replicate.create"] == 1


def test_deadline_then_resume_polls_the_same_prediction(fake, store):
    fake.pending_polls = 10_000
    assert one(make(fake, store=store, deadline_s=0.15)).status == "error"
    for job in fake.jobs.values():
        job.pending_polls = 0
    res = one(make(fake, store=store))
    assert res.status == "ok" and res.info["resumed"] and fake.calls["replicate.create"] == 1


def test_token_never_leaks(fake, store, caplog):
    caplog.set_level(logging.DEBUG)
    g = make(fake, store=store)
    fake.push("replicate.get", Fault.server_error(500))
    out = g.generate([req(g), req(g, "b")])
    assert [r.status for r in out] == ["ok", "ok"]
    rows = json.dumps([dict(r) for r in store.db.execute("SELECT * FROM submits")])
    for hay in (rows, caplog.text, json.dumps(g.describe()), repr(vars(g))):
        assert KEY not in hay
