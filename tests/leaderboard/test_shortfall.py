"""A model with fewer images than planned: the report says why, per model, grouped by cause with
counts and a few example messages, from what the store holds (the messages and info the API
adapters really write); a run with every image gets no such line and no new JSON key."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

import pytest

from harness.generators.api import APIGenerator, CircuitBreaker
from harness.generators.http import ProviderError
from harness.leaderboard import build_leaderboard
from harness.leaderboard.shortfall import MAX_EXAMPLES, cause_of
from harness.leaderboard.synthetic import RUN_ID, make_store
from harness.runner.pipeline import report
from harness.store import Store
from harness.store.rows import Record
from harness.types import CIRCUIT_OPEN, GenRequest, GenResult, JournalEntry, Prompt


def _png(colour: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (48, 32), (colour, 80, 120)).save(buf, format="PNG")
    return buf.getvalue()


def _failure(e: ProviderError) -> GenResult:
    """The error result APIGenerator._timed stores for a ProviderError."""
    return GenResult(status="error", error=str(e),
                     info={"attempts": e.attempts, "http_status": e.status, "code": e.code}
                     | ({"final": e.final} if e.final else {})
                     | ({CIRCUIT_OPEN: True} if e.code == CIRCUIT_OPEN else {}))


def _outcomes() -> list[GenResult | None]:
    """What the API model got for its 16 units, in plan order (None: never ran)."""
    http = SimpleNamespace(halt=None)
    breaker = CircuitBreaker(3)
    five_hundreds = [_failure(ProviderError("openai", 500, "server_error", f"upstream failed #{i}"))
                     for i in range(3)]
    for res in five_hundreds:
        breaker.record(res, http, "api")  # opens: the rest of the model is not sent
    assert http.halt is not None
    held = _failure(ProviderError("openai", None, CIRCUIT_OPEN, http.halt))
    entry = JournalEntry(key="k", provider="openai", model="gpt-image-2", state="sending",
                         created_at="2026-12-01T10:00:00Z")
    unconfirmed = APIGenerator._unconfirmed(SimpleNamespace(name="api", provider="openai"), entry)
    quota = _failure(ProviderError("openai", 429, "insufficient_quota", "You exceeded your quota.",
                                   final="quota"))
    ok = GenResult(status="ok", image=_png(0))
    return ([ok] * 5 + five_hundreds + [unconfirmed] * 2 + [quota] + [held] * 3
            + [GenResult(status="error", error="local: CUDA out of memory")] + [None])


def _store(root, *, short: bool = True) -> Store:
    """Run ``synthetic``: ``full`` has every image; ``api`` is short for every cause (or not)."""
    store = Store(root)
    prompts = [Prompt(id=f"p{i:02d}", text=f"prompt {i}") for i in range(16)]
    units = [(f"{m}-{p.id}", m, p.id, 0) for m in ("full", "api") for p in prompts]
    store.save_run(RUN_ID, "suite", {"suite": {"version": "1", "prompts": 16}, "samples": 1, "seed": 0},
                   prompts, "h", {"full": {"label": "Full"}, "api": {"label": "Api", "kind": "api"}}, units)
    outcomes = _outcomes() if short else [GenResult(status="ok", image=_png(0))] * 16
    for i, (key, model, pid, _) in enumerate(units):
        res = GenResult(status="ok", image=_png(i)) if model == "full" else outcomes[i - 16]
        if res is not None:
            req = GenRequest(model=model, generator="g", model_id=model, revision=None, weights=None,
                             prompt_id=pid, prompt=pid, negative_prompt=None, sample=0, seed=0,
                             width=48, height=32)
            store.put_result(req, key, res)
    return store


@pytest.fixture(scope="module")
def short_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("short")
    store = _store(root / "store")
    return store, report(store, RUN_ID, SimpleNamespace(dir=str(root / "reports"), bootstrap=50))


def test_causes_grouped_with_counts_in_order(short_report):
    store, _ = short_report
    lb = build_leaderboard(store, RUN_ID, n_boot=50, gallery_prompts=0)
    assert [s.model for s in lb.short] == ["api"]  # "full" has every image: no line
    (s,) = lb.short
    assert (s.ok, s.planned) == (5, 16)
    assert [(c.kind, c.count) for c in s.causes] == [
        ("not sent", 3), ("reported", 2), ("error", 3), ("error", 1), ("error", 1), ("pending", 1)]
    assert s.line() == (
        "Api: 5/16 images — "
        "3 not sent: the circuit breaker opened after 3 failed requests in a row "
        "(models.api.options.circuit_breaker); "
        "2 reported: sent but the answer never arrived, so not sent again "
        "(models.api.options.resubmit_unconfirmed); "
        "3 error: HTTP 500 [server_error]; "
        "1 error: HTTP 429 [insufficient_quota] (quota, not retried); "
        "1 error: other; "
        "1 pending: planned, never run (running the run again resumes them)")
    assert sum(c.count for c in s.causes) + s.ok == s.planned
    assert s.line() in lb.notes
    by = {(c.kind, c.label.split(" (")[0]): c for c in s.causes}
    http500 = by[("error", "HTTP 500 [server_error]")]
    assert len(http500.examples) == MAX_EXAMPLES  # three different messages, two shown
    assert http500.examples[0].startswith("openai: HTTP 500 [server_error]: upstream failed #0")
    reported = by[("reported", "sent but the answer never arrived, so not sent again")]
    assert len(reported.examples) == 1  # the same message twice is shown once


def test_every_report_file_says_why(short_report):
    _, out = short_report
    md = (out / "leaderboard.md").read_text()
    assert "\n- Api: 5/16 images — 3 not sent: the circuit breaker opened after 3 failed" in md
    assert "\n  - 3 error: HTTP 500 [server_error] — e.g. “openai: HTTP 500 [server_error]: " \
           "upstream failed #0 (after 1 attempt)” · “openai: HTTP 500 [server_error]: upstream " \
           "failed #1 (after 1 attempt)”\n" in md
    assert "“openai: HTTP 500 [server_error]: upstream failed #2" not in md  # two examples at most
    assert "\n  - 1 error: other — e.g. “local: CUDA out of memory”\n" in md
    doc = json.loads((out / "leaderboard.json").read_text())
    (short,) = doc["short"]
    assert short["model"] == "api" and (short["ok"], short["planned"]) == (5, 16)
    assert [(c["kind"], c["count"]) for c in short["causes"]][:2] == [("not sent", 3), ("reported", 2)]
    assert any(n.startswith("Api: 5/16 images — ") for n in doc["notes"])
    html = (out / "leaderboard.html").read_text()
    assert "<li>Api: 5/16 images — 3 not sent: the circuit breaker opened" in html
    assert "<li>1 error: other — e.g. “local: CUDA out of memory”</li>" in html


def test_nothing_short_nothing_said(tmp_path):
    store = _store(tmp_path / "store", short=False)
    out = report(store, RUN_ID, SimpleNamespace(dir=str(tmp_path / "reports"), bootstrap=50))
    assert build_leaderboard(store, RUN_ID, n_boot=50, gallery_prompts=0).short == []
    assert "images —" not in (out / "leaderboard.md").read_text()
    assert "short" not in json.loads((out / "leaderboard.json").read_text())
    # refusals alone are results (the refusal rate), not a shortfall
    refusing = make_store(tmp_path / "refusing", refuse_all=("gamma",), votes_per_pair=0)
    assert build_leaderboard(refusing, RUN_ID, n_boot=50, gallery_prompts=0).short == []


def _record(error: str | None, info: dict) -> Record:
    return Record(key="k", model="m", prompt_id="p", sample=0, seed=0, request={}, status="error",
                  image_sha256=None, width=None, height=None, refusal_reason=None, error=error,
                  latency_s=None, cost_usd=None, provider_request_id=None, device=None, dtype=None,
                  info=info, attempts=1, created_at="")


@pytest.mark.parametrize(("error", "info", "expected"), [
    (str(ProviderError("bfl", None, "ReadTimeout", "timed out", attempts=5)),
     {"http_status": None, "code": "ReadTimeout"}, ("error", "no answer [ReadTimeout]")),
    ("x: not sent: an earlier request was refused for auth reasons (HTTP 401 [bad_key]: no), so ...",
     {"code": CIRCUIT_OPEN}, ("not sent", "an earlier request was refused for auth reasons")),
    (None, {CIRCUIT_OPEN: True}, ("not sent", "held back (circuit open)")),
    ("fal: job 1 still IN_PROGRESS after 600s (options.deadline_s)", {"polls": 9}, ("error", "other")),
])
def test_cause_labels_come_from_info_not_the_provider(error, info, expected):
    assert cause_of(_record(error, info)) == expected
