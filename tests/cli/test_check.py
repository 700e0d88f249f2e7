"""``harness check`` (preflight, nothing paid) and the checks ``harness run`` makes first, against
the fake providers: keys, models listed by the providers' free metadata calls, prices and their
age, the run's estimate against ``run.max_cost_usd``, and exit 2 with what is missing."""

from pathlib import Path

import pytest

from harness import cli
from harness.errors import UserError
from harness.store import Store
from harness.testing.fakes import FakeProviders

KEY = "sk-check-test-key-5d41402abc4b2a76"
ENV = ("OPENAI_API_KEY", "REPLICATE_API_TOKEN", "FAL_KEY", "STABILITY_API_KEY", "GEMINI_API_KEY")
PAID = ("/v1/images/generations", "replicate.create", "fal.submit", "google.generateContent",
        "/v2beta/stable-image/generate/core")
"""The fake's routes that would cost money."""


@pytest.fixture
def fake(workdir, monkeypatch):
    for var in ENV:
        monkeypatch.setenv(var, KEY)
    with FakeProviders(api_key=KEY) as f:
        yield f


def overrides(fake, models, *extra, limit=3):
    base = {"openai_gpt_image_mini": "/v1", "replicate_flux_schnell": "/v1",
            "fal_flux_dev": "/fal", "stability_core": "", "gemini_image": "/v1beta"}
    out = [f"suite.limit={limit}", "samples=2", "progress=false", "metrics=[colorfulness]",
           f"models=[{','.join(models)}]"]
    out += [f"models.{m}.options.base_url={fake.url}{base[m]}" for m in models if m in base]
    return out + [f"models.{m}.options.backoff_s=0.01" for m in models if m in base] + list(extra)


def check(fake, models, *extra, limit=3):
    return cli.dispatch(cli.compose(["command=check", *overrides(fake, models, *extra,
                                                                   limit=limit)]))


def test_check_reports_keys_models_prices_and_the_estimate_paying_nothing(fake, capsys):
    res = check(fake, ["openai_gpt_image_mini", "replicate_flux_schnell", "fal_flux_dev",
                       "stability_core", "toy_unet"], "run.max_cost_usd=50")
    out = capsys.readouterr().out
    assert res["missing"] == []
    assert "OPENAI_API_KEY is set" in out and KEY not in out
    # Each provider's free model call, as its official client makes it.
    assert "openai lists gpt-image-1-mini" in out
    assert "replicate lists black-forest-labs/flux-schnell" in out
    assert "fal lists fal-ai/flux/dev (active)" in out
    assert "not checkable: stability offers no free call" in out
    assert fake.calls["openai.model"] == fake.calls["replicate.model"] == 1
    assert fake.calls["fal.models"] == 1
    assert not any(fake.calls[p] for p in PAID), dict(fake.calls)
    # Prices: OpenAI's medium 1024x1024 row of gpt-image-1-mini is $0.011; Replicate's schnell
    # row (as of 2025-06-01) is past check.max_price_age_days=180 on 2026-12-01: a warning.
    assert "$0.011 per image (as of 2026-12-01" in out
    assert "days old (check.max_price_age_days=180)" in out
    assert "toy_unet: local, no API cost (6 of 6 images to generate)" in out
    # 4 API models x 3 prompts x 2 samples = 24 requests; hand sum of the rows:
    # 6 x (0.011 + 0.003 + 0.025) + 6 x stability core's row.
    from harness.prices import price_per_image

    core = price_per_image("stability", "stable-image-core", "1024x1024", None)[0]
    total = 6 * (0.011 + 0.003 + 0.025) + 6 * core
    assert f"this run sends 24 requests, about ${total:.3g}" in out
    assert "run.max_cost_usd stops at $50.00" in out


def test_check_exits_2_listing_what_is_missing(fake, monkeypatch, capsys):
    monkeypatch.delenv("OPENAI_API_KEY")
    args = overrides(fake, ["openai_gpt_image_mini", "replicate_flux_schnell", "gemini_image"],
                     "models.replicate_flux_schnell.model_id=acme/no-such-model",
                     "run.max_cost_usd=0.01")
    assert cli.main(["check", *args]) == 2
    err = capsys.readouterr().err
    assert "the run cannot go yet" in err
    assert "models.openai_gpt_image_mini: key: OPENAI_API_KEY is not set" in err
    assert "does not list acme/no-such-model" in err
    # gemini-3.1-flash-image has no price row: under a cap that is missing, with the fix.
    assert "models.gemini_image.price_per_image" in err
    assert "passes run.max_cost_usd=0.01" in err
    assert not any(fake.calls[p] for p in PAID)
    assert not Path("store/harness.sqlite").exists()  # check never creates a store


def test_quality_left_to_the_provider_is_priced_at_the_dearest_row(fake, capsys):
    check(fake, ["openai_gpt_image_mini"], "models.openai_gpt_image_mini.params.extra.quality=null",
          "check.online=false")
    out = capsys.readouterr().out
    # gpt-image-1-mini at 1024x1024: low 0.005, medium 0.011, high 0.036.
    assert "$0.036 per image" in out and "priced at the dearest listed (high)" in out
    assert "not asked (check.online=false)" in out and not fake.calls["openai.model"]


def test_run_refuses_before_sending_when_the_estimate_passes_the_cap(fake):
    args = overrides(fake, ["openai_gpt_image_mini"], "run.max_cost_usd=0.05")
    with pytest.raises(UserError) as e:
        cli.dispatch(cli.compose(["command=run", *args]))
    # 6 requests x $0.011 = $0.066 > $0.05: both numbers and the key to raise.
    assert "$0.066 for 6 requests" in str(e.value)
    assert "passes run.max_cost_usd=0.05" in str(e.value) and "run.max_cost_usd=1" in str(e.value)
    assert not fake.calls["/v1/images/generations"]
    store = Store("store", create=False)
    assert store.runs() == []


def test_run_refuses_a_missing_key_before_any_model_runs(fake, monkeypatch):
    monkeypatch.delenv("FAL_KEY")
    args = overrides(fake, ["replicate_flux_schnell", "fal_flux_dev"])
    with pytest.raises(UserError, match="models.fal_flux_dev: FAL_KEY is not set"):
        cli.dispatch(cli.compose(["command=run", *args]))
    assert not fake.calls["replicate.create"]  # the other model did not go first


def test_check_counts_only_what_is_not_stored(fake, capsys):
    poll = "models.replicate_flux_schnell.options.poll_interval_s=0.01"
    cli.dispatch(cli.compose(["command=generate", *overrides(fake, ["replicate_flux_schnell"],
                                                             poll, limit=2)]))
    capsys.readouterr()
    # Three prompts now: the four images of the first two are stored (keys are content
    # hashes), so two requests are left, and the stored ones cost 4 x $0.003.
    res = check(fake, ["replicate_flux_schnell"], "run.max_cost_usd=1")
    out = capsys.readouterr().out
    assert res["missing"] == [] and "2 of 6 images to generate: about $0.006" in out
    assert "this run sends 2 requests, about $0.006, after $0.012 already spent" in out
    check(fake, ["replicate_flux_schnell"], limit=2)
    out = capsys.readouterr().out
    assert "0 of 4 images to generate" in out and "not asked: every image is already stored" in out


HOSTED = {"fal_seedream_v4": 0.03, "fal_seedream_v5_pro": 0.0675, "fal_recraft_v41": 0.04,
          "fal_qwen_image_2": 0.035, "fal_qwen_image_2_pro": 0.075}
"""The current hosted models shipped for fal, with the 1024x1024 price of their dated row."""


def test_current_hosted_models_are_checked_priced_and_generated(fake, capsys):
    """Each shipped fal config: listed by the Platform API, priced from a dated row with its
    source, and one image per prompt generated through the queue with that price recorded."""
    models = list(HOSTED)
    fast = [f"models.{m}.options.{k}" for m in models
            for k in (f"base_url={fake.url}/fal", "backoff_s=0.01", "poll_interval_s=0.01")]
    args = [f"models=[{','.join(models)}]", "suite.limit=2", "samples=1", "progress=false",
            "metrics=[colorfulness]", *fast]
    res = cli.dispatch(cli.compose(["command=check", *args]))
    out = capsys.readouterr().out
    assert res["missing"] == [], out
    from omegaconf import OmegaConf

    for m, price in HOSTED.items():
        model_id = OmegaConf.load(Path(cli.__file__).parent / "conf" / "models" / f"{m}.yaml")
        assert f"fal lists {model_id.model_id} (active)" in out
        assert f"${price:g} per image (as of 2026-12-01" in out
    cli.dispatch(cli.compose(["command=generate", *args]))
    store = Store("store", create=False)
    run = store.runs()[-1]
    recs = store.records(run.run_id)
    assert sorted({r.model for r in recs}) == sorted(models) and len(recs) == 2 * len(models)
    for r in recs:
        assert r.status == "ok" and r.cost_usd == pytest.approx(HOSTED[r.model])
