-- Who ran a job's last attempt and when it started, and every attempt that did not succeed
-- (its worker, times and error), for the console's job page. A succeeding attempt writes only
-- the two columns of its job's row, so the hot path pays no extra insert.
ALTER TABLE jobs ADD COLUMN worker TEXT;
ALTER TABLE jobs ADD COLUMN attempt_started_at BIGINT;
CREATE TABLE job_attempts (
    job_id      TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    worker      TEXT,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT NOT NULL,
    status      TEXT NOT NULL,
    error       TEXT
);
CREATE INDEX job_attempts_of_job ON job_attempts (job_id, finished_at);
