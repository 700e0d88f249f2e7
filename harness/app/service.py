"""The rating app's logic without any user interface: sign-in, the current pair, votes, QC.

Everything a rater has done and is doing lives in the store (the open assignment is the pair
on screen), so any process, thread or browser tab sees the same state and a reload resumes.
The Streamlit page in ``rate_app.py`` is a thin view over :class:`RatingService`.

Picks come from a :class:`~harness.app.pair_index.PairIndex` built once from the stored votes;
before each pick the service reads only the votes stored since the last one (by rowid, so those
of other processes count too), which keeps the work per vote flat in the number of votes.
Every action re-reads the rater's row: a revoked, replaced, expired or excluded token stops at
the next click, and a vote is written only while the access holds (checked in its transaction).
"""

from __future__ import annotations

import dataclasses
import random
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from harness.app import blind, pair_index, pairs, qc
from harness.store import Store, StoreError
from harness.store.db import utcnow
from harness.store.ratings import RaterAccessError, access_problem
from harness.store.rows import Assignment, Rater
from harness.types import sha256_hex

CHOICES = ("left", "right", "tie", "both_bad")


class SignInError(ValueError):
    """Why a sign-in was refused, phrased for the rater."""


class AccessError(SignInError):
    """A signed-in rater may no longer rate (revoked, token replaced or expired, excluded)."""


@dataclass(frozen=True)
class Submitted:
    """What became of a submitted answer; true only when this call stored it."""

    status: str
    """``saved``; ``duplicate`` (the same answer was stored before: a double click or another tab);
    ``conflict`` (another tab stored a different answer to this pair first: this one is dropped)."""
    stored_choice: str | None = None
    """The answer on record for the pair."""

    def __bool__(self) -> bool:
        return self.status == "saved"


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
    source_png: bytes | None = None
    """For an instruction edit: the source image both sides edited (the same for every model,
    re-encoded without metadata); None for text-to-image prompts. The prompt is then the
    instruction."""


def edit_of(prompt: dict[str, Any]) -> tuple[str | None, str | None]:
    """(source image path, instruction to show) of an instruction edit, else (None, None). An
    ``edit_image`` control is the source of an edit whose prompt is its instruction; a prompt
    carrying ``meta.instruction`` with an ``init_image`` (an SDEdit edit: img2img denoised with
    the target caption, as suite=toy-editing does) is an edit of that image, shown with the
    instruction rather than the caption it was generated with."""
    controls = prompt.get("controls") or ()
    src = next((c["path"] for c in controls if c.get("kind") == "edit_image" and c.get("path")), None)
    if src is not None:
        return src, None
    instruction = (prompt.get("meta") or {}).get("instruction")
    if instruction:
        src = next((c["path"] for c in controls if c.get("kind") == "init_image" and c.get("path")), None)
        if src is not None:
            return src, str(instruction)
    return None, None


class RatingService:
    """Rating on one run of one store; safe to share between the app's threads."""

    def __init__(self, store: Store, run_id: str, *, settings: pairs.PairSettings | None = None,
                 admin_token_sha256: str | None = None, app_version: str | None = None,
                 seed: int | None = None, refit_seconds: float = 2.0) -> None:
        """``refit_seconds``: in adaptive mode, how often at most the Bradley-Terry fit behind
        the picks is redone (in the background, from aggregated counts; less often when a fit
        takes more than 5% of that time)."""
        from harness import __version__

        self.store = store
        self.run_id = run_id
        self.run = store.run(run_id)
        self.settings = settings or pairs.PairSettings()
        self.admin_token_sha256 = admin_token_sha256
        self.app_version = app_version or __version__
        self._rng = random.Random(seed) if seed is not None else random.SystemRandom()
        # Guards the in-memory index and the rng only: held for the few hundred microseconds of
        # an index update or pick, never across a database call.
        self._lock = threading.Lock()
        self.refit_seconds = refit_seconds
        self._fit_at = 0.0
        self._refit_gap = 0.0
        self._fitting = False
        self._rebuilding = False
        self.reload()

    def reload(self) -> None:
        """Re-read the run's images (e.g. after more were generated)."""
        records = self.store.records(self.run_id)
        self.refusals = pairs.refusal_rates(records)
        self.items = {it.key: it for it in pairs.usable_items(records)}
        self.candidates = pairs.candidate_pairs(self.items.values())
        self.canvas = blind.canvas_size(r for r in records if r.key in self.items)
        self._sha = {r.key: r.image_sha256 for r in records if r.key in self.items}
        run_prompts = self.store.run_prompts(self.run_id)
        self.prompts = {pid: p.get("text", "") for pid, p in run_prompts.items()}
        # Instruction edits: the source image each prompt's edits started from.
        self.sources = {}
        for pid, p in run_prompts.items():
            src, instruction = edit_of(p)
            if src is not None:
                self.sources[pid] = src
                if instruction:  # an SDEdit prompt's text is the target caption: show the instruction
                    self.prompts[pid] = instruction
        self.models = sorted({it.model for it in self.items.values()})
        self._rebuild()
        if self.settings.mode == "adaptive":
            self.refit()

    # -- the pair index ----------------------------------------------------------------------

    def _rebuild(self) -> None:
        """Build the index from every stored vote (at start, and when exclusions change)."""
        excluded = self.store.excluded_rater_ids()
        rows = self.store.vote_rows_after(self.run_id, 0)
        idx = pair_index.PairIndex(self.candidates, self.items)
        idx.add_many((_row(r), r[2] not in excluded) for r in rows)
        with self._lock:
            if getattr(self, "_index", None) is not None:
                idx.z, idx.z_votes = self._index.z, -1  # keep picking adaptively until the refit
            self._index, self._excluded = idx, excluded
            self._seen_rowid = rows[-1][0] if rows else 0

    def sync(self) -> None:
        """Take in the votes stored since the last call (by any process)."""
        if self.store.excluded_rater_ids() != self._excluded and not self._rebuilding:
            # Balance counts leave excluded raters out: recount in the background (seconds at
            # 100,000 votes) while picks go on from the current counts.
            self._rebuilding = True

            def work() -> None:
                try:
                    self._rebuild()
                finally:
                    self._rebuilding = False

            threading.Thread(target=work, name="rating-recount", daemon=True).start()
        for _ in range(3):
            start = self._seen_rowid
            new = self.store.vote_rows_after(self.run_id, start)
            if not new:
                return
            with self._lock:
                if self._seen_rowid < start:
                    continue  # a recount replaced the index meanwhile: read again from its point
                idx, excluded = self._index, self._excluded
                for r in new:
                    if r[0] > self._seen_rowid:  # another thread may have taken it in already
                        idx.add(_row(r), counted=r[2] not in excluded)
                        self._seen_rowid = r[0]
                return

    def refit(self) -> None:
        """Redo the adaptive fit from the index's aggregated counts."""
        with self._lock:
            idx = self._index
            cells, n = dict(idx.cells), idx.n_counted
        t0 = time.monotonic()
        if idx.z_votes != n:
            z = pair_index.uncertainty_from_cells(cells, idx.model_names)
            with self._lock:
                idx.z, idx.z_votes = z, n
        self._fit_at = time.monotonic()
        # A fit shares the CPU with the raters' requests: keep it under ~5% of the time.
        self._refit_gap = 20.0 * (self._fit_at - t0)

    def _maybe_refit(self) -> None:
        """Start a background refit when the last one is older than ``refit_seconds``."""
        if self._fitting or time.monotonic() - self._fit_at < max(self.refit_seconds, self._refit_gap):
            return
        self._fitting = True

        def work() -> None:
            try:
                self.refit()
            finally:
                self._fitting = False

        threading.Thread(target=work, name="rating-refit", daemon=True).start()

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
        problem = access_problem(rater)
        if problem:
            raise SignInError(problem)
        return rater

    def sign_in_email(self, email: str | None) -> Rater:
        """The rater invited with this e-mail address (single sign-on)."""
        rater = self.store.rater_by_email(email) if email else None
        if rater is None:
            raise SignInError(f"{email or 'This account'} is not invited to rate. Ask the organiser to "
                              "run 'harness raters add NAME --email ADDRESS'.")
        problem = access_problem(rater)
        if problem:
            raise SignInError(problem)
        return rater

    def check_access(self, rater_id: str, token_sha256: str | None = None) -> Rater:
        """The rater's current row; :class:`AccessError` when they may no longer rate.

        ``token_sha256``: the token hash the session signed in with (a rotated token fails)."""
        rater = self.store.rater_by_id(rater_id)
        problem = access_problem(rater, token_sha256)
        if problem:
            raise AccessError(problem)
        return rater

    def is_app_admin(self, token: str | None) -> bool:
        """True for the app's own admin token (printed by 'harness rate' or given to it)."""
        token = (token or "").strip()
        return bool(token and self.admin_token_sha256
                    and secrets.compare_digest(sha256_hex(token), self.admin_token_sha256))

    def is_admin_rater(self, rater_id: str, token_sha256: str | None = None) -> bool:
        """True while this rater is an admin whose access (and session token) still holds."""
        rater = self.store.rater_by_id(rater_id)
        return bool(rater and rater.is_admin and access_problem(
            dataclasses.replace(rater, excluded=False), token_sha256) is None)

    def is_admin(self, token: str | None) -> bool:
        """True for the app's admin token or the token of a rater added with --admin."""
        token = (token or "").strip()
        if not token:
            return False
        if self.admin_token_sha256 and secrets.compare_digest(sha256_hex(token), self.admin_token_sha256):
            return True
        rater = self.store.rater_for_token(token)
        # An admin rater's own exclusion from the leaderboard does not close the admin page.
        return bool(rater and rater.is_admin
                    and access_problem(dataclasses.replace(rater, excluded=False)) is None)

    # -- rating ----------------------------------------------------------------------------

    def current(self, rater_id: str, *, token_sha256: str | None = None) -> Assignment | None:
        """The rater's open assignment, making the next one if none is open; None when done.

        With ``token_sha256`` (the session's) the rater's access is checked first."""
        if token_sha256 is not None:
            self.check_access(rater_id, token_sha256)
        open_ = self.store.open_assignment(self.run_id, rater_id)
        if open_ is not None:
            return open_
        self.sync()
        if self.settings.mode == "adaptive":
            self._maybe_refit()
        # Gold pairs are read only when one is due (the test reads nothing shared: a stale
        # answer costs one gold pair shown a vote late at most).
        gold = (self.store.gold_pairs(self.run_id)
                if self._index.gold_due(rater_id, self.settings) else ())
        with self._lock:
            pick = self._index.pick(rater_id, self._rng, self.settings, gold=gold)
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
            source_png=self.source(assignment.prompt_id),
        )

    def source(self, prompt_id: str) -> bytes | None:
        """The edit source of a prompt as metadata-free PNG bytes; None when the prompt is no
        instruction edit or its file is gone (the pair is still shown)."""
        path = self.sources.get(prompt_id)
        if path is None:
            return None
        import io

        from PIL import Image

        try:
            with Image.open(path) as im:
                buf = io.BytesIO()
                im.convert("RGB").save(buf, format="PNG")
        except OSError:
            return None
        return buf.getvalue()

    def image(self, key: str) -> bytes:
        sha = self._sha.get(key)
        if sha is None:
            raise StoreError(f"record {key[:12]}... has no image to show")
        return _blinded(self.store, sha, self.canvas)

    def submit(self, rater_id: str, assignment_id: str, choice: str, reason: str | None = None, *,
               token_sha256: str | None = None) -> Submitted:
        """Store the rater's answer to an assignment (true when this call stored it).

        An assignment answered already is not stored again: ``duplicate`` when the stored answer
        is the same, ``conflict`` when another tab stored a different one first. With
        ``token_sha256`` (the session's) nothing is written once the rater's access is gone
        (:class:`AccessError`)."""
        if choice not in CHOICES:
            raise ValueError(f"choice {choice!r} is not one of {', '.join(CHOICES)}")
        a = self.store.assignment(assignment_id)
        if a is None or a.rater_id != rater_id or a.run_id != self.run_id:
            raise StoreError("this pair was not shown to you; reload the page")
        if a.done_at is not None:
            return self._answered(assignment_id, choice, token_sha256)
        shown = datetime.fromisoformat(a.shown_at)
        seconds = (datetime.fromisoformat(utcnow()) - shown).total_seconds()
        vote = {
            "vote_id": assignment_id, "run_id": self.run_id, "rater_id": rater_id,
            "prompt_id": a.prompt_id, "left_key": a.left_key, "right_key": a.right_key,
            "left_model": a.left_model, "right_model": a.right_model, "choice": choice,
            "reason": (reason or "").strip() or None, "seconds": round(max(0.0, seconds), 3),
            "is_repeat": a.kind == "repeat", "is_gold": a.kind == "gold",
            "repeat_of": a.repeat_of, "app_version": self.app_version,
        }
        try:
            stored = self.store.put_vote(vote, token_sha256=token_sha256)
        except RaterAccessError as e:
            raise AccessError(str(e)) from None
        return Submitted("saved", choice) if stored else self._answered(assignment_id, choice, token_sha256)

    def _answered(self, assignment_id: str, choice: str, token_sha256: str | None) -> Submitted:
        """An answer to an assignment closed already: a repeat of the stored one or a conflict."""
        vote = self.store.vote(assignment_id)
        if vote is None:
            # Closed without a vote: the rater's access was withdrawn while the pair was shown.
            if token_sha256 is not None:
                self.check_access(self.store.assignment(assignment_id).rater_id, token_sha256)
            return Submitted("conflict", None)
        return Submitted("duplicate" if vote.choice == choice else "conflict", vote.choice)

    def progress(self, rater_id: str) -> tuple[int, int, int]:
        """(pairs the rater has rated, pairs left for them, quality checks they answered).

        Rated + left is every pair of the run; the checks (repeats, gold pairs) come on top."""
        self.sync()
        with self._lock:
            return self._index.progress(rater_id)

    # -- admin -----------------------------------------------------------------------------

    def rater_report(self) -> list[dict[str, Any]]:
        return qc.rater_report(self.store.votes(self.run_id, include_excluded=True), self.store.raters(),
                               gold=self.store.gold_pairs(self.run_id))

    def set_excluded(self, name: str, excluded: bool) -> None:
        self.store.exclude_rater(name, excluded)


def _row(r: tuple) -> pair_index.VoteRow:
    """A :class:`~harness.app.pair_index.VoteRow` from a ``Store.vote_rows_after`` tuple."""
    return pair_index.VoteRow(*r[1:])


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
