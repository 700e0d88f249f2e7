"""SQLite-backed store with content-addressed image files.

Crash safety: an image is written to a temporary file, fsynced and renamed into place before
its record is inserted, and each record is one transaction. A process killed at any point
leaves at worst an image file without a record (harmless: the same bytes get the same name on
the next attempt), never a record without its image or a half-written file under its final name.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from harness.types import GenRequest, GenResult, Prompt, canonical_json, sha256_hex

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class StoreError(RuntimeError):
    """A store problem phrased for the user."""


def utcnow() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _migrations() -> list[tuple[int, str, str]]:
    """Numbered migration files shipped in harness/store/migrations, in order."""
    out = []
    for entry in resources.files("harness.store").joinpath("migrations").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            out.append((int(name[:4]), name, entry.read_text(encoding="utf-8")))
    return sorted(out)


def to_png(data: bytes) -> bytes:
    """PNG bytes as they are; any other image format re-encoded to PNG (no metadata)."""
    if data.startswith(PNG_MAGIC):
        return data
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception as e:  # noqa: BLE001 - PIL raises many types for bad bytes
        raise StoreError(f"image bytes are not a readable image ({e})") from e
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


class Store:
    """A store directory: ``harness.sqlite``, ``images/ab/<sha256>.png``, ``runs/<run_id>/``.

    One SQLite connection per thread (WAL, busy timeout), so the rating app's threads and the
    runner can share a store.
    """

    DB_NAME = "harness.sqlite"

    def __init__(self, root: str | os.PathLike[str], *, create: bool = True) -> None:
        self.root = Path(root).expanduser().resolve()
        if not (self.root / self.DB_NAME).exists() and not create:
            raise StoreError(
                f"no store at {self.root} (no {self.DB_NAME}). Run 'harness run' first, or point "
                f"at an existing store with store.root=PATH."
            )
        self.images_dir = self.root / "images"
        self.runs_dir = self.root / "runs"
        self._local = threading.local()
        self.root.mkdir(parents=True, exist_ok=True)
        self.images_dir.mkdir(exist_ok=True)
        self._migrate()

    # -- connection and schema -------------------------------------------------------------

    @property
    def db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.root / self.DB_NAME, timeout=30.0, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _tx(self) -> _Tx:
        return _Tx(self.db)

    def schema_version(self) -> int:
        row = self.db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    def _migrate(self) -> None:
        db = self.db
        db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        known = _migrations()
        current = self.schema_version()
        newest = known[-1][0] if known else 0
        if current > newest:
            raise StoreError(
                f"store {self.root} has schema version {current}, newer than this harness "
                f"knows ({newest}). Upgrade harness, or use another store.root."
            )
        for version, name, sql in known:
            if version <= current:
                continue
            # One transaction per migration: a crash leaves the store at the previous version.
            db.executescript(
                "BEGIN IMMEDIATE;\n" + sql + "\nINSERT INTO schema_migrations VALUES "
                f"({version}, '{name}', '{utcnow()}');\nCOMMIT;"
            )

    # -- images ----------------------------------------------------------------------------

    def image_path(self, sha: str) -> Path:
        return self.images_dir / sha[:2] / f"{sha}.png"

    def put_image(self, data: bytes) -> str:
        """Store image bytes (re-encoded to PNG if needed) under their sha256; return the hash."""
        png = to_png(data)
        sha = sha256_hex(png)
        path = self.image_path(sha)
        if path.exists() and path.stat().st_size == len(png):
            return sha
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".png", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(png)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return sha

    def read_image(self, sha: str) -> bytes:
        return self.image_path(sha).read_bytes()

    # -- runs and plans --------------------------------------------------------------------

    def run_dir(self, run_id: str) -> Path:
        d = self.runs_dir / run_id
        d.mkdir(parents=True, exist_ok=True)
        return d

    def save_run(
        self,
        run_id: str,
        suite: str,
        manifest: dict[str, Any],
        prompts: Sequence[Prompt],
        suite_hash: str,
        models: dict[str, dict[str, Any]],
        units: Iterable[tuple[str, str, str, int]],
    ) -> None:
        """Record a run's manifest, prompt snapshot, models and planned units (idempotent)."""
        now = utcnow()
        manifest_json = canonical_json(manifest)
        (self.run_dir(run_id) / "manifest.json").write_text(
            json.dumps(manifest, indent=2, sort_keys=True, default=str), encoding="utf-8"
        )
        with self._tx() as db:
            db.execute(
                "INSERT INTO runs (run_id, suite, created_at, updated_at, status, manifest) "
                "VALUES (?, ?, ?, ?, 'planned', ?) ON CONFLICT(run_id) DO UPDATE SET "
                "updated_at=excluded.updated_at, manifest=excluded.manifest",
                (run_id, suite, now, now, manifest_json),
            )
            db.executemany(
                "INSERT OR IGNORE INTO prompts VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (suite, suite_hash, p.id, p.text, json.dumps(list(p.tags)), p.expected_text,
                     canonical_json(p.to_dict()))
                    for p in prompts
                ],
            )
            db.executemany(
                "INSERT OR REPLACE INTO run_models VALUES (?, ?, ?)",
                [(run_id, m, canonical_json(info)) for m, info in models.items()],
            )
            db.executemany(
                "INSERT OR IGNORE INTO run_units VALUES (?, ?, ?, ?, ?, ?)",
                [(run_id, key, model, suite_hash, pid, sample) for key, model, pid, sample in
                 ((u[0], u[1], u[2], u[3]) for u in units)],
            )

    def set_run_status(self, run_id: str, status: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE runs SET status=?, updated_at=? WHERE run_id=?",
                       (status, utcnow(), run_id))

    def runs(self, suite: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT run_id, suite, created_at, updated_at, status FROM runs"
        args: tuple = ()
        if suite:
            q += " WHERE suite=?"
            args = (suite,)
        return [dict(r) for r in self.db.execute(q + " ORDER BY updated_at", args)]

    def run(self, run_id: str) -> dict[str, Any]:
        row = self.db.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        if row is None:
            known = [r["run_id"] for r in self.runs()]
            from harness.errors import did_you_mean

            raise StoreError(
                f"run {run_id!r} is not in the store {self.root}."
                + (did_you_mean(run_id, known) if known else " The store has no runs yet.")
            )
        d = dict(row)
        d["manifest"] = json.loads(d["manifest"])
        return d

    def run_models(self, run_id: str) -> dict[str, dict[str, Any]]:
        rows = self.db.execute("SELECT model, info FROM run_models WHERE run_id=? ORDER BY model",
                               (run_id,))
        return {r["model"]: json.loads(r["info"]) for r in rows}

    def run_prompts(self, run_id: str) -> dict[str, dict[str, Any]]:
        rows = self.db.execute(
            "SELECT DISTINCT p.prompt_id, p.data FROM prompts p JOIN run_units u "
            "ON u.suite_hash=p.suite_hash AND u.prompt_id=p.prompt_id WHERE u.run_id=?",
            (run_id,),
        )
        return {r["prompt_id"]: json.loads(r["data"]) for r in rows}

    # -- records ---------------------------------------------------------------------------

    def finished_keys(self, keys: Iterable[str], *, retry_errors: bool = True) -> set[str]:
        """Keys that need no more work: ok or refused (and errors too unless retrying)."""
        statuses = ("ok", "refused") if retry_errors else ("ok", "refused", "error")
        keys = list(keys)
        done: set[str] = set()
        marks = ",".join("?" * len(statuses))
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            rows = self.db.execute(
                f"SELECT key FROM records WHERE status IN ({marks}) AND key IN "
                f"({','.join('?' * len(chunk))})",
                (*statuses, *chunk),
            )
            done.update(r[0] for r in rows)
        return done

    def put_result(self, request: GenRequest, key: str, result: GenResult) -> str | None:
        """Store one result: image file first, then the record in one transaction.

        Returns the image hash (None for refusals and errors)."""
        sha = width = height = None
        if result.status == "ok":
            if not result.image:
                raise StoreError(f"result for {request.model}/{request.prompt_id} is ok but has no image")
            sha = self.put_image(result.image)
            width, height = _png_size(self.read_image(sha))
        with self._tx() as db:
            prev = db.execute("SELECT attempts FROM records WHERE key=?", (key,)).fetchone()
            attempts = (prev[0] + 1) if prev else 1
            db.execute(
                "INSERT OR REPLACE INTO records (key, model, prompt_id, sample, seed, request, "
                "status, image_sha256, width, height, refusal_reason, error, latency_s, cost_usd, "
                "provider_request_id, device, dtype, info, attempts, created_at) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    key, request.model, request.prompt_id, request.sample, request.seed,
                    canonical_json(request.to_dict()), result.status, sha, width, height,
                    result.refusal_reason, result.error, result.latency_s, result.cost_usd,
                    result.provider_request_id, result.device, result.dtype,
                    canonical_json(result.info), attempts, utcnow(),
                ),
            )
        return sha

    def records(self, run_id: str, *, status: str | None = None) -> list[dict[str, Any]]:
        """Records of a run's planned units (those that ran), in plan order."""
        q = ("SELECT r.* FROM run_units u JOIN records r ON r.key=u.key WHERE u.run_id=?")
        args: list[Any] = [run_id]
        if status:
            q += " AND r.status=?"
            args.append(status)
        q += " ORDER BY u.model, u.prompt_id, u.sample"
        return [_decode(dict(row), ("request", "info")) for row in self.db.execute(q, args)]

    def records_for_keys(self, keys: Iterable[str]) -> list[dict[str, Any]]:
        keys = list(keys)
        out = []
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            rows = self.db.execute(
                f"SELECT * FROM records WHERE key IN ({','.join('?' * len(chunk))})", chunk)
            out.extend(_decode(dict(r), ("request", "info")) for r in rows)
        return out

    def unit_counts(self, run_id: str) -> dict[str, dict[str, int]]:
        """Per model: planned units and how many are ok / refused / error / pending."""
        rows = self.db.execute(
            "SELECT u.model, COALESCE(r.status, 'pending') AS st, COUNT(*) FROM run_units u "
            "LEFT JOIN records r ON r.key=u.key WHERE u.run_id=? GROUP BY u.model, st",
            (run_id,),
        )
        out: dict[str, dict[str, int]] = {}
        for model, st, n in rows:
            c = out.setdefault(model, {"planned": 0, "ok": 0, "refused": 0, "error": 0, "pending": 0})
            c[st] += n
            c["planned"] += n
        return out

    # -- scores ----------------------------------------------------------------------------

    def scored_keys(self, metric: str, settings_hash: str, keys: Iterable[str]) -> set[str]:
        keys = list(keys)
        done: set[str] = set()
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            rows = self.db.execute(
                f"SELECT key FROM scores WHERE metric=? AND settings_hash=? AND key IN "
                f"({','.join('?' * len(chunk))})",
                (metric, settings_hash, *chunk),
            )
            done.update(r[0] for r in rows)
        return done

    def put_scores(self, rows: Sequence[tuple[str, str, str, float | None, dict, dict]]) -> None:
        """Insert per-image scores: (key, metric, settings_hash, value, settings, extra)."""
        now = utcnow()
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO scores VALUES (?,?,?,?,?,?,?)",
                [(k, m, h, v, canonical_json(s), canonical_json(e), now) for k, m, h, v, s, e in rows],
            )

    def put_set_score(self, run_id: str, model: str, metric: str, settings_hash: str,
                      value: float | None, n: int, settings: dict, extra: dict) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO set_scores VALUES (?,?,?,?,?,?,?,?,?)",
                (run_id, model, metric, settings_hash, value, n, canonical_json(settings),
                 canonical_json(extra), utcnow()),
            )

    def scores(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT s.*, u.model, u.prompt_id, u.sample FROM scores s JOIN run_units u "
            "ON u.key=s.key WHERE u.run_id=? ORDER BY s.metric, u.model, u.prompt_id, u.sample",
            (run_id,),
        )
        return [_decode(dict(r), ("settings", "extra")) for r in rows]

    def set_scores(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT * FROM set_scores WHERE run_id=? ORDER BY metric, model",
                               (run_id,))
        return [_decode(dict(r), ("settings", "extra")) for r in rows]

    # -- raters and votes -------------------------------------------------------------------

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
            with self._tx() as db:
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

    def rater_for_token(self, token: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM raters WHERE token_sha256=?",
                              (sha256_hex(token),)).fetchone()
        return dict(row) if row else None

    def rater_by_name(self, name: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM raters WHERE name=?", (name,)).fetchone()
        return dict(row) if row else None

    def rater_by_email(self, email: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM raters WHERE email=?", (email.strip().lower(),)).fetchone()
        return dict(row) if row else None

    def raters(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.execute("SELECT * FROM raters ORDER BY created_at")]

    def set_rater_excluded(self, rater_id: str, excluded: bool) -> None:
        with self._tx() as db:
            db.execute("UPDATE raters SET excluded=? WHERE rater_id=?", (int(excluded), rater_id))

    def exclude_rater(self, name: str, excluded: bool = True) -> dict[str, Any]:
        """Mark a rater (by name) as left out of leaderboards, or take them back in."""
        rater = self.rater_by_name(name)
        if rater is None:
            from harness.errors import did_you_mean

            known = [r["name"] for r in self.raters()]
            hint = did_you_mean(name, known) if known else " No raters yet: 'harness raters add NAME'."
            raise StoreError(f"no rater named {name!r}.{hint}")
        self.set_rater_excluded(rater["rater_id"], excluded)
        return {**rater, "excluded": int(excluded)}

    def put_vote(self, vote: dict[str, Any]) -> bool:
        """Store one vote, committed at once. Returns False when ``vote_id`` was already stored
        (a retried submit), so a vote is never counted twice. The assignment with the same id,
        if any, is closed in the same transaction."""
        cols = ("vote_id", "run_id", "rater_id", "prompt_id", "left_key", "right_key",
                "left_model", "right_model", "choice", "reason", "seconds", "is_repeat",
                "is_gold", "app_version", "repeat_of")
        missing = [c for c in cols[:9] if vote.get(c) in (None, "")]
        if missing:
            raise StoreError(f"vote is missing {', '.join(missing)}")
        now = utcnow()
        with self._tx() as db:
            cur = db.execute(
                f"INSERT OR IGNORE INTO votes ({', '.join(cols)}, created_at) "
                f"VALUES ({', '.join('?' * len(cols))}, ?)",
                (*(vote.get(c) for c in cols[:11]), int(bool(vote.get("is_repeat"))),
                 int(bool(vote.get("is_gold"))), vote.get("app_version"), vote.get("repeat_of"), now),
            )
            db.execute("UPDATE rating_assignments SET done_at=? WHERE assignment_id=? AND done_at IS NULL",
                       (now, vote["vote_id"]))
            return cur.rowcount == 1

    def votes(self, run_id: str, *, include_excluded: bool = False) -> list[dict[str, Any]]:
        """Votes of a run (without those of excluded raters unless asked), oldest first."""
        q = ("SELECT v.*, r.name AS rater FROM votes v JOIN raters r ON r.rater_id=v.rater_id "
             "WHERE v.run_id=?")
        if not include_excluded:
            q += " AND r.excluded=0"
        return [dict(r) for r in self.db.execute(q + " ORDER BY v.created_at, v.vote_id", (run_id,))]

    def rater_votes(self, run_id: str, rater_id: str) -> list[dict[str, Any]]:
        """One rater's votes on a run, oldest first (excluded or not)."""
        rows = self.db.execute(
            "SELECT v.*, r.name AS rater FROM votes v JOIN raters r ON r.rater_id=v.rater_id "
            "WHERE v.run_id=? AND v.rater_id=? ORDER BY v.created_at, v.vote_id", (run_id, rater_id))
        return [dict(r) for r in rows]

    def open_assignment(self, run_id: str, rater_id: str) -> dict[str, Any] | None:
        """The pair a rater is being shown now (None when they have none open)."""
        row = self.db.execute("SELECT * FROM rating_assignments WHERE run_id=? AND rater_id=? AND "
                              "done_at IS NULL", (run_id, rater_id)).fetchone()
        return dict(row) if row else None

    def assignment(self, assignment_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM rating_assignments WHERE assignment_id=?",
                              (assignment_id,)).fetchone()
        return dict(row) if row else None

    def open_or_create_assignment(self, assignment: dict[str, Any]) -> dict[str, Any]:
        """Store ``assignment`` as the rater's open pair unless one is open already (another tab
        got there first); returns whichever is open, so both tabs show the same pair."""
        cols = ("assignment_id", "run_id", "rater_id", "prompt_id", "left_key", "right_key",
                "left_model", "right_model", "kind", "repeat_of")
        with self._tx() as db:
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
        known = {r["key"]: r for r in self.records(run_id, status="ok")}
        for k in (better_key, worse_key):
            if k not in known:
                raise StoreError(f"record {k[:12]}... is not an image of run {run_id!r}")
        if known[better_key]["prompt_id"] != known[worse_key]["prompt_id"]:
            raise StoreError("the two images of a gold pair must answer the same prompt")
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO gold_pairs VALUES (?, ?, ?, ?, ?)",
                       (run_id, better_key, worse_key, note, utcnow()))

    def gold_pairs(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT * FROM gold_pairs WHERE run_id=? ORDER BY created_at", (run_id,))
        return [dict(r) for r in rows]

    def iter_keys_and_hashes(self) -> Iterator[tuple[str, str | None, str]]:
        """(key, image hash, status) of every record: what 'two stores are equal' compares."""
        for row in self.db.execute("SELECT key, image_sha256, status FROM records ORDER BY key"):
            yield tuple(row)


def _decode(d: dict[str, Any], cols: tuple[str, ...]) -> dict[str, Any]:
    for c in cols:
        d[c] = json.loads(d[c])
    return d


def _png_size(png: bytes) -> tuple[int, int]:
    # The IHDR chunk sits at a fixed offset in every PNG: no need to decode the image.
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, exc, tb) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
