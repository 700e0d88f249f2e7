"""``run.max_cost_usd`` while a run goes: the executor stops cleanly before the batch that would
pass the cap, what is stored stays, and a run with a higher cap resumes without paying twice
(paid submits counted by the fake server)."""

import pytest

from harness import cli
from harness.assemble import build_job
from harness.config import validate
from harness.runner import pipeline
from harness.runner.preflight import Budget
from harness.testing.fakes import FakeProviders
from harness.types import GenResult

KEY = "sk-cap-test-key-9e107d9d372bb6826bd8"
MODEL = "openai_gpt_image_mini"  # $0.011 a 1024x1024 medium image (harness/data/prices.yaml)


@pytest.fixture
def fake(workdir, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with FakeProviders(api_key=KEY) as f:
        yield f


def job(fake, command="generate", *extra):
    cfg = cli.compose([f"command={command}", "suite.limit=3", "samples=2", "run.name=cap",
                       "progress=false", "metrics=[colorfulness]", f"models=[{MODEL}]",
                       f"models.{MODEL}.options.base_url={fake.url}/v1", f"models.{MODEL}.batch_size=2",
                       *extra])
    return build_job(validate(cfg))


def test_the_run_stops_before_the_batch_that_would_pass_the_cap_then_resumes(fake):
    j = job(fake)
    # Room for two batches of two ($0.044), not a third ($0.066).
    budget = Budget(0.045, 0.0, {MODEL: 0.011})
    pipeline.save_plan(j.store, j.plan, {})
    stats = pipeline.generate(j.store, j.plan, j.executor, budget=budget)
    assert fake.calls["/v1/images/generations"] == 4
    assert stats.stopped and "run.max_cost_usd=0.045 reached" in stats.stopped
    assert "run the same command again with a higher cap" in stats.stopped
    assert budget.spent == pytest.approx(0.044)
    counts = j.store.unit_counts("cap")[MODEL]
    assert (counts.ok, counts.pending) == (4, 2)
    assert j.store.run("cap").status == "incomplete"
    lines = pipeline.summary_lines(j.store, "cap", stats)
    assert lines[-1].startswith("stopped: run.max_cost_usd=0.045 reached")

    # A higher cap: the preflight counts the $0.044 already spent, the run sends the rest.
    again = job(fake, "generate", "run.max_cost_usd=0.08")
    said = []
    pipeline.run("generate", again.store, again.run_id, plan=again.plan, executor=again.executor,
                 settings=again.settings, echo=said.append)
    assert fake.calls["/v1/images/generations"] == 6  # 6 images, 6 paid submits: none twice
    assert "this run sends 2 requests, about $0.022, after $0.044 already spent" in said[0]
    assert again.store.unit_counts("cap")[MODEL].ok == 6
    assert not any(line.startswith("stopped") for line in said)


def test_the_cap_counts_what_the_run_already_spent(fake):
    first = job(fake)
    pipeline.save_plan(first.store, first.plan, {})
    pipeline.generate(first.store, first.plan, first.executor, budget=Budget(0.045, 0, {MODEL: 0.011}))
    # $0.044 stored + $0.022 left = $0.066 > $0.05: refused before sending anything more.
    again = job(fake, "generate", "run.max_cost_usd=0.05")
    with pytest.raises(Exception, match=r"after \$0.044 already spent, passes run.max_cost_usd=0.05"):
        pipeline.run("generate", again.store, again.run_id, plan=again.plan,
                     executor=again.executor, settings=again.settings)
    assert fake.calls["/v1/images/generations"] == 4


def test_budget_counts_results_without_a_price_at_the_estimate():
    b = Budget(1.0, 0.25, {"m": 0.1, "free": 0.0})
    assert b.reserve("m", 3) and b.reserved == pytest.approx(0.3)
    b.settle("m", 3, [GenResult(status="ok", image=b"x", cost_usd=0.12),
                      GenResult(status="ok", image=b"x"),          # no price: the estimate
                      GenResult(status="error", error="boom")])   # not made: nothing
    assert b.reserved == 0 and b.spent == pytest.approx(0.25 + 0.12 + 0.1)
    assert b.reserve("free", 1000)  # local models cost nothing here
    assert not b.reserve("m", 6) and "would pass it" in b.stopped
    assert b.reserve("m", 5)  # 0.47 + 0.5 <= 1.0


def test_no_api_model_no_preflight(workdir, monkeypatch):
    """The embedded default has no API model: the preflight reads nothing and prints nothing."""
    from harness.runner import preflight

    calls = []
    monkeypatch.setattr(preflight, "estimate", lambda *a, **k: calls.append(1))
    cfg = cli.compose(["command=generate", "experiment=untrained", "suite.limit=1",
                       "progress=false", "run.max_cost_usd=0.01"])
    j = build_job(validate(cfg))
    said = []
    pipeline.run("generate", j.store, j.run_id, plan=j.plan, executor=j.executor,
                 settings=j.settings, echo=said.append)
    assert calls == [] and not any("request" in s for s in said)
