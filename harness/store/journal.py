"""The submit journal: paid calls of closed APIs, recorded so none is paid for twice.

:class:`StoreJournal` implements :class:`harness.types.Journal` on the ``submits`` table
(migration 0003). An entry moves through three states, each written (one autocommitted
statement, durable on return) before the step that needs it:

* ``sending``: written just before the submit is sent. A run killed before the answer leaves
  this: the job may exist and be billed, and its id is unknown, so it is not sent again
  unless the user says so.
* ``submitted``: the provider's job id and polling URL, written before waiting. A resumed run
  polls this job instead of submitting.
* ``done``: the answer arrived; its image is already in the store (``image_sha256``) and what
  it gave is in ``outcome``, so a run killed before the record was written needs no network.

A submit that provably made no job (never sent, or answered with an error) and a job that
failed are forgotten: the next run may submit again, which is a new, deliberate attempt.

One-call APIs (OpenAI-style, Google, Stability) have no job to poll: their answers are written
as ``done`` the moment they arrive, so a run killed before its batch was stored reuses them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from harness.store.db import utcnow
from harness.types import JournalEntry

if TYPE_CHECKING:
    from harness.store import Store


class StoreJournal:
    """The ``submits`` table of a store, on the store's connection (a :class:`harness.types.Journal`)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        found = store.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='submits'").fetchone()
        if found is None:
            # A store already past version 3 through a later migration written before this one
            # existed: apply it now (it only creates what is missing).
            from importlib import resources

            sql = resources.files("harness.store").joinpath("migrations/0003_submits.sql")
            store.db.executescript("BEGIN IMMEDIATE;\n" + sql.read_text(encoding="utf-8") +
                                   "\nINSERT OR IGNORE INTO schema_migrations VALUES "
                                   f"(3, '0003_submits.sql', '{utcnow()}');\nCOMMIT;")

    def find(self, key: str) -> JournalEntry | None:
        """The entry for a work unit, if any."""
        row = self.store.db.execute("SELECT * FROM submits WHERE key=?", (key,)).fetchone()
        return _entry(row) if row is not None else None

    def record_sending(self, key: str, provider: str, model: str) -> None:
        """Record the intent to submit, before the request is sent (replaces any older entry)."""
        now = utcnow()
        self.store.db.execute(
            "INSERT OR REPLACE INTO submits (key, provider, model, state, created_at, updated_at) "
            "VALUES (?, ?, ?, 'sending', ?, ?)", (key, provider, model, now, now))

    def record_submitted(self, key: str, job_id: str, poll_url: str | None,
                         result_url: str | None = None) -> None:
        """Record the provider's job, before waiting for it."""
        self.store.db.execute(
            "UPDATE submits SET state='submitted', job_id=?, poll_url=?, result_url=?, "
            "updated_at=? WHERE key=?", (job_id, poll_url, result_url, utcnow(), key))

    def record_answer(self, key: str, provider: str, model: str, outcome: Mapping[str, Any],
                      image: bytes | None = None, job_id: str | None = None) -> None:
        """Record a paid answer the moment it arrives; the image goes into the store first.

        One upsert covers both kinds: a one-call API's answer inserts a ``done`` entry; a
        submitted job's answer turns its entry ``done`` and keeps its job id, polling URLs and
        creation time (``job_id`` only fills one the entry lacks)."""
        sha = self.store.put_image(image) if image else None
        now = utcnow()
        self.store.db.execute(
            "INSERT INTO submits (key, provider, model, state, job_id, image_sha256, outcome, "
            "created_at, updated_at) VALUES (?, ?, ?, 'done', ?, ?, ?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET state='done', "
            "job_id=COALESCE(submits.job_id, excluded.job_id), "
            "image_sha256=excluded.image_sha256, outcome=excluded.outcome, "
            "updated_at=excluded.updated_at",
            (key, provider, model, job_id, sha, json.dumps(dict(outcome), sort_keys=True, default=str),
             now, now))

    def forget(self, key: str) -> None:
        """Drop the entry: no job exists (or it failed), so a later run may submit again."""
        self.store.db.execute("DELETE FROM submits WHERE key=?", (key,))

    def pending(self) -> list[JournalEntry]:
        """Entries not yet ``done`` (sent or submitted), oldest first."""
        rows = self.store.db.execute(
            "SELECT * FROM submits WHERE state != 'done' ORDER BY created_at, key")
        return [_entry(r) for r in rows]

    def entries(self) -> list[JournalEntry]:
        """Every entry, oldest first (for inspection; adapters use :meth:`find` and :meth:`pending`)."""
        return [_entry(r) for r in self.store.db.execute("SELECT * FROM submits ORDER BY created_at, key")]

    def image(self, entry: JournalEntry) -> bytes | None:
        """The bytes of a ``done`` entry's image (None when its answer had none)."""
        return self.store.read_image(entry.image_sha256) if entry.image_sha256 else None


def _entry(row: Any) -> JournalEntry:
    d = dict(row)
    d["outcome"] = json.loads(d["outcome"]) if d["outcome"] else None
    return JournalEntry(**d)

