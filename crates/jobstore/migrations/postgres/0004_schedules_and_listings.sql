-- The time a queued job must have started by (it ends `expired` after it), the index that finds
-- expiring jobs, and the one that lists ended jobs by status, newest first. Only ended jobs are
-- indexed by status, and so once each: indexing every status change cost a quarter of the
-- throughput of the durable path. Queued and running jobs are listed from the primary key.
ALTER TABLE jobs ADD COLUMN start_by BIGINT;
CREATE INDEX jobs_expiring ON jobs (start_by) WHERE status = 'queued' AND start_by IS NOT NULL;
CREATE INDEX jobs_ended_by_status ON jobs (status, id) WHERE finished_at IS NOT NULL;
