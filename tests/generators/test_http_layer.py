"""The shared async HTTP layer against a real server on 127.0.0.1 (no mocks)."""

import asyncio
import email.utils
import socket
import time

import pytest

from harness.generators.http import HTTPClient, ProviderError, parse_retry_after, run_sync, scrub
from harness.testing.fakes import Fault

KEY = "sk-http-layer-secret-0123456789"
GEN = "/v1/images/generations"
BODY = {"model": "gpt-image-1-mini", "prompt": "a red cube", "size": "1024x1024", "quality": "low"}


def client(fake, **kw):
    kw.setdefault("backoff_s", 0.01)
    kw.setdefault("timeout_s", 5)
    return HTTPClient(provider="openai", base_url=fake.url + "/v1",
                      headers={"Authorization": f"Bearer {kw.pop('key', KEY)}"}, **kw)


def post(c, n=1, idempotent=False, **kw):
    async def go():
        async with c.session():
            return await asyncio.gather(
                *(c.post("/images/generations", idempotent=idempotent, json=BODY, **kw)
                  for _ in range(n)), return_exceptions=True)
    out = run_sync(go())
    return out[0] if n == 1 else out


def test_parse_retry_after_forms():
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    date = email.utils.formatdate(1_000_010, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=1_000_000) == pytest.approx(10)
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_success_carries_request_id_and_attempts(fake):
    r = post(client(fake))
    assert r.status == 200 and r.attempts == 1 and r.request_id.startswith("req_")
    assert r.json["data"][0]["b64_json"]


def test_429_retry_after_seconds_is_honoured(fake):
    fake.push(GEN, Fault.rate_limit(retry_after=1))
    t0 = time.perf_counter()
    r = post(client(fake))
    assert time.perf_counter() - t0 >= 1.0 and r.waited_s >= 1.0
    assert r.attempts == 2 and fake.calls[GEN] == 2


def test_429_retry_after_ms_is_honoured(fake):
    fake.push(GEN, Fault.rate_limit(retry_after_ms=300))
    t0 = time.perf_counter()
    r = post(client(fake))
    assert time.perf_counter() - t0 >= 0.3 and r.attempts == 2


def test_5xx_retried_when_idempotent(fake):
    fake.push(GEN, Fault.server_error(503), Fault.server_error(500))
    r = post(client(fake), idempotent=True)
    assert r.attempts == 3 and fake.calls[GEN] == 3


def test_5xx_not_retried_on_a_non_idempotent_submit_by_default(fake):
    fake.push(GEN, Fault.server_error(503))
    e = post(client(fake))
    assert isinstance(e, ProviderError) and e.status == 503 and fake.calls[GEN] == 1


def test_retry_budget_exhausted(fake):
    fake.push(GEN, *[Fault.server_error(502)] * 5)
    e = post(client(fake, max_retries=2), idempotent=True)
    assert isinstance(e, ProviderError) and e.attempts == 3 and fake.calls[GEN] == 3
    assert "HTTP 502" in str(e) and "after 3 attempts" in str(e)


@pytest.mark.parametrize("fault", [Fault(400), Fault(402), Fault(403), Fault(404), Fault(422)])
def test_client_errors_are_never_retried(fake, fault):
    fake.push(GEN, fault)
    e = post(client(fake), idempotent=True)
    assert isinstance(e, ProviderError) and e.status == fault.status and fake.calls[GEN] == 1


def test_401_carries_code_and_message_but_no_key(fake):
    e = post(client(fake, key="sk-wrong-key-abcdefghijkl"), idempotent=True)
    assert isinstance(e, ProviderError) and e.status == 401 and e.code == "invalid_api_key"
    assert fake.calls[GEN] == 1
    assert "sk-wrong-key" not in str(e) and KEY not in str(e) and "Authorization" not in str(e)


def test_read_timeout_on_a_submit_is_final(fake):
    fake.push(GEN, Fault.hang(5))
    e = post(client(fake, timeout_s=0.3))
    assert isinstance(e, ProviderError) and e.status is None and e.attempts == 1
    assert "may have been processed" in e.message
    assert fake.calls[GEN] == 1


def test_read_timeout_retried_when_idempotent(fake):
    fake.push(GEN, Fault.hang(5))
    r = post(client(fake, timeout_s=0.3), idempotent=True)
    assert r.attempts == 2 and fake.calls[GEN] == 2


def test_connect_errors_are_retried_even_for_submits():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there
    c = HTTPClient(provider="openai", base_url=f"http://127.0.0.1:{port}/v1",
                   headers={"Authorization": f"Bearer {KEY}"}, max_retries=2, backoff_s=0.01)
    e = post(c)
    assert isinstance(e, ProviderError) and e.attempts == 3 and e.code == "ConnectError"
    assert KEY not in str(e) and KEY not in repr(c)


def test_concurrency_limit(fake):
    for _ in range(4):
        fake.push(GEN, Fault.slow(0.3))
    t0 = time.perf_counter()
    out = post(client(fake, concurrency=2), n=4)
    dt = time.perf_counter() - t0
    assert all(r.status == 200 for r in out)
    assert dt >= 0.6  # two waves of two (unlimited would take 0.3 s)


def test_rpm_limit_spaces_request_starts(fake):
    t0 = time.perf_counter()
    out = post(client(fake, rpm=600, concurrency=8), n=4)  # one start per 0.1 s
    assert all(r.status == 200 for r in out)
    assert time.perf_counter() - t0 >= 0.3


def test_retry_after_longer_than_max_wait_gives_up(fake):
    fake.push(GEN, Fault.rate_limit(retry_after=600))
    e = post(client(fake, max_wait_s=5))
    assert isinstance(e, ProviderError) and e.status == 429 and fake.calls[GEN] == 1


def test_scrub_removes_secrets_and_key_shapes():
    assert (scrub("bad key sk-abc123456789 and mine", ("mine",), registered=False)
            == "bad key *** and ***")


def test_run_sync_inside_a_running_loop():
    async def inner():
        return 7

    async def outer():
        return run_sync(inner())

    assert asyncio.run(outer()) == 7
