"""The store: migrations, content-addressed images, records, crash-safe writes, threads."""

import hashlib
import io
import json
import sqlite3
import threading

import pytest
from PIL import Image

from harness.store import Store, StoreError
from harness.store.rows import UnitCounts
from harness.types import GenRequest, GenResult, Prompt


def png(color=(255, 0, 0), size=(8, 8), fmt="PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format=fmt)
    return buf.getvalue()


def request(prompt_id="p1", sample=0, model="m") -> GenRequest:
    return GenRequest(model=model, generator="fake", model_id="fake/model", revision=None,
                      weights=None, prompt_id=prompt_id, prompt="a red square", negative_prompt=None,
                      sample=sample, seed=42 + sample, width=8, height=8)


def test_migrations_applied_once_and_recorded(tmp_path):
    s = Store(tmp_path)
    v = s.schema_version()
    assert v >= 1
    s.close()
    s2 = Store(tmp_path)  # reopening applies nothing new
    assert s2.schema_version() == v
    rows = s2.db.execute("SELECT version, name FROM schema_migrations").fetchall()
    assert [r[0] for r in rows] == list(range(1, v + 1))
    assert rows[0][1] == "0001_init.sql"


def test_newer_schema_refused(tmp_path):
    s = Store(tmp_path)
    s.db.execute("INSERT INTO schema_migrations VALUES (999, '0999_future.sql', 'now')")
    s.close()
    with pytest.raises(StoreError, match="newer than this harness"):
        Store(tmp_path)


def test_missing_store_named_when_not_creating(tmp_path):
    with pytest.raises(StoreError, match="no store at"):
        Store(tmp_path / "nope", create=False)


def test_images_named_by_sha256_of_png_bytes(tmp_path):
    s = Store(tmp_path)
    data = png()
    sha = s.put_image(data)
    assert sha == hashlib.sha256(data).hexdigest()
    assert s.image_path(sha).read_bytes() == data
    assert s.image_path(sha).parent.name == sha[:2]
    assert s.put_image(data) == sha  # idempotent
    # Non-PNG input is re-encoded to PNG, and named by the PNG's hash.
    jpeg = png(fmt="JPEG")
    sha2 = s.put_image(jpeg)
    stored = s.image_path(sha2).read_bytes()
    assert stored.startswith(b"\x89PNG") and hashlib.sha256(stored).hexdigest() == sha2
    assert not list(tmp_path.rglob(".tmp-*"))


def test_unreadable_image_bytes_rejected(tmp_path):
    with pytest.raises(StoreError, match="not a readable image"):
        Store(tmp_path).put_image(b"not an image")


def test_record_roundtrip_and_status_semantics(tmp_path):
    s = Store(tmp_path)
    prompts = [Prompt(id="p1", text="a red square", tags=("category:shape",))]
    reqs = [request("p1", 0), request("p1", 1), request("p1", 2)]
    keys = [r.key() for r in reqs]
    s.save_run("r1", "suite", {"x": 1}, prompts, "h", {"m": {"label": "M"}},
               [(k, "m", "p1", i) for i, k in enumerate(keys)])
    s.put_result(reqs[0], keys[0], GenResult("ok", image=png(), latency_s=0.5, device="cpu",
                                             dtype="float32", info={"batch_size": 1}))
    s.put_result(reqs[1], keys[1], GenResult("refused", refusal_reason="moderation_blocked"))
    s.put_result(reqs[2], keys[2], GenResult("error", error="boom"))
    assert s.finished_keys(keys) == {keys[0], keys[1]}
    assert s.finished_keys(keys, retry_errors=False) == set(keys)
    recs = {r.key: r for r in s.records("r1")}
    ok = recs[keys[0]]
    assert ok.status == "ok" and ok.width == 8 and ok.height == 8
    assert ok.request == json.loads(json.dumps(reqs[0].to_dict()))
    assert ok.info == {"batch_size": 1} and ok.latency_s == 0.5
    assert recs[keys[1]].refusal_reason == "moderation_blocked"
    # A retried error replaces its record and counts the attempt.
    s.put_result(reqs[2], keys[2], GenResult("ok", image=png((0, 0, 255))))
    again = {r.key: r for r in s.records("r1")}[keys[2]]
    assert again.status == "ok" and again.attempts == 2 and again.error is None
    assert s.unit_counts("r1") == {"m": UnitCounts(planned=3, ok=2, refused=1, error=0, pending=0)}
    assert s.run_prompts("r1")["p1"]["tags"] == ["category:shape"]
    assert (s.run_dir("r1") / "manifest.json").exists()


def test_ok_without_image_is_refused_by_store(tmp_path):
    s = Store(tmp_path)
    r = request()
    with pytest.raises(StoreError):
        s.put_result(r, r.key(), GenResult("ok"))
    assert s.db.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 0


def test_unknown_run_suggests(tmp_path):
    s = Store(tmp_path)
    s.save_run("toy-abc", "toy", {}, [], "h", {}, [])
    with pytest.raises(StoreError, match="Did you mean 'toy-abc'"):
        s.run("toy-abd")


def test_failed_transaction_leaves_store_untouched(tmp_path):
    s = Store(tmp_path)
    r = request()
    with pytest.raises(sqlite3.IntegrityError):
        with s.tx() as db:
            db.execute("INSERT INTO records (key, model, prompt_id, sample, seed, request, status,"
                       " info, created_at) VALUES ('k','m','p',0,0,'{}','ok','{}','t')")
            db.execute("INSERT INTO records (key, model, prompt_id, sample, seed, request, status,"
                       " info, created_at) VALUES ('k2','m','p',0,0,'{}','weird','{}','t')")
    assert s.finished_keys(["k", r.key()]) == set()


def test_threads_each_get_a_connection_and_all_writes_land(tmp_path):
    s = Store(tmp_path)
    errors = []

    def worker(t):
        try:
            for i in range(25):
                r = request(f"p{t}", i)
                s.put_result(r, r.key(), GenResult("refused", refusal_reason="x"))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert s.db.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 100
    assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
