"""OpenAIImages against the fake OpenAI server on 127.0.0.1 (no mocks)."""

import base64
import dataclasses
import hashlib
import io
import json
import logging
from pathlib import Path

import pytest
from api_helpers import request_helpers
from PIL import Image

from harness import cli
from harness.errors import ConfigError
from harness.generators.openai_images import OpenAIImages
from harness.generators.openai_spec import sdk_spec
from harness.testing.fakes import Fault

KEY = "sk-planted-test-key-7f3a9c2e5b1d"
KEY_ENV = "OPENAI_API_KEY"
GEN = "/v1/images/generations"
EDIT = "/v1/images/edits"


def make(fake, model_id="gpt-image-1-mini", width=1024, height=1024, quality="medium", **options):
    opts = {"base_url": fake.url + "/v1", "backoff_s": 0.01, "timeout_s": 5} | options
    return OpenAIImages(name="m", label="M", model_id=model_id,
                        params={"width": width, "height": height, "extra": {"quality": quality}},
                        options=opts, batch_size=4)


req, one = request_helpers(seed=0)


def test_happy_path_png_request_id_cost(fake):
    g = make(fake)
    res = one(g)
    assert res.status == "ok", res.error
    assert res.image[:8] == b"\x89PNG\r\n\x1a\n"
    Image.open(io.BytesIO(res.image)).verify()
    assert res.provider_request_id.startswith("req_")
    assert res.cost_usd == pytest.approx(0.011)  # gpt-image-1-mini, medium, 1024x1024
    assert res.info["price_source"]["as_of"] and res.info["usage"]["output_tokens"]
    assert res.latency_s > 0 and res.info["attempts"] == 1
    sent = fake.requests[0].json
    assert sent == {"model": "gpt-image-1-mini", "prompt": "a red cube", "size": "1024x1024",
                    "quality": "medium", "n": 1}  # no response_format: GPT image models refuse it


def test_batch_runs_concurrently_and_in_order(fake):
    g = make(fake)
    prompts = [f"prompt {i}" for i in range(4)]
    out = g.generate([req(g, p) for p in prompts])
    assert [r.status for r in out] == ["ok"] * 4
    from harness.testing.fakes import prompt_png
    assert [r.image for r in out] == [prompt_png(p) for p in prompts]


def test_429_retry_after_then_success(fake):
    fake.push(GEN, Fault.rate_limit(retry_after=1))
    res = one(make(fake))
    assert res.status == "ok" and fake.calls[GEN] == 2
    assert res.info["waited_s"] >= 1.0 and res.latency_s >= 1.0


def test_5xx_on_a_paid_submit_is_an_error_never_resubmitted_in_the_run(fake):
    # A 5xx answer means the submit reached the server: it may have been billed.
    fake.push(GEN, Fault.server_error(503))
    res = one(make(fake))
    assert res.status == "error" and "HTTP 503" in res.error and fake.calls[GEN] == 1


def test_retry_budget_exhausted_is_an_error_result(fake):
    fake.push(GEN, *[Fault.rate_limit(retry_after=0)] * 4)
    res = one(make(fake, max_retries=2))
    assert res.status == "error" and "HTTP 429" in res.error and fake.calls[GEN] == 3
    assert res.info["attempts"] == 3


def test_401_is_an_error_not_retried(fake, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-some-other-key-000000")
    res = one(make(fake))
    assert res.status == "error" and "invalid_api_key" in res.error and fake.calls[GEN] == 1
    assert "sk-some-other" not in res.error


def test_missing_key_names_the_variable(fake, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    g = make(fake)  # constructing never needs the key
    with pytest.raises(ConfigError, match="OPENAI_API_KEY is not set"):
        one(g)
    assert fake.calls[GEN] == 0


@pytest.mark.parametrize("fault, model, quality, code", [
    (Fault.moderation(), "gpt-image-1-mini", "medium", "moderation_blocked"),
    (Fault.content_policy(), "gpt-image-2.5-sunburst", "high", "content_policy_violation"),
])
def test_moderation_is_a_refusal_not_retried(fake, fault, model, quality, code):
    fake.push_for_prompt("something forbidden", fault)
    res = one(make(fake, model_id=model, quality=quality), "something forbidden")
    assert res.status == "refused" and res.refusal_reason == code and res.image is None
    assert fake.prompt_calls["something forbidden"] == 1


def test_timeout_on_submit_is_an_error_sent_once(fake):
    fake.push(GEN, Fault.hang(5))
    res = one(make(fake, timeout_s=0.3))
    assert res.status == "error" and "no answer" in res.error
    assert fake.calls[GEN] == 1  # never billed twice


@pytest.mark.parametrize("model", sorted(sdk_spec().retired))
def test_a_retired_model_fails_at_construction_with_the_sdks_date_and_replacement(fake, model):
    gone = sdk_spec().retired[model]
    with pytest.raises(ConfigError) as e:
        make(fake, model_id=model)
    msg = str(e.value)
    assert f"{model} was {gone.verb} on {gone.on.isoformat()}; use {gone.use}" in msg
    assert "models.m.model_id" in msg and "openai SDK" in msg
    assert fake.calls[GEN] == 0


def test_the_retirement_messages_name_the_dates_the_sdk_gives():
    # Read from openai/types/image_model.py of the installed SDK; these two are what 3.57 says.
    msgs = {m: r.message() for m, r in sdk_spec().retired.items()}
    assert msgs["dall-e-3"] == "dall-e-3 was retired on 2026-05-12; use a GPT image model"
    assert msgs["gpt-image-1"] == ("gpt-image-1 was shut down on 2026-10-23; use "
                                   "gpt-image-2.5-sunburst or gpt-image-2.5-flare")


def test_an_unknown_model_suggests_the_current_ones(fake):
    with pytest.raises(ConfigError, match=r"'gpt-image-25-sunburst' is not an image model.*"
                       r"Did you mean 'gpt-image-2.5-sunburst'.*pip install -U openai"):
        make(fake, model_id="gpt-image-25-sunburst")


def test_free_size_on_a_2_5_model_goes_through_unpriced(fake):
    res = one(make(fake, model_id="gpt-image-2.5-sunburst-2026-09-08", quality="xhigh",
                   width=1536, height=864))
    assert res.status == "ok", res.error
    assert fake.requests[0].json["size"] == "1536x864"
    assert "response_format" not in fake.requests[0].json
    assert res.cost_usd is None and res.info["price_source"] is None  # no official price row


@pytest.mark.parametrize("model, w, h, valid", [
    ("gpt-image-1-mini", 512, 512, "Valid width x height: 1024x1024, 1536x1024, 1024x1536"),
    ("gpt-image-1-mini", 1536, 864, "Valid width x height: 1024x1024, 1536x1024, 1024x1536"),
    ("gpt-image-2.5-flare", 1000, 1000, "divisible by 16"),
    ("gpt-image-2", 3072, 864, r"aspect ratio between 1:3 and 3:1"),
    ("gpt-image-2", 4096, 2048, r"at most 3840x2160"),
])
def test_bad_size_is_a_config_error_saying_what_the_sdk_allows(fake, model, w, h, valid):
    with pytest.raises(ConfigError, match=f"does not make {w}x{h}.*{valid}"):
        make(fake, model_id=model, width=w, height=h)


@pytest.mark.parametrize("model, quality, match", [
    ("gpt-image-1-mini", "xhigh", "Valid: low, medium, high, auto"),
    ("gpt-image-2", "max", "Valid: low, medium, high, auto"),
    ("gpt-image-2.5-flare", "standard", "retired DALL-E models only"),
])
def test_bad_quality_is_a_config_error(fake, model, quality, match):
    with pytest.raises(ConfigError, match=match):
        make(fake, model_id=model, quality=quality)


@pytest.mark.parametrize("extra, match", [
    ({"response_format": "b64_json"}, "legacy field of retired models"),
    ({"style": "vivid"}, "legacy field of retired models"),
    ({"qualty": "low"}, "Did you mean 'quality'"),
    ({"size": "1024x1024"}, "not a field the harness can set"),
])
def test_extra_fields_are_checked_against_the_sdks_params(fake, extra, match):
    with pytest.raises(ConfigError, match=match):
        OpenAIImages(name="m", label="M", model_id="gpt-image-1-mini",
                     params={"width": 1024, "height": 1024, "extra": extra},
                     options={"base_url": fake.url + "/v1"})


def _control(tmp_path, kind, im):
    p = tmp_path / f"{kind}.png"
    im.save(p)
    return {"kind": kind, "sha256": hashlib.sha256(p.read_bytes()).hexdigest(), "params": {},
            "path": str(p)}


def test_inpainting_sends_an_alpha_mask_transparent_where_harness_mask_is_white(fake, tmp_path):
    g = make(fake)
    init = Image.new("RGB", (1024, 1024), (10, 200, 30))
    mask = Image.new("L", (1024, 1024), 0)
    mask.paste(255, (100, 200, 600, 700))  # white = area to edit
    controls = [_control(tmp_path, "init_image", init), _control(tmp_path, "mask", mask)]
    res = one(g, "add a cat", controls=controls)
    assert res.status == "ok", res.error
    assert fake.calls[EDIT] == 1 and fake.calls[GEN] == 0 and res.info["endpoint"] == "edits"
    sent = fake.requests[0]
    assert sent.form["prompt"] == "add a cat" and sent.form["size"] == "1024x1024"
    m = Image.open(io.BytesIO(sent.files["mask"]))
    assert m.mode == "RGBA"
    want = mask.point(lambda v: 0 if v == 255 else 255).tobytes()
    assert m.getchannel("A").tobytes() == want
    assert Image.open(io.BytesIO(sent.files["image"])).size == (1024, 1024)


def test_official_sdk_parses_the_fake(fake):
    import openai
    from openai import OpenAI

    client = OpenAI(api_key=KEY, base_url=fake.url + "/v1", max_retries=0)
    r = client.images.generate(model="gpt-image-1-mini", prompt="a red cube", size="1024x1024",
                               quality="low", n=1)
    assert base64.b64decode(r.data[0].b64_json)[:4] == b"\x89PNG"
    assert r.usage.output_tokens > 0 and r.created > 0
    assert r.quality == "low" and r.size == "1024x1024" and r.output_format == "png"
    r2 = client.images.generate(model="gpt-image-2.5-sunburst", prompt="a red cube",
                                size="1536x864", quality="max", output_format="webp")
    assert r2.size == "1536x864" and r2.quality == "max" and r2.output_format == "webp"
    assert base64.b64decode(r2.data[0].b64_json)[:4] == b"RIFF"
    with pytest.raises(openai.BadRequestError) as e:  # the SDK: unsupported for GPT image models
        client.images.generate(model="gpt-image-2", prompt="x", response_format="b64_json")
    assert e.value.code == "unknown_parameter" and e.value.param == "response_format"
    with pytest.raises(openai.NotFoundError) as e:  # retired: the SDK's docstring says so
        client.images.generate(model="dall-e-3", prompt="x", size="1024x1024")
    assert e.value.code == "model_not_found"

    fake.push(GEN, Fault.moderation())
    with pytest.raises(openai.BadRequestError) as e:
        client.images.generate(model="gpt-image-1-mini", prompt="x")
    assert e.value.code == "moderation_blocked"
    with pytest.raises(openai.AuthenticationError):
        OpenAI(api_key="sk-wrong", base_url=fake.url + "/v1", max_retries=0).images.generate(
            model="gpt-image-1-mini", prompt="x")


def test_official_sdk_edits_against_the_fake(fake):
    from openai import OpenAI

    client = OpenAI(api_key=KEY, base_url=fake.url + "/v1", max_retries=0)
    buf = io.BytesIO()
    Image.new("RGB", (1024, 1024), (10, 200, 30)).save(buf, format="PNG")
    r = client.images.edit(model="gpt-image-2.5-flare", image=("in.png", buf.getvalue(), "image/png"),
                           prompt="add a cat", size="1024x1024", quality="xhigh")
    assert base64.b64decode(r.data[0].b64_json)[:4] == b"\x89PNG" and r.quality == "xhigh"
    assert fake.calls[EDIT] == 1 and fake.requests[0].form["model"] == "gpt-image-2.5-flare"


def test_key_never_leaks_into_repr_describe_results_or_logs(fake, caplog):
    caplog.set_level(logging.DEBUG)
    g = make(fake)
    fake.push(GEN, Fault.rate_limit(retry_after_ms=10))
    fake.push_for_prompt("forbidden", Fault.moderation())
    results = g.generate([req(g, "a red cube"), req(g, "forbidden")])
    fake.push(GEN, Fault.server_error(500), *[Fault(400)] * 2)
    results += g.generate([req(g, "x")])
    assert [r.status for r in results] == ["ok", "refused", "error"]
    haystack = [repr(g), json.dumps(g.describe()), repr(vars(g)), repr(g._http), caplog.text]
    for r in results:
        d = dataclasses.asdict(r)
        d.pop("image")
        haystack += [json.dumps(d, default=str), repr(d)]
    for text in haystack:
        assert KEY not in text
    g.close()
    assert KEY not in repr(vars(g))


def test_paid_answers_are_journaled_at_once_so_a_killed_batch_is_not_paid_again(fake, store):
    from harness.store.journal import StoreJournal

    fake.push_for_prompt("forbidden", Fault.moderation())
    fake.push_for_prompt("x", Fault.server_error(503))  # an error, not journaled
    g = make(fake)
    g.attach_journal(StoreJournal(store))
    first = g.generate([req(g, "x"), req(g, "a red cube"), req(g, "forbidden")])
    assert [r.status for r in first] == ["error", "ok", "refused"] and fake.calls[GEN] == 3
    journal = StoreJournal(store)
    assert journal.find(req(g, "x").key()) is None  # a later run may send it again
    entry = journal.find(req(g, "a red cube").key())
    assert entry.state == "done" and entry.provider == "openai" and journal.image(entry) == first[1].image
    assert entry.outcome["cost_usd"] == pytest.approx(0.011)
    # A run killed before the runner stored these records: the next one reuses them.
    g2 = make(fake)
    g2.attach_journal(StoreJournal(store))
    again = g2.generate([req(g2, "a red cube"), req(g2, "forbidden")])
    assert fake.calls[GEN] == 3
    assert again[0].image == first[1].image and again[0].info["from_journal"]
    assert again[1].status == "refused" and again[1].refusal_reason == "moderation_blocked"

def test_a_paid_answer_that_cannot_be_read_is_journaled_and_not_paid_again(fake, store):
    from harness.store.journal import StoreJournal

    broken = {"created": 1, "data": [{"b64_json": "%%% not base64 %%%"}]}
    fake.push_for_prompt("garbled", Fault(200, broken, processed=True))
    g = make(fake)
    g.attach_journal(StoreJournal(store))
    first = one(g, "garbled")
    assert first.status == "error" and "may have been billed" in first.error
    assert first.info["final"] and fake.paid_stats()["openai"]["paid"] == 1
    entry = StoreJournal(store).find(req(g, "garbled").key())
    assert entry.state == "done" and entry.outcome["status"] == "error"
    # The next run reports the journaled answer instead of paying for the image again ...
    g2 = make(fake)
    g2.attach_journal(StoreJournal(store))
    again = one(g2, "garbled")
    assert again.status == "error" and again.info["from_journal"] and fake.calls[GEN] == 1
    # ... unless the user asks for it to be sent anew.
    g3 = make(fake, resubmit_unconfirmed=True)
    g3.attach_journal(StoreJournal(store))
    assert one(g3, "garbled").status == "ok" and fake.calls[GEN] == 2


def _all_bytes(folder: Path) -> list[tuple[Path, bytes]]:
    return [(p, p.read_bytes()) for p in folder.rglob("*") if p.is_file()]


def test_end_to_end_run_stores_no_key_and_resumes_without_submits(fake, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HARNESS_STORE", raising=False)
    store, reports = tmp_path / "store", tmp_path / "reports"
    overrides = ["models=[openai_gpt_image]",
                 f"models.openai_gpt_image.options.base_url={fake.url}/v1",
                 "models.openai_gpt_image.options.backoff_s=0.01",
                 f"store.root={store}", f"report.dir={reports}", "suite.limit=2",
                 "metrics=[colorfulness]", "progress=false"]
    out = cli.dispatch(cli.compose(overrides))
    assert fake.calls[GEN] == 2, out
    files = _all_bytes(store) + _all_bytes(reports)
    assert files and any(p.suffix == ".png" for p, _ in files)
    for p, data in files:
        assert KEY.encode() not in data, p
    cli.dispatch(cli.compose(overrides))
    assert fake.calls[GEN] == 2  # everything was stored: no new submits
