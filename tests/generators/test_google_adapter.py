"""GoogleImages (Imagen :predict, Gemini :generateContent) against the fake on 127.0.0.1."""

import email.utils
import io
import json
import logging
import time

import pytest
from api_helpers import request_helpers
from PIL import Image

from harness.errors import ConfigError
from harness.generators.google import GoogleImages
from harness.testing.fakes import Fault, prompt_png

KEY = "AIzaPlantedGoogleTestKey-93f1c0d2"
KEY_ENV = "GEMINI_API_KEY"
IMAGEN = "imagen-4.0-generate-001"
GEMINI = "gemini-2.5-flash-image"
PREDICT = f"/v1beta/models/{IMAGEN}:predict"
CONTENT = f"/v1beta/models/{GEMINI}:generateContent"
PNG = b"\x89PNG\r\n\x1a\n"


def make(fake, model_id=IMAGEN, width=1024, height=1024, extra=None, **options):
    opts = {"base_url": fake.url + "/v1beta", "backoff_s": 0.01, "timeout_s": 5} | options
    return GoogleImages(name="g", label="G", model_id=model_id,
                        params={"width": width, "height": height, "extra": extra or {}},
                        options=opts, batch_size=4)


req, one = request_helpers(seed=7)


def test_imagen_wire_shape_png_cost_and_key_header(fake):
    g = make(fake, extra={"personGeneration": "allow_adult"})
    res = one(g)
    assert res.status == "ok", res.error
    assert res.image == prompt_png("a red cube") and res.cost_usd == pytest.approx(0.04)
    assert res.info["price_source"]["as_of"] and res.latency_s > 0
    sent = fake.requests[0]
    assert sent.json == {"instances": [{"prompt": "a red cube"}],
                         "parameters": {"sampleCount": 1, "aspectRatio": "1:1",
                                        "includeRaiReason": True,
                                        "outputOptions": {"mimeType": "image/png"},
                                        "personGeneration": "allow_adult"}}
    assert fake.calls[PREDICT] == 1 and fake.calls["google.predict"] == 1
    assert "key=" not in sent.path  # the key travels in x-goog-api-key, never in the URL


@pytest.mark.parametrize("w, h, ar", [(1408, 768, "16:9"), (896, 1280, "3:4"), (512, 512, "1:1")])
def test_imagen_sizes_map_to_aspect_ratios(fake, w, h, ar):
    g = make(fake, width=w, height=h)
    assert one(g).status == "ok"
    assert fake.requests[0].json["parameters"]["aspectRatio"] == ar


def test_imagen_bad_size_is_a_config_error():
    with pytest.raises(ConfigError, match="Imagen makes no 1000x700 images.*1408x768"):
        GoogleImages(name="g", label="G", model_id=IMAGEN, params={"width": 1000, "height": 700})


def test_imagen_jpeg_output_is_normalised_to_png(fake):
    res = one(make(fake, extra={"outputOptions": {"mimeType": "image/jpeg"}}))
    assert res.status == "ok" and res.image.startswith(PNG)
    assert Image.open(io.BytesIO(res.image)).size == (64, 64)


def test_imagen_rai_filter_is_a_refusal_sent_once(fake):
    fake.set_outcome("forbidden", "moderated")
    res = one(make(fake), "forbidden")
    assert res.status == "refused" and res.refusal_reason == "RAI_FILTERED" and res.image is None
    assert "safety filter" in res.info["refusal_message"]
    assert fake.prompt_calls["forbidden"] == 1


def test_gemini_wire_shape_and_inline_image(fake):
    g = make(fake, model_id=GEMINI, width=1536, height=1024)
    res = one(g)
    assert res.status == "ok", res.error
    assert res.image == prompt_png("a red cube") and res.cost_usd == pytest.approx(0.039)
    assert res.provider_request_id and res.info["model_version"] == GEMINI
    assert res.info["usage"]["candidatesTokenCount"] == 1290
    assert fake.requests[0].json == {
        "contents": [{"role": "user", "parts": [{"text": "a red cube"}]}],
        "generationConfig": {"responseModalities": ["IMAGE"], "imageConfig": {"aspectRatio": "3:2"}}}


def test_gemini_aspect_must_be_supported():
    with pytest.raises(ConfigError, match="aspect ratio 7:4"):
        GoogleImages(name="g", label="G", model_id=GEMINI, params={"width": 1344, "height": 768})


@pytest.mark.parametrize("outcome, reason", [
    ("IMAGE_SAFETY", "IMAGE_SAFETY"), ("IMAGE_PROHIBITED_CONTENT", "IMAGE_PROHIBITED_CONTENT"),
    ("NO_IMAGE", "NO_IMAGE"), ("SAFETY", "SAFETY"), ("blocked", "blockReason:PROHIBITED_CONTENT"),
    ("text_only", "NO_IMAGE"),
])
def test_gemini_refusals(fake, outcome, reason):
    fake.set_outcome("forbidden", outcome)
    res = one(make(fake, model_id=GEMINI), "forbidden")
    assert res.status == "refused" and res.refusal_reason == reason
    assert fake.prompt_calls["forbidden"] == 1 and res.cost_usd is None


def test_429_retry_after_http_date_then_ok(fake):
    when = email.utils.formatdate(time.time() + 1, usegmt=True)
    fake.push(PREDICT, Fault.rate_limit(retry_after=when))
    res = one(make(fake))
    assert res.status == "ok" and fake.calls[PREDICT] == 2 and res.info["attempts"] == 2


def test_429_retry_after_ms(fake):
    fake.push(CONTENT, Fault.rate_limit(retry_after_ms=50))
    res = one(make(fake, model_id=GEMINI))
    assert res.status == "ok" and fake.calls[CONTENT] == 2


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_on_a_paid_call_is_an_error_sent_once(fake, status):
    fake.push(PREDICT, Fault.server_error(status))
    res = one(make(fake))
    assert res.status == "error" and f"HTTP {status}" in res.error and fake.calls[PREDICT] == 1
    assert res.info["code"] in ("INTERNAL", "UNAVAILABLE")


@pytest.mark.parametrize("status", [400, 403])
def test_client_errors_are_not_retried(fake, status):
    fake.push(PREDICT, Fault(status))
    res = one(make(fake))
    assert res.status == "error" and fake.calls[PREDICT] == 1


def test_slow_answer_within_timeout_and_hang_past_it(fake):
    fake.push(PREDICT, Fault.slow(0.3))
    assert one(make(fake)).status == "ok"
    fake.push(PREDICT, Fault.hang(5))
    res = one(make(fake, timeout_s=0.3))
    assert res.status == "error" and "no answer" in res.error and fake.calls[PREDICT] == 2


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
    fake.push(PREDICT, Fault.rate_limit(retry_after=0))
    fake.set_outcome("forbidden", "moderated")
    out = g.generate([req(g), req(g, "forbidden")])
    text = json.dumps([{k: v for k, v in vars(r).items() if k != "image"} for r in out], default=str)
    for hay in (text, json.dumps(g.describe()), repr(vars(g)), caplog.text):
        assert KEY not in hay


@pytest.mark.filterwarnings("ignore:The generate_images method is deprecated")
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

    # generate_images runs through the Vertex AI :predict route (express mode, API key).
    vclient = genai.Client(vertexai=True, api_key=KEY,
                           http_options=types.HttpOptions(base_url=fake.url))
    r = vclient.models.generate_images(
        model=IMAGEN, prompt="a red cube",
        config=types.GenerateImagesConfig(number_of_images=2, aspect_ratio="16:9",
                                          include_rai_reason=True))
    assert [g.image.image_bytes for g in r.generated_images] == [
        prompt_png("a red cube"), prompt_png("a red cube#1")]
    assert r.generated_images[0].image.mime_type == "image/png"
    fake.set_outcome("forbidden", "moderated")
    r = vclient.models.generate_images(model=IMAGEN, prompt="forbidden",
                                       config=types.GenerateImagesConfig(include_rai_reason=True,
                                                                         number_of_images=1))
    assert r.generated_images[0].rai_filtered_reason.startswith("Your current safety filter")


def test_results_are_journaled_at_once_so_a_killed_batch_is_not_paid_again(fake, store):
    from harness.store.journal import StoreJournal

    fake.set_outcome("forbidden", "moderated")
    g = make(fake)
    g.attach_journal(StoreJournal(store))
    first = g.generate([req(g), req(g, "forbidden")])
    assert fake.calls["google.predict"] == 2
    # A run killed before the runner stored these records: the next one reuses them.
    g2 = make(fake)
    g2.attach_journal(StoreJournal(store))
    again = g2.generate([req(g2), req(g2, "forbidden")])
    assert fake.calls["google.predict"] == 2
    assert again[0].image == first[0].image and again[0].info["from_journal"]
    assert again[1].status == "refused" and again[1].refusal_reason == "RAI_FILTERED"
    assert StoreJournal(store).find(req(g).key()).state == "done"
