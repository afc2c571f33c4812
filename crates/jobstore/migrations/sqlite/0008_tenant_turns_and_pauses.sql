-- Every job has a tenant (`default` unless its caller names one or is authenticated), and the
-- queue is indexed per tenant, so that claims take turns over the tenants with work and one
-- tenant's backlog is never scanned to find another's job. Paused kinds and tenants start
-- nothing until resumed; every gateway on the store reads them as it claims.
UPDATE jobs SET tenant = 'default' WHERE tenant IS NULL;
DROP INDEX jobs_ready;
CREATE INDEX jobs_ready ON jobs (tenant, priority, run_after, id) WHERE status = 'queued';
CREATE TABLE job_pauses (
    scope     TEXT NOT NULL,
    name      TEXT NOT NULL,
    paused_at INTEGER NOT NULL,
    PRIMARY KEY (scope, name)
) WITHOUT ROWID;
