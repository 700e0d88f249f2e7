"""Instruction edits (edit_image controls) through the closed-API adapters against the fake
providers: the source reaches each provider's edit input, and the key covers it."""

import base64
import io

import pytest
from api_helpers import journaled, request_helpers
from PIL import Image

from harness.generators.bfl import BFLImages
from harness.generators.openai_images import OpenAIImages
from harness.types import sha256_hex

KEY = "edit-planted-key-4b2e91c07d"

req, one = request_helpers(seed=7)


@pytest.fixture
def source(tmp_path):
    src = tmp_path / "src.png"
    Image.new("RGB", (1024, 1024), (200, 30, 30)).save(src)
    return {"kind": "edit_image", "sha256": sha256_hex(src.read_bytes()), "params": {},
            "path": str(src)}


def test_openai_edit_sends_the_source_to_images_edits(fake, source, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    g = OpenAIImages(name="m", label="M", model_id="gpt-image-1-mini",
                     params={"width": 1024, "height": 1024, "extra": {"quality": "low"}},
                     options={"base_url": fake.url + "/v1", "backoff_s": 0.01, "timeout_s": 5})
    res = one(g, "make the square blue", controls=[source])
    assert res.status == "ok", res.error
    assert res.info["endpoint"] == "edits" and fake.calls["/v1/images/edits"] == 1
    sent = fake.requests[0]
    assert sent.form["prompt"] == "make the square blue" and "mask" not in sent.files
    got = Image.open(io.BytesIO(sent.files["image"])).convert("RGB")
    assert got.size == (1024, 1024) and got.getpixel((5, 5)) == (200, 30, 30)
    # An edit with a second control is refused before anything is sent.
    res = one(g, "make it blue", controls=[source, {**source, "kind": "mask"}])
    assert res.status == "error" and "takes no other control input" in res.error
    assert fake.calls["/v1/images/edits"] == 1


def test_bfl_edit_sends_input_image_and_the_key_covers_the_source(fake, store, source, monkeypatch):
    monkeypatch.setenv("BFL_API_KEY", KEY)
    g = journaled(BFLImages(name="b", label="B", model_id="flux-2-pro",
                            params={"width": 1024, "height": 1024},
                            options={"base_url": fake.url, "backoff_s": 0.01, "timeout_s": 5,
                                     "poll_interval_s": 0.01}), store)
    res = one(g, "make the square blue", controls=[source])
    assert res.status == "ok", res.error
    body = fake.requests[0].json
    assert body["prompt"] == "make the square blue"
    got = Image.open(io.BytesIO(base64.b64decode(body["input_image"]))).convert("RGB")
    assert got.size == (1024, 1024) and got.getpixel((5, 5)) == (200, 30, 30)
    # Another source is another request (the cache key holds the source's hash).
    other = {**source, "sha256": "0" * 64}
    assert req(g, "make the square blue", controls=[source]).key() != \
        req(g, "make the square blue", controls=[other]).key()
    # The fake refuses what BFL refuses: input_image neither a URL nor base64 image bytes.
    import httpx

    r = httpx.post(f"{fake.url}/v1/flux-2-pro", headers={"x-key": KEY},
                   json={"prompt": "x", "input_image": "not an image"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "input_image"]


def test_gemini_edit_sends_the_source_inline_after_the_instruction(fake, source, monkeypatch):
    from harness.generators.google import GoogleImages

    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    g = GoogleImages(name="g", label="G", model_id="gemini-3.1-flash-image",
                     params={"width": 1024, "height": 1024},
                     options={"base_url": fake.url + "/v1beta", "backoff_s": 0.01, "timeout_s": 5})
    res = one(g, "make the square blue", controls=[source])
    assert res.status == "ok", res.error
    (content,) = fake.requests[0].json["contents"]
    text, blob = content["parts"]
    assert text == {"text": "make the square blue"}
    assert blob["inlineData"]["mimeType"] == "image/png"
    got = Image.open(io.BytesIO(base64.b64decode(blob["inlineData"]["data"]))).convert("RGB")
    assert got.size == (1024, 1024) and got.getpixel((5, 5)) == (200, 30, 30)
    # The fake refuses an inline part that is no image, as Gemini does.
    import httpx

    bad = {"contents": [{"parts": [{"text": "x"}, {"inlineData": {"mimeType": "text/plain",
                                                                  "data": "eA=="}}]}],
           "generationConfig": {"responseModalities": ["IMAGE"]}}
    r = httpx.post(f"{fake.url}/v1beta/models/gemini-3.1-flash-image:generateContent",
                   headers={"x-goog-api-key": KEY}, json=bad)
    assert r.status_code == 400 and "input image" in r.text


@pytest.mark.parametrize("field, want_list", [("image_url", False), ("image_urls[]", True)])
def test_fal_edit_puts_a_data_uri_in_the_apps_image_field(fake, store, source, monkeypatch,
                                                          field, want_list):
    from harness.generators.fal import FalImages

    monkeypatch.setenv("FAL_KEY", KEY)
    g = journaled(FalImages(name="f", label="F", model_id="fal-ai/flux/dev",
                            params={"width": 1024, "height": 1024},
                            options={"base_url": fake.url + "/fal", "backoff_s": 0.01,
                                     "timeout_s": 5, "poll_interval_s": 0.01,
                                     "edit_input": field}), store)
    res = one(g, "make the square blue", controls=[source])
    assert res.status == "ok", res.error
    sent = fake.requests[0].json
    value = sent[field.removesuffix("[]")]
    uri = value[0] if want_list else value
    assert isinstance(value, list) == want_list
    assert uri.startswith("data:image/png;base64,")
    got = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB")
    assert got.size == (1024, 1024) and got.getpixel((5, 5)) == (200, 30, 30)


def test_replicate_edit_sends_input_image(fake, store, source, monkeypatch):
    from harness.generators.replicate import ReplicateImages

    monkeypatch.setenv("REPLICATE_API_TOKEN", KEY)
    g = journaled(ReplicateImages(name="r", label="R", model_id="black-forest-labs/flux-schnell",
                                  params={"width": 1024, "height": 1024},
                                  options={"base_url": fake.url + "/v1", "backoff_s": 0.01,
                                           "timeout_s": 5, "poll_interval_s": 0.01}), store)
    res = one(g, "make the square blue", controls=[source])
    assert res.status == "ok", res.error
    inp = fake.requests[0].json["input"]
    assert inp["prompt"] == "make the square blue"
    assert inp["input_image"].startswith("data:image/png;base64,")
