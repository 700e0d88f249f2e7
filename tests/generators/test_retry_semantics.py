"""Retry semantics per provider against the fakes on 127.0.0.1: waits stated in bodies (Gemini's
RetryInfo) and lockouts (Stability) are waited out, final errors (billing, auth, content policy,
``x-should-retry: false``) are never retried, and a model whose requests keep failing stops
sending (its circuit breaker) while other models go on; a later run tries again."""

import asyncio
import time
from pathlib import Path

import pytest
import yaml
from api_helpers import request_helpers

from harness.generators.fal import fal_error
from harness.generators.google import GoogleImages, google_error, rpc_duration_s
from harness.generators.http import HTTPClient, ProviderError, detail_error, run_sync
from harness.generators.openai_images import OpenAIImages
from harness.generators.replicate import replicate_error
from harness.generators.stability import LOCKOUT_S, StabilityImages, stability_error
from harness.testing.fakes import Fault

KEY = "rs-planted-key-2c8e4a61f0b7d93e"
ENV = ("GEMINI_API_KEY", "OPENAI_API_KEY", "STABILITY_API_KEY")
GEN = "/v1/images/generations"
MODELS = Path(__file__).resolve().parents[2] / "harness" / "conf" / "models"

req, one = request_helpers(seed=5)


def model_id(config: str) -> str:
    """The model id a shipped config uses (so these tests follow the configs as models retire)."""
    return yaml.safe_load((MODELS / f"{config}.yaml").read_text())["model_id"]


@pytest.fixture(autouse=True)
def keys(monkeypatch):
    for env in ENV:
        monkeypatch.setenv(env, KEY)


def gemini(fake, **options):
    opts = {"base_url": fake.url + "/v1beta", "backoff_s": 0.01, "timeout_s": 5,
            "concurrency": 4} | options
    return GoogleImages(name="g", label="G", model_id=model_id("gemini_image"),
                        params={"width": 1024, "height": 1024, "extra": {}}, options=opts,
                        batch_size=8)


def openai(fake, name="o", **options):
    opts = {"base_url": fake.url + "/v1", "backoff_s": 0.01, "timeout_s": 5,
            "concurrency": 1} | options
    return OpenAIImages(name=name, label=name, model_id=model_id("openai_gpt_image"),
                        params={"width": 1024, "height": 1024, "extra": {}}, options=opts,
                        batch_size=8)


def stability(fake, **options):
    opts = {"base_url": fake.url, "backoff_s": 0.01, "timeout_s": 5} | options
    return StabilityImages(name="s", label="S", model_id="stable-image-core",
                           params={"width": 1024, "height": 1024, "extra": {}}, options=opts,
                           batch_size=4)


def content_path(g):
    return f"/v1beta/models/{g.model_id}:generateContent"


# -- waits stated by the provider -------------------------------------------------------------


@pytest.mark.parametrize("value", ["30s", "1.5s", "0.250s", "45.837906927s", "0s"])
def test_retry_delay_reads_protobuf_duration_json_as_protobuf_does(value):
    # The official protobuf runtime's own reading of a Duration's JSON form is the reference.
    from google.protobuf import duration_pb2

    d = duration_pb2.Duration()
    d.FromJsonString(value)
    assert rpc_duration_s(value) == pytest.approx(d.ToTimedelta().total_seconds())


@pytest.mark.parametrize("value", [None, 30, "30", "soon", "s", "1m"])
def test_retry_delay_rejects_what_is_not_a_duration(value):
    assert rpc_duration_s(value) is None


def test_google_error_reads_retry_info_and_a_refused_key():
    body = Fault.retry_info("30s").body
    meaning = google_error(429, body, "")
    assert meaning.code == "RESOURCE_EXHAUSTED" and meaning.delay_s == 30.0
    bad_key = {"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
                         "status": "INVALID_ARGUMENT", "details": [
                             {"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                              "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}}
    assert google_error(400, bad_key, "").final == "auth"


def test_gemini_quota_window_stated_in_the_body_is_waited_out(fake):
    # The measurement, scaled down: a quota window whose length Gemini states only in
    # the body (RetryInfo.retryDelay, no Retry-After). 8 images through a 1.2 s window.
    g = gemini(fake)
    g.load()
    fake.fault_window(content_path(g), 1.2, lambda left: Fault.retry_info(left))
    t0 = time.perf_counter()
    out = g.generate([req(g, f"window {i}") for i in range(8)])
    assert [r.status for r in out] == ["ok"] * 8, [r.error for r in out]
    assert time.perf_counter() - t0 >= 1.2
    assert max(r.info["waited_s"] for r in out) >= 1.0


def test_the_same_window_without_the_body_delay_is_given_up_by_backoff(fake):
    # The control: the same window answered with Google's plain 429 (no RetryInfo): the
    # backoff (0.01 s doubling, 4 retries) gives up long before the window ends. The test above
    # passes only because the body's delay is read.
    g = gemini(fake)
    g.load()
    fake.fault_window(content_path(g), 1.2, lambda left: Fault(429))
    out = g.generate([req(g, f"window {i}") for i in range(4)])
    assert all(r.status == "error" and "HTTP 429" in r.error for r in out)
    assert fake.calls[content_path(g)] == 4 * 5


def test_a_stated_wait_holds_every_request_of_the_client(fake):
    # A answers 429 with a 1 s wait; B starts 0.2 s later and gets no 429 itself, yet it waits
    # for A's window instead of running into the same quota.
    fake.push(GEN, Fault.retry_info("1s"))
    c = HTTPClient(provider="google", base_url=fake.url + "/v1", error_parser=google_error,
                   headers={"Authorization": f"Bearer {KEY}"}, backoff_s=0.01, timeout_s=5)
    body = {"model": model_id("openai_gpt_image"), "prompt": "a red cube"}

    async def go():
        async with c.session():
            a = asyncio.create_task(c.post("/images/generations", idempotent=False, json=body))
            await asyncio.sleep(0.2)
            t0 = time.perf_counter()
            b = await c.post("/images/generations", idempotent=False, json=body)
            return await a, b, time.perf_counter() - t0

    a, b, b_took = run_sync(go())
    assert a.attempts == 2 and a.waited_s >= 0.95
    assert b.attempts == 1 and b.waited_s >= 0.6 and b_took >= 0.6
    assert fake.calls[GEN] == 3


def test_stability_429_waits_out_its_stated_lockout(fake):
    assert LOCKOUT_S == 60.0  # Stability: "a 429 response, followed by a timeout lasting 60 s"
    assert stability_error(429, None, "").delay_s == 60.0
    s = stability(fake, lockout_s=0.6)  # the test waits 0.6 s, not Stability's 60
    fake.push("stability.generate", Fault(429))
    t0 = time.perf_counter()
    res = one(s)
    assert res.status == "ok", res.error
    assert time.perf_counter() - t0 >= 0.6 and fake.calls["stability.generate"] == 2


def test_a_retry_after_header_wins_over_the_lockout(fake):
    s = stability(fake, lockout_s=30)
    fake.push("stability.generate", Fault.rate_limit(retry_after=0.2))
    t0 = time.perf_counter()
    assert one(s).status == "ok" and time.perf_counter() - t0 < 5


# -- final errors -----------------------------------------------------------------------------


def test_openai_insufficient_quota_is_final_and_stops_the_model(fake):
    # Same status as a rate limit, but a billing refusal: not retried, and no more paid
    # requests of this model in this run (each would be refused the same way).
    fake.push(GEN, Fault.insufficient_quota())
    g = openai(fake)
    out = g.generate([req(g, f"quota {i}") for i in range(4)])
    assert fake.calls[GEN] == 1
    assert out[0].status == "error" and "insufficient_quota" in out[0].error
    assert out[0].info["attempts"] == 1 and "billing" in out[0].error
    for r in out[1:]:
        assert r.status == "error" and "not sent" in r.error and "billing" in r.error


def test_openai_rate_limit_429_is_still_retried(fake):
    fake.push(GEN, Fault.rate_limit(retry_after_ms=50))
    assert one(openai(fake)).status == "ok" and fake.calls[GEN] == 2


def test_x_should_retry_false_is_obeyed(fake):
    fake.push(GEN, Fault(429, None, {"x-should-retry": "false"}))
    res = one(openai(fake))
    assert res.status == "error" and fake.calls[GEN] == 1


def test_content_policy_refusal_is_a_result_never_retried(fake):
    fake.push(GEN, Fault.moderation())
    res = one(openai(fake))
    assert res.status == "refused" and fake.calls[GEN] == 1


def test_auth_refusal_stops_the_model_after_one_request(fake, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-0123456789abcdefghijklmnop")
    g = openai(fake)
    out = g.generate([req(g, f"auth {i}") for i in range(3)])
    assert fake.calls[GEN] == 1
    assert out[0].info["http_status"] == 401 and "auth" in out[0].error
    assert all("not sent" in r.error for r in out[1:])


LOCKED = {"detail": "User is locked. Reason: Exhausted balance. Top up your balance at "
                    "fal.ai/dashboard/billing."}


@pytest.mark.parametrize(("parser", "fault"), [
    (detail_error, Fault(402, {"detail": "Insufficient credits. Please add credits."})),  # BFL
    (replicate_error, Fault(402, {"title": "Payment required", "status": 402,
                                   "detail": "You have insufficient credit."})),
    (stability_error, Fault(402, {"id": "x", "name": "payment_required",
                                   "errors": ["insufficient balance"]})),
    (fal_error, Fault(403, LOCKED)),
], ids=["bfl-402", "replicate-402", "stability-402", "fal-403-locked"])
def test_billing_refusals_are_final_and_hold_back_paid_requests_not_reads(fake, parser, fault):
    fake.push(GEN, fault)
    c = HTTPClient(provider="p", base_url=fake.url + "/v1", error_parser=parser,
                   headers={"Authorization": f"Bearer {KEY}"}, backoff_s=0.01, timeout_s=5)
    body = {"model": model_id("openai_gpt_image"), "prompt": "a red cube"}

    async def go():
        async with c.session():
            first = await asyncio.gather(c.post("/images/generations", idempotent=False,
                                                json=body), return_exceptions=True)
            second = await asyncio.gather(c.post("/images/generations", idempotent=False,
                                                 json=body), return_exceptions=True)
            read = await c.post("/images/generations", idempotent=True, json=body)
            return first[0], second[0], read

    first, second, read = run_sync(go())
    assert isinstance(first, ProviderError) and first.final == "billing"
    assert first.attempts == 1
    assert isinstance(second, ProviderError) and second.code == "circuit_open"
    assert second.never_reached and "billing" in str(second)
    assert read.status == 200  # reads (polls of jobs already paid for) still go
    assert fake.calls[GEN] == 2


# -- the circuit breaker ----------------------------------------------------------------------


def test_circuit_breaker_stops_a_failing_model_and_a_later_run_tries_again(fake):
    fake.push(GEN, *[Fault.server_error(500)] * 3)
    g = openai(fake, circuit_breaker=3)
    reqs = [req(g, f"cb {i}") for i in range(8)]
    out = g.generate(reqs)
    assert fake.calls[GEN] == 3  # 3 paid calls failed; the other 5 were never sent
    assert all("HTTP 500" in r.error for r in out[:3])
    for r in out[3:]:
        assert r.status == "error" and r.info["code"] == "circuit_open"
        assert "circuit breaker opened after 3 failed requests in a row" in r.error
        assert "models.o.options.circuit_breaker" in r.error
    again = openai(fake, circuit_breaker=3)  # a later run: a fresh generator
    assert [r.status for r in again.generate(reqs[3:])] == ["ok"] * 5


def test_a_success_resets_the_count(fake):
    for _ in range(3):
        fake.push(GEN, Fault.server_error(500), Fault.server_error(500))
        fake.push(GEN, Fault.slow(0))
    g = openai(fake, circuit_breaker=3)
    out = g.generate([req(g, f"reset {i}") for i in range(9)])
    assert [r.status for r in out] == ["error", "error", "ok"] * 3
    assert fake.calls[GEN] == 9


def test_breaker_off_with_zero(fake):
    fake.push(GEN, *[Fault.server_error(500)] * 6)
    g = openai(fake, circuit_breaker=0)
    g.generate([req(g, f"off {i}") for i in range(6)])
    assert fake.calls[GEN] == 6


def test_other_models_go_on_when_one_is_stopped(fake):
    bad, good = openai(fake, name="bad", circuit_breaker=2), openai(fake, name="good")
    for i in range(4):
        fake.push_for_prompt(f"bad {i}", Fault.server_error(500))
    out_bad = bad.generate([req(bad, f"bad {i}") for i in range(4)])
    out_good = good.generate([req(good, f"good {i}") for i in range(4)])
    assert [r.status for r in out_good] == ["ok"] * 4
    assert sum(r.info.get("code") == "circuit_open" for r in out_bad) == 2
