-- The rating app: what each rater is being shown (so a reload resumes from the database, not
-- the browser), links between quality-control repeats and the votes they repeat, gold pairs with
-- a known answer, and an e-mail per rater for single sign-on.

-- A vote that repeats an earlier one with the sides swapped names it here (consistency check).
ALTER TABLE votes ADD COLUMN repeat_of TEXT;

-- Single sign-on: a rater signed in through OIDC is matched on this address.
ALTER TABLE raters ADD COLUMN email TEXT;
CREATE UNIQUE INDEX raters_email ON raters(email) WHERE email IS NOT NULL;

-- One row per pair put in front of a rater. The open one (done_at NULL) is what the rater sees
-- now; its vote reuses assignment_id as vote_id, so a resubmitted answer is stored once.
CREATE TABLE rating_assignments (
    assignment_id TEXT PRIMARY KEY,
    run_id        TEXT NOT NULL REFERENCES runs(run_id),
    rater_id      TEXT NOT NULL REFERENCES raters(rater_id),
    prompt_id     TEXT NOT NULL,
    left_key      TEXT NOT NULL REFERENCES records(key),
    right_key     TEXT NOT NULL REFERENCES records(key),
    left_model    TEXT NOT NULL,
    right_model   TEXT NOT NULL,
    kind          TEXT NOT NULL DEFAULT 'pair' CHECK (kind IN ('pair', 'repeat', 'gold')),
    repeat_of     TEXT,                        -- for kind 'repeat': the vote repeated
    shown_at      TEXT NOT NULL,
    done_at       TEXT
);
-- At most one open assignment per rater and run, even with two tabs racing.
CREATE UNIQUE INDEX rating_assignments_open ON rating_assignments(run_id, rater_id) WHERE done_at IS NULL;

-- Pairs with a known answer (optional quality control): better_key should win.
CREATE TABLE gold_pairs (
    run_id      TEXT NOT NULL REFERENCES runs(run_id),
    better_key  TEXT NOT NULL REFERENCES records(key),
    worse_key   TEXT NOT NULL REFERENCES records(key),
    note        TEXT,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (run_id, better_key, worse_key)
);
