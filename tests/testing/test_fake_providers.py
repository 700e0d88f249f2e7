"""The fake provider server itself: routing, auth per provider, counters, in-flight accounting
and the 'harness fake-providers' command."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from harness.testing.fakes import FakeProviders, Fault

KEY = "fake-test-key-123456"


def call(url, method="GET", body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    r = urllib.request.Request(url, data=data, method=method,
                               headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(r, timeout=5) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


@pytest.fixture
def fake():
    with FakeProviders(api_key=KEY) as f:
        yield f


@pytest.mark.parametrize("path, headers, good", [
    ("/v1beta/models/gemini-3.1-flash-image:generateContent", "x-goog-api-key", KEY),
    ("/v1/flux-pro-1.1", "x-key", KEY),
    ("/fal/fal-ai/flux/dev", "Authorization", f"Key {KEY}"),
    ("/v1/models/black-forest-labs/flux-schnell/predictions", "Authorization", f"Token {KEY}"),
])
def test_each_provider_checks_its_own_auth_header(fake, path, headers, good):
    body = {"prompt": "x", "contents": [{"parts": [{"text": "x"}]}], "input": {"prompt": "x"},
            "generationConfig": {"responseModalities": ["IMAGE"]}}
    status, _ = call(fake.url + path, "POST", body, {headers: "wrong"})
    assert status in (400, 401, 403)
    status, _ = call(fake.url + path, "POST", body, {headers: good})
    assert status in (200, 201)


def test_counters_by_path_and_route_name_and_unknown_routes(fake):
    h = {"x-key": KEY}
    _, job = call(fake.url + "/v1/flux-pro-1.1", "POST", {"prompt": "a"}, h)
    call(job["polling_url"], headers=h)
    call(job["polling_url"], headers=h)
    assert fake.calls["bfl.submit"] == 1 and fake.calls["/v1/flux-pro-1.1"] == 1
    assert fake.calls["bfl.poll"] == 2 and fake.prompt_calls["a"] == 1
    status, body = call(fake.url + "/v2/nothing", "POST", {})
    assert status == 404 and "Invalid URL" in body["error"]["message"]


def test_route_name_faults_and_provider_error_shapes(fake):
    fake.push("bfl.submit", Fault.rate_limit(retry_after=3))
    status, body = call(fake.url + "/v1/flux-dev", "POST", {"prompt": "a"}, {"x-key": KEY})
    assert status == 429 and "active tasks" in body["detail"]
    fake.push("google.generateContent", Fault.server_error(503))
    status, body = call(fake.url + "/v1beta/models/gemini-2.5-flash-image:generateContent", "POST",
                        {"contents": [{"parts": [{"text": "a"}]}]}, {"x-goog-api-key": KEY})
    assert status == 503 and body["error"]["status"] == "UNAVAILABLE"


@pytest.mark.parametrize("path, header, value", [
    ("/v1beta/models/imagen-4.0-generate-001:predict", "x-goog-api-key", KEY),
    ("/v1/projects/p1/locations/us-central1/publishers/google/models/"
     "imagen-4.0-generate-001:predict", "Authorization", f"Bearer {KEY}")])
def test_imagen_predict_is_gone_as_google_shut_it_down(fake, path, header, value):
    # Imagen was shut down on the Gemini API and Vertex AI on 2026-08-17
    # (https://firebase.google.com/docs/ai-logic/imagen-models-migration): a 404 NOT_FOUND in
    # google.rpc.Status form, whatever the request.
    status, body = call(fake.url + path, "POST",
                        {"instances": [{"prompt": "a"}], "parameters": {"sampleCount": 1}},
                        {header: value})
    err = body["error"]
    assert status == 404 and err["code"] == 404 and err["status"] == "NOT_FOUND"
    assert "imagen-4.0-generate-001" in err["message"] and "predictions" not in body


def test_expiring_result_urls(fake):
    fake.sample_ttl_s = 0.2
    fake.pending_polls = 0
    h = {"x-key": KEY}
    _, job = call(fake.url + "/v1/flux-pro-1.1", "POST", {"prompt": "a"}, h)
    _, res = call(job["polling_url"], headers=h)
    url = res["result"]["sample"]
    with urllib.request.urlopen(url, timeout=5) as r:
        assert r.status == 200 and r.headers["Content-Type"] == "image/jpeg"
    time.sleep(0.3)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url, timeout=5)
    assert e.value.code == 403


def test_in_flight_accounting(fake):
    fake.latency_s = 0.3
    h = {"x-goog-api-key": KEY}
    url = fake.url + "/v1beta/models/gemini-3.1-flash-image:generateContent"
    body = {"contents": [{"parts": [{"text": "a"}]}],
            "generationConfig": {"responseModalities": ["IMAGE"]}}
    threads = [threading.Thread(target=call, args=(url, "POST", body, h)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    st = fake.in_flight_stats()
    assert st["max"] == 4 and 2.5 <= st["mean"] <= 4.0


def test_fake_providers_command_serves_until_interrupted():
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen([sys.executable, "-m", "harness.cli", "fake-providers", "--key", KEY,
                          "--pending-polls", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env)
    try:
        lines = []
        for line in p.stdout:
            lines.append(line)
            if "Ctrl-C" in line:
                break
        text = "".join(lines)
        url = text.split("fake providers on ", 1)[1].split()[0]
        for var in ("OPENAI_API_KEY", "GEMINI_API_KEY", "STABILITY_API_KEY", "BFL_API_KEY",
                    "REPLICATE_API_TOKEN", "FAL_KEY"):
            assert f"export {var}={KEY}" in text
        assert "models.flux_pro.options.base_url=" in text
        status, body = call(url + "/v1beta/models/gemini-3.1-flash-image:generateContent", "POST",
                            {"contents": [{"parts": [{"text": "a"}]}],
                             "generationConfig": {"responseModalities": ["IMAGE"]}},
                            {"x-goog-api-key": KEY})
        parts = body["candidates"][0]["content"]["parts"]
        assert status == 200 and parts[0]["inlineData"]["mimeType"] == "image/png"
        _, stats = call(url + "/_fake/stats")
        assert stats["calls"]["google.generateContent"] == 1
    finally:
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=10) == 0, p.stderr.read()
