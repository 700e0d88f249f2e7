"""The store's SQLite database: connection per thread, transactions and numbered migrations.

The schema lives in ``harness/store/migrations/NNNN_name.sql``; each file is applied once, in
one transaction, and recorded in ``schema_migrations``, so a crash leaves the store at the
previous version.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path


class StoreError(RuntimeError):
    """A store problem phrased for the user."""


def utcnow() -> str:
    """The current UTC time as the store writes it (ISO 8601, milliseconds)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def migrations() -> list[tuple[int, str, str]]:
    """Numbered migration files shipped in harness/store/migrations: (version, name, sql), in order."""
    out = []
    for entry in resources.files("harness.store").joinpath("migrations").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            out.append((int(name[:4]), name, entry.read_text(encoding="utf-8")))
    return sorted(out)


class Tx:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, exc, tb) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


class StoreBase:
    """A store directory and its database: ``harness.sqlite`` next to ``images/`` and ``runs/``.

    One SQLite connection per thread (WAL, busy timeout), so the rating app's threads and the
    runner can share a store. The focused parts of :class:`harness.store.Store` (images, runs,
    scores, ratings) build on this.
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

    @property
    def db(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use; autocommit, rows as ``sqlite3.Row``)."""
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
        """Close this thread's connection (those of other threads stay open)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def tx(self) -> Tx:
        """A write transaction on this thread's connection: ``with store.tx() as db: ...``."""
        return Tx(self.db)

    def schema_version(self) -> int:
        """The newest migration applied."""
        row = self.db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    def _migrate(self) -> None:
        db = self.db
        db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        known = migrations()
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


def in_chunks(keys: Iterable[str], size: int = 500) -> Iterator[list[str]]:
    """Keys in slices small enough for one ``IN (?, ...)`` (SQLite limits bound parameters)."""
    keys = list(keys)
    for i in range(0, len(keys), size):
        yield keys[i : i + size]
