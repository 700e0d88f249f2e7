"""Runs, their plans (prompt snapshot, models, units) and the records of units that ran.

Each record is written in one transaction after its image file is in place
(:mod:`harness.store.images`), so a killed run leaves no record without its image.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from harness.store.db import StoreError, in_chunks, utcnow
from harness.store.images import Images, png_size
from harness.store.rows import Record, Run, UnitCounts, decode
from harness.types import GenRequest, GenResult, Prompt, canonical_json


class Runs(Images):
    """Runs, plans and records of a store."""

    def run_dir(self, run_id: str) -> Path:
        """The run's folder under ``runs/`` (manifest, log, reports), created if missing."""
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
        with self.tx() as db:
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
            # A re-planned run reads its prompts as planned now (questions added to the suite
            # since): the unit keeps its key, its suite_hash follows the newest plan.
            db.executemany(
                "INSERT INTO run_units VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(run_id, key) DO "
                "UPDATE SET suite_hash=excluded.suite_hash",
                [(run_id, key, model, suite_hash, pid, sample) for key, model, pid, sample in
                 ((u[0], u[1], u[2], u[3]) for u in units)],
            )

    def set_run_status(self, run_id: str, status: str) -> None:
        """Move a run to ``status`` (planned, generating, generated, scored, reported)."""
        with self.tx() as db:
            db.execute("UPDATE runs SET status=?, updated_at=? WHERE run_id=?",
                       (status, utcnow(), run_id))

    def runs(self, suite: str | None = None) -> list[Run]:
        """Every run (of one suite), least recently updated first."""
        q = "SELECT * FROM runs"
        args: tuple = ()
        if suite:
            q += " WHERE suite=?"
            args = (suite,)
        return [Run(**decode(r, ("manifest",))) for r in self.db.execute(q + " ORDER BY updated_at", args)]

    def run(self, run_id: str) -> Run:
        """One run; :class:`StoreError` naming the stored runs when there is no such run."""
        row = self.db.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        if row is None:
            known = [r.run_id for r in self.runs()]
            from harness.errors import did_you_mean

            raise StoreError(
                f"run {run_id!r} is not in the store {self.root}."
                + (did_you_mean(run_id, known) if known else " The store has no runs yet.")
            )
        return Run(**decode(row, ("manifest",)))

    def run_models(self, run_id: str) -> dict[str, dict[str, Any]]:
        """Per model of the run: what its generator described (label, kind, untrained ...)."""
        rows = self.db.execute("SELECT model, info FROM run_models WHERE run_id=? ORDER BY model",
                               (run_id,))
        return {r["model"]: json.loads(r["info"]) for r in rows}

    def run_prompts(self, run_id: str) -> dict[str, dict[str, Any]]:
        """Per prompt id of the run: the prompt as planned (:meth:`harness.types.Prompt.to_dict`)."""
        rows = self.db.execute(
            "SELECT DISTINCT p.prompt_id, p.data FROM prompts p JOIN run_units u "
            "ON u.suite_hash=p.suite_hash AND u.prompt_id=p.prompt_id WHERE u.run_id=?",
            (run_id,),
        )
        return {r["prompt_id"]: json.loads(r["data"]) for r in rows}

    def finished_keys(self, keys: Iterable[str], *, retry_errors: bool = True) -> set[str]:
        """Keys that need no more work: ok or refused (and errors too unless retrying)."""
        statuses = ("ok", "refused") if retry_errors else ("ok", "refused", "error")
        done: set[str] = set()
        marks = ",".join("?" * len(statuses))
        for chunk in in_chunks(keys):
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
            width, height = png_size(self.read_image(sha))
        with self.tx() as db:
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

    def records(self, run_id: str, *, status: str | None = None) -> list[Record]:
        """Records of a run's planned units (those that ran), in plan order."""
        q = ("SELECT r.* FROM run_units u JOIN records r ON r.key=u.key WHERE u.run_id=?")
        args: list[Any] = [run_id]
        if status:
            q += " AND r.status=?"
            args.append(status)
        q += " ORDER BY u.model, u.prompt_id, u.sample"
        return [Record(**decode(row, ("request", "info"))) for row in self.db.execute(q, args)]

    def records_for_keys(self, keys: Iterable[str]) -> list[Record]:
        """The stored records among these keys (any run), in no particular order."""
        out = []
        for chunk in in_chunks(keys):
            rows = self.db.execute(
                f"SELECT * FROM records WHERE key IN ({','.join('?' * len(chunk))})", chunk)
            out.extend(Record(**decode(r, ("request", "info"))) for r in rows)
        return out

    def unit_counts(self, run_id: str) -> dict[str, UnitCounts]:
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
        return {m: UnitCounts(**c) for m, c in out.items()}

    def iter_keys_and_hashes(self) -> Iterator[tuple[str, str | None, str]]:
        """(key, image hash, status) of every record: what 'two stores are equal' compares."""
        for row in self.db.execute("SELECT key, image_sha256, status FROM records ORDER BY key"):
            yield tuple(row)
