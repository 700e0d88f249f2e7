"""A run's votes from the store as the votes table the preference and agreement code reads."""

from __future__ import annotations

import pandas as pd

from harness.store import Store

COLUMNS = ["vote_id", "left", "right", "choice", "rater", "prompt_id", "tags", "left_key", "right_key",
           "is_repeat", "is_gold"]


def load_votes(store: Store, run_id: str, *, include_excluded: bool = False) -> pd.DataFrame:
    """One row per stored vote of the run, oldest first; raters marked excluded are left out
    unless ``include_excluded``. ``tags`` are the prompt's tags (from the run's prompt snapshot)."""
    rows = store.votes(run_id, include_excluded=include_excluded)
    if not rows:
        return pd.DataFrame(columns=COLUMNS)
    prompts = store.run_prompts(run_id)
    out = pd.DataFrame([{
        "vote_id": r.vote_id, "left": r.left_model, "right": r.right_model, "choice": r.choice,
        "rater": r.rater, "prompt_id": r.prompt_id,
        "tags": list(prompts.get(r.prompt_id, {}).get("tags", [])),
        "left_key": r.left_key, "right_key": r.right_key,
        "is_repeat": bool(r.is_repeat), "is_gold": bool(r.is_gold),
    } for r in rows], columns=COLUMNS)
    return out


def excluded_vote_count(store: Store, run_id: str) -> int:
    """Votes of the run cast by raters marked excluded (left out of every leaderboard table)."""
    return len(store.votes(run_id, include_excluded=True)) - len(store.votes(run_id))


def fingerprint(store: Store, run_id: str) -> tuple:
    """Changes whenever what the leaderboard reads changes: votes, rater exclusions, records and
    scores of the run (a cache key for pages that redraw often)."""
    db = store.db
    votes = db.execute("SELECT COUNT(*), MAX(created_at) FROM votes WHERE run_id=?", (run_id,)).fetchone()
    excluded = db.execute("SELECT COUNT(*), GROUP_CONCAT(rater_id) FROM (SELECT rater_id FROM raters "
                          "WHERE excluded=1 ORDER BY rater_id)").fetchone()
    records = db.execute("SELECT COUNT(*), MAX(r.created_at) FROM run_units u JOIN records r ON r.key=u.key "
                         "WHERE u.run_id=?", (run_id,)).fetchone()
    scores = db.execute("SELECT COUNT(*), MAX(s.created_at) FROM scores s JOIN run_units u ON u.key=s.key "
                        "WHERE u.run_id=?", (run_id,)).fetchone()
    sets = db.execute("SELECT COUNT(*), MAX(created_at) FROM set_scores WHERE run_id=?", (run_id,)).fetchone()
    return tuple(tuple(r) for r in (votes, excluded, records, scores, sets))
