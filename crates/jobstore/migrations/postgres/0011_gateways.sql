-- The gateways on this store, as their heartbeats say: each one upserts its row every
-- heartbeat, so the others know who is live (to share cluster-wide limits and to tell whether a
-- peer could be waiting on a notification).
CREATE TABLE gateways (
    id         TEXT PRIMARY KEY,
    address    TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    last_seen  BIGINT NOT NULL
);
