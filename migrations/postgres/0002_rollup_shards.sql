-- Rollup shards: concurrent ingest transactions each add to their own copy (shard) of a (tenant, day,
-- type) rollup, so they never wait on each other's row locks. Readers already sum rollups by key.
ALTER TABLE usage_rollups ADD COLUMN shard SMALLINT NOT NULL DEFAULT 0;
DROP INDEX usage_rollups_open;
CREATE UNIQUE INDEX usage_rollups_open ON usage_rollups (tenant_id, day, usage_type, shard) WHERE billed_by IS NULL;
