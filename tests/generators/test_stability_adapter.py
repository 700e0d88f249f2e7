"""StabilityImages (v2beta stable-image generate, multipart) against the fake on 127.0.0.1."""

import io
import json
import logging

import pytest
from api_helpers import api_request, request_helpers
from PIL import Image

from harness.errors import ConfigError
from harness.generators.stability import StabilityImages
from harness.testing.fakes import Fault, prompt_png

KEY = "sk-stability-planted-key-5a7c9e1b3d"
KEY_ENV = "STABILITY_API_KEY"
CORE = "/v2beta/stable-image/generate/core"
SD3 = "/v2beta/stable-image/generate/sd3"
PNG = b"\x89PNG\r\n\x1a\n"


def make(fake, model_id="stable-image-core", width=1024, height=1024, extra=None, **options):
    opts = {"base_url": fake.url, "backoff_s": 0.01, "timeout_s": 5} | options
    return StabilityImages(name="s", label="S", model_id=model_id,
                           params={"width": width, "height": height, "extra": extra or {}},
                           options=opts, batch_size=4)


req, one = request_helpers(seed=123456)


@pytest.mark.parametrize("response", ["image", "json"])
def test_multipart_form_seed_and_png(fake, response):
    res = one(make(fake, response=response), negative_prompt="blurry")
    assert res.status == "ok", res.error
    assert res.image == prompt_png("a red cube") and res.info["seed"] == 123456
    assert res.cost_usd == pytest.approx(0.03) and res.provider_request_id.startswith("req_")
    sent = fake.requests[0]
    assert sent.headers["content-type"].startswith("multipart/form-data")
    assert sent.headers["accept"] == ("image/*" if response == "image" else "application/json")
    assert sent.form.pop("none") == ""  # the empty part that makes the body multipart
    assert sent.form == {"prompt": "a red cube", "aspect_ratio": "1:1", "output_format": "png",
                         "seed": "123456", "negative_prompt": "blurry"}


def test_sd3_sends_model_and_cfg_and_jpeg_is_normalised(fake):
    g = make(fake, model_id="sd3.5-large", width=1920, height=1080, extra={"output_format": "jpeg"})
    res = one(g, guidance=4.5)
    assert res.status == "ok" and res.image.startswith(PNG)
    Image.open(io.BytesIO(res.image)).verify()
    f = fake.requests[0].form
    assert f["model"] == "sd3.5-large" and f["cfg_scale"] == "4.5" and f["aspect_ratio"] == "16:9"
    assert fake.calls[SD3] == 1 and res.cost_usd == pytest.approx(0.065)


def test_unsupported_aspect_is_a_config_error():
    with pytest.raises(ConfigError, match="aspect ratio 4:3; Stability takes"):
        StabilityImages(name="s", label="S", model_id="stable-image-core",
                        params={"width": 1024, "height": 768})
    with pytest.raises(ConfigError, match="unknown Stability model 'sdxl'"):
        StabilityImages(name="s", label="S", model_id="sdxl")


@pytest.mark.parametrize("response", ["image", "json"])
def test_content_filtered_on_200_is_a_refusal(fake, response):
    fake.set_outcome("forbidden", "filtered")
    res = one(make(fake, response=response), "forbidden")
    assert res.status == "refused" and res.refusal_reason == "CONTENT_FILTERED"
    assert res.image is None and res.info["seed"] and fake.prompt_calls["forbidden"] == 1


def test_403_content_moderation_is_a_refusal_not_retried(fake):
    fake.set_outcome("forbidden", "moderated")
    res = one(make(fake), "forbidden")
    assert res.status == "refused" and res.refusal_reason == "content_moderation"
    assert "not charged" in res.info["refusal_message"] and fake.prompt_calls["forbidden"] == 1


def test_429_retried_after_retry_after(fake):
    fake.push(CORE, Fault.rate_limit(retry_after=0.2))
    res = one(make(fake))
    assert res.status == "ok" and res.info["attempts"] == 2 and res.info["waited_s"] >= 0.2


@pytest.mark.parametrize("fault, calls", [(Fault.server_error(500), 1), (Fault(400), 1),
                                          (Fault(402), 1), (Fault(422), 1)])
def test_errors_on_a_paid_call_are_not_retried(fake, fault, calls):
    fake.push(CORE, fault)
    res = one(make(fake))
    assert res.status == "error" and fake.calls[CORE] == calls
    assert res.info["code"]  # the provider's error name (bad_request, internal_error ...)


def test_hang_is_an_error_sent_once(fake):
    fake.push(CORE, Fault.hang(5))
    res = one(make(fake, timeout_s=0.3))
    assert res.status == "error" and "may have been processed" in res.error and fake.calls[CORE] == 1


def test_server_validation_message_is_passed_on(fake):
    res = one(make(fake, extra={"output_format": "gif"}))
    assert res.status == "error" and "output_format" in res.error and "bad_request" in res.error


def test_bad_key_and_no_leak(fake, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("STABILITY_API_KEY", "sk-wrong-wrong-wrong-123")
    res = one(make(fake))
    assert res.status == "error" and "HTTP 401" in res.error
    g = make(fake)
    hay = json.dumps(g.describe()) + repr(vars(g)) + caplog.text + res.error
    assert "sk-wrong" not in hay and KEY not in hay


@pytest.mark.parametrize("config, model_id", [("stability_sd35_large", "sd3.5-large"),
                                              ("stability_sd35_flash", "sd3.5-flash")])
def test_sd35_configs_go_to_the_sd3_service_with_the_model(fake, config, model_id):
    from pathlib import Path

    import yaml

    cfg = yaml.safe_load((Path(__file__).resolve().parents[2] / "harness" / "conf" / "models"
                          / f"{config}.yaml").read_text())
    assert cfg["model_id"] == model_id and cfg["options"]["lockout_s"] == 60
    g = StabilityImages(name="s", label="S", model_id=model_id,
                        params={"width": 1024, "height": 1024, "guidance": 4.5, "extra": {}},
                        options={"base_url": fake.url, "backoff_s": 0.01})
    res = g.generate([api_request(g, "a red cube", seed=3)])[0]
    assert res.status == "ok", res.error
    sent = fake.requests[0]
    assert sent.path == "/v2beta/stable-image/generate/sd3" and sent.form["model"] == model_id
    assert sent.form["cfg_scale"] == "4.5"
