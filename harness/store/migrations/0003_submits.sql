-- Submit journal of submit-and-poll APIs (Black Forest Labs, Replicate, fal). A paid submit is
-- recorded before it is sent and its job id before its result is awaited, so a run killed
-- mid-way polls the job on resume instead of paying for it again.
CREATE TABLE IF NOT EXISTS submits (
    key          TEXT PRIMARY KEY,      -- record key of the work unit
    provider     TEXT NOT NULL,
    model        TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('sending', 'submitted', 'done')),
    job_id       TEXT,                  -- the provider's id of the job
    poll_url     TEXT,                  -- where its status is read
    result_url   TEXT,                  -- where its result is read, when apart from poll_url
    image_sha256 TEXT,                  -- the downloaded image, stored (state 'done')
    outcome      TEXT,                  -- JSON: what the finished job gave (status, info)
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS submits_state ON submits(state);
