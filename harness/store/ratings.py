"""Blind pairwise ratings: raters (invited by token), the pair each is shown, votes, gold pairs.

A vote reuses the id of the assignment it answers and is inserted with ``OR IGNORE``, so a
retried submit is stored once; the assignment is closed in the same transaction. A rater's
access can be revoked, their token replaced (rotated) or given an expiry; a vote sent with the
session's token hash is written only while that access holds, checked in the same transaction.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from harness.store.db import StoreError, utcnow
from harness.store.rows import Assignment, GoldPair, Rater, Vote, decode
from harness.store.runs import Runs
from harness.types import sha256_hex

_RATER_FLAGS = ("excluded", "is_admin")
_VOTE_FLAGS = ("is_repeat", "is_gold")


def _rater(row: Any) -> Rater | None:
    return Rater(**decode(row, bool_cols=_RATER_FLAGS)) if row is not None else None


def _vote(row: Any) -> Vote:
    return Vote(**decode(row, bool_cols=_VOTE_FLAGS))


class RaterAccessError(StoreError):
    """A rater may not rate (now): revoked, token replaced or expired, or excluded."""


def access_problem(rater: Rater | None, token_sha256: str | None = None, now: str | None = None
                   ) -> str | None:
    """Why ``rater`` may not rate now, phrased for them, or None when they may.

    ``token_sha256``: the hash of the token their session signed in with; a session whose token
    was replaced since ('harness raters rotate') is refused as well."""
    if rater is None:
        return "This invitation no longer exists. Ask the organiser for a new one."
    if rater.revoked_at:
        return ("Your access to this rating was withdrawn by the organiser; nothing more is saved. "
                "Ask them if you think this is a mistake.")
    if token_sha256 is not None and token_sha256 != rater.token_sha256:
        return "Your invitation token was replaced. Sign in with the new token the organiser gave you."
    if rater.token_expires_at and (now or utcnow()) >= rater.token_expires_at:
        return (f"Your invitation expired on {rater.token_expires_at[:16].replace('T', ' ')} UTC. "
                "Ask the organiser for a new token.")
    if rater.excluded:
        return ("The organiser has stopped collecting your ratings for this study, so there is "
                "nothing more to rate. Thank you for your help.")
    return None


# SQLite makes a blocked writer sleep and retry (1, 2, 5, 10 ... ms); threads of one process take
# turns on this lock instead, so concurrent raters wait microseconds, not sleep cycles.
_WRITE_LOCKS: dict[str, threading.Lock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


class Ratings(Runs):
    """Raters, assignments, votes and gold pairs of a store (gold pairs check against records)."""

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, queued behind this process's other rating writes."""
        key = str(self.root)
        with _WRITE_LOCKS_GUARD:
            lock = _WRITE_LOCKS.setdefault(key, threading.Lock())
        with lock, self.tx() as db:
            yield db

    def add_rater(self, name: str, *, admin: bool = False, email: str | None = None,
                  expires_at: str | None = None) -> str:
        """Invite a rater; returns their token (shown once: only its hash is stored).

        ``email`` lets the rater sign in through single sign-on (OIDC) instead of the token;
        ``expires_at`` (UTC, ISO 8601) ends the token's validity."""
        import secrets
        import uuid

        name = name.strip()
        if not name:
            raise StoreError("a rater needs a non-empty name")
        token = secrets.token_urlsafe(24)
        try:
            with self.tx() as db:
                db.execute(
                    "INSERT INTO raters (rater_id, name, token_sha256, created_at, excluded, is_admin, "
                    "email, token_expires_at) VALUES (?, ?, ?, ?, 0, ?, ?, ?)",
                    (uuid.uuid4().hex, name, sha256_hex(token), utcnow(), int(admin),
                     email.strip().lower() if email else None, expires_at))
        except sqlite3.IntegrityError:
            taken = "name" if self.rater_by_name(name) else "e-mail address"
            raise StoreError(f"a rater with this {taken} already exists ({name!r}"
                             f"{', ' + repr(email) if email else ''}); pick another") from None
        return token

    def rater_for_token(self, token: str) -> Rater | None:
        """The rater invited with this token, if any."""
        return _rater(self.db.execute("SELECT * FROM raters WHERE token_sha256=?",
                                      (sha256_hex(token),)).fetchone())

    def rater_by_id(self, rater_id: str) -> Rater | None:
        """The rater with this id, if any."""
        return _rater(self.db.execute("SELECT * FROM raters WHERE rater_id=?", (rater_id,)).fetchone())

    def rater_by_name(self, name: str) -> Rater | None:
        """The rater with this name, if any."""
        return _rater(self.db.execute("SELECT * FROM raters WHERE name=?", (name,)).fetchone())

    def rater_by_email(self, email: str) -> Rater | None:
        """The rater invited with this e-mail address (any case, outer spaces ignored), if any."""
        return _rater(self.db.execute("SELECT * FROM raters WHERE email=?",
                                      (email.strip().lower(),)).fetchone())

    def raters(self) -> list[Rater]:
        """Every rater, first invited first."""
        return [Rater(**decode(r, bool_cols=_RATER_FLAGS))
                for r in self.db.execute("SELECT * FROM raters ORDER BY created_at")]

    def set_rater_excluded(self, rater_id: str, excluded: bool) -> None:
        """Leave a rater (by id) out of leaderboards, or take them back in."""
        with self.tx() as db:
            db.execute("UPDATE raters SET excluded=? WHERE rater_id=?", (int(excluded), rater_id))

    def _named(self, name: str) -> Rater:
        rater = self.rater_by_name(name)
        if rater is None:
            from harness.errors import did_you_mean

            known = [r.name for r in self.raters()]
            hint = did_you_mean(name, known) if known else " No raters yet: 'harness raters add NAME'."
            raise StoreError(f"no rater named {name!r}.{hint}")
        return rater

    def exclude_rater(self, name: str, excluded: bool = True) -> Rater:
        """Mark a rater (by name) as left out of leaderboards, or take them back in."""
        rater = self._named(name)
        self.set_rater_excluded(rater.rater_id, excluded)
        return dataclasses.replace(rater, excluded=bool(excluded))

    def excluded_rater_ids(self) -> frozenset[str]:
        """Ids of the raters left out of leaderboards."""
        return frozenset(r[0] for r in self.db.execute("SELECT rater_id FROM raters WHERE excluded=1"))

    def revoke_rater(self, name: str) -> Rater:
        """Withdraw a rater's access: their token stops signing in and open sessions can no longer
        vote. Their votes so far stay (exclude them to leave them out of leaderboards)."""
        rater = self._named(name)
        now = utcnow()
        with self._write() as db:
            db.execute("UPDATE raters SET revoked_at=? WHERE rater_id=?", (now, rater.rater_id))
            # The pair on their screen is closed unanswered, so nothing waits for them.
            db.execute("UPDATE rating_assignments SET done_at=? WHERE rater_id=? AND done_at IS NULL",
                       (now, rater.rater_id))
        return dataclasses.replace(rater, revoked_at=now)

    def rotate_token(self, name: str, *, expires_at: str | None = None) -> str:
        """A new token for a rater (returned once); the old one and sessions signed in with it
        stop working at once. Also gives a revoked rater access again, with the new token."""
        import secrets

        rater = self._named(name)
        token = secrets.token_urlsafe(24)
        with self._write() as db:
            db.execute("UPDATE raters SET token_sha256=?, revoked_at=NULL, token_expires_at=? "
                       "WHERE rater_id=?", (sha256_hex(token), expires_at, rater.rater_id))
        return token

    def put_vote(self, vote: Mapping[str, Any], *, token_sha256: str | None = None) -> bool:
        """Store one vote (the fields of :class:`Vote` but ``created_at`` and ``rater``),
        committed at once. Returns False when ``vote_id`` was already stored (a retried
        submit), so a vote is never counted twice. The assignment with the same id, if any, is
        closed in the same transaction.

        With ``token_sha256`` (the session's token hash) the rater's access is checked in the
        same transaction: :class:`RaterAccessError`, nothing written, when it no longer holds."""
        cols = ("vote_id", "run_id", "rater_id", "prompt_id", "left_key", "right_key",
                "left_model", "right_model", "choice", "reason", "seconds", "is_repeat",
                "is_gold", "app_version", "repeat_of")
        missing = [c for c in cols[:9] if vote.get(c) in (None, "")]
        if missing:
            raise StoreError(f"vote is missing {', '.join(missing)}")
        now = utcnow()
        with self._write() as db:
            if token_sha256 is not None:
                row = db.execute("SELECT * FROM raters WHERE rater_id=?", (vote["rater_id"],)).fetchone()
                problem = access_problem(_rater(row), token_sha256, now)
                if problem:
                    raise RaterAccessError(problem)
            cur = db.execute(
                f"INSERT OR IGNORE INTO votes ({', '.join(cols)}, created_at) "
                f"VALUES ({', '.join('?' * len(cols))}, ?)",
                (*(vote.get(c) for c in cols[:11]), int(bool(vote.get("is_repeat"))),
                 int(bool(vote.get("is_gold"))), vote.get("app_version"), vote.get("repeat_of"), now),
            )
            db.execute("UPDATE rating_assignments SET done_at=? WHERE assignment_id=? AND done_at IS NULL",
                       (now, vote["vote_id"]))
            return cur.rowcount == 1

    def votes(self, run_id: str, *, include_excluded: bool = False) -> list[Vote]:
        """Votes of a run (without those of excluded raters unless asked), oldest first."""
        q = ("SELECT v.*, r.name AS rater FROM votes v JOIN raters r ON r.rater_id=v.rater_id "
             "WHERE v.run_id=?")
        if not include_excluded:
            q += " AND r.excluded=0"
        return [_vote(r) for r in self.db.execute(q + " ORDER BY v.created_at, v.vote_id", (run_id,))]

    def vote(self, vote_id: str) -> Vote | None:
        """One vote by id, if stored."""
        row = self.db.execute("SELECT v.*, r.name AS rater FROM votes v JOIN raters r ON "
                              "r.rater_id=v.rater_id WHERE v.vote_id=?", (vote_id,)).fetchone()
        return _vote(row) if row else None

    def votes_after(self, run_id: str, rowid: int = 0) -> list[tuple[int, Vote]]:
        """(rowid, vote) for the run's votes stored after ``rowid``, in the order stored.

        Rowids grow with each insert and writes are serialised, so a reader that remembers the
        last rowid it saw reads each new vote once (a range on the table's own key: no scan)."""
        # "+run_id": without it SQLite walks the (run_id, rater_id) index, i.e. every vote of the run.
        rows = self.db.execute("SELECT rowid AS rowid_, * FROM votes WHERE rowid > ? AND +run_id=? "
                               "ORDER BY rowid", (rowid, run_id))
        out = []
        for r in rows:
            d = decode(r, bool_cols=_VOTE_FLAGS)
            out.append((d.pop("rowid_"), Vote(**d)))
        return out

    VOTE_ROW_COLUMNS = ("vote_id", "rater_id", "prompt_id", "left_key", "right_key", "left_model",
                        "right_model", "choice", "is_repeat", "is_gold", "repeat_of")

    def vote_rows_after(self, run_id: str, rowid: int = 0) -> list[tuple]:
        """:meth:`votes_after` in lean form: (rowid, *VOTE_ROW_COLUMNS) tuples, flags as 0/1,
        for building and updating in-memory indexes over many votes."""
        return self.db.execute(
            f"SELECT rowid, {', '.join(self.VOTE_ROW_COLUMNS)} FROM votes WHERE rowid > ? AND +run_id=? "
            "ORDER BY rowid", (rowid, run_id)).fetchall()

    def rater_votes(self, run_id: str, rater_id: str) -> list[Vote]:
        """One rater's votes on a run, oldest first (excluded or not)."""
        rows = self.db.execute(
            "SELECT v.*, r.name AS rater FROM votes v JOIN raters r ON r.rater_id=v.rater_id "
            "WHERE v.run_id=? AND v.rater_id=? ORDER BY v.created_at, v.vote_id", (run_id, rater_id))
        return [_vote(r) for r in rows]

    def open_assignment(self, run_id: str, rater_id: str) -> Assignment | None:
        """The pair a rater is being shown now (None when they have none open)."""
        row = self.db.execute("SELECT * FROM rating_assignments WHERE run_id=? AND rater_id=? AND "
                              "done_at IS NULL", (run_id, rater_id)).fetchone()
        return Assignment(**dict(row)) if row else None

    def assignment(self, assignment_id: str) -> Assignment | None:
        """An assignment by id, open or answered."""
        row = self.db.execute("SELECT * FROM rating_assignments WHERE assignment_id=?",
                              (assignment_id,)).fetchone()
        return Assignment(**dict(row)) if row else None

    def open_or_create_assignment(self, assignment: Mapping[str, Any]) -> Assignment:
        """Store ``assignment`` (the fields of :class:`Assignment` but the times) as the rater's
        open pair unless one is open already (another tab got there first); returns whichever
        is open, so both tabs show the same pair."""
        cols = ("assignment_id", "run_id", "rater_id", "prompt_id", "left_key", "right_key",
                "left_model", "right_model", "kind", "repeat_of")
        with self._write() as db:
            db.execute(
                f"INSERT OR IGNORE INTO rating_assignments ({', '.join(cols)}, shown_at) "
                f"VALUES ({', '.join('?' * len(cols))}, ?)",
                (*(assignment.get(c) for c in cols[:8]), assignment.get("kind") or "pair",
                 assignment.get("repeat_of"), utcnow()))
        opened = self.open_assignment(assignment["run_id"], assignment["rater_id"])
        if opened is None:  # pragma: no cover - only if a submit closed it in between
            raise StoreError("the new pair was answered before it could be shown; reload the page")
        return opened

    def add_gold_pair(self, run_id: str, better_key: str, worse_key: str, note: str | None = None) -> None:
        """A pair with a known answer for quality control: ``better_key`` should win."""
        if better_key == worse_key:
            raise StoreError("a gold pair needs two different images")
        known = {r.key: r for r in self.records(run_id, status="ok")}
        for k in (better_key, worse_key):
            if k not in known:
                raise StoreError(f"record {k[:12]}... is not an image of run {run_id!r}")
        if known[better_key].prompt_id != known[worse_key].prompt_id:
            raise StoreError("the two images of a gold pair must answer the same prompt")
        with self.tx() as db:
            db.execute("INSERT OR REPLACE INTO gold_pairs VALUES (?, ?, ?, ?, ?)",
                       (run_id, better_key, worse_key, note, utcnow()))

    def gold_pairs(self, run_id: str) -> list[GoldPair]:
        """The run's gold pairs, oldest first."""
        rows = self.db.execute("SELECT * FROM gold_pairs WHERE run_id=? ORDER BY created_at", (run_id,))
        return [GoldPair(**dict(r)) for r in rows]
