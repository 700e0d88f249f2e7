"""GoogleImages (Gemini image models on the Gemini API and on Vertex AI) against the fake on
127.0.0.1, driven also by google-genai (Gemini API and Vertex AI modes)."""

import datetime
import email.utils
import json
import logging
import time
import typing
from pathlib import Path

import pytest
import yaml
from api_helpers import request_helpers

from harness.errors import ConfigError
from harness.generators import google as gmod
from harness.generators.google import RETIRED, GoogleImages, retired
from harness.testing.fakes import Fault, prompt_png
from harness.testing.fakes import google as fake_google

KEY = "AIzaPlantedGoogleTestKey-93f1c0d2"
KEY_ENV = "GEMINI_API_KEY"
GEMINI = "gemini-3.1-flash-image"
CONTENT = f"/v1beta/models/{GEMINI}:generateContent"
PROJECT, LOCATION = "my-project", "us-central1"
VERTEX = f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/{GEMINI}"
PNG = b"\x89PNG\r\n\x1a\n"
MODELS = Path(__file__).resolve().parents[2] / "harness" / "conf" / "models"


def make(fake, model_id=GEMINI, width=1024, height=1024, extra=None, **options):
    opts = {"base_url": fake.url + "/v1beta", "backoff_s": 0.01, "timeout_s": 5} | options
    return GoogleImages(name="g", label="G", model_id=model_id,
                        params={"width": width, "height": height, "extra": extra or {}},
                        options=opts, batch_size=4)


def make_vertex(fake, token=KEY, **options):
    opts = {"vertex": True, "project": PROJECT, "location": LOCATION,
            "base_url": fake.url + "/v1", "backoff_s": 0.01, "timeout_s": 5} | options
    return GoogleImages(name="gv", label="GV", model_id=GEMINI, params={"width": 1024,
                        "height": 1024, "extra": {}}, options=opts, batch_size=4,
                        token_source=lambda: token)


req, one = request_helpers(seed=7)


def test_gemini_wire_shape_inline_image_and_key_header(fake):
    g = make(fake, width=1536, height=1024)
    res = one(g)
    assert res.status == "ok", res.error
    assert res.image == prompt_png("a red cube")
    # No official per-image price for this model yet: recorded as unknown, never guessed.
    assert res.cost_usd is None and res.info["price_source"] is None
    assert res.provider_request_id and res.info["model_version"] == GEMINI
    assert res.info["usage"]["candidatesTokenCount"] == 1290
    sent = fake.requests[0]
    assert sent.json == {
        "contents": [{"role": "user", "parts": [{"text": "a red cube"}]}],
        "generationConfig": {"responseModalities": ["IMAGE"], "imageConfig": {"aspectRatio": "3:2"}}}
    assert fake.calls[CONTENT] == 1 and fake.calls["google.generateContent"] == 1
    assert "key=" not in sent.path  # the key travels in x-goog-api-key, never in the URL


def test_image_size_merges_into_image_config(fake):
    res = one(make(fake, width=1024, height=4096, extra={"imageConfig": {"imageSize": "2K"}}))
    assert res.status == "ok", res.error
    assert fake.requests[0].json["generationConfig"]["imageConfig"] == {
        "aspectRatio": "1:4", "imageSize": "2K"}


def test_gemini_aspect_must_be_supported():
    with pytest.raises(ConfigError, match="aspect ratio 7:4"):
        GoogleImages(name="g", label="G", model_id=GEMINI, params={"width": 1344, "height": 768})


@pytest.mark.parametrize("model_id, date, use", [
    ("imagen-4.0-generate-001", "2026-08-17", "gemini-3.1-flash-image"),
    ("imagen-4.0-ultra-generate-001", "2026-08-17", "gemini-3-pro-image"),
    ("gemini-2.5-flash-image", "2026-10-02", "gemini-3.1-flash-image"),
    ("gemini-3-pro-image-preview", "2026-06-25", "gemini-3-pro-image"),
])
def test_retired_model_is_refused_before_any_request(fake, model_id, date, use):
    with pytest.raises(ConfigError, match=f"{model_id} was shut down on {date}; use {use}"):
        make(fake, model_id=model_id)
    with pytest.raises(ConfigError, match=f"{model_id} was shut down"):  # on Vertex AI too
        GoogleImages(name="g", label="G", model_id=model_id, options={"vertex": True})
    assert fake.requests == []


def test_any_imagen_model_is_refused_with_the_replacement(fake):
    with pytest.raises(ConfigError, match="Imagen model was shut down on 2026-08-17.*"
                                          "gemini-3.1-flash-image"):
        GoogleImages(name="g", label="G", model_id="imagen-3.5-whatever", options={"vertex": True})


def test_retired_table_dates_are_sourced_and_the_rule_uses_the_date():
    for model, (date, use, source) in RETIRED.items():
        datetime.date.fromisoformat(date)
        assert source.startswith("https://") and use not in RETIRED, model
    assert retired("gemini-2.5-flash-image", datetime.date(2026, 10, 1)) is None
    assert "shut down on 2026-10-02" in retired("gemini-2.5-flash-image", datetime.date(2026, 10, 2))
    assert retired(GEMINI) is None


def _google_configs():
    for path in sorted(MODELS.glob("*.yaml")):
        cfg = yaml.safe_load(path.read_text())
        if str(cfg.get("_target_", "")).endswith("google.GoogleImages"):
            yield path.stem, cfg


def test_configs_use_current_models_listed_by_the_sdk():
    """Our Google configs name models google-genai's spec-generated ``Model`` literal lists and
    none Google has shut down: an SDK release that drops a model fails this test."""
    from google.genai.interactions import Model

    listed = set(typing.get_args(typing.get_args(Model)[0]))
    configs = dict(_google_configs())
    assert {"gemini_image", "gemini_pro_image", "gemini_image_vertex"} <= set(configs)
    assert "imagen4" not in configs
    for name, cfg in configs.items():
        assert cfg["model_id"] in listed, name
        assert cfg["model_id"] not in RETIRED and retired(cfg["model_id"]) is None, name
        GoogleImages(name=name, **{k: v for k, v in cfg.items() if k != "_target_"})


def test_aspect_and_size_tables_match_the_sdk():
    from google.genai.interactions import (
        ImageConfigAspectRatio,
        ImageConfigImageSize,
    )

    aspects = set(typing.get_args(typing.get_args(ImageConfigAspectRatio)[0]))
    sizes = set(typing.get_args(typing.get_args(ImageConfigImageSize)[0]))
    assert set(gmod.GEMINI_ASPECTS) == aspects == set(fake_google.GEMINI_ASPECTS)
    assert set(fake_google.GEMINI_IMAGE_SIZES) == sizes


@pytest.mark.parametrize("outcome, reason", [
    ("IMAGE_SAFETY", "IMAGE_SAFETY"), ("IMAGE_PROHIBITED_CONTENT", "IMAGE_PROHIBITED_CONTENT"),
    ("NO_IMAGE", "NO_IMAGE"), ("SAFETY", "SAFETY"), ("blocked", "blockReason:PROHIBITED_CONTENT"),
    ("text_only", "NO_IMAGE"),
])
def test_gemini_refusals(fake, outcome, reason):
    fake.set_outcome("forbidden", outcome)
    res = one(make(fake), "forbidden")
    assert res.status == "refused" and res.refusal_reason == reason
    assert fake.prompt_calls["forbidden"] == 1 and res.cost_usd is None


def test_429_retry_after_http_date_then_ok(fake):
    when = email.utils.formatdate(time.time() + 1, usegmt=True)
    fake.push(CONTENT, Fault.rate_limit(retry_after=when))
    res = one(make(fake))
    assert res.status == "ok" and fake.calls[CONTENT] == 2 and res.info["attempts"] == 2


def test_429_retry_after_ms(fake):
    fake.push(CONTENT, Fault.rate_limit(retry_after_ms=50))
    res = one(make(fake))
    assert res.status == "ok" and fake.calls[CONTENT] == 2


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_on_a_paid_call_is_an_error_sent_once(fake, status):
    fake.push(CONTENT, Fault.server_error(status))
    res = one(make(fake))
    assert res.status == "error" and f"HTTP {status}" in res.error and fake.calls[CONTENT] == 1
    assert res.info["code"] in ("INTERNAL", "UNAVAILABLE")


@pytest.mark.parametrize("status", [400, 403])
def test_client_errors_are_not_retried(fake, status):
    fake.push(CONTENT, Fault(status))
    res = one(make(fake))
    assert res.status == "error" and fake.calls[CONTENT] == 1


def test_slow_answer_within_timeout_and_hang_past_it(fake):
    fake.push(CONTENT, Fault.slow(0.3))
    assert one(make(fake)).status == "ok"
    fake.push(CONTENT, Fault.hang(5))
    res = one(make(fake, timeout_s=0.3))
    assert res.status == "error" and "no answer" in res.error and fake.calls[CONTENT] == 2


def test_bad_key_is_an_error_naming_no_key(fake, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("GEMINI_API_KEY", "AIzaWrongKeyWrongKey123")
    res = one(make(fake))
    assert res.status == "error" and "API key not valid" in res.error
    assert "AIzaWrong" not in res.error + caplog.text


def test_missing_key_names_the_variable(fake, monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY")
    with pytest.raises(ConfigError, match="GEMINI_API_KEY is not set"):
        one(make(fake))


def test_batch_is_concurrent_and_ordered(fake):
    fake.latency_s = 0.2
    g = make(fake, concurrency=4)
    prompts = [f"p{i}" for i in range(4)]
    t0 = time.perf_counter()
    out = g.generate([req(g, p) for p in prompts])
    assert time.perf_counter() - t0 < 0.6
    assert [r.image for r in out] == [prompt_png(p) for p in prompts]


def test_key_never_in_results_describe_or_logs(fake, caplog):
    caplog.set_level(logging.DEBUG)
    g = make(fake)
    fake.push(CONTENT, Fault.rate_limit(retry_after=0))
    fake.set_outcome("forbidden", "IMAGE_SAFETY")
    out = g.generate([req(g), req(g, "forbidden")])
    text = json.dumps([{k: v for k, v in vars(r).items() if k != "image"} for r in out], default=str)
    for hay in (text, json.dumps(g.describe()), repr(vars(g)), caplog.text):
        assert KEY not in hay


# -- Vertex AI ---------------------------------------------------------------------------------

def test_vertex_path_bearer_token_and_no_api_key(fake, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.delenv("GEMINI_API_KEY")  # Vertex AI never reads the Gemini API key
    g = make_vertex(fake)
    res = one(g)
    assert res.status == "ok", res.error
    assert res.image == prompt_png("a red cube")
    sent = fake.requests[0]
    # The fake's Vertex route answers only "Authorization: Bearer <its key>" (a wrong token is
    # a 401, below); it keeps no auth header in its records.
    assert sent.path == VERTEX + ":generateContent"
    assert g.describe()["api"] == {"provider": "google", "vertex": True,
                                   "base_url": fake.url + "/v1", "project": PROJECT,
                                   "location": LOCATION}
    assert KEY not in json.dumps(g.describe()) + caplog.text + repr(vars(g))


def test_vertex_bad_token_is_an_auth_error_sent_once(fake):
    res = one(make_vertex(fake, token="ya29.expired-or-wrong"))
    assert res.status == "error" and "HTTP 401" in res.error and "UNAUTHENTICATED" in res.error
    assert "ya29" not in res.error and fake.calls[VERTEX + ":generateContent"] == 1


def test_vertex_token_echoed_by_the_server_is_scrubbed(fake, caplog):
    caplog.set_level(logging.DEBUG)
    token = fake.api_key = "ya29.a0PlantedVertexToken-5d7e9f"  # the fake takes it as the token
    echo = {"error": {"code": 500, "message": f"internal error for token {token}",
                      "status": "INTERNAL"}}
    fake.push("google.generateContent", Fault(500, echo))
    g = make_vertex(fake, token=token)
    res = one(g)
    assert res.status == "error" and "internal error for token" in res.error
    assert "PlantedVertex" not in res.error + json.dumps(res.info) + caplog.text


def test_vertex_goes_through_the_base_load_and_its_circuit_breaker(fake):
    g = make_vertex(fake, circuit_breaker=2, concurrency=1)
    g.load()
    assert g._http is not None and g._breaker is not None and g._breaker.limit == 2
    assert g._http.base_url == fake.url + "/v1"
    fake.push("google.generateContent", Fault.server_error(500), Fault.server_error(500))
    out = g.generate([req(g, f"p{i}") for i in range(4)])
    assert [r.status for r in out] == ["error"] * 4
    assert "circuit breaker" in out[3].error and fake.calls["google.generateContent"] == 2


def test_vertex_token_failure_is_an_error_with_the_fix(fake):
    def broken():
        raise RuntimeError("metadata server unreachable")

    g = make_vertex(fake)
    g._token_source = broken
    res = one(g)
    # Not "application-default": any 6 characters of a key registered earlier in the process
    # are scrubbed, and the Replicate tests' planted key holds "plicat".
    assert res.status == "error" and "gcloud auth" in res.error
    assert "GOOGLE_APPLICATION_CREDENTIALS" in res.error and fake.requests == []


def test_vertex_project_and_location_from_the_environment(fake, monkeypatch):
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "env-project")
    monkeypatch.setenv("GOOGLE_CLOUD_LOCATION", "europe-west4")
    g = make_vertex(fake, project=None, location=None)
    assert one(g).status == "ok"
    assert fake.requests[0].path == ("/v1/projects/env-project/locations/europe-west4/publishers/"
                                     f"google/models/{GEMINI}:generateContent")


@pytest.mark.parametrize("location, root", [
    ("global", "https://aiplatform.googleapis.com/v1"),
    ("us", "https://aiplatform.us.rep.googleapis.com/v1"),
    ("us-central1", "https://us-central1-aiplatform.googleapis.com/v1"),
])
def test_vertex_root_per_location_as_google_genai_builds_it(location, root, monkeypatch):
    from google import genai
    from google.genai import types

    g = GoogleImages(name="gv", label="GV", model_id=GEMINI,
                     options={"vertex": True, "project": PROJECT, "location": location},
                     token_source=lambda: KEY)
    g.load()
    assert g.options.base_url == root
    for var in ("GOOGLE_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    client = genai.Client(vertexai=True, project=PROJECT, location=location,
                          credentials=_static_credentials(KEY),
                          http_options=types.HttpOptions(api_version="v1"))
    built = client._api_client._build_request(
        "post", f"publishers/google/models/{GEMINI}:generateContent", {})
    assert built.url == root + g._path(GEMINI)


def test_vertex_without_project_names_the_variable(monkeypatch):
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    g = GoogleImages(name="gv", label="GV", model_id=GEMINI, options={"vertex": True},
                     token_source=lambda: KEY)
    with pytest.raises(ConfigError, match="GOOGLE_CLOUD_PROJECT"):
        g.load()


def test_vertex_without_credentials_says_how_to_log_in(monkeypatch, tmp_path):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    g = GoogleImages(name="gv", label="GV", model_id=GEMINI,
                     options={"vertex": True, "project": PROJECT})
    with pytest.raises(ConfigError, match="GOOGLE_APPLICATION_CREDENTIALS|application-default"):
        g.load()


def _static_credentials(token):
    """google-auth credentials holding a token that needs no network (no refresh)."""
    from google.oauth2.credentials import Credentials

    return Credentials(token=token)


def test_google_genai_vertex_mode_and_our_adapter_agree(fake, monkeypatch):
    """google-genai in Vertex AI mode (project, location, OAuth credentials) against the fake:
    the same URL, the same request shape as ours, and it parses the fake's answers."""
    from google import genai
    from google.genai import types

    for var in ("GOOGLE_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    client = genai.Client(vertexai=True, project=PROJECT, location=LOCATION,
                          credentials=_static_credentials(KEY),
                          http_options=types.HttpOptions(base_url=fake.url, api_version="v1"))
    r = client.models.generate_content(
        model=GEMINI, contents="a red cube",
        config=types.GenerateContentConfig(
            response_modalities=["IMAGE"], image_config=types.ImageConfig(aspect_ratio="3:2")))
    assert r.candidates[0].content.parts[0].inline_data.data == prompt_png("a red cube")
    sdk_sent = fake.requests[-1]
    assert sdk_sent.path == VERTEX + ":generateContent"  # and its bearer token was accepted

    g = make_vertex(fake)
    g.params["width"], g.params["height"] = 1536, 1024
    g.aspect = "3:2"
    res = one(g)
    ours = fake.requests[-1]
    assert res.status == "ok" and res.image == r.candidates[0].content.parts[0].inline_data.data
    assert ours.path == sdk_sent.path
    assert ours.json["generationConfig"] == {k: v for k, v in sdk_sent.json["generationConfig"].items()
                                             if k in ("responseModalities", "imageConfig")}
    assert [p["text"] for c in ours.json["contents"] for p in c["parts"]] == \
        [p["text"] for c in sdk_sent.json["contents"] for p in c["parts"]]

    fake.set_outcome("forbidden", "IMAGE_SAFETY")
    r = client.models.generate_content(
        model=GEMINI, contents="forbidden",
        config=types.GenerateContentConfig(response_modalities=["IMAGE"]))
    assert r.candidates[0].finish_reason == types.FinishReason.IMAGE_SAFETY
    assert one(g, "forbidden").refusal_reason == "IMAGE_SAFETY"


def test_google_genai_sdk_parses_the_fake(fake):
    from google import genai
    from google.genai import types

    client = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=fake.url))
    r = client.models.generate_content(
        model=GEMINI, contents="a red cube",
        config=types.GenerateContentConfig(response_modalities=["IMAGE"]))
    part = r.candidates[0].content.parts[0]
    assert part.inline_data.data == prompt_png("a red cube")
    assert r.candidates[0].finish_reason == types.FinishReason.STOP
    assert r.usage_metadata.candidates_token_count == 1290 and r.response_id
    fake.set_outcome("forbidden", "IMAGE_SAFETY")
    r = client.models.generate_content(
        model=GEMINI, contents="forbidden",
        config=types.GenerateContentConfig(response_modalities=["IMAGE"]))
    assert r.candidates[0].finish_reason == types.FinishReason.IMAGE_SAFETY
    fake.set_outcome("blocked one", "blocked")
    r = client.models.generate_content(model=GEMINI, contents="blocked one")
    assert r.prompt_feedback.block_reason == types.BlockedReason.PROHIBITED_CONTENT


def test_results_are_journaled_at_once_so_a_killed_batch_is_not_paid_again(fake, store):
    from harness.store.journal import StoreJournal

    fake.set_outcome("forbidden", "IMAGE_SAFETY")
    g = make(fake)
    g.attach_journal(StoreJournal(store))
    first = g.generate([req(g), req(g, "forbidden")])
    assert fake.calls["google.generateContent"] == 2
    # A run killed before the runner stored these records: the next one reuses them.
    g2 = make(fake)
    g2.attach_journal(StoreJournal(store))
    again = g2.generate([req(g2), req(g2, "forbidden")])
    assert fake.calls["google.generateContent"] == 2
    assert again[0].image == first[0].image and again[0].info["from_journal"]
    assert again[1].status == "refused" and again[1].refusal_reason == "IMAGE_SAFETY"
    assert StoreJournal(store).find(req(g).key()).state == "done"
