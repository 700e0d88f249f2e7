"""A store written by an earlier version opens with this one, reads back as typed rows, and
resumes its run without a single generator call.

``tests/data/store-main-v4`` was made by ``harness run`` (run ``fixture-run``: models zoo_unet
and zoo_dit, suite toy-world limited to 3 prompts, metrics attributes and colorfulness), then
given two raters, two votes, an open assignment, a gold pair and three submit-journal entries.
Tests work on a copy: the fixture itself is never written.
"""

import shutil
from pathlib import Path

import pytest

from harness import cli
from harness.store import Store
from harness.store.journal import StoreJournal
from harness.store.rows import Assignment, GoldPair, Rater, Record, Run, ScoreRow, UnitCounts, Vote
from harness.types import JournalEntry, sha256_hex

FIXTURE = Path(__file__).parents[1] / "data" / "store-main-v4"
RUN = "fixture-run"
MODELS = ("zoo_dit", "zoo_unet")
PROMPTS = ("single-seen-01", "single-seen-02", "single-seen-03")
METRICS = {"attributes.all", "attributes.colour", "attributes.count", "attributes.position",
           "attributes.shape", "colorfulness"}


@pytest.fixture
def store_copy(tmp_path):
    root = tmp_path / "store"
    shutil.copytree(FIXTURE, root)
    return root


def test_old_store_reads_back_as_typed_rows(store_copy):
    import sqlite3
    from contextlib import closing

    from harness.store.db import migrations

    with closing(sqlite3.connect(store_copy / "harness.sqlite")) as raw:  # as the old main wrote it
        assert raw.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0] == 4
    s = Store(store_copy, create=False)
    assert s.schema_version() == migrations()[-1][0]  # newer migrations applied on opening

    (run,) = s.runs()
    assert isinstance(run, Run) and run == s.run(RUN)
    assert (run.run_id, run.suite, run.status) == (RUN, "toy-world", "scored")
    config = run.manifest["config"]
    assert config["suite"]["limit"] == 3 and sorted(config["models"]) == list(MODELS)
    models = s.run_models(RUN)
    assert set(models) == set(MODELS) and models["zoo_unet"]["model_id"] == "zoo:toy-unet"
    assert set(s.run_prompts(RUN)) == set(PROMPTS)

    records = s.records(RUN)
    assert len(records) == 6 and all(isinstance(r, Record) for r in records)
    assert [(r.model, r.prompt_id) for r in records] == [(m, p) for m in MODELS for p in PROMPTS]
    for r in records:
        assert r.status == "ok" and (r.width, r.height) == (64, 64) and r.attempts == 1
        assert r.request["model"] == r.model and r.request["prompt_id"] == r.prompt_id
        assert r.request["seed"] == r.seed and r.request["weights"]
        # content addressing: the file under the recorded hash has exactly that hash
        assert sha256_hex(s.read_image(r.image_sha256)) == r.image_sha256
    assert s.records_for_keys([records[0].key]) == [records[0]]
    assert s.unit_counts(RUN) == {m: UnitCounts(planned=3, ok=3) for m in MODELS}
    assert sorted(s.iter_keys_and_hashes()) == sorted((r.key, r.image_sha256, "ok") for r in records)

    scores = s.scores(RUN)
    assert len(scores) == 36 and all(isinstance(x, ScoreRow) for x in scores)
    assert {x.metric for x in scores} == METRICS
    assert {x.key for x in scores} == {r.key for r in records}
    assert all(x.settings and x.settings_hash and x.model in MODELS for x in scores)
    assert s.set_scores(RUN) == []

    raters = s.raters()
    assert [r.name for r in raters] == ["ada", "bob"] and all(isinstance(r, Rater) for r in raters)
    ada, bob = raters
    assert not ada.is_admin and not ada.excluded and ada.email is None
    assert ada.revoked_at is None and ada.token_expires_at is None  # columns added since v4
    assert bob.is_admin is True and bob.email == "bob@example.org"
    assert s.rater_by_email("BOB@example.org") == bob
    assert s.rater_by_name("ada") == ada

    votes = s.votes(RUN)
    assert [(v.vote_id, v.choice, v.rater) for v in votes] == [("v0", "left", "ada"), ("v1", "tie", "ada")]
    assert all(isinstance(v, Vote) and v.rater_id == ada.rater_id and v.is_repeat is False
               and v.is_gold is False and v.seconds == 2.5 for v in votes)
    assert s.rater_votes(RUN, ada.rater_id) == votes and s.rater_votes(RUN, bob.rater_id) == []

    a1 = s.assignment("a1")
    assert isinstance(a1, Assignment) and a1.kind == "pair" and a1.done_at is None
    assert a1.prompt_id == "single-seen-03" and a1.shown_at
    assert s.open_assignment(RUN, a1.rater_id) == a1

    (gold,) = s.gold_pairs(RUN)
    assert isinstance(gold, GoldPair) and gold.note == "fixture"
    assert {gold.better_key, gold.worse_key} <= {r.key for r in records}

    journal = StoreJournal(s)
    done = journal.find("k-done")
    assert isinstance(done, JournalEntry)
    assert (done.state, done.provider, done.job_id) == ("done", "openai", "req-1")
    assert done.outcome == {"cost_usd": 0.04, "status": "ok"}
    assert journal.image(done) == s.read_image(done.image_sha256)
    sub = journal.find("k-sub")
    assert (sub.state, sub.job_id, sub.poll_url) == ("submitted", "job-1",
                                                     "https://api.bfl.ai/v1/get_result?id=job-1")
    assert journal.find("k-sending").state == "sending" and journal.find("nope") is None
    assert {e.key for e in journal.pending()} == {"k-sending", "k-sub"}


def test_old_store_resumes_with_no_generator_calls(store_copy, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = Store(store_copy, create=False)
    records = sorted(before.iter_keys_and_hashes())
    n_scores = len(before.scores(RUN))
    before.close()

    # 'harness run' on it: every stage, resumed from what the old main stored
    common = ["progress=false", f"store.root={store_copy}", f"run.name={RUN}", "suite=toy-world",
              "suite.limit=3", "models=[zoo_unet,zoo_dit]", "metrics=[attributes,colorfulness]",
              "report.html=false", f"report.dir={tmp_path / 'reports'}"]
    result = cli.dispatch(cli.compose(["command=run", *common]))
    assert result["stats"].calls == 0
    scored = result["store"]
    assert scored.unit_counts(RUN) == {m: UnitCounts(planned=3, ok=3) for m in MODELS}
    assert len(scored.scores(RUN)) == n_scores == 36
    assert (tmp_path / "reports" / "toy-world" / RUN / "leaderboard.md").is_file()
    assert sorted(scored.iter_keys_and_hashes()) == records
