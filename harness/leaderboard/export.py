"""Export a run's records with prompts and scores as one flat table for pandas."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from harness.store import Store, StoreError

FORMATS = ("parquet", "csv", "jsonl")


def run_frame(store: Store, run_id: str) -> pd.DataFrame:
    """One row per stored unit: request fields, outcome, prompt text and tags, one column per
    per-image metric (``score.<metric>``), and the image path."""
    prompts = store.run_prompts(run_id)
    rows = []
    for r in store.records(run_id):
        req = r.request
        p = prompts.get(r.prompt_id, {})
        rows.append({
            "run_id": run_id, "key": r.key, "model": r.model, "prompt_id": r.prompt_id,
            "sample": r.sample, "seed": r.seed, "prompt": req["prompt"],
            "tags": json.dumps(p.get("tags", [])), "expected_text": p.get("expected_text"),
            "model_id": req["model_id"], "revision": req["revision"], "width": req["width"],
            "height": req["height"], "steps": req["steps"], "guidance": req["guidance"],
            "status": r.status, "refusal_reason": r.refusal_reason, "error": r.error,
            "image_sha256": r.image_sha256,
            "image_path": str(store.image_path(r.image_sha256)) if r.image_sha256 else None,
            "latency_s": r.latency_s, "cost_usd": r.cost_usd,
            "provider_request_id": r.provider_request_id, "device": r.device,
            "dtype": r.dtype, "created_at": r.created_at,
        })
    df = pd.DataFrame(rows)
    scores = store.scores(run_id)
    if scores and len(df):
        s = pd.DataFrame(scores).pivot_table(index="key", columns="metric", values="value",
                                            aggfunc="last")
        s.columns = [f"score.{c}" for c in s.columns]
        df = df.merge(s, left_on="key", right_index=True, how="left")
    return df


def export_run(store: Store, run_id: str, fmt: str, path: str | None = None) -> Path:
    if fmt not in FORMATS:
        from harness.errors import did_you_mean

        raise StoreError(f"export.format={fmt!r} is not supported.{did_you_mean(fmt, FORMATS)}")
    store.run(run_id)
    df = run_frame(store, run_id)
    out = Path(path) if path else store.root / "exports" / f"{run_id}.{fmt}"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    if fmt == "parquet":
        df.to_parquet(tmp, index=False)
    elif fmt == "csv":
        df.to_csv(tmp, index=False)
    else:
        df.to_json(tmp, orient="records", lines=True, force_ascii=False)
    os.replace(tmp, out)
    return out
