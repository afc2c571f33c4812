-- The last tick of each [[cron]] entry that was enqueued, so that a scheduler starting up knows
-- which ticks passed while no gateway ran. The ticks' jobs themselves are made unique by their
-- idempotency key (the entry's name and the tick's time).
CREATE TABLE cron_runs (name TEXT PRIMARY KEY, last_tick BIGINT NOT NULL);
