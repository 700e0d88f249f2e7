-- Blind pairwise ratings: raters (invited by token) and their votes.

-- Raters: only the sha256 of each invitation token is kept.
CREATE TABLE raters (
    rater_id     TEXT PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    excluded     INTEGER NOT NULL DEFAULT 0,  -- left out of leaderboards (quality control)
    is_admin     INTEGER NOT NULL DEFAULT 0
);

-- One row per vote. vote_id comes from the client, so a retried submit is stored once.
CREATE TABLE votes (
    vote_id      TEXT PRIMARY KEY,
    run_id       TEXT NOT NULL REFERENCES runs(run_id),
    rater_id     TEXT NOT NULL REFERENCES raters(rater_id),
    prompt_id    TEXT NOT NULL,
    left_key     TEXT NOT NULL REFERENCES records(key),
    right_key    TEXT NOT NULL REFERENCES records(key),
    left_model   TEXT NOT NULL,
    right_model  TEXT NOT NULL,
    choice       TEXT NOT NULL CHECK (choice IN ('left', 'right', 'tie', 'both_bad')),
    reason       TEXT,
    seconds      REAL,                        -- time from showing the pair to the answer
    is_repeat    INTEGER NOT NULL DEFAULT 0,  -- a quality-control repeat with sides swapped
    is_gold      INTEGER NOT NULL DEFAULT 0,  -- a pair with a known answer
    app_version  TEXT,
    created_at   TEXT NOT NULL
);
CREATE INDEX votes_run_rater ON votes(run_id, rater_id);
