-- Initial schema. Images live on disk under their sha256; records carry only the hash.

-- One row per run: the resolved config, git commit and versions (JSON manifest).
CREATE TABLE runs (
    run_id      TEXT PRIMARY KEY,
    suite       TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    status      TEXT NOT NULL,          -- planned | generating | generated | scored | reported
    manifest    TEXT NOT NULL           -- JSON
);

-- Snapshot of each prompt as used by a run, so scoring and reports read only the store.
CREATE TABLE prompts (
    suite        TEXT NOT NULL,
    suite_hash   TEXT NOT NULL,         -- hash of the suite's prompts after filters
    prompt_id    TEXT NOT NULL,
    text         TEXT NOT NULL,
    tags         TEXT NOT NULL,         -- JSON list
    expected_text TEXT,
    data         TEXT NOT NULL,         -- JSON of the whole Prompt
    PRIMARY KEY (suite_hash, prompt_id)
);

-- Model identity per run (label, kind, untrained flag ...).
CREATE TABLE run_models (
    run_id  TEXT NOT NULL REFERENCES runs(run_id),
    model   TEXT NOT NULL,
    info    TEXT NOT NULL,              -- JSON from Generator.describe()
    PRIMARY KEY (run_id, model)
);

-- The plan: which work units make up a run.
CREATE TABLE run_units (
    run_id     TEXT NOT NULL REFERENCES runs(run_id),
    key        TEXT NOT NULL,
    model      TEXT NOT NULL,
    suite_hash TEXT NOT NULL,
    prompt_id  TEXT NOT NULL,
    sample     INTEGER NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE INDEX run_units_key ON run_units(key);

-- One row per work unit that ran: the full request and what was observed.
CREATE TABLE records (
    key          TEXT PRIMARY KEY,      -- sha256 of the canonical request
    model        TEXT NOT NULL,
    prompt_id    TEXT NOT NULL,
    sample       INTEGER NOT NULL,
    seed         INTEGER NOT NULL,
    request      TEXT NOT NULL,         -- JSON GenRequest
    status       TEXT NOT NULL CHECK (status IN ('ok', 'refused', 'error')),
    image_sha256 TEXT,
    width        INTEGER,
    height       INTEGER,
    refusal_reason TEXT,
    error        TEXT,
    latency_s    REAL,
    cost_usd     REAL,
    provider_request_id TEXT,
    device       TEXT,
    dtype        TEXT,
    info         TEXT NOT NULL,         -- JSON: versions, batch size, revised prompt ...
    attempts     INTEGER NOT NULL DEFAULT 1,
    created_at   TEXT NOT NULL
);

-- Per-image metric values, keyed by record and by the hash of the metric's settings.
CREATE TABLE scores (
    key           TEXT NOT NULL REFERENCES records(key),
    metric        TEXT NOT NULL,
    settings_hash TEXT NOT NULL,
    value         REAL,
    settings      TEXT NOT NULL,        -- JSON: every setting that changes the number
    extra         TEXT NOT NULL,        -- JSON: raw values, flags, reasons
    created_at    TEXT NOT NULL,
    PRIMARY KEY (key, metric, settings_hash)
);

-- Per-set metric values (FID, KID ...) for one model in one run.
CREATE TABLE set_scores (
    run_id        TEXT NOT NULL REFERENCES runs(run_id),
    model         TEXT NOT NULL,
    metric        TEXT NOT NULL,
    settings_hash TEXT NOT NULL,
    value         REAL,
    n             INTEGER NOT NULL,     -- images the value rests on
    settings      TEXT NOT NULL,
    extra         TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    PRIMARY KEY (run_id, model, metric, settings_hash)
);
