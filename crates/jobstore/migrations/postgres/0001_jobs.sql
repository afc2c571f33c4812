-- Durable jobs. Hot, narrow rows in `jobs`; payloads and results apart, so claims and lease
-- updates touch little data. Times are microseconds since the Unix epoch.
CREATE TABLE jobs (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    priority         SMALLINT NOT NULL,
    status           TEXT NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    attempt_token    BIGINT NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_at BIGINT,
    run_after        BIGINT NOT NULL,
    timeout_ms       BIGINT NOT NULL,
    idempotency_key  TEXT UNIQUE,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT,
    error            TEXT
) WITH (fillfactor = 80);
CREATE INDEX jobs_ready ON jobs (priority, run_after, id) WHERE status = 'queued';
CREATE INDEX jobs_leases ON jobs (lease_expires_at) WHERE status = 'running';
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE TABLE job_payloads (id TEXT PRIMARY KEY, payload BYTEA NOT NULL);
CREATE TABLE job_results (id TEXT PRIMARY KEY, result BYTEA NOT NULL);
