-- The last progress a running job's attempt reported (JSON: fraction, message, seq), shown by
-- GET /api/jobs/{id} while it runs and after it ends.
ALTER TABLE jobs ADD COLUMN progress TEXT;
