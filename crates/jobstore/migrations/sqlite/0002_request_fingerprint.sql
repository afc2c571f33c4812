-- The digest of the request that carried an idempotency key, to tell a replay (same request)
-- from a reuse of the key for another request.
ALTER TABLE jobs ADD COLUMN request_fingerprint TEXT;
