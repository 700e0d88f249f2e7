"""Blind pairwise ratings: raters (invited by token), the pair each is shown, votes, gold pairs.

A vote reuses the id of the assignment it answers and is inserted with ``OR IGNORE``, so a
retried submit is stored once; the assignment is closed in the same transaction.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Mapping
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


class Ratings(Runs):
    """Raters, assignments, votes and gold pairs of a store (gold pairs check against records)."""

    def add_rater(self, name: str, *, admin: bool = False, email: str | None = None) -> str:
        """Invite a rater; returns their token (shown once: only its hash is stored).

        ``email`` lets the rater sign in through single sign-on (OIDC) instead of the token."""
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
                    "email) VALUES (?, ?, ?, ?, 0, ?, ?)",
                    (uuid.uuid4().hex, name, sha256_hex(token), utcnow(), int(admin),
                     email.strip().lower() if email else None))
        except sqlite3.IntegrityError:
            taken = "name" if self.rater_by_name(name) else "e-mail address"
            raise StoreError(f"a rater with this {taken} already exists ({name!r}"
                             f"{', ' + repr(email) if email else ''}); pick another") from None
        return token

    def rater_for_token(self, token: str) -> Rater | None:
        """The rater invited with this token, if any."""
        return _rater(self.db.execute("SELECT * FROM raters WHERE token_sha256=?",
                                      (sha256_hex(token),)).fetchone())

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

    def exclude_rater(self, name: str, excluded: bool = True) -> Rater:
        """Mark a rater (by name) as left out of leaderboards, or take them back in."""
        rater = self.rater_by_name(name)
        if rater is None:
            from harness.errors import did_you_mean

            known = [r.name for r in self.raters()]
            hint = did_you_mean(name, known) if known else " No raters yet: 'harness raters add NAME'."
            raise StoreError(f"no rater named {name!r}.{hint}")
        self.set_rater_excluded(rater.rater_id, excluded)
        return dataclasses.replace(rater, excluded=bool(excluded))

    def put_vote(self, vote: Mapping[str, Any]) -> bool:
        """Store one vote (the fields of :class:`Vote` but ``created_at`` and ``rater``),
        committed at once. Returns False when ``vote_id`` was already stored (a retried
        submit), so a vote is never counted twice. The assignment with the same id, if any, is
        closed in the same transaction."""
        cols = ("vote_id", "run_id", "rater_id", "prompt_id", "left_key", "right_key",
                "left_model", "right_model", "choice", "reason", "seconds", "is_repeat",
                "is_gold", "app_version", "repeat_of")
        missing = [c for c in cols[:9] if vote.get(c) in (None, "")]
        if missing:
            raise StoreError(f"vote is missing {', '.join(missing)}")
        now = utcnow()
        with self.tx() as db:
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
        with self.tx() as db:
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
