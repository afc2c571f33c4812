-- Unique jobs: the job that holds each uniqueness key. A new job with the key is refused while
-- that job is in one of the states the new one names (and, with a period, recent enough).
CREATE TABLE job_uniques (key TEXT PRIMARY KEY, job_id TEXT NOT NULL);
