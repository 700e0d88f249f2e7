"""The rating app's logic without any user interface: sign-in, the current pair, votes, QC.

Everything a rater has done and is doing lives in the store (the open assignment is the pair
on screen), so any process, thread or browser tab sees the same state and a reload resumes.
The Streamlit page in ``rate_app.py`` is a thin view over :class:`RatingService`.
"""

from __future__ import annotations

import random
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from harness.app import blind, pairs, qc
from harness.store import Store, StoreError
from harness.store.db import utcnow
from harness.store.rows import Assignment, Rater
from harness.types import sha256_hex

CHOICES = ("left", "right", "tie", "both_bad")


class SignInError(ValueError):
    """Why a sign-in was refused, phrased for the rater."""


@dataclass(frozen=True)
class Shown:
    """The pair on a rater's screen: blinded images and nothing that names a model."""

    assignment_id: str
    """Also the vote id of the answer (a resubmit is stored once)."""
    prompt: str
    """Prompt text."""
    left_png: bytes
    """Left image, blinded."""
    right_png: bytes
    """Right image, blinded."""


class RatingService:
    """Rating on one run of one store; safe to share between the app's threads."""

    def __init__(self, store: Store, run_id: str, *, settings: pairs.PairSettings | None = None,
                 admin_token_sha256: str | None = None, app_version: str | None = None,
                 seed: int | None = None) -> None:
        from harness import __version__

        self.store = store
        self.run_id = run_id
        self.run = store.run(run_id)
        self.settings = settings or pairs.PairSettings()
        self.admin_token_sha256 = admin_token_sha256
        self.app_version = app_version or __version__
        self._rng = random.Random(seed) if seed is not None else random.SystemRandom()
        self._lock = threading.Lock()
        self.reload()

    def reload(self) -> None:
        """Re-read the run's images (e.g. after more were generated)."""
        records = self.store.records(self.run_id)
        self.refusals = pairs.refusal_rates(records)
        self.items = {it.key: it for it in pairs.usable_items(records)}
        self.candidates = pairs.candidate_pairs(self.items.values())
        self.canvas = blind.canvas_size(r for r in records if r.key in self.items)
        self._sha = {r.key: r.image_sha256 for r in records if r.key in self.items}
        self.prompts = {pid: p.get("text", "") for pid, p in self.store.run_prompts(self.run_id).items()}
        self.models = sorted({it.model for it in self.items.values()})

    # -- sign-in ---------------------------------------------------------------------------

    def sign_in(self, token: str | None) -> Rater:
        """The rater holding ``token``; :class:`SignInError` (nothing written) otherwise."""
        token = (token or "").strip()
        if not token:
            raise SignInError("Enter the invitation token you were given to start rating.")
        rater = self.store.rater_for_token(token)
        if rater is None:
            raise SignInError("This token is not valid. Check that you pasted it whole, or ask the "
                              "organiser for a new invitation.")
        return rater

    def sign_in_email(self, email: str | None) -> Rater:
        """The rater invited with this e-mail address (single sign-on)."""
        rater = self.store.rater_by_email(email) if email else None
        if rater is None:
            raise SignInError(f"{email or 'This account'} is not invited to rate. Ask the organiser to "
                              "run 'harness raters add NAME --email ADDRESS'.")
        return rater

    def is_admin(self, token: str | None) -> bool:
        """True for the app's admin token or the token of a rater added with --admin."""
        token = (token or "").strip()
        if not token:
            return False
        if self.admin_token_sha256 and secrets.compare_digest(sha256_hex(token), self.admin_token_sha256):
            return True
        rater = self.store.rater_for_token(token)
        return bool(rater and rater.is_admin)

    # -- rating ----------------------------------------------------------------------------

    def current(self, rater_id: str) -> Assignment | None:
        """The rater's open assignment, making the next one if none is open; None when done."""
        open_ = self.store.open_assignment(self.run_id, rater_id)
        if open_ is not None:
            return open_
        with self._lock:  # the rng is shared; the store guards against other processes
            votes = self.store.votes(self.run_id)
            mine = self.store.rater_votes(self.run_id, rater_id)
            pick = pairs.next_pick(self.candidates, votes, mine, self._rng, settings=self.settings,
                                   gold=self.store.gold_pairs(self.run_id), items=self.items)
        if pick is None:
            return None
        return self.store.open_or_create_assignment({
            "assignment_id": secrets.token_hex(16), "run_id": self.run_id, "rater_id": rater_id,
            "prompt_id": pick.prompt_id, "left_key": pick.left.key, "right_key": pick.right.key,
            "left_model": pick.left.model, "right_model": pick.right.model, "kind": pick.kind,
            "repeat_of": pick.repeat_of,
        })

    def shown(self, assignment: Assignment) -> Shown:
        """What the page displays for an assignment."""
        return Shown(
            assignment_id=assignment.assignment_id,
            prompt=self.prompts.get(assignment.prompt_id, ""),
            left_png=self.image(assignment.left_key),
            right_png=self.image(assignment.right_key),
        )

    def image(self, key: str) -> bytes:
        sha = self._sha.get(key)
        if sha is None:
            raise StoreError(f"record {key[:12]}... has no image to show")
        return _blinded(self.store, sha, self.canvas)

    def submit(self, rater_id: str, assignment_id: str, choice: str, reason: str | None = None) -> bool:
        """Store the rater's answer to an assignment. False if it was already answered."""
        if choice not in CHOICES:
            raise ValueError(f"choice {choice!r} is not one of {', '.join(CHOICES)}")
        a = self.store.assignment(assignment_id)
        if a is None or a.rater_id != rater_id or a.run_id != self.run_id:
            raise StoreError("this pair was not shown to you; reload the page")
        if a.done_at is not None:
            return False
        shown = datetime.fromisoformat(a.shown_at)
        seconds = (datetime.fromisoformat(utcnow()) - shown).total_seconds()
        return self.store.put_vote({
            "vote_id": assignment_id, "run_id": self.run_id, "rater_id": rater_id,
            "prompt_id": a.prompt_id, "left_key": a.left_key, "right_key": a.right_key,
            "left_model": a.left_model, "right_model": a.right_model, "choice": choice,
            "reason": (reason or "").strip() or None, "seconds": round(max(0.0, seconds), 3),
            "is_repeat": a.kind == "repeat", "is_gold": a.kind == "gold",
            "repeat_of": a.repeat_of, "app_version": self.app_version,
        })

    def progress(self, rater_id: str) -> tuple[int, int]:
        """(votes the rater has cast on this run, fresh pairs they have not seen yet)."""
        mine = self.store.rater_votes(self.run_id, rater_id)
        return len(mine), pairs.pairs_left(self.candidates, mine)

    # -- admin -----------------------------------------------------------------------------

    def rater_report(self) -> list[dict[str, Any]]:
        return qc.rater_report(self.store.votes(self.run_id, include_excluded=True), self.store.raters(),
                               gold=self.store.gold_pairs(self.run_id))

    def set_excluded(self, name: str, excluded: bool) -> None:
        self.store.exclude_rater(name, excluded)


_cache: dict[tuple[str, str, tuple[int, int]], bytes] = {}
_cache_lock = threading.Lock()


def _blinded(store: Store, sha: str, canvas: tuple[int, int]) -> bytes:
    """Blinded PNG bytes, memoised by source hash and canvas (a few hundred kB each at most)."""
    k = (str(store.root), sha, canvas)
    with _cache_lock:
        hit = _cache.get(k)
    if hit is not None:
        return hit
    png = blind.blind_png(store.read_image(sha), canvas)
    with _cache_lock:
        if len(_cache) > 512:
            _cache.clear()
        _cache[k] = png
    return png
