-- The time a queued job must have started by (it ends `expired` after it), and the indexes that
-- find expiring jobs and list jobs by status or kind, newest first.
ALTER TABLE jobs ADD COLUMN start_by INTEGER;
CREATE INDEX jobs_expiring ON jobs (start_by) WHERE status = 'queued' AND start_by IS NOT NULL;
CREATE INDEX jobs_by_status ON jobs (status, id);
CREATE INDEX jobs_by_kind ON jobs (kind, id);
