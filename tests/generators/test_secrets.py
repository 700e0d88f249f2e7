"""Keys never leave the HTTP client: any 6+ character piece of a configured key, and the masked
echo a provider sends back on a 401, are scrubbed from error results, log records and the
console; signed result URLs' query strings stay out of the logs. The last test plants two keys
in a ``harness run`` subprocess against the fakes and looks for them everywhere it wrote."""

import logging
import os
import subprocess
import sys

import pytest

from harness.generators.http import register_secret, scrub
from harness.store import Store
from harness.testing.fakes import DEMO_MODELS, FakeProviders, base_urls
from harness.testing.fakes.openai import masked_key

KEY = "Kq8Vz2Lm5Rx7Tb1Wn4Hj6Gc9Pf3Ds0Ya"
OPENAI_KEY = "sk-zz9PLANq7Xv2Rk8Wm4Tj6Hb3Nc5Yd1b4d"


def pieces(key, n=6):
    return [key[i:i + n] for i in range(len(key) - n + 1)]


# -- scrub ------------------------------------------------------------------------------------


def test_any_six_character_piece_of_a_key_is_scrubbed():
    for a, b in [(0, 6), (5, 17), (20, len(KEY)), (0, len(KEY))]:
        out = scrub(f"before {KEY[a:b]} after", (KEY,))
        assert out == "before *** after", (a, b, out)
    # Two pieces, cut apart by the provider's own text.
    out = scrub(f"{KEY[:10]}...{KEY[-8:]}", (KEY,))
    assert not any(p in out for p in pieces(KEY))
    # Shorter runs are kept: they say nothing about the key and occur in plain text.
    assert scrub(f"x {KEY[:5]} y", (KEY,)) == f"x {KEY[:5]} y"


@pytest.mark.parametrize("echo", [
    "zz9PLAN***\u20261b4d",  # the example
    "sk-abc***...wxyz",
    "sk-VKMIs***************************************wjh3",  # OpenAI's 401, as users quote it
    "sk-proj-********************************MxYA",
    masked_key(OPENAI_KEY),  # what the OpenAI fake echoes
])
def test_masked_echoes_are_scrubbed(echo):
    out = scrub(f"Incorrect API key provided: {echo}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.")
    assert echo not in out and "*****" not in out.replace("***", "", 1)
    assert out.startswith("Incorrect API key provided: ***.")


def test_key_shapes_query_strings_and_plain_names():
    assert scrub("token r8_AbCdEf0123456789xyz used") == "token *** used"
    assert (scrub("GET https://cdn.example/x/a.png?se=1700000000&sig=abcdef0123 failed")
            == "GET https://cdn.example/x/a.png?*** failed")
    for plain in ("fal_flux_dev/abc123#0 failed", "models.sk_model.options", "key_help",
                  "replicate_flux_schnell", "https://api.bfl.ai/v1/flux-pro-1.1"):
        assert scrub(plain, registered=False) == plain  # (the test keys hold words)


def test_log_records_are_scrubbed_whatever_handler_writes_them(caplog):
    secret = "Zr4Tq9Wx2Vb7Nm5Lk8Jh3Gf6Dc1Sa0Pe"
    register_secret(secret)
    log = logging.getLogger("harness.test_secrets")
    with caplog.at_level(logging.INFO):
        log.warning("provider said: bad key %s (%s)", secret, secret[3:15])
        try:
            raise RuntimeError(f"boom with {secret}")
        except RuntimeError:
            log.exception("failed")
        log.info("download https://cdn.example/img.png?sig=0123456789abcdef done")
    assert secret not in caplog.text and secret[3:15] not in caplog.text
    assert "boom with ***" in caplog.text and "sig=" not in caplog.text
    # httpx's per-request INFO line carries signed URLs: it is kept out of the logs.
    assert logging.getLogger("httpx").getEffectiveLevel() >= logging.WARNING


# -- a harness run, end to end ------------------------------------------------------------------


def test_planted_keys_and_the_masked_echo_are_nowhere_after_a_run(tmp_path):
    """OpenAI gets a wrong planted key (the fake answers 401 echoing it masked, as OpenAI
    does); BFL gets the right one, and its results come from signed URLs (``?se=..&sig=..``).
    Neither key, no 6-character piece of either, nor the echo is in the store, the run log,
    the reports, Hydra's outputs or the console; no signed query string is in a log."""
    openai_model, bfl_model = DEMO_MODELS["openai"], DEMO_MODELS["bfl"]
    console = tmp_path / "console.log"
    with FakeProviders(api_key=KEY) as fake:
        urls = base_urls(fake.url)
        args = [f"models=[{openai_model},{bfl_model}]", "suite.limit=2", "samples=2",
                "run.name=sec", "progress=false", "metrics=[colorfulness]",
                f"store.root={tmp_path / 'store'}", f"report.dir={tmp_path / 'reports'}",
                f"models.{openai_model}.options.base_url={urls['openai']}",
                f"models.{openai_model}.options.backoff_s=0.01",
                f"models.{openai_model}.options.concurrency=1",  # the rest is held back
                f"models.{bfl_model}.options.base_url={urls['bfl']}",
                f"models.{bfl_model}.options.poll_interval_s=0.02",
                f"models.{bfl_model}.options.backoff_s=0.01"]
        env = {**os.environ, "OPENAI_API_KEY": OPENAI_KEY, "BFL_API_KEY": KEY}
        env.pop("HARNESS_STORE", None)
        with open(console, "wb") as out:
            proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", *args], env=env,
                                  cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=300)
        text = console.read_text(errors="replace")
        assert proc.returncode == 0, text[-3000:]
        # One 401 and the rest of the model held back (an auth refusal stops it).
        assert fake.calls["/v1/images/generations"] == 1, dict(fake.calls)

    store = Store(tmp_path / "store", create=False)
    recs = {m: [r for r in store.records("sec") if r.model == m] for m in (openai_model, bfl_model)}
    store.close()
    assert len(recs[bfl_model]) == 4 and all(r.status == "ok" for r in recs[bfl_model])
    errors = sorted(r.error for r in recs[openai_model])
    assert len(errors) == 4 and all(r.status == "error" for r in recs[openai_model])
    assert all("Incorrect API key provided: ***." in e for e in errors), errors
    assert sum(e.startswith("openai: HTTP 401 [invalid_api_key]") for e in errors) == 1, errors
    assert sum(e.startswith("openai: not sent: ") and "auth" in e for e in errors) == 3, errors

    files = [p for p in tmp_path.rglob("*") if p.is_file() and p != console]
    assert any(p.name == "run.log" for p in files) and any(p.suffix == ".md" for p in files)
    needles = [k.encode() for k in (*pieces(KEY), *pieces(OPENAI_KEY), masked_key(OPENAI_KEY))]
    for path in [*files, console]:
        data = path.read_bytes()
        found = [n for n in needles if n in data]
        assert not found, (path, found)
    for path in [console, *(p for p in files if p.suffix == ".log")]:
        assert b"sig=" not in path.read_bytes(), path
