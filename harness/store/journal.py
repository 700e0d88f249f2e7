"""The submit journal: paid jobs of submit-and-poll APIs, recorded so none is paid for twice.

A job moves through three states, each written (one autocommitted statement, durable on
return) before the step that needs it:

* ``sending``: written just before the submit is sent. A run killed before the answer leaves
  this: the job may exist and be billed, and its id is unknown, so it is not sent again
  unless the user says so.
* ``submitted``: the provider's job id and polling URL, written before waiting. A resumed run
  polls this job instead of submitting.
* ``done``: the job finished; its image is already in the store (``image_sha256``) and what
  it gave is in ``outcome``, so a run killed before the record was written needs no network.

A submit that provably made no job (never sent, or answered with an error) and a job that
failed are forgotten: the next run may submit again, which is a new, deliberate attempt.

One-call APIs (OpenAI-style, Google, Stability) have no job to poll: their results are written
as ``done`` the moment they arrive, so a run killed before its batch was stored reuses them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from harness.store.sqlite import Store, utcnow


@dataclass(frozen=True)
class Submit:
    """One journal row."""

    key: str
    """Record key of the work unit."""
    provider: str
    model: str
    state: str
    """``sending``, ``submitted`` or ``done``."""
    job_id: str | None
    poll_url: str | None
    result_url: str | None
    image_sha256: str | None
    outcome: dict[str, Any] | None
    created_at: str
    updated_at: str


class SubmitJournal:
    """The ``submits`` table of a store (migration 0003), on the store's connection."""

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

    def get(self, key: str) -> Submit | None:
        row = self.store.db.execute("SELECT * FROM submits WHERE key=?", (key,)).fetchone()
        if row is None:
            return None
        d = dict(row)
        d["outcome"] = json.loads(d["outcome"]) if d["outcome"] else None
        return Submit(**d)

    def sending(self, key: str, provider: str, model: str) -> None:
        """Record the intent to submit, before the request is sent."""
        now = utcnow()
        self.store.db.execute(
            "INSERT OR REPLACE INTO submits (key, provider, model, state, created_at, updated_at) "
            "VALUES (?, ?, ?, 'sending', ?, ?)", (key, provider, model, now, now))

    def submitted(self, key: str, job_id: str, poll_url: str | None,
                  result_url: str | None = None) -> None:
        """Record the provider's job, before waiting for it."""
        self.store.db.execute(
            "UPDATE submits SET state='submitted', job_id=?, poll_url=?, result_url=?, "
            "updated_at=? WHERE key=?", (job_id, poll_url, result_url, utcnow(), key))

    def finished(self, key: str, outcome: dict[str, Any], image: bytes | None = None) -> str | None:
        """Record a finished job; the image goes into the store first. Returns its hash."""
        sha = self.store.put_image(image) if image else None
        self.store.db.execute(
            "UPDATE submits SET state='done', image_sha256=?, outcome=?, updated_at=? WHERE key=?",
            (sha, json.dumps(outcome, sort_keys=True, default=str), utcnow(), key))
        return sha

    def done(self, key: str, provider: str, model: str, outcome: dict[str, Any],
             image: bytes | None = None, job_id: str | None = None) -> str | None:
        """Record the result of a one-call API (no job to poll) the moment it arrives, so a run
        killed before its batch is stored does not pay for it again."""
        sha = self.store.put_image(image) if image else None
        now = utcnow()
        self.store.db.execute(
            "INSERT OR REPLACE INTO submits (key, provider, model, state, job_id, image_sha256, "
            "outcome, created_at, updated_at) VALUES (?, ?, ?, 'done', ?, ?, ?, ?, ?)",
            (key, provider, model, job_id, sha, json.dumps(outcome, sort_keys=True, default=str),
             now, now))
        return sha

    def forget(self, key: str) -> None:
        """Drop the entry: no job exists (or it failed), so a later run may submit again."""
        self.store.db.execute("DELETE FROM submits WHERE key=?", (key,))

    def entries(self, state: str | None = None) -> list[Submit]:
        """Every entry (of one state), oldest first."""
        q, args = "SELECT key FROM submits", ()
        if state:
            q, args = q + " WHERE state=?", (state,)
        keys = [r[0] for r in self.store.db.execute(q + " ORDER BY created_at", args)]
        return [s for s in (self.get(k) for k in keys) if s is not None]
