-- Durable jobs. Hot, narrow rows in `jobs`; payloads and results apart, so claims and lease
-- updates touch little data. Times are microseconds since the Unix epoch.
CREATE TABLE jobs (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    priority         INTEGER NOT NULL,
    status           TEXT NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    attempt_token    INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    run_after        INTEGER NOT NULL,
    timeout_ms       INTEGER NOT NULL,
    idempotency_key  TEXT UNIQUE,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    error            TEXT
) WITHOUT ROWID;
CREATE INDEX jobs_ready ON jobs (priority, run_after, id) WHERE status = 'queued';
CREATE INDEX jobs_leases ON jobs (lease_expires_at) WHERE status = 'running';
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE TABLE job_payloads (id TEXT PRIMARY KEY, payload BLOB NOT NULL);
CREATE TABLE job_results (id TEXT PRIMARY KEY, result BLOB NOT NULL);
