-- Rollup shards: concurrent ingest transactions each add to their own copy (shard) of a (tenant, day,
-- type) rollup, so they never wait on each other's row locks. Readers already sum rollups by key.
ALTER TABLE usage_rollups ADD COLUMN shard SMALLINT NOT NULL DEFAULT 0;
DROP INDEX usage_rollups_open;
CREATE UNIQUE INDEX usage_rollups_open ON usage_rollups (tenant_id, day, usage_type, shard) WHERE billed_by IS NULL;

-- Shards of a day that is over are merged into one rollup (usage::compact), so reads of past days cost
-- one row per key. The merged rows are deleted; their events keep their rollup_id, and this table says
-- which rollup now holds them.
CREATE TABLE usage_rollup_merges (
    merged_id BIGINT PRIMARY KEY,
    into_id   BIGINT NOT NULL
);
CREATE INDEX usage_rollup_merges_into ON usage_rollup_merges (into_id);
