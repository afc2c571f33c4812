-- The tenant that submitted the job (its authenticated caller), for listings and ownership.
ALTER TABLE jobs ADD COLUMN tenant TEXT;
