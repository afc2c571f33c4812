-- The gateways on this store, as their heartbeats say (on SQLite, one at a time: the file is
-- locked by its gateway, but the listing is the same as on PostgreSQL).
CREATE TABLE gateways (
    id         TEXT PRIMARY KEY,
    address    TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL
) WITHOUT ROWID;
