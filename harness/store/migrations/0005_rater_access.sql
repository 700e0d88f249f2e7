-- Rater access: a token can be revoked, replaced (rotated) and given an expiry; the pair picker
-- reads new votes by rowid, so it needs no full scan per pick (no new index: rowid is the key).

-- When the rater's access was withdrawn ('harness raters revoke'); NULL while they may rate.
ALTER TABLE raters ADD COLUMN revoked_at TEXT;

-- After this time (UTC, ISO 8601) the token no longer signs in; NULL: no expiry.
ALTER TABLE raters ADD COLUMN token_expires_at TEXT;
