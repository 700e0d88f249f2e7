"""Metric values: per image (keyed by record and settings hash) and per set (FID, KID ...)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from harness.store.db import StoreBase, in_chunks, utcnow
from harness.store.rows import ScoreRow, SetScore, decode
from harness.types import canonical_json


class Scores(StoreBase):
    """The ``scores`` and ``set_scores`` tables of a store."""

    def scored_keys(self, metric: str, settings_hash: str, keys: Iterable[str]) -> set[str]:
        """Keys already scored by ``metric`` under these settings."""
        done: set[str] = set()
        for chunk in in_chunks(keys):
            rows = self.db.execute(
                f"SELECT key FROM scores WHERE metric=? AND settings_hash=? AND key IN "
                f"({','.join('?' * len(chunk))})",
                (metric, settings_hash, *chunk),
            )
            done.update(r[0] for r in rows)
        return done

    def score_extras(self, metric: str, settings_hash: str, keys: Iterable[str]) -> dict[str, dict]:
        """Key -> the stored extra of ``metric``'s value under these settings."""
        out: dict[str, dict] = {}
        for chunk in in_chunks(keys):
            rows = self.db.execute(
                f"SELECT key, extra FROM scores WHERE metric=? AND settings_hash=? AND key IN "
                f"({','.join('?' * len(chunk))})",
                (metric, settings_hash, *chunk),
            )
            out.update((r[0], json.loads(r[1]) if r[1] else {}) for r in rows)
        return out

    def put_scores(self, rows: Sequence[tuple[str, str, str, float | None, dict, dict]]) -> None:
        """Insert per-image scores: (key, metric, settings_hash, value, settings, extra)."""
        now = utcnow()
        with self.tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO scores VALUES (?,?,?,?,?,?,?)",
                [(k, m, h, v, canonical_json(s), canonical_json(e), now) for k, m, h, v, s, e in rows],
            )

    def put_set_score(self, run_id: str, model: str, metric: str, settings_hash: str,
                      value: float | None, n: int, settings: dict, extra: dict) -> None:
        """Insert (or replace) one model's per-set value of a metric."""
        with self.tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO set_scores VALUES (?,?,?,?,?,?,?,?,?)",
                (run_id, model, metric, settings_hash, value, n, canonical_json(settings),
                 canonical_json(extra), utcnow()),
            )

    def scores(self, run_id: str) -> list[ScoreRow]:
        """Per-image values of a run's units, by metric then unit."""
        rows = self.db.execute(
            "SELECT s.*, u.model, u.prompt_id, u.sample FROM scores s JOIN run_units u "
            "ON u.key=s.key WHERE u.run_id=? ORDER BY s.metric, u.model, u.prompt_id, u.sample",
            (run_id,),
        )
        return [ScoreRow(**decode(r, ("settings", "extra"))) for r in rows]

    def set_scores(self, run_id: str) -> list[SetScore]:
        """Per-set values of a run, by metric then model."""
        rows = self.db.execute("SELECT * FROM set_scores WHERE run_id=? ORDER BY metric, model",
                               (run_id,))
        return [SetScore(**decode(r, ("settings", "extra"))) for r in rows]
