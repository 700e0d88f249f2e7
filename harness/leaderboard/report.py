"""Report files: leaderboard.{md,csv,json,parquet,html} under reports/<suite>/<run>/, and the
``latest`` pointer. Nothing written depends on the clock: the same store gives the same bytes."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from harness.leaderboard.cost import GpuPrice
from harness.leaderboard.html import render_html
from harness.leaderboard.render import render_markdown
from harness.leaderboard.table import Leaderboard


def write_report(lb: Leaderboard, out_dir: str | os.PathLike[str], *, html: bool = True,
                 gpu: GpuPrice | None = None) -> Path:
    """Write leaderboard.md, .csv, .json, .parquet and (unless ``html=False``) the self-contained
    leaderboard.html to <out_dir>/<suite>/<run>/, and point <out_dir>/<suite>/latest at it.
    ``gpu``: the GPU price self-hosted models are priced at in the HTML's quality-against-price
    chart (None: unpriced, said so). Returns the run's report folder. Nothing written depends on
    the clock: the same store gives the same bytes."""
    suite_dir = Path(out_dir) / lb.suite
    run_dir = suite_dir / lb.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(run_dir / "leaderboard.md", render_markdown(lb))
    table = models_with_preference(lb)
    _write_atomic(run_dir / "leaderboard.csv", table.to_csv(index=False, float_format="%.6g"))
    doc = {
        "run_id": lb.run_id, "suite": lb.suite,
        "headline": lb.headline.as_dict(),
        "tag_winners": _records(lb.tag_winners),
        "samples": lb.run.manifest.get("samples"), "seed": lb.run.manifest.get("seed"),
        "metrics": lb.metrics,
        "models": _records(table),
        "by_tag": _records(lb.by_tag),
        "report_settings": lb.settings,
        "notes": lb.notes,
        "excluded_votes": lb.excluded_votes,
        "preference": _preference_doc(lb),
        "agreement": {"raters": lb.agreement.get("raters"),
                      "metrics": _records(lb.agreement.get("metrics"))} if lb.agreement else None,
        "gallery": _records(lb.gallery.drop(columns=["image_path"], errors="ignore")),
    }
    if lb.short:  # only then: a run with every image has the same file as before shortfalls
        doc["short"] = [s.as_dict() for s in lb.short]
    _write_atomic(run_dir / "leaderboard.json",
                  json.dumps(_jsonable(doc), indent=2, sort_keys=True, ensure_ascii=False, default=str,
                             allow_nan=False) + "\n")
    tmp = run_dir / ".leaderboard.parquet.tmp"
    table.to_parquet(tmp, index=False)
    os.replace(tmp, run_dir / "leaderboard.parquet")
    if html:
        _write_atomic(run_dir / "leaderboard.html", render_html(lb, run_dir, gpu=gpu))
    point_latest(suite_dir, lb.run_id)
    return run_dir


PREFERENCE_COLUMNS = {"rating": "pref_rating", "rating_lo": "pref_rating_lo", "rating_hi": "pref_rating_hi",
                      "strength": "pref_strength", "votes": "pref_votes", "win_rate": "pref_win_rate"}
"""Human-preference columns added to the models table (csv/parquet/json) when the run has votes."""


def models_with_preference(lb: Leaderboard) -> pd.DataFrame:
    """The models table, plus what ranks it (``headline_by``), the tags each model is best (or
    tied best) for (``best_for``) and the pref_* columns when the run has votes."""
    table = lb.models.copy()
    if len(table) and "headline" in table.columns:
        table.insert(table.columns.get_loc("headline"), "headline_by", lb.headline.label)
        table["best_for"] = [best_for(lb, m) for m in table["model"]]
    pref = lb.preference
    if pref is None or pref.n_votes == 0 or not len(table):
        return table
    p = pref.table.set_index("model")[list(PREFERENCE_COLUMNS)].rename(columns=PREFERENCE_COLUMNS)
    return table.merge(p, left_on="model", right_index=True, how="left")


def best_for(lb: Leaderboard, model: str) -> str:
    """The tags ``model`` wins, "; "-separated, "(tied)" where others share the win."""
    tw = lb.tag_winners
    if tw is None or not len(tw):
        return ""
    out = []
    for _, r in tw.iterrows():
        tied = list(r["tied_with"] or [])
        if r["winner"] == model or model in tied:
            out.append(r["tag_label"] + (" (tied)" if tied or r["winner"] != model else ""))
    return "; ".join(out)


def _preference_doc(lb: Leaderboard) -> dict[str, Any] | None:
    pref = lb.preference
    if pref is None:
        return None
    wr = pref.win_rates
    return {
        "n_votes": pref.n_votes, "reason": pref.reason, "settings": pref.settings,
        "table": _records(pref.table),
        "win_rates": {a: {b: wr.loc[a, b] for b in wr.columns if b != a} for a in wr.index},
        "votes_per_pair": _records(pref.pairs),
        "never_compared": [list(p) for p in pref.never_compared()],
        "position_bias": pref.position,
        "by_tag": _records(pref.tags),
        "votes_needed": _records(pref.needed),
    }


def _records(df: pd.DataFrame | None) -> list[dict[str, Any]]:
    if df is None or not len(df):
        return []
    return json.loads(df.to_json(orient="records", double_precision=10, default_handler=str))


def _jsonable(obj: Any) -> Any:
    """NaN and infinities as null (JSON has neither), numpy scalars as Python numbers."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def point_latest(suite_dir: Path, run_id: str) -> None:
    """Make <suite_dir>/latest a relative symlink to the run folder (atomic swap)."""
    link = suite_dir / "latest"
    tmp = suite_dir / ".latest.tmp"
    tmp.unlink(missing_ok=True)
    try:
        os.symlink(run_id, tmp, target_is_directory=True)
        os.replace(tmp, link)
    except OSError:
        # Filesystems without symlinks: a text file naming the newest run.
        tmp.unlink(missing_ok=True)
        _write_atomic(suite_dir / "LATEST", run_id + "\n")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
