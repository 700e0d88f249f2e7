"""Ratings storage: tokens stored as hashes, every vote committed exactly once under
concurrent raters, retried submits not double counted."""

import threading
import uuid

import pytest

from harness.store import Store, StoreError
from harness.types import GenRequest, GenResult


def _stored_pair(s: Store):
    keys = []
    for model in ("a", "b"):
        r = GenRequest(model=model, generator="fake", model_id=model, revision=None, weights=None,
                       prompt_id="p", prompt="x", negative_prompt=None, sample=0, seed=1, width=8,
                       height=8)
        s.put_result(r, r.key(), GenResult("refused", refusal_reason="x"))
        keys.append(r.key())
    s.save_run("r", "suite", {}, [], "h", {}, [(k, m, "p", 0) for k, m in zip(keys, "ab", strict=True)])
    return keys


def _vote(rater_id, keys, choice="left", vote_id=None):
    return {"vote_id": vote_id or uuid.uuid4().hex, "run_id": "r", "rater_id": rater_id,
            "prompt_id": "p", "left_key": keys[0], "right_key": keys[1], "left_model": "a",
            "right_model": "b", "choice": choice, "seconds": 1.5}


def test_tokens_are_stored_as_hashes_only(tmp_path):
    s = Store(tmp_path)
    token = s.add_rater("ana")
    assert s.rater_for_token(token).name == "ana"
    assert s.rater_for_token("wrong") is None
    assert token.encode() not in (tmp_path / "harness.sqlite").read_bytes()
    with pytest.raises(StoreError, match="already exists"):
        s.add_rater("ana")


def test_eight_concurrent_raters_each_vote_lands_exactly_once(tmp_path):
    s = Store(tmp_path)
    keys = _stored_pair(s)
    raters = [s.rater_for_token(s.add_rater(f"r{i}")).rater_id for i in range(8)]
    sent: dict[str, list[str]] = {r: [] for r in raters}
    errors = []

    def rate(rid):
        try:
            for i in range(100):
                v = _vote(rid, keys, ("left", "right", "tie", "both_bad")[i % 4])
                assert s.put_vote(v)
                sent[rid].append(v["vote_id"])
        except Exception as e:  # noqa: BLE001 - surfaced by the assert below
            errors.append(e)

    threads = [threading.Thread(target=rate, args=(r,)) for r in raters]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    stored = s.votes("r")
    assert len(stored) == 800
    assert sorted(v.vote_id for v in stored) == sorted(x for ids in sent.values() for x in ids)


def test_retried_submit_is_stored_once_and_bad_votes_refused(tmp_path):
    s = Store(tmp_path)
    keys = _stored_pair(s)
    rid = s.rater_for_token(s.add_rater("bo")).rater_id
    v = _vote(rid, keys, vote_id="fixed")
    assert s.put_vote(v) is True
    assert s.put_vote(v) is False
    assert len(s.votes("r")) == 1
    with pytest.raises(StoreError, match="missing choice"):
        s.put_vote({**_vote(rid, keys), "choice": None})
    s.set_rater_excluded(rid, True)
    assert s.votes("r") == [] and len(s.votes("r", include_excluded=True)) == 1


def _assignment(rater_id, keys, aid):
    return {"assignment_id": aid, "run_id": "r", "rater_id": rater_id, "prompt_id": "p",
            "left_key": keys[1], "right_key": keys[0], "left_model": "b", "right_model": "a"}


def test_one_open_assignment_per_rater_closed_by_its_vote(tmp_path):
    s = Store(tmp_path)
    keys = _stored_pair(s)
    rid = s.rater_for_token(s.add_rater("cy")).rater_id
    first = s.open_or_create_assignment(_assignment(rid, keys, "a1"))
    # a second tab racing to open another pair gets the same one
    assert s.open_or_create_assignment(_assignment(rid, keys, "a2")).assignment_id == "a1"
    assert first.shown_at and first.done_at is None and first.kind == "pair"
    v = {**_vote(rid, keys, vote_id="a1"), "is_repeat": 1, "repeat_of": "v0"}
    assert s.put_vote(v)
    assert s.open_assignment("r", rid) is None and s.assignment("a1").done_at
    (stored,) = s.rater_votes("r", rid)
    assert stored.repeat_of == "v0" and stored.is_repeat is True
    assert s.open_or_create_assignment(_assignment(rid, keys, "a2")).assignment_id == "a2"


def test_raters_by_email_and_exclusion_by_name(tmp_path):
    s = Store(tmp_path)
    s.add_rater("dee", email="Dee@Example.org")
    assert s.rater_by_email("dee@example.org ").name == "dee"
    with pytest.raises(StoreError, match="e-mail"):
        s.add_rater("dee2", email="dee@example.org")
    with pytest.raises(StoreError, match="non-empty"):
        s.add_rater("  ")
    assert s.exclude_rater("dee").excluded is True and s.rater_by_name("dee").excluded is True
    with pytest.raises(StoreError, match="Did you mean 'dee'"):
        s.exclude_rater("de")
